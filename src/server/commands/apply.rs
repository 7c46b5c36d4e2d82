//! HB.APPLY: replays one encoded [`Transaction`] (a journal record's payload, e.g. from a tape
//! of lost transactions) as a new client transaction on this master.
//!
//! The ops become one new journal record with this node's next LSN and generation, go to the
//! slaves like any write, and are refused on a slave like any write. The command is atomic:
//! every op is checked against the current state (with the effects of the ops before it)
//! before the first one is written, so it applies whole or not at all. Promotion records
//! (`new-generation`) and hotbackup's own `sys/` files are refused: generations start only by
//! promotion. A `create-file` of a file that exists already is skipped; a `delete` in a file
//! that does not exist is skipped (there is nothing to delete). The reply is the LSN the
//! transaction got.

use std::collections::{HashMap, HashSet};

use super::{Args, CmdError, CmdResult, Ctx};
use crate::files;
use crate::resp::encode;
use crate::store::item::{self, Kind};
use crate::store::{Reader, Source};
use crate::txn::{Op, Transaction, Value};

/// What an item is as far as the checked ops go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Absent,
    Str,
    Hash,
    /// A hash that fields were deleted from: gone if it was the last one.
    HashOrAbsent,
}

/// The state after the ops checked so far, over what the store holds.
#[derive(Default)]
struct Sim {
    files: HashMap<String, bool>,
    /// Files emptied (dropped, cleared, recreated) by an earlier op.
    emptied: HashSet<String>,
    items: HashMap<(String, Vec<u8>), Item>,
}

fn err(i: usize, op: &Op, why: String) -> CmdError {
    let name = match op {
        Op::CreateFile { .. } => "create-file",
        Op::SetLogged { .. } => "set-logged",
        Op::DropFile { .. } => "drop-file",
        Op::ClearFile { .. } => "clear-file",
        Op::Put { .. } => "put",
        Op::Delete { .. } => "delete",
        Op::Append { .. } => "append",
        Op::HashSet { .. } => "hset",
        Op::HashDel { .. } => "hdel",
        Op::NewGeneration { .. } => "new-generation",
    };
    CmdError::Msg(format!(
        "ERR HB.APPLY: op {} ({name}): {why}; nothing was applied",
        i + 1
    ))
}

impl Sim {
    fn exists(&self, r: &Source<'_>, file: &str) -> bool {
        self.files
            .get(file)
            .copied()
            .unwrap_or_else(|| r.file_info(file).is_some())
    }

    fn item(&self, r: &Source<'_>, file: &str, id: &[u8]) -> Result<Item, CmdError> {
        if let Some(k) = self.items.get(&(file.to_string(), id.to_vec())) {
            return Ok(*k);
        }
        if self.emptied.contains(file) || !self.exists(r, file) {
            return Ok(Item::Absent);
        }
        Ok(match r.get_raw(file, id)? {
            None => Item::Absent,
            Some(raw) => match item::kind(&raw)? {
                Kind::Str => Item::Str,
                Kind::Hash => Item::Hash,
            },
        })
    }

    fn empty_file(&mut self, file: &str) {
        self.emptied.insert(file.to_string());
        self.items.retain(|(f, _), _| f != file);
    }

