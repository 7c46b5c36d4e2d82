//! Selective replication: what of a journal record a slave receives.
//!
//! Only logged files are shipped. Every record is shipped (so LSNs stay contiguous on the
//! slave), with the data ops of unlogged files taken out. Catalog ops always go: a slave knows
//! every file and its flag, which is what lets the next partial resync start from the slave's
//! own catalog. A file that turns unlogged is emptied on the slave (it would go stale); a file
//! that turns logged is emptied too, and the master follows its SetLogged with a copy of every
//! item (see `HB.LOGGED`), so the slave gets the file whole.
//!
//! The filter tracks the logged flag of every file as of the record it is looking at.

use std::collections::HashMap;

use crate::txn::{Op, Transaction};

#[derive(Debug, Clone, Default)]
pub struct LoggedFilter {
    logged: HashMap<String, bool>,
}

impl LoggedFilter {
    /// Starts from a catalog (file, logged) as of the LSN before the first record to filter.
    pub fn new(catalog: &[(String, bool)]) -> LoggedFilter {
        LoggedFilter {
            logged: catalog.iter().cloned().collect(),
        }
    }

    fn is_logged(&self, file: &str) -> bool {
        self.logged.get(file).copied().unwrap_or(false)
    }

    /// The transaction as a slave must apply it. Updates the flags from the catalog ops.
    pub fn filter(&mut self, txn: Transaction) -> Transaction {
        let mut ops = Vec::with_capacity(txn.ops.len());
        for op in txn.ops {
            match &op {
                Op::CreateFile { file, logged } => {
                    self.logged.insert(file.clone(), *logged);
                    ops.push(op);
                }
                Op::SetLogged { file, logged } => {
                    self.logged.insert(file.clone(), *logged);
                    let file = file.clone();
                    ops.push(op);
                    ops.push(Op::ClearFile { file });
                }
                Op::DropFile { file } => {
                    self.logged.remove(file);
                    ops.push(op);
                }
                Op::NewGeneration { .. } => ops.push(op),
                other => {
                    if self.is_logged(other.file()) {
                        ops.push(op);
                    }
                }
            }
        }
        Transaction {
            time_ms: txn.time_ms,
            ops,
        }
    }

    /// Like [`LoggedFilter::filter`], but None when the slave gets the transaction unchanged
    /// (the common case: then the journal's payload bytes are shipped as they are).
    pub fn filter_ref(&mut self, txn: &Transaction) -> Option<Transaction> {
        // Catalog changes made earlier in this same transaction count for its later ops.
        let mut overlay: Vec<(&str, Option<bool>)> = Vec::new();
        for op in &txn.ops {
            match op {
                Op::CreateFile { file, logged } => overlay.push((file, Some(*logged))),
                Op::DropFile { file } => overlay.push((file, None)),
                Op::NewGeneration { .. } => {}
                Op::SetLogged { .. } => return Some(self.filter(txn.clone())),
                other => {
                    let f = other.file();
                    let logged = match overlay.iter().rev().find(|(n, _)| *n == f) {
                        Some((_, l)) => l.unwrap_or(false),
                        None => self.is_logged(f),
                    };
                    if !logged {
                        return Some(self.filter(txn.clone()));
                    }
                }
            }
        }
        for (file, logged) in overlay {
            match logged {
                Some(l) => self.logged.insert(file.to_string(), l),
                None => self.logged.remove(file),
            };
        }
        None
    }

    /// The flags as tracked so far, sorted by file.
    pub fn catalog(&self) -> Vec<(String, bool)> {
        let mut c: Vec<_> = self.logged.iter().map(|(k, v)| (k.clone(), *v)).collect();
        c.sort();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::Value;

    fn put(file: &str) -> Op {
        Op::Put {
            file: file.into(),
            id: b"k".to_vec(),
            value: Value::Str(b"v".to_vec()),
        }
    }

    fn txn(ops: Vec<Op>) -> Transaction {
        Transaction { time_ms: 1, ops }
    }

    #[test]
    fn unlogged_data_stays_home_and_catalog_ops_always_go() {
        let mut f = LoggedFilter::new(&[("main".into(), true), ("tmp".into(), false)]);
        let out = f.filter(txn(vec![put("main"), put("tmp")]));
        assert_eq!(out.ops, vec![put("main")]);
        let out = f.filter(txn(vec![
            Op::CreateFile {
                file: "new".into(),
                logged: false,
            },
            put("new"),
        ]));
        assert_eq!(out.ops.len(), 1, "create goes, data does not");
        assert_eq!(f.filter(txn(vec![put("nofile")])).ops, vec![]);
    }

    #[test]
    fn unchanged_transactions_are_recognised() {
        let mut f = LoggedFilter::new(&[("main".into(), true), ("tmp".into(), false)]);
        assert_eq!(f.filter_ref(&txn(vec![put("main")])), None);
        let create = Op::CreateFile {
            file: "new".into(),
            logged: true,
        };
        assert_eq!(f.filter_ref(&txn(vec![create, put("new")])), None);
        assert_eq!(
            f.filter_ref(&txn(vec![put("main"), put("tmp")]))
                .map(|t| t.ops),
            Some(vec![put("main")])
        );
    }

    #[test]
    fn flag_flips_are_shipped_and_empty_the_slave_copy() {
        let mut f = LoggedFilter::new(&[("main".into(), true)]);
        let out = f.filter(txn(vec![Op::SetLogged {
            file: "main".into(),
            logged: false,
        }]));
        assert_eq!(
            out.ops[1],
            Op::ClearFile {
                file: "main".into()
            }
        );
        assert_eq!(f.filter(txn(vec![put("main")])).ops, vec![]);
        let out = f.filter(txn(vec![
            Op::SetLogged {
                file: "main".into(),
                logged: true,
            },
            put("main"),
        ]));
        assert_eq!(out.ops.len(), 3);
        assert_eq!(f.catalog(), vec![("main".to_string(), true)]);
    }
}
