//! The hot-backup link: frames, authentication, messages, and the master's and slave's sides.

pub mod filter;
pub mod msg;
