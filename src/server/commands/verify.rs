//! HB.VERIFY: online verify (see [`crate::verify`]).
//!
//! `HB.VERIFY` on a master starts a run and answers its id (the marker is written between the
//! next turns); `HB.VERIFY RESULT [id]` answers a run's state, text and JSON (the newest run,
//! or the one kept in the store after a restart, when no id is given).

use super::{Args, CmdError, CmdResult, Ctx};
use crate::resp::{Proto, encode};

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

pub fn verify(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let Some(sub) = args.get(1) else {
        ctx.conn.link_action = Some(crate::server::conn::LinkAction::Verify);
        return Ok(());
    };
    if !sub.eq_ignore_ascii_case(b"result") || args.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let v = ctx.srv.link.verifier();
    let run = match args.get(2) {
        Some(id) => {
            let id = super::parse_i64(id)
                .and_then(|i| u64::try_from(i).ok())
                .ok_or(CmdError::NotInteger)?;
            match v.run(id) {
                Some(r) => Some(r),
                None => return Err(CmdError::Msg(format!("ERR no verify run {id} here"))),
            }
        }
        None => v.last(),
    };
    match run {
        Some(r) => {
            let fields = [
                ("id", r.id.to_string()),
                ("lsn", r.lsn.to_string()),
                ("state", r.state().to_string()),
                ("text", r.render()),
                ("json", r.to_json()),
            ];
            reply_map(ctx, &fields);
        }
        None => {
            // After a restart: the last finished run, as kept in the store.
            let text = ctx.eng.load_local("verify.last_text").unwrap_or_default();
            let json = ctx.eng.load_local("verify.last").unwrap_or_default();
            if text.is_empty() {
                return Err(CmdError::Msg("ERR no verify has run on this node".into()));
            }
            let fields = [
                ("id", String::new()),
                ("lsn", String::new()),
                ("state", "kept".to_string()),
                ("text", text),
                ("json", json),
            ];
            reply_map(ctx, &fields);
        }
    }
    Ok(())
}
