//! The hot-backup link: frames, authentication, messages, the master's and the slave's sides.
//!
//! [`frame`] and [`auth`] own the wire format and the mutual HMAC-SHA256 handshake; [`msg`]
//! the messages after it; [`filter`] what of a record a slave receives; [`peer`] one
//! connection; [`feed`] the master's side of a slave, [`follow`] the slave's side of its
//! master; [`manager`] listens, dials, authenticates, and drives them from the event loop;
//! [`stats`] keeps each link's counters across reconnects.

pub mod auth;
pub mod feed;
pub mod filter;
pub mod follow;
pub mod frame;
pub mod manager;
pub mod msg;
pub mod peer;
pub mod stats;
