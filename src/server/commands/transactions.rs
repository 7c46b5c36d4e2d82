//! MULTI EXEC DISCARD (WATCH is refused). EXEC runs the queued commands back to back in one
//! turn and their ops become a single journal record: applied as a whole, here and on slaves.

use super::{Args, CmdError, CmdResult, Ctx, execute_queued};
use crate::resp::encode;

pub fn multi(ctx: &mut Ctx<'_>, _args: Args) -> CmdResult {
    if ctx.conn.multi.is_some() {
        return Err(CmdError::Msg("ERR MULTI calls can not be nested".into()));
    }
    ctx.conn.multi = Some(Vec::new());
    ctx.conn.multi_dirty = false;
    ctx.ok()
}

pub fn exec(ctx: &mut Ctx<'_>, _args: Args) -> CmdResult {
    let Some(queue) = ctx.conn.multi.take() else {
        return Err(CmdError::Msg("ERR EXEC without MULTI".into()));
    };
    if std::mem::take(&mut ctx.conn.multi_dirty) {
        return Err(CmdError::Msg(
            "EXECABORT Transaction discarded because of previous errors.".into(),
        ));
    }
    encode::array_len(ctx.out, queue.len());
    ctx.conn.in_exec = true;
    for args in queue {
        execute_queued(ctx, args);
    }
    ctx.conn.in_exec = false;
    Ok(())
}

pub fn discard(ctx: &mut Ctx<'_>, _args: Args) -> CmdResult {
    if ctx.conn.multi.take().is_none() {
        return Err(CmdError::Msg("ERR DISCARD without MULTI".into()));
    }
    ctx.conn.multi_dirty = false;
    ctx.ok()
}

pub fn watch(ctx: &mut Ctx<'_>, _args: Args) -> CmdResult {
    if ctx.conn.multi.is_some() {
        return Err(CmdError::Msg(
            "ERR WATCH inside MULTI is not allowed".into(),
        ));
    }
    Err(CmdError::NotSupported("WATCH (optimistic locking)".into()))
}

pub fn unwatch(ctx: &mut Ctx<'_>, _args: Args) -> CmdResult {
    ctx.ok()
}
