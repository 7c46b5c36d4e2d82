//! String commands: GET SET SETNX GETSET MGET MSET INCR DECR INCRBY DECRBY APPEND STRLEN.

use super::{Args, CmdError, CmdResult, Ctx, arg_i64, parse_i64};
use crate::resp::encode;
use crate::store::item;
use crate::txn::{Op, Value};

/// The string bytes of a stored item, WRONGTYPE for a hash.
fn as_string(raw: &[u8]) -> Result<&[u8], CmdError> {
    item::as_str(raw).ok_or(CmdError::WrongType)
}

fn reply_opt_string(ctx: &mut Ctx<'_>, raw: Option<Vec<u8>>) -> CmdResult {
    match raw {
        None => encode::null(ctx.out, ctx.conn.proto),
        Some(r) => encode::bulk(ctx.out, as_string(&r)?),
    }
    Ok(())
}

fn put(ctx: &mut Ctx<'_>, file: &str, id: Vec<u8>, value: Vec<u8>) -> CmdResult {
    ctx.eng.write(Op::Put {
        file: file.to_string(),
        id,
        value: Value::Str(value),
    })?;
    Ok(())
}

pub fn get(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let raw = ctx.get(&args[1])?;
    reply_opt_string(ctx, raw)
}

pub fn set(ctx: &mut Ctx<'_>, mut args: Args) -> CmdResult {
    let (mut nx, mut xx, mut get) = (false, false, false);
    for opt in &args[3..] {
        match &opt.to_ascii_lowercase()[..] {
            b"nx" if !xx => nx = true,
            b"xx" if !nx => xx = true,
            b"get" => get = true,
            // No key has a TTL, so keeping it changes nothing: a faithful no-op.
            b"keepttl" => {}
            b"ex" | b"px" | b"exat" | b"pxat" => {
                return Err(CmdError::NotSupported(
                    "SET with EX/PX/EXAT/PXAT (keys do not expire in hotbackup)".into(),
                ));
            }
            _ => return Err(CmdError::Syntax),
        }
    }
    let file = ctx.writable_file()?;
    if !(nx || xx || get) {
        // A plain SET replaces whatever is there, of any type: no need to read it.
        let value = std::mem::take(&mut args[2]);
        let id = std::mem::take(&mut args[1]);
        put(ctx, &file, id, value)?;
        return ctx.ok();
    }
    let old = ctx.get(&args[1])?;
    if get {
        if let Some(r) = &old {
            as_string(r)?;
        }
    }
    let go = !(nx && old.is_some() || xx && old.is_none());
    if go {
        let value = std::mem::take(&mut args[2]);
        let id = std::mem::take(&mut args[1]);
        put(ctx, &file, id, value)?;
    }
    if get {
        reply_opt_string(ctx, old)
    } else if go {
        ctx.ok()
    } else {
        encode::null(ctx.out, ctx.conn.proto);
        Ok(())
    }
}

pub fn setnx(ctx: &mut Ctx<'_>, mut args: Args) -> CmdResult {
    let file = ctx.writable_file()?;
    let exists = ctx.get(&args[1])?.is_some();
    if !exists {
        let value = std::mem::take(&mut args[2]);
        let id = std::mem::take(&mut args[1]);
        put(ctx, &file, id, value)?;
    }
    encode::integer(ctx.out, !exists as i64);
    Ok(())
}

pub fn getset(ctx: &mut Ctx<'_>, mut args: Args) -> CmdResult {
    let file = ctx.writable_file()?;
    let old = ctx.get(&args[1])?;
    if let Some(r) = &old {
        as_string(r)?;
    }
    let value = std::mem::take(&mut args[2]);
    let id = std::mem::take(&mut args[1]);
    put(ctx, &file, id, value)?;
    reply_opt_string(ctx, old)
}

pub fn mget(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    encode::array_len(ctx.out, args.len() - 1);
    for k in &args[1..] {
        match ctx.get(k)? {
            Some(raw) => match item::as_str(&raw) {
                Some(s) => encode::bulk(ctx.out, s),
                None => encode::null(ctx.out, ctx.conn.proto),
            },
            None => encode::null(ctx.out, ctx.conn.proto),
        }
    }
    Ok(())
}

pub fn mset(ctx: &mut Ctx<'_>, mut args: Args) -> CmdResult {
    if args.len() % 2 == 0 {
        return Err(CmdError::Arity("mset".into()));
    }
    let file = ctx.writable_file()?;
    let mut i = 1;
    while i + 1 < args.len() {
        let id = std::mem::take(&mut args[i]);
        let value = std::mem::take(&mut args[i + 1]);
        put(ctx, &file, id, value)?;
        i += 2;
    }
    ctx.ok()
}

fn incr_by(ctx: &mut Ctx<'_>, id: Vec<u8>, by: i64) -> CmdResult {
    let file = ctx.writable_file()?;
    let cur = match ctx.get(&id)? {
        None => 0,
        Some(raw) => parse_i64(as_string(&raw)?).ok_or(CmdError::NotInteger)?,
    };
    let new = cur.checked_add(by).ok_or(CmdError::Overflow)?;
    put(ctx, &file, id, new.to_string().into_bytes())?;
    encode::integer(ctx.out, new);
    Ok(())
}

pub fn incr(ctx: &mut Ctx<'_>, mut args: Args) -> CmdResult {
    incr_by(ctx, std::mem::take(&mut args[1]), 1)
}

pub fn decr(ctx: &mut Ctx<'_>, mut args: Args) -> CmdResult {
    incr_by(ctx, std::mem::take(&mut args[1]), -1)
}

pub fn incrby(ctx: &mut Ctx<'_>, mut args: Args) -> CmdResult {
    let by = arg_i64(&args[2])?;
    incr_by(ctx, std::mem::take(&mut args[1]), by)
}

pub fn decrby(ctx: &mut Ctx<'_>, mut args: Args) -> CmdResult {
    let by = arg_i64(&args[2])?;
    let by = by
        .checked_neg()
        .ok_or_else(|| CmdError::Msg("ERR decrement would overflow".into()))?;
    incr_by(ctx, std::mem::take(&mut args[1]), by)
}

pub fn append(ctx: &mut Ctx<'_>, mut args: Args) -> CmdResult {
    let file = ctx.writable_file()?;
    let len = match ctx.get(&args[1])? {
        None => 0,
        Some(raw) => as_string(&raw)?.len(),
    };
    let data = std::mem::take(&mut args[2]);
    let new_len = len + data.len();
    if new_len > ctx.srv.settings.max_bulk_len {
        return Err(CmdError::Msg(
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)".into(),
        ));
    }
    let id = std::mem::take(&mut args[1]);
    ctx.eng.write(Op::Append { file, id, data })?;
    encode::integer(ctx.out, new_len as i64);
    Ok(())
}

pub fn strlen(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let n = match ctx.get(&args[1])? {
        None => 0,
        Some(raw) => as_string(&raw)?.len(),
    };
    encode::integer(ctx.out, n as i64);
    Ok(())
}
