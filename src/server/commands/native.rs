//! Native commands that name the file explicitly, as a D3 program writes `file, id, value`:
//! HB.WRITE HB.READ HB.DELETE HB.FILES HB.CREATE HB.LOGGED HB.DROP, and HB.STATUS for
//! `hotbackup status`.

use super::{Args, CmdError, CmdResult, Ctx};
use crate::files;
use crate::journal::SyncMode;
use crate::resp::{Proto, encode};
use crate::store::{Reader, item};
use crate::txn::{Op, Value};

fn no_such_file(name: &str) -> CmdError {
    CmdError::Msg(format!("ERR no such file '{name}'"))
}

/// HB.WRITE file id value
pub fn write(ctx: &mut Ctx<'_>, mut args: Args) -> CmdResult {
    let file = files::validate_writable(&args[1])?;
    let value = std::mem::take(&mut args[3]);
    let id = std::mem::take(&mut args[2]);
    ctx.eng.write(Op::Put {
        file,
        id,
        value: Value::Str(value),
    })?;
    ctx.ok()
}

/// HB.READ file id: the string, or a hash item's fields as a map; nil if absent.
pub fn read(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let file = files::validate(&args[1])?;
    match ctx.get_in(&file, &args[2])? {
        None => encode::null(ctx.out, ctx.conn.proto),
        Some(raw) => match item::decode(&raw)? {
            Value::Str(s) => encode::bulk(ctx.out, &s),
            Value::Hash(fields) => {
                encode::map_len(ctx.out, fields.len(), ctx.conn.proto);
                for (f, v) in fields {
                    encode::bulk(ctx.out, &f);
                    encode::bulk(ctx.out, &v);
                }
            }
        },
    }
    Ok(())
}

/// HB.DELETE file id: 1 if it was there.
pub fn delete(ctx: &mut Ctx<'_>, mut args: Args) -> CmdResult {
    let file = files::validate_writable(&args[1])?;
    let present = ctx.get_in(&file, &args[2])?.is_some();
    if present {
        let id = std::mem::take(&mut args[2]);
        ctx.eng.write(Op::Delete { file, id })?;
    }
    encode::integer(ctx.out, present as i64);
    Ok(())
}

/// HB.FILES: every file with its logged flag and item count.
pub fn files(ctx: &mut Ctx<'_>, _args: Args) -> CmdResult {
    let proto = ctx.conn.proto;
    let r = ctx.eng.reader()?;
    let list = r.files();
    let mut counts = Vec::with_capacity(list.len());
    for (name, _) in &list {
        counts.push(r.count(name)?);
    }
    encode::array_len(ctx.out, list.len());
    for ((name, info), n) in list.iter().zip(counts) {
        encode::map_len(ctx.out, 4, proto);
        encode::bulk(ctx.out, b"name");
        encode::bulk(ctx.out, name.as_bytes());
        encode::bulk(ctx.out, b"logged");
        encode::boolean(ctx.out, info.logged, proto);
        encode::bulk(ctx.out, b"items");
        encode::integer(ctx.out, n as i64);
        encode::bulk(ctx.out, b"created_lsn");
        encode::integer(ctx.out, info.created_lsn as i64);
    }
    Ok(())
}

fn parse_flag(b: &[u8], on: &[&[u8]], off: &[&[u8]]) -> Result<bool, CmdError> {
    let l = b.to_ascii_lowercase();
    if on.contains(&l.as_slice()) {
        Ok(true)
    } else if off.contains(&l.as_slice()) {
        Ok(false)
    } else {
        Err(CmdError::Syntax)
    }
}

/// HB.CREATE file [LOGGED|UNLOGGED]: default from the config globs.
pub fn create(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    if args.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let file = files::validate_writable(&args[1])?;
    let logged = match args.get(2) {
        Some(f) => parse_flag(f, &[b"logged"], &[b"unlogged"])?,
        None => ctx.eng.options().is_logged(&file),
    };
    if ctx.eng.reader()?.file_info(&file).is_some() {
        return Err(CmdError::Msg(format!("ERR file '{file}' exists already")));
    }
    ctx.eng.write(Op::CreateFile { file, logged })?;
    ctx.ok()
}