    /// Checks one op and records its effect. Ok(false): the op is to be skipped.
    fn check(&mut self, r: &Source<'_>, i: usize, op: &Op) -> Result<bool, CmdError> {
        if let Op::NewGeneration { .. } = op {
            return Err(err(
                i,
                op,
                "a promotion record cannot be replayed: generations start only by `hotbackup promote`".into(),
            ));
        }
        let file = op.file();
        let name = files::validate(file.as_bytes()).map_err(|e| err(i, op, e.to_string()))?;
        if files::is_reserved(&name) {
            return Err(err(
                i,
                op,
                format!("file '{file}' is reserved for hotbackup's own use"),
            ));
        }
        let exists = self.exists(r, file);
        let no_file = || err(i, op, format!("no such file '{file}'"));
        let wrong = |have: &str| err(i, op, format!("WRONGTYPE the item holds a {have} value"));
        match op {
            Op::CreateFile { .. } => {
                if exists {
                    return Ok(false);
                }
                self.files.insert(file.to_string(), true);
                self.empty_file(file);
            }
            Op::SetLogged { .. } => {
                if !exists {
                    return Err(no_file());
                }
            }
            Op::DropFile { .. } => {
                if !exists {
                    return Err(no_file());
                }
                self.files.insert(file.to_string(), false);
                self.empty_file(file);
            }
            Op::ClearFile { .. } => {
                if !exists {
                    return Err(no_file());
                }
                self.empty_file(file);
            }
            Op::Put { id, value, .. } => {
                self.files.insert(file.to_string(), true);
                let k = match value {
                    Value::Str(_) => Item::Str,
                    Value::Hash(_) => Item::Hash,
                };
                self.items.insert((file.to_string(), id.clone()), k);
            }
            Op::Delete { id, .. } => {
                if !exists {
                    return Ok(false);
                }
                self.items
                    .insert((file.to_string(), id.clone()), Item::Absent);
            }
            Op::Append { id, .. } => {
                match self.item(r, file, id)? {
                    Item::Absent | Item::Str => {}
                    Item::Hash | Item::HashOrAbsent => return Err(wrong("hash")),
                }
                self.files.insert(file.to_string(), true);
                self.items.insert((file.to_string(), id.clone()), Item::Str);
            }
            Op::HashSet { id, .. } => {
                if self.item(r, file, id)? == Item::Str {
                    return Err(wrong("string"));
                }
                self.files.insert(file.to_string(), true);
                self.items
                    .insert((file.to_string(), id.clone()), Item::Hash);
            }
            Op::HashDel { id, .. } => {
                let next = match self.item(r, file, id)? {
                    Item::Str => return Err(wrong("string")),
                    Item::Absent => Item::Absent,
                    Item::Hash | Item::HashOrAbsent => Item::HashOrAbsent,
                };
                if exists {
                    self.items.insert((file.to_string(), id.clone()), next);
                } else {
                    // Nothing to delete fields from.
                    return Ok(false);
                }
            }
            Op::NewGeneration { .. } => {}
        }
        Ok(true)
    }
}

/// HB.APPLY encoded-transaction: the LSN of the new record.
pub fn apply(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let txn = Transaction::decode(&args[1]).map_err(|e| {
        CmdError::Msg(format!(
            "ERR HB.APPLY: the argument is not an encoded transaction: {e}"
        ))
    })?;
    if txn.ops.is_empty() {
        return Err(CmdError::Msg(
            "ERR HB.APPLY: the transaction has no ops".into(),
        ));
    }
    let mut keep = Vec::with_capacity(txn.ops.len());
    {
        let r = ctx.eng.reader()?;
        let mut sim = Sim::default();
        for (i, op) in txn.ops.iter().enumerate() {
            keep.push(sim.check(&r, i, op)?);
        }
    }
    let lsn = ctx.eng.visible_lsn() + 1;
    let mut turned_on = Vec::new();
    let mut wrote = false;
    for (op, keep) in txn.ops.into_iter().zip(keep) {
        if !keep {
            continue;
        }
        if let Op::SetLogged {
            file, logged: true, ..
        } = &op
        {
            turned_on.push(file.clone());
        }
        ctx.eng.write(op)?;
        wrote = true;
    }
    // A file that turns logged reaches the slaves whole, in this same record.
    let in_exec = std::mem::replace(&mut ctx.conn.in_exec, true);
    let copied = turned_on
        .iter()
        .try_for_each(|f| super::native::copy_to_slaves(ctx, f));
    ctx.conn.in_exec = in_exec;
    copied?;
    if wrote {
        encode::integer(ctx.out, lsn as i64);
    } else {
        encode::null(ctx.out, ctx.conn.proto);
    }
    Ok(())
}
