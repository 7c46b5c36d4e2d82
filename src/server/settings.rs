//! The server's settings: what the event loop and commands take from the config, and what a
//! SIGHUP may change while running.
//!
//! Reloadable: client.requirepass, client.maxclients, client.timeout, client.max_bulk_len,
//! client.max_request_len, durability.min_free_space, durability.checkpoint_interval,
//! durability.checkpoint_bytes, files.logged / files.unlogged (for files created afterwards),
//! log.level. Everything else (addresses, data_dir, durability mode, segment size, cache size)
//! needs a restart; a reload that changes them says so in the log and keeps the old value.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Config, DurabilityMode, OnSyncTimeout, ReplicaSync, Role, SwitchoverWrites};
use crate::journal::SyncMode;
use crate::journal::archive::Archiver;
use crate::link::manager::{self, LinkSettings};
use crate::resp;
use crate::server::engine::EngineOptions;

#[derive(Debug, Clone)]
pub struct Settings {
    pub instance: String,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub listen: Option<SocketAddr>,
    pub sentinel_listen: Option<SocketAddr>,
    /// The Prometheus endpoint (`[metrics] listen`).
    pub metrics_listen: Option<SocketAddr>,
    pub unix_socket: Option<PathBuf>,
    pub unix_socket_mode: u32,
    pub requirepass: Option<String>,
    pub maxclients: usize,
    pub timeout: Duration,
    pub max_bulk_len: usize,
    pub max_request_len: usize,
    pub sync: SyncMode,
    pub segment_size: u64,
    pub cache_size: usize,
    pub checkpoint_interval: Duration,
    pub checkpoint_bytes: u64,
    pub min_free_space: u64,
    pub logged: Vec<String>,
    pub unlogged: Vec<String>,
    pub log_level: log::LevelFilter,
    pub slave: bool,
    pub link: LinkSettings,
    /// Where journal segments are archived before removal.
    pub archive: Option<Archiver>,
}

fn sync_mode(m: DurabilityMode) -> SyncMode {
    match m {
        DurabilityMode::Fsync => SyncMode::Fsync,
        DurabilityMode::None => SyncMode::None,
    }
}

fn link_settings(c: &Config) -> LinkSettings {
    let l = &c.link;
    LinkSettings {
        listen: l.listen,
        // The role decides who dials (a master its peers, a slave its downstream); promote
        // and rejoin change the role while running, so both lists are kept.
        peers: l.peers.clone(),
        downstream: l.downstream.clone(),
        client_addr: c.client.listen.map(|a| a.to_string()).unwrap_or_default(),
        sentinel_addr: c
            .client
            .sentinel_listen
            .map(|a| a.to_string())
            .unwrap_or_default(),
        key: l.key.as_ref().map(|k| k.as_bytes().to_vec()),
        name: c.instance.clone(),
        heartbeat: l.heartbeat_interval,
        peer_timeout: l.peer_timeout,
        reconnect_min: l.reconnect_min,
        reconnect_max: l.reconnect_max,
        max_frame: l.max_frame,
        max_retained_bytes: l.max_retained_bytes,
        sync: match l.sync {
            ReplicaSync::Async => manager::ReplicaSync::Async,
            ReplicaSync::Received => manager::ReplicaSync::Received,
            ReplicaSync::Durable => manager::ReplicaSync::Durable,
            ReplicaSync::Applied => manager::ReplicaSync::Applied,
        },
        min_sync_slaves: l.min_sync_slaves,
        sync_timeout: l.sync_timeout,
        refuse_on_timeout: l.on_sync_timeout == OnSyncTimeout::Refuse,
        switchover_refuse: l.switchover_writes == SwitchoverWrites::Refuse,
        switchover_timeout: l.switchover_timeout,
        canary_interval: c.verify.canary_interval,
        canary_alarm: c.verify.canary_alarm,
        verify_interval: c.verify.interval,
    }
}

impl Settings {
    pub fn from_config(c: &Config) -> Settings {
        Settings {
            instance: c.instance.clone(),
            config_path: c.path.clone(),
            data_dir: c.data_dir.clone(),
            listen: c.client.listen,
            unix_socket: c.client.unix_socket.clone(),
            unix_socket_mode: c.client.unix_socket_mode,
            sentinel_listen: c.client.sentinel_listen,
            metrics_listen: c.metrics.listen,
            requirepass: c.client.requirepass.clone(),
            maxclients: c.client.maxclients,
            timeout: c.client.timeout,
            max_bulk_len: c.client.max_bulk_len,
            max_request_len: c.client.max_request_len,
            sync: sync_mode(c.durability.mode),
            segment_size: c.durability.segment_size,
            cache_size: c.store.cache_size,
            checkpoint_interval: c.durability.checkpoint_interval,
            checkpoint_bytes: c.durability.checkpoint_bytes,
            min_free_space: c.durability.min_free_space,
            logged: c.files.logged.clone(),
            unlogged: c.files.unlogged.clone(),
            log_level: c.log.level,
            slave: c.role == Role::Slave,
            link: link_settings(c),
            archive: match (&c.journal.archive_dir, &c.journal.archive_command) {
                (Some(d), _) => Some(Archiver::Dir(d.clone())),
                (None, Some(cmd)) => Some(Archiver::Command(cmd.clone())),
                (None, None) => None,
            },
        }
    }

    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            data_dir: self.data_dir.clone(),
            sync: self.sync,
            segment_size: self.segment_size,
            cache_size: self.cache_size,
            min_free_space: self.min_free_space,
            logged: self.logged.clone(),
            unlogged: self.unlogged.clone(),
            slave: self.slave,
            archive: self.archive.clone(),
        }
    }

    /// Protocol limits for parsing requests.
    pub fn limits(&self) -> resp::Limits {
        resp::Limits {
            max_bulk_len: self.max_bulk_len,
            ..resp::Limits::default()
        }
    }

    /// Takes the reloadable settings from a freshly loaded config. Returns what changed and
    /// what would need a restart.
    pub fn reload(&mut self, c: &Config) -> Vec<String> {
        let new = Settings::from_config(c);
        let mut notes = Vec::new();
        macro_rules! take {
            ($($f:ident),*) => {$(
                if format!("{:?}", self.$f) != format!("{:?}", new.$f) {
                    notes.push(format!("{} changed", stringify!($f)));
                    self.$f = new.$f.clone();
                }
            )*};
        }
        take!(
            requirepass,
            maxclients,
            timeout,
            max_bulk_len,
            max_request_len,
            checkpoint_interval,
            checkpoint_bytes,
            min_free_space,
            logged,
            unlogged,
            log_level
        );
        macro_rules! fixed {
            ($($f:ident),*) => {$(
                if format!("{:?}", self.$f) != format!("{:?}", new.$f) {
                    notes.push(format!("{} changed in the file but needs a restart: still {:?}", stringify!($f), self.$f));
                }
            )*};
        }
        fixed!(
            instance,
            data_dir,
            listen,
            sentinel_listen,
            metrics_listen,
            unix_socket,
            unix_socket_mode,
            sync,
            segment_size,
            cache_size,
            archive
        );
        notes
    }
}
