//! Pub/sub: what a connection subscribed to, and the frames Redis sends for it.
//!
//! This module owns a connection's subscriptions (channels and glob patterns), the wire form
//! of subscription replies and messages (RESP2 arrays, RESP3 push frames, exactly as Redis 7
//! writes them), and the delivery of one message to one connection. The commands that change
//! subscriptions are in `commands/pubsub.rs`; what is published, and when, is decided
//! elsewhere (the Sentinel `+switch-master` event, `commands/sentinel.rs`).
//!
//! The only publisher is the node itself: there is no PUBLISH command, and nothing here ever
//! reaches another node. Subscriptions live and die with their connection.

use std::collections::BTreeSet;

use crate::resp::{Proto, encode};

/// Channels plus patterns one connection may hold: a bound on what a client can make the
/// node keep (Redis has none; the node publishes on a single channel anyway).
pub const MAX_SUBSCRIPTIONS: usize = 10_000;

/// What a RESP2 connection in subscribed mode may still run (Redis's list; `SSUBSCRIBE` and
/// `SUNSUBSCRIBE` are unknown commands here).
pub const ALLOWED_WHILE_SUBSCRIBED: &[&str] = &[
    "ping",
    "subscribe",
    "unsubscribe",
    "psubscribe",
    "punsubscribe",
    "quit",
    "reset",
];

/// A connection's subscriptions. A connection with none has no `Subscriptions` at all (and
/// is not in subscribed mode).
#[derive(Debug, Default)]
pub struct Subscriptions {
    pub channels: BTreeSet<Vec<u8>>,
    pub patterns: BTreeSet<Vec<u8>>,
}

impl Subscriptions {
    /// Channels plus patterns: the count Redis puts in every (un)subscribe reply.
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Writes `message` on `channel` to this connection: a `message` frame if it subscribed
    /// to the channel, then one `pmessage` frame per matching pattern (Redis's order).
    /// Returns whether anything was written.
    pub fn deliver(&self, out: &mut Vec<u8>, proto: Proto, channel: &[u8], message: &[u8]) -> bool {
        let mut wrote = false;
        if self.channels.contains(channel) {
            encode::push_len(out, 3, proto);
            encode::bulk(out, b"message");
            encode::bulk(out, channel);
            encode::bulk(out, message);
            wrote = true;
        }
        for p in &self.patterns {
            if crate::glob::glob_match(p, channel, false) {
                encode::push_len(out, 4, proto);
                encode::bulk(out, b"pmessage");
                encode::bulk(out, p);
                encode::bulk(out, channel);
                encode::bulk(out, message);
                wrote = true;
            }
        }
        wrote
    }
}

/// One (un)subscribe confirmation: `[kind, name, count]`; a missing name (UNSUBSCRIBE with
/// nothing subscribed) is a null.
pub fn confirmation(
    out: &mut Vec<u8>,
    proto: Proto,
    kind: &str,
    name: Option<&[u8]>,
    count: usize,
) {
    encode::push_len(out, 3, proto);
    encode::bulk(out, kind.as_bytes());
    match name {
        Some(n) => encode::bulk(out, n),
        None => encode::null(out, proto),
    }
    encode::integer(out, count as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(channels: &[&str], patterns: &[&str]) -> Subscriptions {
        Subscriptions {
            channels: channels.iter().map(|c| c.as_bytes().to_vec()).collect(),
            patterns: patterns.iter().map(|p| p.as_bytes().to_vec()).collect(),
        }
    }

    #[test]
    fn a_message_goes_to_the_channel_then_to_each_matching_pattern() {
        let s = subs(&["+switch-master"], &["+*", "-*", "*master"]);
        let mut out = Vec::new();
        assert!(s.deliver(&mut out, Proto::Resp2, b"+switch-master", b"m 1 2 3 4"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$9\r\nm 1 2 3 4\r\n\
             *4\r\n$8\r\npmessage\r\n$7\r\n*master\r\n$14\r\n+switch-master\r\n$9\r\nm 1 2 3 4\r\n\
             *4\r\n$8\r\npmessage\r\n$2\r\n+*\r\n$14\r\n+switch-master\r\n$9\r\nm 1 2 3 4\r\n"
        );
    }

    #[test]
    fn resp3_connections_get_push_frames() {
        let s = subs(&["c"], &[]);
        let mut out = Vec::new();
        assert!(s.deliver(&mut out, Proto::Resp3, b"c", b"x"));
        assert_eq!(out, b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n");
        let mut out = Vec::new();
        confirmation(&mut out, Proto::Resp3, "unsubscribe", None, 0);
        assert_eq!(out, b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n");
        let mut out = Vec::new();
        confirmation(&mut out, Proto::Resp2, "unsubscribe", None, 0);
        assert_eq!(out, b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
    }

    #[test]
    fn nothing_is_written_to_a_connection_that_did_not_ask() {
        let s = subs(&["other"], &["x*"]);
        let mut out = Vec::new();
        assert!(!s.deliver(&mut out, Proto::Resp2, b"+switch-master", b"m"));
        assert!(out.is_empty());
    }
}
