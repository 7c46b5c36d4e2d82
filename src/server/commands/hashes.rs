//! Hash commands: HSET HMSET HSETNX HGET HDEL HGETALL HKEYS HVALS HLEN HEXISTS HMGET HINCRBY
//! HSTRLEN. A hash is one item with attributes (fields).

use super::{Args, CmdError, CmdResult, Ctx, arg_i64, parse_i64};
use crate::resp::encode;
use crate::store::item::{self, Kind};
use crate::txn::Op;

/// The raw hash item `id`, None if absent, WRONGTYPE for a string.
fn hash_raw(ctx: &mut Ctx<'_>, id: &[u8]) -> Result<Option<Vec<u8>>, CmdError> {
    match ctx.get(id)? {
        None => Ok(None),
        Some(raw) => match item::kind(&raw)? {
            Kind::Hash => Ok(Some(raw)),
            Kind::Str => Err(CmdError::WrongType),
        },
    }
}

fn field<'a>(fields: &'a [(&[u8], &[u8])], name: &[u8]) -> Option<&'a [u8]> {
    fields
        .binary_search_by(|(f, _)| (*f).cmp(name))
        .ok()
        .map(|i| fields[i].1)
}

/// Checks and applies HSET-style field/value pairs; returns how many fields were new.
fn set_fields(ctx: &mut Ctx<'_>, mut args: Args, cmd: &str) -> Result<i64, CmdError> {
    if args.len() % 2 != 0 {
        return Err(CmdError::Arity(cmd.into()));
    }
    let file = ctx.writable_file()?;
    let old = hash_raw(ctx, &args[1])?;
    let existing = match &old {
        Some(r) => item::hash_fields(r)?,
        None => Vec::new(),
    };
    let mut pairs = Vec::with_capacity((args.len() - 2) / 2);
    let mut i = 2;
    while i + 1 < args.len() {
        pairs.push((
            std::mem::take(&mut args[i]),
            std::mem::take(&mut args[i + 1]),
        ));
        i += 2;
    }
    let mut new_names: Vec<&[u8]> = pairs
        .iter()
        .map(|(f, _)| f.as_slice())
        .filter(|f| field(&existing, f).is_none())
        .collect();
    new_names.sort_unstable();
    new_names.dedup();
    let added = new_names.len() as i64;
    let id = std::mem::take(&mut args[1]);
    ctx.eng.write(Op::HashSet {
        file,
        id,
        fields: pairs,
    })?;
    Ok(added)
}

pub fn hset(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let n = set_fields(ctx, args, "hset")?;
    encode::integer(ctx.out, n);
    Ok(())
}

pub fn hmset(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    set_fields(ctx, args, "hmset")?;
    ctx.ok()
}

pub fn hsetnx(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let present = match hash_raw(ctx, &args[1])? {
        Some(r) => field(&item::hash_fields(&r)?, &args[2]).is_some(),
        None => false,
    };
    if present {
        encode::integer(ctx.out, 0);
        return Ok(());
    }
    set_fields(ctx, args, "hsetnx")?;
    encode::integer(ctx.out, 1);
    Ok(())
}

pub fn hget(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let raw = hash_raw(ctx, &args[1])?;
    let fields = match &raw {
        Some(r) => item::hash_fields(r)?,
        None => Vec::new(),
    };
    match field(&fields, &args[2]) {
        Some(v) => encode::bulk(ctx.out, v),
        None => encode::null(ctx.out, ctx.conn.proto),
    }
    Ok(())
}

pub fn hdel(ctx: &mut Ctx<'_>, mut args: Args) -> CmdResult {
    let file = ctx.writable_file()?;
    let Some(raw) = hash_raw(ctx, &args[1])? else {
        encode::integer(ctx.out, 0);
        return Ok(());
    };
    let fields = item::hash_fields(&raw)?;
    let mut gone: Vec<Vec<u8>> = args[2..]
        .iter()
        .filter(|f| field(&fields, f).is_some())
        .cloned()
        .collect();
    gone.sort_unstable();
    gone.dedup();
    let n = gone.len();
    if n > 0 {
        let id = std::mem::take(&mut args[1]);
        ctx.eng.write(Op::HashDel {
            file,
            id,
            fields: gone,
        })?;
    }
    encode::integer(ctx.out, n as i64);
    Ok(())
}

fn all_fields(ctx: &mut Ctx<'_>, id: &[u8], keys: bool, vals: bool) -> CmdResult {
    let raw = hash_raw(ctx, id)?;
    let fields = match &raw {
        Some(r) => item::hash_fields(r)?,
        None => Vec::new(),
    };
    if keys && vals {
        encode::map_len(ctx.out, fields.len(), ctx.conn.proto);
    } else {
        encode::array_len(ctx.out, fields.len());
    }
    for (f, v) in fields {
        if keys {
            encode::bulk(ctx.out, f);
        }
        if vals {
            encode::bulk(ctx.out, v);
        }
    }
    Ok(())
}

pub fn hgetall(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    all_fields(ctx, &args[1], true, true)
}

pub fn hkeys(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    all_fields(ctx, &args[1], true, false)
}

pub fn hvals(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    all_fields(ctx, &args[1], false, true)
}

pub fn hlen(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let n = match hash_raw(ctx, &args[1])? {
        Some(r) => item::hash_fields(&r)?.len(),
        None => 0,
    };
    encode::integer(ctx.out, n as i64);
    Ok(())
}

pub fn hexists(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let present = match hash_raw(ctx, &args[1])? {
        Some(r) => field(&item::hash_fields(&r)?, &args[2]).is_some(),
        None => false,
    };
    encode::integer(ctx.out, present as i64);
    Ok(())
}

pub fn hmget(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let raw = hash_raw(ctx, &args[1])?;
    let fields = match &raw {
        Some(r) => item::hash_fields(r)?,
        None => Vec::new(),
    };
    encode::array_len(ctx.out, args.len() - 2);
    for name in &args[2..] {
        match field(&fields, name) {
            Some(v) => encode::bulk(ctx.out, v),
            None => encode::null(ctx.out, ctx.conn.proto),
        }
    }
    Ok(())
}

pub fn hincrby(ctx: &mut Ctx<'_>, mut args: Args) -> CmdResult {
    let by = arg_i64(&args[3])?;
    let file = ctx.writable_file()?;
    let raw = hash_raw(ctx, &args[1])?;
    let cur = match &raw {
        Some(r) => match field(&item::hash_fields(r)?, &args[2]) {
            Some(v) => parse_i64(v).ok_or(CmdError::HashNotInteger)?,
            None => 0,
        },
        None => 0,
    };
    let new = cur.checked_add(by).ok_or(CmdError::Overflow)?;
    let f = std::mem::take(&mut args[2]);
    let id = std::mem::take(&mut args[1]);
    ctx.eng.write(Op::HashSet {
        file,
        id,
        fields: vec![(f, new.to_string().into_bytes())],
    })?;
    encode::integer(ctx.out, new);
    Ok(())
}

pub fn hstrlen(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let n = match hash_raw(ctx, &args[1])? {
        Some(r) => field(&item::hash_fields(&r)?, &args[2]).map_or(0, |v| v.len()),
        None => 0,
    };
    encode::integer(ctx.out, n as i64);
    Ok(())
}
