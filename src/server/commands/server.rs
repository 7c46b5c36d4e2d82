//! Server commands: COMMAND CONFIG INFO DBSIZE FLUSHDB FLUSHALL TIME SAVE BGSAVE LASTSAVE.

use std::fmt::Write as _;
use std::time::Instant;

use super::{Args, COMMANDS, CmdError, CmdResult, Ctx, flags};
use crate::journal::SyncMode;
use crate::resp::encode;
use crate::server::settings::Settings;
use crate::store::Reader;
use crate::txn::Op;

/// The Redis version whose commands and replies we follow, reported to clients that check it.
pub const REDIS_VERSION: &str = "7.0.0";

/// The connections other than the current one (for CLIENT LIST and INFO).
pub trait ClientDirectory {
    fn count(&self) -> usize;
    /// (client id, CLIENT LIST line) of every other connection.
    fn lines(&self) -> Vec<(u64, String)>;
}

/// Counters kept by the event loop.
#[derive(Debug)]
pub struct LoopStats {
    pub started: Instant,
    pub started_ms: u64,
    pub connections_received: u64,
    pub commands_processed: u64,
    pub rejected_connections: u64,
    pub tcp_port: u16,
}

impl LoopStats {
    pub fn new(tcp_port: u16) -> LoopStats {
        LoopStats {
            started: Instant::now(),
            started_ms: crate::txn::now_ms(),
            connections_received: 0,
            commands_processed: 0,
            rejected_connections: 0,
            tcp_port,
        }
    }
}

/// What commands may know about the server around them.
pub struct ServerInfo<'a> {
    pub settings: &'a Settings,
    pub clients: &'a dyn ClientDirectory,
    pub stats: &'a LoopStats,
    pub cursors: &'a std::cell::RefCell<super::keys::ScanCursors>,
    pub link: &'a crate::link::manager::Link,
}

fn flag_names(f: u32) -> Vec<&'static str> {
    let mut v = Vec::new();
    if f & flags::WRITE != 0 {
        v.push("write");
    }
    if f & flags::READ != 0 {
        v.push("readonly");
    }
    if f & flags::ADMIN != 0 {
        v.push("admin");
    }
    if f & flags::NOAUTH != 0 {
        v.push("no_auth");
    }
    if f & flags::FAST != 0 {
        v.push("fast");
    }
    if f & flags::NOQUEUE != 0 {
        v.push("no_multi");
    }
    v
}

fn command_info(out: &mut Vec<u8>, s: &super::Spec) {
    encode::array_len(out, 10);
    encode::bulk(out, s.name.as_bytes());
    encode::integer(out, s.arity as i64);
    let fl = flag_names(s.flags);
    encode::array_len(out, fl.len());
    for f in fl {
        encode::simple(out, f);
    }
    encode::integer(out, s.first_key as i64);
    encode::integer(out, s.last_key as i64);
    encode::integer(out, s.step as i64);
    for _ in 0..4 {
        encode::array_len(out, 0); // ACL categories, tips, key specs, subcommands
    }
}

pub fn command(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    if args.len() == 1 {
        encode::array_len(ctx.out, COMMANDS.len());
        for s in COMMANDS {
            command_info(ctx.out, s);
        }
        return Ok(());
    }
    match &args[1].to_ascii_lowercase()[..] {
        b"count" => encode::integer(ctx.out, COMMANDS.len() as i64),
        b"list" => {
            encode::array_len(ctx.out, COMMANDS.len());
            for s in COMMANDS {
                encode::bulk(ctx.out, s.name.as_bytes());
            }
        }
        b"info" => {
            encode::array_len(ctx.out, args.len() - 2);
            for name in &args[2..] {
                match super::lookup(name) {
                    Some(s) => command_info(ctx.out, s),
                    None => encode::null_array(ctx.out, ctx.conn.proto),
                }
            }
        }
        // No documentation to give: clients (redis-cli) fall back to their own help.
        b"docs" => encode::map_len(ctx.out, 0, ctx.conn.proto),
        _ => {
            return Err(CmdError::NotSupported(format!(
                "COMMAND {}",
                String::from_utf8_lossy(&args[1]).to_uppercase()
            )));
        }
    }
    Ok(())
}

