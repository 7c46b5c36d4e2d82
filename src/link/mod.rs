//! The hot-backup link: frames, authentication, messages, sender, receiver.
//!
//! [`frame`] alone owns the byte layout of a link frame (magic, version, sequence number, MAC);
//! [`auth`] owns the mutual challenge-response that proves both ends hold the shared key and
//! derives the per-connection session key that [`frame`] MACs with. Both are pure: bytes in,
//! bytes out, no sockets, no clocks, no logging, so every rule of the wire format is a unit test.

pub mod auth;
pub mod frame;