/// HB.LOGGED file [ON|OFF]: show (1/0) or change whether a file is logged (replicated).
pub fn logged(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    if args.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let Some(flag) = args.get(2) else {
        let file = files::validate(&args[1])?;
        let info = ctx
            .eng
            .reader()?
            .file_info(&file)
            .ok_or_else(|| no_such_file(&file))?;
        encode::integer(ctx.out, info.logged as i64);
        return Ok(());
    };
    let logged = parse_flag(flag, &[b"on", b"1", b"yes"], &[b"off", b"0", b"no"])?;
    let file = files::validate_writable(&args[1])?;
    let info = ctx
        .eng
        .reader()?
        .file_info(&file)
        .ok_or_else(|| no_such_file(&file))?;
    if info.logged != logged {
        ctx.eng.write(Op::SetLogged {
            file: file.clone(),
            logged,
        })?;
        if logged {
            copy_to_slaves(ctx, &file)?;
        }
    }
    ctx.ok()
}

/// A file that turns logged reaches the slaves whole: its SetLogged is followed by a Put of
/// every item (the slaves empty their copy on the SetLogged; the master's items do not change).
/// The copy is cut into records of about [`COPY_RECORD_BYTES`]; they share one group commit.
pub(super) fn copy_to_slaves(ctx: &mut Ctx<'_>, file: &str) -> CmdResult {
    let mut items = Vec::new();
    ctx.eng.reader()?.scan_from(file, b"", &mut |id, raw| {
        items.push((id.to_vec(), raw.to_vec()));
        std::ops::ControlFlow::Continue(())
    })?;
    let mut bytes = 0;
    for (id, raw) in items {
        bytes += id.len() + raw.len();
        let value = item::decode(&raw)?;
        ctx.eng.write(Op::Put {
            file: file.to_string(),
            id,
            value,
        })?;
        if bytes >= COPY_RECORD_BYTES && !ctx.conn.in_exec {
            ctx.eng.end_txn();
            bytes = 0;
        }
    }
    Ok(())
}

const COPY_RECORD_BYTES: usize = 4 << 20;

