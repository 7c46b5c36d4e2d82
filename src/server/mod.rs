//! The server: the `hotbackup serve` daemon.
//!
//! [`engine`] is the database state machine (journal + store, group commit, replay);
//! [`event_loop`] is the single mio loop around it (client sockets, signals, timers);
//! [`commands`] are what clients may ask, one file per group; [`conn`] is a connection's state;
//! [`settings`] is what comes from the config and what SIGHUP may change; [`metrics`] is the
//! Prometheus endpoint the loop serves; [`pubsub`] is what a connection subscribed to and how a
//! message reaches it.

pub mod commands;
pub mod conn;
pub mod engine;
pub mod event_loop;
pub mod metrics;
pub mod pubsub;
pub mod settings;
pub mod status_line;

use thiserror::Error;

use crate::config::Config;
pub use engine::{Engine, EngineError, EngineOptions, SysApplied};
pub use event_loop::Server;
pub use settings::Settings;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot listen on {what}: {source}")]
    Bind {
        what: String,
        source: std::io::Error,
    },
    #[error("event loop: {0}")]
    Poll(std::io::Error),
    #[error("stopped on a fatal error: {0}")]
    Fatal(String),
}

/// Opens the database of `config` (recovery, replay) and serves clients until stopped.
pub fn serve(config: &Config) -> Result<(), ServerError> {
    match crate::systemd::raise_nofile_limit() {
        Ok((old, new)) if new > old => log::debug!("RLIMIT_NOFILE raised from {old} to {new}"),
        Ok(_) => {}
        Err(e) => log::warn!("cannot raise RLIMIT_NOFILE: {e}"),
    }
    let settings = Settings::from_config(config);
    if settings.sync == crate::journal::SyncMode::None {
        log::warn!(
            "durability.mode = \"none\": writes are acknowledged before they are on disk; an OS crash or power loss loses them. For tests and benchmarks only."
        );
    }
    log::info!(
        "hotbackup {} starting: instance {}, data_dir {}",
        env!("CARGO_PKG_VERSION"),
        settings.instance,
        settings.data_dir.display()
    );
    if !config.incidents.notify.is_empty() {
        let n = crate::incident::notify::Notifier::start(crate::incident::notify::Settings {
            targets: config.incidents.notify.clone(),
            burst: config.incidents.notify_burst,
            window: config.incidents.notify_window,
            hook_timeout: config.incidents.hook_timeout,
            instance: config.instance.clone(),
            sendmail: config.incidents.sendmail.clone(),
        });
        match n {
            Ok(n) => crate::incident::set_notifier(Some(n)),
            Err(e) => log::warn!(
                "cannot start the incident notifier: {e}; incidents go to the journal only"
            ),
        }
    }
    // Until the store says otherwise (Engine::open reads the role it recorded), incidents name
    // the configured role.
    crate::incident::set_role(if settings.slave { "slave" } else { "master" });
    crate::systemd::notify_status("recovering: opening the journal and the store").ok();
    let engine = Engine::open(settings.engine_options())?;
    let server = Server::new(engine, settings)?;
    if let Some(a) = server.local_addr() {
        log::info!("ready: clients on {a}");
    }
    let r = server.run();
    // Tell what is queued before the process goes.
    crate::incident::set_notifier(None);
    r
}