fn config_params(s: &Settings, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("save", String::new()),
        ("appendonly", "yes".into()),
        (
            "appendfsync",
            match s.sync {
                SyncMode::Fsync => "always".into(),
                SyncMode::None => "no".into(),
            },
        ),
        ("maxclients", s.maxclients.to_string()),
        ("timeout", s.timeout.as_secs().to_string()),
        ("proto-max-bulk-len", s.max_bulk_len.to_string()),
        ("client-query-buffer-limit", s.max_request_len.to_string()),
        ("requirepass", s.requirepass.clone().unwrap_or_default()),
        ("port", port.to_string()),
        (
            "bind",
            s.listen.map(|a| a.ip().to_string()).unwrap_or_default(),
        ),
        (
            "unixsocket",
            s.unix_socket
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("dir", s.data_dir.display().to_string()),
        ("databases", "16".into()),
        ("loglevel", s.log_level.to_string().to_lowercase()),
    ]
}

pub fn config(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    match &args[1].to_ascii_lowercase()[..] {
        b"get" => {
            if args.len() < 3 {
                return Err(CmdError::Msg(
                    "ERR wrong number of arguments for 'config|get' command".into(),
                ));
            }
            let params = config_params(ctx.srv.settings, ctx.srv.stats.tcp_port);
            let hits: Vec<_> = params
                .iter()
                .filter(|(k, _)| {
                    args[2..]
                        .iter()
                        .any(|p| crate::glob::glob_match(p, k.as_bytes(), true))
                })
                .collect();
            encode::map_len(ctx.out, hits.len(), ctx.conn.proto);
            for (k, v) in hits {
                encode::bulk(ctx.out, k.as_bytes());
                encode::bulk(ctx.out, v.as_bytes());
            }
            Ok(())
        }
        b"set" | b"rewrite" => Err(CmdError::NotSupported(
            "CONFIG SET/REWRITE (edit the config file and send SIGHUP to reload)".into(),
        )),
        b"resetstat" => ctx.ok(),
        _ => Err(CmdError::NotSupported(format!(
            "CONFIG {}",
            String::from_utf8_lossy(&args[1]).to_uppercase()
        ))),
    }
}

const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "persistence",
    "stats",
    "replication",
    "keyspace",
];

pub fn info(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let mut wanted: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_lowercase())
        .collect();
    if wanted.is_empty()
        || wanted
            .iter()
            .any(|w| w == "all" || w == "default" || w == "everything")
    {
        wanted = DEFAULT_SECTIONS.iter().map(|s| s.to_string()).collect();
    }
    let mut text = String::new();
    for section in DEFAULT_SECTIONS {
        if !wanted.iter().any(|w| w == section) {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        info_section(ctx, section, &mut text)?;
    }
    encode::verbatim(ctx.out, "txt", text.as_bytes(), ctx.conn.proto);
    Ok(())
}

fn header(t: &mut String, name: &str) {
    let _ = write!(t, "# {name}\r\n");
}

fn kv(t: &mut String, k: &str, v: &dyn std::fmt::Display) {
    let _ = write!(t, "{k}:{v}\r\n");
}