/// HB.DROP file: remove a file and its items.
pub fn drop_file(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let file = files::validate_writable(&args[1])?;
    if ctx.eng.reader()?.file_info(&file).is_none() {
        return Err(no_such_file(&file));
    }
    ctx.eng.write(Op::DropFile { file })?;
    ctx.ok()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// HB.STATUS: a map for `hotbackup status`.
/// The canary as `status` shows it.
pub fn canary_text(c: &crate::verify::canary::CanaryStatus) -> String {
    if !c.enabled {
        return "off".into();
    }
    let mut s = match &c.last {
        Some(l) => format!(
            "#{} at LSN {}, {:.1} s ago, lag {} ms",
            l.counter,
            l.lsn,
            c.age_s.unwrap_or(0.0),
            l.lag_ms
        ),
        None => "none yet".into(),
    };
    if c.late_here {
        s.push_str("; LATE: no canary from the master within canary_alarm");
    }
    if !c.late_peers.is_empty() {
        s.push_str(&format!("; LATE on slave(s): {}", c.late_peers.join(", ")));
    }
    s
}

pub fn status(ctx: &mut Ctx<'_>, _args: Args) -> CmdResult {
    let s = ctx.srv.settings;
    let writable = ctx.eng.check_writable().err().map(|e| e.to_string());
    let j = ctx.eng.journal();
    let (db_id, applied, checkpoint) = ctx
        .eng
        .store()
        .map(|st| {
            (
                hex(&st.meta().db_id),
                st.meta().applied_lsn,
                st.meta().checkpoint_lsn,
            )
        })
        .unwrap_or_default();
    let mut fields: Vec<(&str, String)> = vec![
        ("instance", s.instance.clone()),
        ("version", env!("CARGO_PKG_VERSION").into()),
        (
            "role",
            if ctx.eng.is_slave() {
                "slave".into()
            } else {
                "master".into()
            },
        ),
        ("generation", ctx.eng.generation().to_string()),
        ("db_id", db_id),
        ("pid", std::process::id().to_string()),
        (
            "uptime_s",
            ctx.srv.stats.started.elapsed().as_secs().to_string(),
        ),
        (
            "durability",
            match s.sync {
                SyncMode::Fsync => "fsync".into(),
                SyncMode::None => "none".into(),
            },
        ),
        ("data_dir", s.data_dir.display().to_string()),
        ("applied_lsn", applied.to_string()),
        ("checkpoint_lsn", checkpoint.to_string()),
        ("journal_first_lsn", j.first_lsn().to_string()),
        ("journal_durable_lsn", j.durable_lsn().to_string()),
        ("journal_segments", j.segments().len().to_string()),
        ("clients", (ctx.srv.clients.count() + 1).to_string()),
        ("writes_refused", writable.unwrap_or_default()),
        (
            "writes",
            if ctx.eng.is_slave() {
                "readonly"
            } else if ctx.eng.fenced().is_some() {
                "fenced"
            } else if ctx.eng.checking_peers() {
                "checking_peers"
            } else if ctx.eng.writes_wait() {
                "paused (switchover)"
            } else {
                "ok"
            }
            .into(),
        ),
        ("fenced", ctx.eng.fenced().unwrap_or_default().to_string()),
        (
            "master_addr",
            ctx.eng.master_addr().unwrap_or_default().to_string(),
        ),
        ("rejoin", ctx.eng.rejoin_report().unwrap_or_default()),
        (
            "switchover",
            ctx.srv
                .link
                .switchover_outcome()
                .unwrap_or_default()
                .to_string(),
        ),
    ];
    let nfiles = ctx.eng.reader()?.files().len();
    fields.push(("files", nfiles.to_string()));
    fields.push(("canary", canary_text(&ctx.srv.link.canary_status())));
    fields.push((
        "verify",
        ctx.srv
            .link
            .verifier()
            .last()
            .map(|r| {
                format!(
                    "run {} at LSN {}: {}; {} of {} slave outcome(s)",
                    r.id,
                    r.lsn,
                    r.state(),
                    r.reports.len() + r.mine.is_some() as usize,
                    r.expected() + r.mine.is_some() as u32
                )
            })
            .unwrap_or_default(),
    ));
    let peers = ctx.srv.link.status(ctx.eng);
    // A full sync or repair this node receives: empty fields when there is none.
    let progress = peers
        .iter()
        .filter(|p| p.role == "master")
        .find_map(|p| p.progress.clone());
    let pf = |f: &dyn Fn(&crate::link::follow::SyncProgress) -> String| {
        progress.as_ref().map(f).unwrap_or_default()
    };
    fields.push(("sync", pf(&|p| p.line())));
    fields.push(("sync_phase", pf(&|p| p.phase.name().to_string())));
    fields.push(("sync_items", pf(&|p| p.items.to_string())));
    fields.push(("sync_items_total", pf(&|p| p.items_total.to_string())));
    fields.push(("sync_bytes", pf(&|p| p.bytes.to_string())));
    fields.push((
        "sync_elapsed_s",
        pf(&|p| format!("{:.1}", p.elapsed.as_secs_f64())),
    ));
    fields.push(("sync_rate_items_s", pf(&|p| format!("{:.0}", p.rate()))));
    fields.push((
        "sync_eta_s",
        pf(&|p| {
            p.eta()
                .map(|d| format!("{:.0}", d.as_secs_f64().ceil()))
                .unwrap_or_default()
        }),
    ));
    let links: Vec<String> = peers
        .iter()
        .map(|p| {
            format!(
                "{} {} {}: {}, sent {}, acked received/durable/applied {}/{}/{}, lag {} entries / {} bytes / {} ms, last ack {} ms ago",
                p.role,
                if p.name.is_empty() { "?" } else { &p.name },
                p.addr,
                p.state,
                p.sent,
                p.acked_received,
                p.acked_durable,
                p.acked_applied,
                p.lag_entries,
                p.lag_bytes,
                p.lag_ms,
                p.last_ack_ms
            )
        })
        .collect();
    let links_text = links.join("\n");
    fields.push(("links", links_text));
    let proto = if ctx.conn.proto == Proto::Resp3 {
        Proto::Resp3
    } else {
        Proto::Resp2
    };
    encode::map_len(ctx.out, fields.len(), proto);
    for (k, v) in fields {
        encode::bulk(ctx.out, k.as_bytes());
        encode::bulk(ctx.out, v.as_bytes());
    }
    Ok(())
}
