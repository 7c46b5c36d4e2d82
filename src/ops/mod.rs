//! Admin subcommands: what `hotbackup <subcommand>` runs besides `serve`. Each returns a report
//! value that renders itself for humans and as JSON; `main.rs` only dispatches and prints.

pub mod client;
pub mod daemon;
pub mod docs;
pub mod export;
pub mod journal_cmd;
pub use crate::json;
pub mod incidents_cmd;
pub mod load;
pub mod local_pair;
pub mod port_check;
pub mod progress;
pub mod replay;
pub mod restore;
pub mod role_cmd;
pub mod save;
pub mod service_address;
pub mod setup;
pub mod stats_cmd;
pub mod status;
pub mod verify_cmd;
