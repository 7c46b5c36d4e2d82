//! RESP framing: the Redis wire protocol (RESP2 and RESP3), and nothing above it.
//!
//! This module owns the bytes on a client connection:
//! - [`parse_request`] cuts one client request (multibulk `*N\r\n$len\r\n…` or an inline line)
//!   off the front of a read buffer, with the limits and the exact error texts of Redis 7;
//! - [`encode`] writes replies (and, for our own CLI, requests) straight into an output `Vec<u8>`;
//! - [`parse_value`] reads any RESP2/RESP3 reply, for the client side (the admin CLI).
//!
//! It never knows commands: a request is just a list of byte strings, a reply just a shape.
//! It must never panic on bytes from outside, never allocate more than the bytes actually
//! present justify, and never import `server`, `link` or `ops`.
//!
//! Both parsers work in two passes over a `&[u8]`, like mini-redis' `Frame::check`/`parse`:
//! a cheap pass that only walks the frame (no copies, no allocation) and answers
//! "complete / [`ParseError::Incomplete`] / malformed", then a pass that copies the payload out
//! once the whole frame is known to be present. A non-blocking reader calls the parser after
//! every read; a half-received 512 MiB bulk costs a header walk, not a copy.
//!
//! Where we deviate from Redis (all deliberate, all stricter, none visible to a
//! well-behaved client), the function docs say so.

pub mod encode;
mod parse;
mod value;

pub use encode::Proto;
pub use parse::{Limits, ParseError, parse_request};
pub use value::{Value, parse_value};
