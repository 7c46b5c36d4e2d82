//! Unconfirmed records: a slave holding records its master lost.
//!
//! A master ships what it has written without waiting for its fsync (see `feed.rs`). If its
//! machine crashes, it restarts without the records that were not durable yet, which a slave
//! may already hold, and may then write others at the same LSNs. At the handshake the master
//! checks the slave's last records (IDENT's `tail`, their digests) against its journal;
//! when they are not all its own, it answers FORK with the first LSN that is not (instead of
//! STREAM or SYNC_BEGIN) and waits for a new IDENT. The slave exports and rewinds the records
//! from there, as a rejoin does (a lost-transactions tape and an incident; none of them was
//! acknowledged to a client, which needs them durable on the master too), drops the slaves it
//! feeds itself (their stream ran past the rewind) and sends IDENT again; the master repairs
//! what the rewound records touched and streams from the fork point. A slave it fed finds the
//! same at its next handshake with it: the rewind goes down a cascade one link at a time.

use super::{Conn, Job, Link};
use crate::journal::Lsn;
use crate::link::auth;
use crate::link::msg;
use crate::link::peer::Phase;
use crate::server::Engine;

/// FORKs one connection may take before the master gives up on it (the second handshake
/// after a rewind must find the slave's records its own).
const MAX_FORK_ROUNDS: u32 = 2;

impl Link {
    /// Master: the slave must rewind its records from `fork` on: tell it, and wait for the
    /// IDENT it sends after.
    pub(super) fn send_fork(&mut self, c: &mut Conn, fork: Lsn, why: &str) -> Result<(), String> {
        c.fork_rounds += 1;
        if c.fork_rounds > MAX_FORK_ROUNDS {
            return Err(format!(
                "{why}; still after the slave rewound {MAX_FORK_ROUNDS} time(s): giving up on this connection"
            ));
        }
        log::warn!("link {}: {why}", c.peer.label());
        c.peer.send(msg::T_FORK, &msg::encode_fork(fork));
        c.peer.phase = Phase::Ident;
        Ok(())
    }

    /// Slave: FORK from the master, in answer to this node's IDENT.
    pub(super) fn on_fork(
        &mut self,
        c: &mut Conn,
        eng: &mut Engine,
        payload: &[u8],
    ) -> Result<(), String> {
        let waiting = matches!(&c.job, Job::Follow(f) if f.state_name() == "handshake");
        if !waiting {
            return Err("FORK from the master outside the handshake".into());
        }
        let fork = msg::decode_fork(payload).map_err(|e| e.to_string())?;
        let label = c.peer.label();
        match eng.rewind_unconfirmed(fork, &label) {
            Ok(Some(report)) => {
                log::warn!("link {label}: rewound the records its master lost: {report}")
            }
            Ok(None) => {}
            Err(e) => {
                let why = format!("cannot rewind the records from LSN {fork} on: {e}");
                crate::incident::raise(
                    crate::incident::Kind::PeerRefused,
                    format!("link {label}: {why}"),
                    &[("peer", label.clone())],
                );
                c.peer.send(auth::T_REFUSE, &auth::refuse_payload(&why));
                return Err(why);
            }
        }
        self.drop_feeds("this node rewound its journal");
        let mine = self.ident(eng);
        c.peer.send(msg::T_IDENT, &mine.encode());
        c.job = Job::Follow(Box::default());
        Ok(())
    }

    /// Closes the connections this node feeds (they redial and hand-shake again).
    pub(super) fn drop_feeds(&mut self, why: &str) {
        for o in self.conns.iter_mut().flatten() {
            if matches!(o.job, Job::Feed(_)) {
                log::info!("link {}: closed: {why}", o.peer.label());
                o.job = Job::None;
                o.peer.closed = true;
            }
        }
    }
}