fn info_section(ctx: &mut Ctx<'_>, section: &str, t: &mut String) -> CmdResult {
    let s = ctx.srv.settings;
    let st = ctx.srv.stats;
    match section {
        "server" => {
            let up = st.started.elapsed().as_secs();
            header(t, "Server");
            kv(t, "redis_version", &REDIS_VERSION);
            kv(t, "hotbackup_version", &env!("CARGO_PKG_VERSION"));
            kv(t, "redis_mode", &"standalone");
            kv(t, "os", &std::env::consts::OS);
            kv(t, "arch_bits", &(usize::BITS));
            kv(t, "process_id", &std::process::id());
            kv(t, "tcp_port", &st.tcp_port);
            kv(t, "uptime_in_seconds", &up);
            kv(t, "uptime_in_days", &(up / 86400));
            kv(t, "instance", &s.instance);
            kv(t, "config_file", &s.config_path.display());
            kv(t, "data_dir", &s.data_dir.display());
        }
        "clients" => {
            header(t, "Clients");
            kv(t, "connected_clients", &(ctx.srv.clients.count() + 1));
            kv(t, "maxclients", &s.maxclients);
        }
        "persistence" => {
            let j = ctx.eng.journal();
            let durable = j.durable_lsn();
            let first = j.first_lsn();
            let segments = j.segments().len();
            let (applied, checkpoint) = ctx
                .eng
                .store()
                .map(|st| (st.meta().applied_lsn, st.meta().checkpoint_lsn))
                .unwrap_or((0, 0));
            let es = ctx.eng.stats.clone();
            let writable = ctx.eng.check_writable();
            header(t, "Persistence");
            kv(t, "loading", &0);
            kv(t, "aof_enabled", &1);
            kv(
                t,
                "durability",
                &match s.sync {
                    SyncMode::Fsync => "fsync",
                    SyncMode::None => "none (NOT DURABLE: tests and benchmarks only)",
                },
            );
            kv(t, "journal_first_lsn", &first);
            kv(t, "journal_durable_lsn", &durable);
            kv(t, "journal_segments", &segments);
            kv(t, "store_applied_lsn", &applied);
            kv(t, "store_checkpoint_lsn", &checkpoint);
            kv(t, "checkpoints", &es.checkpoints);
            kv(t, "last_checkpoint_time", &(es.last_checkpoint_ms / 1000));
            kv(t, "last_checkpoint_ms", &(es.last_checkpoint_us / 1000));
            kv(t, "max_checkpoint_ms", &(es.max_checkpoint_us / 1000));
            kv(t, "replayed_at_start", &es.replayed_at_start);
            kv(
                t,
                "tail_truncated_at_start",
                &es.truncated_at_start.unwrap_or_else(|| "no".into()),
            );
            match writable {
                Ok(()) => kv(t, "writes_refused", &"no"),
                Err(e) => kv(t, "writes_refused", &e),
            }
        }
        "stats" => {
            let es = &ctx.eng.stats;
            header(t, "Stats");
            kv(t, "total_connections_received", &st.connections_received);
            kv(t, "total_commands_processed", &st.commands_processed);
            kv(t, "rejected_connections", &st.rejected_connections);
            kv(t, "journal_records", &es.records);
            kv(t, "journal_group_commits", &es.commits);
            kv(
                t,
                "journal_write_avg_us",
                &es.commit_us.checked_div(es.commits).unwrap_or(0),
            );
            kv(t, "journal_syncs", &es.syncs);
            kv(
                t,
                "journal_sync_avg_us",
                &es.sync_us.checked_div(es.syncs).unwrap_or(0),
            );
            kv(t, "failed_write_turns", &es.failed_turns);
        }
        "replication" => {
            header(t, "Replication");
            let peers = ctx.srv.link.status(ctx.eng);
            let durable = ctx.eng.durable_lsn();
            kv(
                t,
                "role",
                &if ctx.eng.is_slave() {
                    "slave"
                } else {
                    "master"
                },
            );
            kv(t, "generation", &ctx.eng.generation());
            kv(t, "durable_lsn", &durable);
            kv(
                t,
                "writes",
                &if ctx.eng.is_slave() {
                    "readonly"
                } else if ctx.eng.fenced().is_some() {
                    "fenced"
                } else if ctx.eng.checking_peers() {
                    "checking_peers"
                } else {
                    "ok"
                },
            );
            if let Some(why) = ctx.eng.fenced() {
                kv(t, "fenced_reason", &why.replace(['\r', '\n'], " "));
            }
            if let Some(o) = ctx.srv.link.switchover_outcome() {
                kv(t, "switchover", &o.replace(['\r', '\n'], " "));
            }
            if let Some(r) = ctx.eng.rejoin_report() {
                kv(t, "rejoin_report", &r.replace(['\r', '\n'], " "));
            }
            if let Some(r) = ctx.eng.rewind_state() {
                kv(
                    t,
                    "rewind",
                    &match r.upto {
                        None => format!("waiting for the repair (fork at LSN {})", r.fork),
                        Some(u) => format!("repaired at LSN {u}; catching up"),
                    },
                );
            }
            if ctx.eng.is_slave() {
                let master = peers.iter().find(|p| p.role == "master");
                // Where clients reach the master (what Redis tools expect here).
                let (host, port) = ctx
                    .eng
                    .master_addr()
                    .and_then(|a| a.rsplit_once(':'))
                    .map(|(h, p)| (h.to_string(), p.to_string()))
                    .unwrap_or_default();
                kv(t, "master_host", &host);
                kv(t, "master_port", &port);
                kv(
                    t,
                    "master_link_addr",
                    &master.map_or("", |m| m.addr.as_str()),
                );
                kv(
                    t,
                    "master_link_status",
                    &if ctx.srv.link.master_link_up() {
                        "up"
                    } else {
                        "down"
                    },
                );
                kv(
                    t,
                    "master_sync_in_progress",
                    &(master.is_some_and(|m| m.state.starts_with("full sync")) as u8),
                );
                // A full sync (Redis's loading fields, in items since the master's snapshot
                // size in bytes is not known ahead), or a rejoin's repair: how far, and when
                // done at the rate so far.
                if let Some(p) = master.and_then(|m| m.progress.as_ref()) {
                    kv(t, "master_sync_phase", &p.phase.name().replace(' ', "_"));
                    kv(t, "master_sync_read_items", &p.items);
                    kv(t, "master_sync_total_items", &p.items_total);
                    kv(t, "master_sync_read_bytes", &p.bytes);
                    kv(t, "master_sync_perc", &format!("{:.2}", p.percent()));
                    kv(t, "master_sync_rate_items", &(p.rate() as u64));
                    kv(
                        t,
                        "master_sync_eta_seconds",
                        &p.eta().map_or(-1, |d| d.as_secs_f64().ceil() as i64),
                    );
                    kv(t, "master_sync_elapsed_ms", &p.elapsed.as_millis());
                    kv(t, "master_sync_progress", &p.line());
                }
                kv(
                    t,
                    "master_link_state",
                    &master.map_or("down".to_string(), |m| m.state.clone()),
                );
                kv(
                    t,
                    "master_sync_summary",
                    &master.map_or("", |m| m.sync_summary.as_str()),
                );
                kv(
                    t,
                    "master_last_full_sync",
                    &ctx.eng
                        .last_full_sync()
                        .map(|(s, at)| format!("{s}, {} s ago", at.elapsed().as_secs()))
                        .unwrap_or_default(),
                );
                kv(t, "slave_repl_offset", &ctx.eng.visible_lsn());
                let c = ctx.srv.link.canary_status();
                if let Some(l) = &c.last {
                    kv(t, "canary_counter", &l.counter);
                    kv(t, "canary_lsn", &l.lsn);
                    kv(t, "canary_lag_ms", &l.lag_ms);
                    kv(
                        t,
                        "canary_age_ms",
                        &((c.age_s.unwrap_or(0.0) * 1000.0) as u64),
                    );
                }
                kv(t, "canary_late", &(c.late_here as u8));
                kv(t, "slave_read_only", &1);
            }
            let slaves: Vec<_> = peers.iter().filter(|p| p.role == "slave").collect();
            kv(
                t,
                "connected_slaves",
                &slaves
                    .iter()
                    .filter(|p| p.state == "streaming" || p.state == "full sync")
                    .count(),
            );
            for (i, p) in slaves.iter().enumerate() {
                let (ip, port) = p.addr.rsplit_once(':').unwrap_or((&p.addr, ""));
                kv(
                    t,
                    &format!("slave{i}"),
                    &format!(
                        "ip={ip},port={port},name={},state={},offset={},lag={},sent_lsn={},acked_received={},acked_durable={},acked_applied={},lag_entries={},lag_bytes={},lag_ms={},last_ack_ms={},bytes_out={}",
                        p.name,
                        p.state.replace([',', ' '], "_"),
                        p.acked_applied,
                        p.last_ack_ms / 1000,
                        p.sent,
                        p.acked_received,
                        p.acked_durable,
                        p.acked_applied,
                        p.lag_entries,
                        p.lag_bytes,
                        p.lag_ms,
                        p.last_ack_ms,
                        p.bytes_out
                    ),
                );
            }
            // Per link (D3's statistics; cumulative since the daemon started, over reconnects).
            let links = ctx.srv.link.link_stats(ctx.eng);
            kv(t, "master_repl_offset", &durable);
            if ctx.eng.is_slave() {
                if let Some(m) = links.iter().find(|l| {
                    l.role == "master" && l.state != Some(crate::link::stats::LinkState::Down)
                }) {
                    kv(t, "master_last_io_seconds_ago", &(m.last_ack_ms / 1000));
                } else {
                    let down_ms = links
                        .iter()
                        .filter(|l| l.role == "master")
                        .map(|l| l.state_ms)
                        .min()
                        .unwrap_or(0);
                    kv(t, "master_link_down_since_seconds", &(down_ms / 1000));
                }
            }
            let sum =
                |f: fn(&crate::link::stats::LinkStat) -> u64| -> u64 { links.iter().map(f).sum() };
            kv(t, "total_net_repl_input_bytes", &sum(|l| l.bytes_in));
            kv(t, "total_net_repl_output_bytes", &sum(|l| l.bytes_out));
            kv(t, "link_reconnects", &sum(|l| l.reconnects));
            for (i, l) in links.iter().enumerate() {
                let fields: Vec<String> = l
                    .fields()
                    .into_iter()
                    .filter(|(k, _)| *k != "last_error")
                    .map(|(k, v)| format!("{k}={}", v.replace([',', ' ', '=', '\r', '\n'], "_")))
                    .collect();
                kv(t, &format!("link{i}"), &fields.join(","));
            }
            let ls = &ctx.srv.link.stats;
            kv(t, "sync_full", &ls.full_syncs);
            kv(t, "sync_partial_ok", &ls.partial_syncs);
            kv(t, "link_full_syncs", &ls.full_syncs);
            kv(t, "link_partial_syncs", &ls.partial_syncs);
            kv(t, "link_disconnects", &ls.disconnects);
            kv(t, "link_auth_failures", &ls.auth_failures);
            kv(t, "link_sync_timeouts", &ls.sync_timeouts);
            kv(t, "link_slots_dropped", &ls.slots_dropped);
            kv(t, "journal_first_lsn", &ctx.eng.journal().first_lsn());
        }
        "keyspace" => {
            header(t, "Keyspace");
            let r = ctx.eng.reader()?;
            for (name, info) in r.files() {
                let n = r.count(&name)?;
                let label = if name == crate::files::DEFAULT_FILE {
                    "db0".to_string()
                } else {
                    name.clone()
                };
                let _ = write!(
                    t,
                    "{label}:keys={n},expires=0,avg_ttl=0,logged={}\r\n",
                    info.logged as u8
                );
            }
        }
        _ => {}
    }
    Ok(())
}

