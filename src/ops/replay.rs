//! `hotbackup journal load --to HOST:PORT FILE...`: replays tapes on a running master as new
//! transactions (HB.APPLY), the way an admin re-applies the lost transactions a rejoin
//! exported.
//!
//! Each tape record becomes one HB.APPLY: one new transaction with the master's next LSN and
//! generation, replicated like any write. Tapes are taken in LSN order and must be contiguous
//! (records repeated by overlapping tapes are sent once). Ops a master never takes from a
//! client are left out of a transaction and counted: promotion records and `sys/` files; a
//! transaction left with no op is skipped. Transactions are sent one at a time, each waiting
//! for its reply: on the first refusal the replay stops and says which tape record it was and
//! what was applied before it (later records may depend on it).

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::client::Client;
use crate::journal::Lsn;
use crate::journal::tape::{TapeError, TapeReader};
use crate::resp::Value;
use crate::txn::{Op, Transaction};

#[derive(Debug, Error)]
pub enum ReplayError {
    #[error("no tape given")]
    NoTapes,
    #[error("cannot reach {addr}: {why}")]
    Connect { addr: String, why: String },
    #[error("{addr} refused the password: {why}")]
    Auth { addr: String, why: String },
    #[error(transparent)]
    Tape(#[from] TapeError),
    #[error(
        "tape {} starts at LSN {first}, but the tapes before it end at LSN {last}: LSN {}..{} are missing",
        path.display(), last + 1, first - 1
    )]
    Gap {
        path: PathBuf,
        first: Lsn,
        last: Lsn,
    },
    #[error("tape {}: record LSN {lsn} does not decode: {why}", path.display())]
    BadRecord {
        path: PathBuf,
        lsn: Lsn,
        why: String,
    },
    #[error(
        "tape {} record LSN {lsn} was refused by the master: {why}\n{}",
        path.display(),
        done.render_human()
    )]
    Refused {
        path: PathBuf,
        lsn: Lsn,
        why: String,
        done: Box<ReplayReport>,
    },
    #[error("lost the connection to the master at tape {} record LSN {lsn}: {why} (that transaction may or may not have been applied)\n{}", path.display(), done.render_human())]
    Lost {
        path: PathBuf,
        lsn: Lsn,
        why: String,
        done: Box<ReplayReport>,
    },
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub addr: String,
    /// Transactions applied, and the tape LSNs they came from.
    pub applied: u64,
    pub tape_lsns: Option<(Lsn, Lsn)>,
    /// The LSNs the master gave them.
    pub new_lsns: Option<(Lsn, Lsn)>,
    /// Transactions left with no op (all of them promotion or `sys/` ops).
    pub skipped: u64,
    /// Ops left out.
    pub ops_left_out: u64,
}

impl ReplayReport {
    pub fn render_human(&self) -> String {
        let mut o = format!("applied {} transaction(s) on {}", self.applied, self.addr);
        if let (Some((a, b)), Some((x, y))) = (self.tape_lsns, self.new_lsns) {
            o.push_str(&format!(
                ": tape LSN {a}..{b} became LSN {x}..{y} on the master"
            ));
        }
        if self.ops_left_out > 0 || self.skipped > 0 {
            o.push_str(&format!(
                "; {} op(s) left out (promotion records, sys/ files), {} transaction(s) skipped as empty",
                self.ops_left_out, self.skipped
            ));
        }
        o
    }
}

fn connect(addr: &str, password: Option<&str>) -> Result<Client, ReplayError> {
    let cerr = |why: String| ReplayError::Connect {
        addr: addr.to_string(),
        why,
    };
    let sa = addr
        .to_socket_addrs()
        .map_err(|e| cerr(e.to_string()))?
        .next()
        .ok_or_else(|| cerr("the name resolves to no address".into()))?;
    let mut c = Client::tcp(sa, Duration::from_secs(30)).map_err(|e| cerr(e.to_string()))?;
    if let Some(p) = password {
        match c.call(&[b"AUTH", p.as_bytes()]) {
            Ok(Value::Error(e)) => {
                return Err(ReplayError::Auth {
                    addr: addr.to_string(),
                    why: e,
                });
            }
            Ok(_) => {}
            Err(e) => return Err(cerr(e.to_string())),
        }
    }
    Ok(c)
}

/// Replays the tapes' transactions on the master at `addr`.
pub fn replay(
    addr: &str,
    password: Option<&str>,
    paths: &[PathBuf],
) -> Result<ReplayReport, ReplayError> {
    if paths.is_empty() {
        return Err(ReplayError::NoTapes);
    }
    let mut tapes = Vec::new();
    for p in paths {
        // Opening checks the header; reading below checks every record.
        let r = TapeReader::open(p)?;
        tapes.push((r.header().first_lsn, p.clone()));
    }
    tapes.sort_by_key(|(f, _)| *f);
    let mut client = connect(addr, password)?;
    let mut report = ReplayReport {
        addr: addr.to_string(),
        ..Default::default()
    };
    let mut last: Option<Lsn> = None;
    for (first, path) in tapes {
        if let Some(l) = last {
            if first > l + 1 {
                return Err(ReplayError::Gap {
                    path,
                    first,
                    last: l,
                });
            }
        }
        let mut reader = TapeReader::open(&path)?;
        while let Some(rec) = reader.next_record()? {
            if last.is_some_and(|l| rec.lsn <= l) {
                continue;
            }
            last = Some(rec.lsn);
            let mut txn =
                Transaction::decode(&rec.payload).map_err(|e| ReplayError::BadRecord {
                    path: path.clone(),
                    lsn: rec.lsn,
                    why: e.to_string(),
                })?;
            let before = txn.ops.len();
            txn.ops.retain(|op| {
                !matches!(op, Op::NewGeneration { .. }) && !crate::files::is_reserved(op.file())
            });
            report.ops_left_out += (before - txn.ops.len()) as u64;
            if txn.ops.is_empty() {
                report.skipped += 1;
                continue;
            }
            let payload = txn.encode();
            match client.call(&[b"HB.APPLY", &payload]) {
                Ok(Value::Int(lsn)) => {
                    let lsn = lsn as Lsn;
                    report.applied += 1;
                    report.tape_lsns = Some(
                        report
                            .tape_lsns
                            .map_or((rec.lsn, rec.lsn), |(a, _)| (a, rec.lsn)),
                    );
                    report.new_lsns = Some(report.new_lsns.map_or((lsn, lsn), |(a, _)| (a, lsn)));
                }
                Ok(Value::Nil) => report.skipped += 1,
                Ok(Value::Error(why)) => {
                    return Err(ReplayError::Refused {
                        path,
                        lsn: rec.lsn,
                        why,
                        done: Box::new(report),
                    });
                }
                Ok(other) => {
                    return Err(ReplayError::Refused {
                        path,
                        lsn: rec.lsn,
                        why: format!("unexpected reply {other:?}"),
                        done: Box::new(report),
                    });
                }
                Err(e) => {
                    return Err(ReplayError::Lost {
                        path,
                        lsn: rec.lsn,
                        why: e.to_string(),
                        done: Box::new(report),
                    });
                }
            }
        }
    }
    Ok(report)
}
