//! Key commands: TYPE EXISTS DEL UNLINK KEYS SCAN TTL PTTL PERSIST; expiry is refused.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use super::{Args, CmdError, CmdResult, Ctx};
use crate::glob::glob_match;
use crate::resp::encode;
use crate::store::{Reader, item};
use crate::txn::Op;

pub fn type_(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let name = match ctx.get(&args[1])? {
        None => "none",
        Some(raw) => item::kind(&raw)?.name(),
    };
    encode::simple(ctx.out, name);
    Ok(())
}

pub fn exists(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let file = ctx.conn.file.clone();
    let r = ctx.eng.reader()?;
    let mut n = 0;
    for k in &args[1..] {
        if r.exists(&file, k)? {
            n += 1;
        }
    }
    encode::integer(ctx.out, n);
    Ok(())
}

pub fn del(ctx: &mut Ctx<'_>, mut args: Args) -> CmdResult {
    let file = ctx.writable_file()?;
    let mut seen = HashSet::new();
    let mut doomed = Vec::new();
    {
        let r = ctx.eng.reader()?;
        for k in args.iter_mut().skip(1) {
            if seen.insert(k.clone()) && r.exists(&file, k)? {
                doomed.push(std::mem::take(k));
            }
        }
    }
    let n = doomed.len();
    for id in doomed {
        ctx.eng.write(Op::Delete {
            file: file.clone(),
            id,
        })?;
    }
    encode::integer(ctx.out, n as i64);
    Ok(())
}

pub fn keys(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let file = ctx.conn.file.clone();
    let pat = &args[1];
    let all = pat.as_slice() == b"*";
    let mut hits: Vec<Vec<u8>> = Vec::new();
    ctx.eng.reader()?.scan_from(&file, b"", &mut |k, _| {
        if all || glob_match(pat, k, false) {
            hits.push(k.to_vec());
        }
        ControlFlow::Continue(())
    })?;
    encode::array_len(ctx.out, hits.len());
    for k in hits {
        encode::bulk(ctx.out, &k);
    }
    Ok(())
}

/// SCAN cursors: a cursor names the last id a SCAN returned, kept here on the server (a B-tree
/// position does not fit in the 64-bit integer clients expect). Cursors are shared by all
/// connections like Redis cursors, forgotten after [`CURSOR_TTL`] or at restart, and at most
/// [`MAX_CURSORS`] are kept (the oldest go first).
#[derive(Default)]
pub struct ScanCursors {
    map: HashMap<u64, Cursor>,
    order: VecDeque<u64>,
    seq: u64,
}

struct Cursor {
    file: String,
    after: Vec<u8>,
    created: Instant,
}

pub const MAX_CURSORS: usize = 100_000;
pub const CURSOR_TTL: Duration = Duration::from_secs(3600);

impl ScanCursors {
    fn take(&mut self, id: u64) -> Option<Cursor> {
        let c = self.map.remove(&id)?;
        (c.created.elapsed() < CURSOR_TTL).then_some(c)
    }

    fn put(&mut self, c: Cursor) -> u64 {
        while self.map.len() >= MAX_CURSORS {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        // Unpredictable-looking, never 0, never repeating (an odd multiplier is a bijection).
        self.seq += 1;
        let id = self.seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1 << 63;
        self.map.insert(id, c);
        self.order.push_back(id);
        if self.order.len() > MAX_CURSORS * 2 {
            let map = &self.map;
            self.order.retain(|i| map.contains_key(i));
        }
        id
    }
}

pub fn scan(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let cursor: u64 = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| CmdError::Msg("ERR invalid cursor".into()))?;
    let mut pattern: Option<&[u8]> = None;
    let mut count: usize = 10;
    let mut want_type: Option<Vec<u8>> = None;
    let mut i = 2;
    while i < args.len() {
        let opt = args[i].to_ascii_lowercase();
        let val = args.get(i + 1).ok_or(CmdError::Syntax)?;
        match &opt[..] {
            b"match" => pattern = Some(val),
            b"count" => {
                count = match super::parse_i64(val) {
                    Some(n) if n >= 1 => n as usize,
                    Some(_) => return Err(CmdError::Syntax),
                    None => return Err(CmdError::NotInteger),
                }
            }
            b"type" => want_type = Some(val.to_ascii_lowercase()),
            _ => return Err(CmdError::Syntax),
        }
        i += 2;
    }
    let file = ctx.conn.file.clone();
    let start = if cursor == 0 {
        None
    } else {
        match ctx.srv.cursors.borrow_mut().take(cursor) {
            Some(c) if c.file == file => Some(c.after),
            _ => {
                return Err(CmdError::Msg(
                    "ERR invalid cursor (unknown, expired, or from another file)".into(),
                ));
            }
        }
    };
    let mut examined = 0;
    let mut hits = Vec::new();
    let mut last: Option<Vec<u8>> = None;
    let mut more = false;
    let from = start.clone().unwrap_or_default();
    ctx.eng.reader()?.scan_from(&file, &from, &mut |k, raw| {
        if start.as_deref() == Some(k) {
            return ControlFlow::Continue(()); // resume strictly after the last id returned
        }
        if examined >= count {
            more = true;
            return ControlFlow::Break(());
        }
        examined += 1;
        last = Some(k.to_vec());
        let type_ok = match &want_type {
            None => true,
            Some(t) => item::kind(raw).is_ok_and(|kd| kd.name().as_bytes() == t.as_slice()),
        };
        if type_ok && pattern.is_none_or(|p| glob_match(p, k, false)) {
            hits.push(k.to_vec());
        }
        ControlFlow::Continue(())
    })?;
    let next = match (more, last) {
        (true, Some(after)) => ctx.srv.cursors.borrow_mut().put(Cursor {
            file,
            after,
            created: Instant::now(),
        }),
        _ => 0,
    };
    encode::array_len(ctx.out, 2);
    encode::bulk(ctx.out, next.to_string().as_bytes());
    encode::array_len(ctx.out, hits.len());
    for k in hits {
        encode::bulk(ctx.out, &k);
    }
    Ok(())
}

pub fn unsupported_expiry(_ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    Err(CmdError::NotSupported(format!(
        "{} (keys do not expire in hotbackup)",
        String::from_utf8_lossy(&args[0]).to_uppercase()
    )))
}

pub fn ttl(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let n = if ctx.get(&args[1])?.is_some() { -1 } else { -2 };
    encode::integer(ctx.out, n);
    Ok(())
}

pub fn persist(ctx: &mut Ctx<'_>, _args: Args) -> CmdResult {
    encode::integer(ctx.out, 0);
    Ok(())
}
