//! HB.SNAPSHOT BEGIN | NEXT [n] | END: a consistent snapshot pulled chunk by chunk over a
//! client connection (what `hotbackup save` reads to write a save file).
//!
//! BEGIN takes a redb read transaction (a [`View`]) at the store's last commit, LSN L, and
//! keeps it in the connection's state; its reply — like every reply — leaves only once L is
//! durable. NEXT returns the next chunks of items (lz4, in the save file's chunk encoding, one
//! file per chunk, [`CHUNK_BYTES`] each before compression), nil when all were sent (the view
//! is then released). END releases it early; closing the connection releases it too. Writes go
//! on meanwhile: the view does not see them. Each NEXT reads at most `n` chunks in the event
//! loop, so a save never holds the loop longer than a full sync's chunk does; no thread and
//! no file is involved on the server, and the client writes the file wherever it runs.

use std::ops::ControlFlow;

use super::{Args, CmdError, CmdResult, Ctx, arg_i64};
use crate::resp::encode;
use crate::savefile::{SaveHeader, encode_chunk};
use crate::store::{Reader, View};

/// Target size of one chunk before compression.
pub const CHUNK_BYTES: usize = 256 << 10;
/// Most chunks one NEXT returns.
const MAX_CHUNKS: i64 = 64;

/// A snapshot being read by a connection.
pub struct SnapshotCursor {
    view: View,
    /// Files still to read, and the last id read in the first of them.
    files: Vec<String>,
    after: Option<Vec<u8>>,
}

impl std::fmt::Debug for SnapshotCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SnapshotCursor {{ lsn: {}, files left: {} }}",
            self.view.lsn(),
            self.files.len()
        )
    }
}

impl SnapshotCursor {
    /// The next chunk (payload, items); None when every file was read.
    fn next_chunk(&mut self) -> Result<Option<(Vec<u8>, u64)>, CmdError> {
        while let Some(file) = self.files.first().cloned() {
            let mut items: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let mut bytes = 0;
            let mut more = false;
            let skip = self.after.clone();
            let start = skip.clone().unwrap_or_default();
            self.view.scan_from(&file, &start, &mut |k, v| {
                if skip.as_deref() == Some(k) {
                    return ControlFlow::Continue(());
                }
                if bytes >= CHUNK_BYTES {
                    more = true;
                    return ControlFlow::Break(());
                }
                bytes += k.len() + v.len() + 8;
                items.push((k.to_vec(), v.to_vec()));
                ControlFlow::Continue(())
            })?;
            if more {
                self.after = items.last().map(|(k, _)| k.clone());
            } else {
                self.files.remove(0);
                self.after = None;
            }
            if !items.is_empty() {
                let n = items.len() as u64;
                return Ok(Some((encode_chunk(&file, &items), n)));
            }
        }
        Ok(None)
    }
}

/// HB.SNAPSHOT BEGIN | NEXT [count] | END
pub fn snapshot(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let sub = args[1].to_ascii_lowercase();
    match &sub[..] {
        b"begin" if args.len() == 2 => begin(ctx),
        b"next" if args.len() <= 3 => {
            let n = match args.get(2) {
                Some(a) => arg_i64(a)?,
                None => 1,
            };
            if !(1..=MAX_CHUNKS).contains(&n) {
                return Err(CmdError::Msg(format!(
                    "ERR HB.SNAPSHOT NEXT count must be 1..{MAX_CHUNKS}"
                )));
            }
            next(ctx, n as usize)
        }
        b"end" if args.len() == 2 => {
            ctx.conn.snapshot = None;
            ctx.ok()
        }
        _ => Err(CmdError::Syntax),
    }
}

fn begin(ctx: &mut Ctx<'_>) -> CmdResult {
    ctx.conn.snapshot = None;
    let db_id = ctx
        .eng
        .store()
        .map(|s| s.meta().db_id)
        .ok_or_else(|| CmdError::Msg("ERR the store is unavailable".into()))?;
    let view = ctx.eng.snapshot()?;
    let history = ctx
        .eng
        .history()
        .into_iter()
        .map(|g| (g.generation, g.first_lsn))
        .collect();
    let files = view.files();
    let mut items = 0;
    for (name, _) in &files {
        items += view.count(name)?;
    }
    let header = SaveHeader {
        db_id,
        lsn: view.lsn(),
        saved_ms: crate::txn::now_ms(),
        items,
        history,
        catalog: files.iter().map(|(n, i)| (n.clone(), i.logged)).collect(),
        source: format!(
            "instance {} ({}, generation {})",
            ctx.srv.settings.instance,
            ctx.eng.role_name(),
            ctx.eng.generation()
        ),
    };
    log::info!(
        "snapshot for a save by client {}: LSN {}, {} file(s), {items} item(s)",
        ctx.conn.addr,
        view.lsn(),
        files.len()
    );
    ctx.conn.snapshot = Some(Box::new(SnapshotCursor {
        view,
        files: files.into_iter().map(|(n, _)| n).collect(),
        after: None,
    }));
    encode::array_len(ctx.out, 2);
    encode::bulk(ctx.out, &header.encode());
    encode::integer(ctx.out, items as i64);
    Ok(())
}

fn next(ctx: &mut Ctx<'_>, n: usize) -> CmdResult {
    let Some(cur) = ctx.conn.snapshot.as_mut() else {
        return Err(CmdError::Msg(
            "ERR no snapshot on this connection: HB.SNAPSHOT BEGIN first".into(),
        ));
    };
    let mut chunks = Vec::new();
    while chunks.len() < n {
        match cur.next_chunk() {
            Ok(Some(c)) => chunks.push(c),
            Ok(None) => break,
            Err(e) => {
                ctx.conn.snapshot = None;
                return Err(e);
            }
        }
    }
    if chunks.is_empty() {
        ctx.conn.snapshot = None;
        encode::null_array(ctx.out, ctx.conn.proto);
        return Ok(());
    }
    encode::array_len(ctx.out, chunks.len() * 2);
    for (payload, items) in chunks {
        encode::bulk(ctx.out, &payload);
        encode::integer(ctx.out, items as i64);
    }
    Ok(())
}
