//! Verifying that replication works, built in: the canary ([`canary`]) proves the whole write
//! path end to end and measures its lag; online verify ([`runs`]) compares order-independent
//! checksums of every logged file ([`sums`]) between a master and each slave at exactly the
//! same LSN, while writes go on, and names the differing items ([`report`]). Both raise
//! incidents. The frames' payloads are in [`wire`]; the link manager carries them.

pub mod canary;
pub mod report;
pub mod runs;
pub mod sums;
pub mod wire;

pub use canary::Canary;
pub use runs::Verifier;
