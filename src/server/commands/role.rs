//! Role commands: HB.PROMOTE and HB.REJOIN (what `hotbackup promote` / `rejoin` send to a
//! running daemon), and Redis's ROLE, which clients use to check that they reached a master.

use super::{Args, CmdError, CmdResult, Ctx};
use crate::resp::{Proto, encode};
use crate::server::engine::RoleError;

/// Writes `fields` as a map (RESP3) or a flat array of pairs (RESP2).
fn reply_map(ctx: &mut Ctx<'_>, fields: &[(&str, String)]) {
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
}

/// HB.PROMOTE: a slave becomes the writable master of a new generation. On a master it is
/// idempotent ("already_master"); on a master still waiting to hear from its peers after a
/// start it ends the wait ("stopped_waiting"). Refused on a fenced node: a newer master
/// exists, and this node must rejoin it.
pub fn promote(ctx: &mut Ctx<'_>, _args: Args) -> CmdResult {
    if !ctx.eng.is_slave() {
        if let Some(why) = ctx.eng.fenced() {
            return Err(CmdError::Msg(format!(
                "FENCED this node was fenced ({why}); a newer master exists: run `hotbackup rejoin` here, not promote"
            )));
        }
        let result = if ctx.eng.checking_peers() {
            crate::incident::raise(
                crate::incident::Kind::Promoted,
                "promote: this master stops waiting to hear from its peers and takes writes (by an admin's command)",
                &[],
            );
            ctx.eng.set_checking_peers(false);
            "stopped_waiting"
        } else {
            "already_master"
        };
        let generation = ctx.eng.generation().to_string();
        reply_map(
            ctx,
            &[
                ("result", result.into()),
                ("role", "master".into()),
                ("generation", generation),
            ],
        );
        return Ok(());
    }
    let name = ctx.srv.settings.instance.clone();
    let first_lsn = ctx.eng.journal().next_lsn();
    match ctx.eng.promote(&name) {
        Ok(generation) => {
            reply_map(
                ctx,
                &[
                    ("result", "promoted".into()),
                    ("role", "master".into()),
                    ("generation", generation.to_string()),
                    ("first_lsn", first_lsn.to_string()),
                ],
            );
            Ok(())
        }
        Err(e) => Err(role_error(e)),
    }
}

/// HB.REJOIN [FORCE]: a master (fenced, or still checking with its peers) becomes a slave and
/// waits for the new master; what it holds beyond the fork point is exported when the new
/// master connects. A writable, unfenced master needs FORCE (the pair would have no master).
/// Idempotent on a slave ("already_slave").
pub fn rejoin(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let force = match args.get(1) {
        None => false,
        Some(a) if a.eq_ignore_ascii_case(b"force") => true,
        Some(_) => return Err(CmdError::Syntax),
    };
    if ctx.eng.is_slave() {
        reply_map(
            ctx,
            &[("result", "already_slave".into()), ("role", "slave".into())],
        );
        return Ok(());
    }
    if ctx.eng.fenced().is_none() && !ctx.eng.checking_peers() && !force {
        return Err(CmdError::Msg(
            "ERR this node is a writable master and was not fenced: rejoin would leave the pair without a master; use `hotbackup switchover` for a planned swap, or rejoin --force if the other node really is the master".into(),
        ));
    }
    match ctx.eng.become_slave() {
        Ok(()) => {
            reply_map(
                ctx,
                &[("result", "now_slave".into()), ("role", "slave".into())],
            );
            Ok(())
        }
        Err(e) => Err(role_error(e)),
    }
}

fn role_error(e: RoleError) -> CmdError {
    match e {
        RoleError::Fenced(_) => CmdError::Msg(format!("FENCED {e}")),
        other => CmdError::Msg(format!("ERR {other}")),
    }
}

/// HB.SWITCHOVER: starts a planned hand-over to the slave (the event loop does it with the
/// link and replies "OK <slave>" or an error); progress and outcome in INFO `switchover`.
pub fn switchover(ctx: &mut Ctx<'_>, _args: Args) -> CmdResult {
    ctx.conn.link_action = Some(crate::server::conn::LinkAction::Switchover);
    Ok(())
}

/// Splits "host:port" (IPv6 hosts in brackets or not) for Redis-style replies.
pub fn split_addr(addr: &str) -> (String, i64) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse().unwrap_or(0),
        ),
        None => (addr.to_string(), 0),
    }
}

/// ROLE, as Redis answers it. A fenced master answers as a slave of the master that fenced it,
/// so that clients checking the role do not write to it.
pub fn role(ctx: &mut Ctx<'_>, _args: Args) -> CmdResult {
    if ctx.conn.sentinel {
        encode::array_len(ctx.out, 2);
        encode::bulk(ctx.out, b"sentinel");
        encode::array_len(ctx.out, 1);
        encode::bulk(ctx.out, ctx.srv.settings.instance.as_bytes());
        return Ok(());
    }
    let peers = ctx.srv.link.status(ctx.eng);
    if ctx.eng.is_slave() || ctx.eng.fenced().is_some() {
        let (host, port) = split_addr(ctx.eng.master_addr().unwrap_or(""));
        let state = if ctx.eng.fenced().is_some() {
            "connect"
        } else if peers
            .iter()
            .any(|p| p.role == "master" && p.state.starts_with("full sync"))
        {
            "sync"
        } else if ctx.srv.link.master_link_up() {
            "connected"
        } else if peers.iter().any(|p| p.role == "master") {
            "connecting"
        } else {
            "connect"
        };
        encode::array_len(ctx.out, 5);
        encode::bulk(ctx.out, b"slave");
        encode::bulk(ctx.out, host.as_bytes());
        encode::integer(ctx.out, port);
        encode::bulk(ctx.out, state.as_bytes());
        encode::integer(ctx.out, ctx.eng.visible_lsn() as i64);
        return Ok(());
    }
    let slaves: Vec<_> = peers
        .iter()
        .filter(|p| p.role == "slave" && p.state == "streaming" && !p.client_addr.is_empty())
        .collect();
    encode::array_len(ctx.out, 3);
    encode::bulk(ctx.out, b"master");
    encode::integer(ctx.out, ctx.eng.durable_lsn() as i64);
    encode::array_len(ctx.out, slaves.len());
    for s in slaves {
        let (host, port) = split_addr(&s.client_addr);
        encode::array_len(ctx.out, 3);
        encode::bulk(ctx.out, host.as_bytes());
        encode::bulk(ctx.out, port.to_string().as_bytes());
        encode::bulk(ctx.out, s.acked_applied.to_string().as_bytes());
    }
    Ok(())
}

/// HB.INCIDENTS [since_ms [RAW]]: the incidents this node keeps (oldest first), one JSON
/// object per element (RAW: their binary encoding, what `hotbackup incidents` reads).
pub fn incidents(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let since = match args.get(1) {
        None => 0,
        Some(a) => super::parse_i64(a)
            .and_then(|v| u64::try_from(v).ok())
            .ok_or(CmdError::NotInteger)?,
    };
    let raw = match args.get(2) {
        None => false,
        Some(a) if a.eq_ignore_ascii_case(b"raw") => true,
        Some(_) => return Err(CmdError::Syntax),
    };
    let list = crate::incident::recent(since);
    encode::array_len(ctx.out, list.len());
    for i in list {
        if raw {
            encode::bulk(ctx.out, &i.encode());
        } else {
            encode::bulk(ctx.out, i.to_json().as_bytes());
        }
    }
    Ok(())
}