pub fn dbsize(ctx: &mut Ctx<'_>, _args: Args) -> CmdResult {
    let file = ctx.conn.file.clone();
    let n = ctx.eng.reader()?.count(&file)?;
    encode::integer(ctx.out, n as i64);
    Ok(())
}

fn flush_mode(args: &Args) -> CmdResult {
    match args.len() {
        1 => Ok(()),
        2 if matches!(&args[1].to_ascii_lowercase()[..], b"async" | b"sync") => Ok(()),
        _ => Err(CmdError::Syntax),
    }
}

pub fn flushdb(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    flush_mode(&args)?;
    let file = ctx.writable_file()?;
    if ctx.eng.reader()?.file_info(&file).is_some() {
        ctx.eng.write(Op::ClearFile { file })?;
    }
    ctx.ok()
}

pub fn flushall(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    flush_mode(&args)?;
    let files: Vec<String> = ctx
        .eng
        .reader()?
        .files()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !crate::files::is_reserved(n))
        .collect();
    for file in files {
        ctx.eng.write(Op::ClearFile { file })?;
    }
    ctx.ok()
}

pub fn time(ctx: &mut Ctx<'_>, _args: Args) -> CmdResult {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    encode::array_len(ctx.out, 2);
    encode::bulk(ctx.out, now.as_secs().to_string().as_bytes());
    encode::bulk(ctx.out, now.subsec_micros().to_string().as_bytes());
    Ok(())
}

/// SAVE / BGSAVE: every acknowledged write is already durable in the journal; this asks for a
/// store checkpoint at the end of the turn (so that start-up replays less).
pub fn save(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    ctx.eng.request_checkpoint();
    if args[0].eq_ignore_ascii_case(b"bgsave") {
        encode::simple(ctx.out, "Background saving started");
        Ok(())
    } else {
        ctx.ok()
    }
}

pub fn lastsave(ctx: &mut Ctx<'_>, _args: Args) -> CmdResult {
    let ms = ctx
        .eng
        .stats
        .last_checkpoint_ms
        .max(ctx.srv.stats.started_ms);
    encode::integer(ctx.out, (ms / 1000) as i64);
    Ok(())
}
