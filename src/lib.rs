//! hotbackup: a hot-standby database for Linux.
//!
//! Data flows one way: client → [`server`] → [`journal`] → [`store`] → [`link`] → slave.
//! Lower layers ([`codec`], [`journal`], [`store`], [`resp`], [`txn`]) never import [`server`],
//! [`link`] or [`ops`].

pub mod codec;
pub mod config;
pub mod datadir;
pub mod files;
pub mod fuzzing;
pub mod glob;
pub mod incident;
pub mod journal;
pub mod json;
pub mod link;
pub mod ops;
pub mod resp;
pub mod savefile;
pub mod server;
pub mod store;
pub mod systemd;
pub mod txn;
pub mod verify;
