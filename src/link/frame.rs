//! The link frame format: this file alone knows it.
//!
//! Every byte on a hot-backup link connection is part of a frame. All integers are
//! little-endian.
//! ```text
//!  0  magic "HB"            2
//!  2  version u8 (=2)       1
//!  3  type u8               1   message type, opaque here
//!  4  length u32            4   payload length
//!  8  seq u64               8   per direction: 0 for the first frame a side sends, +1 each frame
//! 16  header crc u32        4   CRC-32C of bytes 0..16
//! 20  payload               length
//!     mac                  16   only once the session is authenticated
//! ```
//! `mac` = HMAC-SHA256(session key, direction byte || bytes 0..20 || payload), truncated to its
//! first 16 bytes. The header CRC makes a damaged length fail as soon as the header is in:
//! without it, a flipped bit that made the length larger was waited on until that many bytes
//! had arrived (with records and heartbeats flowing, for many seconds) before the MAC failed. The direction byte is `b'D'` on frames the dialer sends and `b'L'` on frames
//! the listener sends, so a frame reflected back to the side that sent it does not verify. The
//! MAC covers the seq, so a dropped, duplicated, reordered or replayed frame is caught too.
//!
//! Before authentication frames carry no MAC and their payload is limited to [`PRE_AUTH_MAX`],
//! so an unauthenticated peer cannot make us buffer more than that. Both sides call
//! `authenticate` on their [`Encoder`] and [`Decoder`] at the same point of the conversation
//! (right after the auth exchange, see [`super::auth`]); the seq keeps counting across the switch.
//!
//! [`Decoder::decode`] follows mini-redis' check-then-parse: `Ok(None)` means "not a whole frame
//! yet", costs a few comparisons, and is safe to call again each time bytes arrive. Garbage is
//! rejected as early as the bytes that prove it arrive (a wrong first byte, a length over the
//! limit as soon as the length field is there), so a non-hotbackup peer or a corrupted stream is
//! never waited on and a huge length is never allocated.
//!
//! Any [`FrameError`] means the stream is out of step or tampered with: the connection must be
//! closed. The decoder does not skip the bad frame (it cannot know where the next one starts).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const MAGIC: &[u8; 2] = b"HB";
pub const VERSION: u8 = 2;
pub const HEADER_LEN: usize = 20;
pub const MAC_LEN: usize = 16;
/// Largest payload accepted before authentication (the auth messages are a few hundred bytes).
pub const PRE_AUTH_MAX: usize = 4096;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// An HMAC-SHA256 instance keyed with `key`.
pub(crate) fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC pads or hashes its key to the block size: every key length is valid, so this never
    // fails (the hmac crate's own `KeyInit::new` makes the same `expect`).
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// Which end of the connection: the dialer connected, the listener accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Dialer,
    Listener,
}

impl Side {
    /// The direction byte MACed into the frames this side sends.
    fn direction_byte(self) -> u8 {
        match self {
            Side::Dialer => b'D',
            Side::Listener => b'L',
        }
    }
}

/// The per-connection key that authenticates frames, derived by [`super::auth`].
///
/// Its `Debug` never shows the bytes; its `==` runs in constant time.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    pub fn from_bytes(bytes: [u8; 32]) -> SessionKey {
        SessionKey(bytes)
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl PartialEq for SessionKey {
    fn eq(&self, other: &SessionKey) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl Eq for SessionKey {}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub ty: u8,
    pub seq: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error(
        "not a hotbackup link frame (bad magic): the peer is not a hotbackup node, or the stream is corrupted"
    )]
    BadMagic,
    #[error("unsupported link frame version {0} (this node speaks version {VERSION})")]
    BadVersion(u8),
    #[error("link frame payload of {len} bytes is over the limit of {max} bytes")]
    TooLong { len: u64, max: usize },
    #[error(
        "link frame out of sequence: expected seq {expected}, got {got} (frame lost, duplicated or replayed)"
    )]
    BadSeq { expected: u64, got: u64 },
    #[error("frame authentication failed at seq {seq}: corrupted or forged data")]
    BadMac { seq: u64 },
    #[error("link frame header checksum mismatch at seq {seq}: the stream is corrupted")]
    BadHeader { seq: u64 },
}

/// The MAC state for one frame: direction, header and payload fed in, ready to finalize or verify.
fn frame_mac(key: &HmacSha256, sender: Side, header: &[u8], payload: &[u8]) -> HmacSha256 {
    let mut mac = key.clone();
    mac.update(&[sender.direction_byte()]);
    mac.update(header);
    mac.update(payload);
    mac
}

/// Encodes the frames one side sends: keeps the seq; MACs once `authenticate` was called.
pub struct Encoder {
    side: Side,
    next_seq: u64,
    /// HMAC keyed with the session key (the keyed state, so a frame costs no key setup).
    key: Option<HmacSha256>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("side", &self.side)
            .field("next_seq", &self.next_seq)
            .field("authenticated", &self.key.is_some())
            .finish()
    }
}

impl Encoder {
    /// An encoder for the frames `side` sends.
    pub fn new(side: Side) -> Encoder {
        Encoder {
            side,
            next_seq: 0,
            key: None,
        }
    }

    /// Every frame encoded from now on carries a MAC.
    pub fn authenticate(&mut self, key: SessionKey) {
        self.key = Some(keyed(&key.0));
    }

    /// Appends one frame to `out`.
    ///
    /// # Panics
    /// If `payload` is longer than `u32::MAX` bytes: the caller splits its data (the peer's
    /// limit is far lower anyway). This is about our own data, never the peer's.
    pub fn encode(&mut self, ty: u8, payload: &[u8], out: &mut Vec<u8>) {
        let len = u32::try_from(payload.len()).expect("link frame payload over 4 GiB");
        let mut header = [0u8; HEADER_LEN];
        header[0..2].copy_from_slice(MAGIC);
        header[2] = VERSION;
        header[3] = ty;
        header[4..8].copy_from_slice(&len.to_le_bytes());
        header[8..16].copy_from_slice(&self.next_seq.to_le_bytes());
        let crc = crc32c::crc32c(&header[..16]);
        header[16..20].copy_from_slice(&crc.to_le_bytes());
        out.reserve(HEADER_LEN + payload.len() + MAC_LEN);
        out.extend_from_slice(&header);
        out.extend_from_slice(payload);
        if let Some(key) = &self.key {
            let tag = frame_mac(key, self.side, &header, payload)
                .finalize()
                .into_bytes();
            out.extend_from_slice(&tag[..MAC_LEN]);
        }
        // 2^64 frames are never sent; wrapping keeps this total without a panic path.
        self.next_seq = self.next_seq.wrapping_add(1);
    }

    /// The seq the next encoded frame gets (= the number of frames encoded so far).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

/// Decodes the frames the peer sends (the peer is `peer`, the other side from ours): checks
/// magic, version, the length limit ([`PRE_AUTH_MAX`] before authentication, `max_len` after),
/// seq == expected and, once authenticated, the MAC.
pub struct Decoder {
    peer: Side,
    next_seq: u64,
    /// HMAC keyed with the session key.
    key: Option<HmacSha256>,
    max_len: usize,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("peer", &self.peer)
            .field("next_seq", &self.next_seq)
            .field("authenticated", &self.key.is_some())
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl Decoder {
    /// A decoder for the frames `peer` sends; `max_len` is the payload limit once authenticated.
    pub fn new(peer: Side, max_len: usize) -> Decoder {
        Decoder {
            peer,
            next_seq: 0,
            key: None,
            max_len,
        }
    }

    /// Every frame decoded from now on must carry a valid MAC, and may be up to `max_len` long.
    pub fn authenticate(&mut self, key: SessionKey) {
        self.key = Some(keyed(&key.0));
    }

    /// The payload limit in force now.
    fn limit(&self) -> usize {
        if self.key.is_some() {
            self.max_len
        } else {
            PRE_AUTH_MAX
        }
    }

    /// The next frame at the start of `buf` and the number of bytes it took, or `Ok(None)` if
    /// `buf` does not hold a whole frame yet. On `Ok(Some)` the caller drops that many bytes
    /// from its buffer; on `Ok(None)` it reads more and calls again; on `Err` it closes.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        // Check what has arrived of the header, field by field, so garbage fails at once.
        for (got, want) in buf.iter().zip(MAGIC.iter()) {
            if got != want {
                return Err(FrameError::BadMagic);
            }
        }
        match buf.get(2) {
            Some(&version) if version != VERSION => return Err(FrameError::BadVersion(version)),
            _ => {}
        }
        let Some(len_bytes) = buf.get(4..8) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let max = self.limit();
        // u32 → usize is lossless on every target hotbackup builds for (64-bit Linux); on a
        // 16-bit target the length would simply be over any limit.
        let len = match usize::try_from(len) {
            Ok(len) if len <= max => len,
            _ => {
                return Err(FrameError::TooLong {
                    len: u64::from(len),
                    max,
                });
            }
        };
        let Some(head) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let crc = u32::from_le_bytes([head[16], head[17], head[18], head[19]]);
        if crc32c::crc32c(&head[..16]) != crc {
            return Err(FrameError::BadHeader { seq: self.next_seq });
        }
        let mac_len = if self.key.is_some() { MAC_LEN } else { 0 };
        let total = HEADER_LEN + len + mac_len;
        if buf.len() < total {
            return Ok(None);
        }
        let header = &buf[..HEADER_LEN];
        let payload = &buf[HEADER_LEN..HEADER_LEN + len];
        // The MAC first: a damaged seq field is reported as damage, and a BadSeq on an
        // authenticated link means an intact frame at the wrong place (a replay).
        if let Some(key) = &self.key {
            let tag = &buf[HEADER_LEN + len..total];
            if frame_mac(key, self.peer, header, payload)
                .verify_truncated_left(tag)
                .is_err()
            {
                return Err(FrameError::BadMac { seq: self.next_seq });
            }
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&header[8..16]);
        let seq = u64::from_le_bytes(seq);
        if seq != self.next_seq {
            return Err(FrameError::BadSeq {
                expected: self.next_seq,
                got: seq,
            });
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        let frame = Frame {
            ty: header[3],
            seq,
            payload: payload.to_vec(),
        };
        Ok(Some((frame, total)))
    }

    /// The seq the next frame must have (= the number of frames decoded so far).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> SessionKey {
        SessionKey::from_bytes([b; 32])
    }

    /// An authenticated dialer → listener pair.
    fn pair(max_len: usize) -> (Encoder, Decoder) {
        let mut enc = Encoder::new(Side::Dialer);
        let mut dec = Decoder::new(Side::Dialer, max_len);
        enc.authenticate(key(7));
        dec.authenticate(key(7));
        (enc, dec)
    }

    fn encoded(enc: &mut Encoder, ty: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        enc.encode(ty, payload, &mut out);
        out
    }

    /// Decodes every frame in `stream`, feeding it `chunk` bytes at a time as a reader would.
    fn decode_all(dec: &mut Decoder, stream: &[u8], chunk: usize) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut buf = Vec::new();
        for piece in stream.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            while let Some((frame, n)) = dec.decode(&buf).unwrap() {
                buf.drain(..n);
                frames.push(frame);
            }
        }
        assert!(buf.is_empty(), "{} bytes left over", buf.len());
        frames
    }

    fn payloads() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
        proptest::collection::vec(
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..200)),
            0..12,
        )
    }

    proptest! {
        #[test]
        fn frames_round_trip_across_the_switch_to_authenticated(
            frames in payloads(),
            switch_at in 0usize..13,
            chunk in 1usize..64,
            side in prop_oneof![Just(Side::Dialer), Just(Side::Listener)],
        ) {
            let mut enc = Encoder::new(side);
            let mut dec = Decoder::new(side, 1000);
            let switch_at = switch_at.min(frames.len());
            let mut stream = Vec::new();
            for (i, (ty, payload)) in frames.iter().enumerate() {
                if i == switch_at {
                    enc.authenticate(key(3));
                }
                enc.encode(*ty, payload, &mut stream);
            }
            prop_assert_eq!(enc.next_seq(), frames.len() as u64);
            // The decoder switches at the same frame: decode the first part, then the rest.
            let pre_len: usize = frames[..switch_at].iter().map(|(_, p)| HEADER_LEN + p.len()).sum();
            let mut got = decode_all(&mut dec, &stream[..pre_len], chunk);
            if switch_at < frames.len() {
                dec.authenticate(key(3));
            }
            got.extend(decode_all(&mut dec, &stream[pre_len..], chunk));
            prop_assert_eq!(got.len(), frames.len());
            for (i, (frame, (ty, payload))) in got.iter().zip(frames.iter()).enumerate() {
                prop_assert_eq!(frame.seq, i as u64);
                prop_assert_eq!(frame.ty, *ty);
                prop_assert_eq!(&frame.payload, payload);
            }
            prop_assert_eq!(dec.next_seq(), frames.len() as u64);
        }

        #[test]
        fn decoder_never_panics_on_random_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            authenticated in any::<bool>(),
        ) {
            let mut dec = Decoder::new(Side::Listener, 100);
            if authenticated {
                dec.authenticate(key(1));
            }
            let _ = dec.decode(&bytes);
        }
    }

    #[test]
    fn every_prefix_is_incomplete() {
        for authenticated in [false, true] {
            let mut enc = Encoder::new(Side::Listener);
            let mut dec = Decoder::new(Side::Listener, 1000);
            if authenticated {
                enc.authenticate(key(9));
                dec.authenticate(key(9));
            }
            let frame = encoded(&mut enc, 5, b"some payload");
            for n in 0..frame.len() {
                assert_eq!(dec.decode(&frame[..n]), Ok(None), "prefix of {n} bytes");
            }
            assert_eq!(
                dec.next_seq(),
                0,
                "an incomplete frame does not advance the seq"
            );
            let (got, used) = dec.decode(&frame).unwrap().unwrap();
            assert_eq!(used, frame.len());
            assert_eq!(
                (got.ty, got.seq, &got.payload[..]),
                (5, 0, &b"some payload"[..])
            );
        }
    }

    #[test]
    fn authenticated_frames_carry_a_mac_and_plain_ones_do_not() {
        let mut enc = Encoder::new(Side::Dialer);
        assert_eq!(encoded(&mut enc, 1, b"abc").len(), HEADER_LEN + 3);
        enc.authenticate(key(1));
        let frame = encoded(&mut enc, 1, b"abc");
        assert_eq!(frame.len(), HEADER_LEN + 3 + MAC_LEN);
        assert_eq!(&frame[..4], b"HB\x02\x01");
        assert_eq!(&frame[4..8], &3u32.to_le_bytes());
        assert_eq!(&frame[8..16], &1u64.to_le_bytes(), "seq keeps counting");
    }

    /// A flipped bit of the length field fails as soon as the header is in, before any of the
    /// (now larger) payload it states: the torture test saw such a frame waited on for seconds.
    #[test]
    fn a_flipped_length_bit_fails_at_the_header() {
        for bit in 0..32 {
            let (mut enc, mut dec) = pair(1 << 30);
            let mut frame = encoded(&mut enc, 21, &[7u8; 2000]);
            frame[4 + bit / 8] ^= 1 << (bit % 8);
            // Over the limit (the high bits) or a header CRC mismatch: either way at once.
            let got = dec.decode(&frame[..HEADER_LEN]);
            assert!(
                matches!(
                    got,
                    Err(FrameError::BadHeader { seq: 0 } | FrameError::TooLong { .. })
                ),
                "bit {bit}: {got:?}"
            );
        }
    }

    #[test]
    fn every_single_byte_change_of_an_authenticated_frame_is_detected() {
        let max_len = 64;
        let (mut enc, _) = pair(max_len);
        let frame = encoded(&mut enc, 42, b"payload!");
        // Whatever the change does to the length field, enough bytes follow to complete it.
        let padding = vec![0u8; HEADER_LEN + max_len + MAC_LEN];
        for pos in 0..frame.len() {
            for delta in 1..=255u8 {
                let mut bad = frame.clone();
                bad[pos] ^= delta;
                bad.extend_from_slice(&padding);
                let (_, mut dec) = pair(max_len);
                let got = dec.decode(&bad);
                assert!(got.is_err(), "byte {pos} ^ {delta:#04x} accepted: {got:?}");
                assert_eq!(dec.next_seq(), 0);
            }
        }
    }

    #[test]
    fn damage_to_an_authenticated_frame_is_reported_as_bad_mac() {
        let (mut enc, mut dec) = pair(100);
        let mut frame = encoded(&mut enc, 1, b"data");
        frame[9] ^= 1; // the seq field: the header CRC catches it before the MAC
        assert_eq!(dec.decode(&frame), Err(FrameError::BadHeader { seq: 0 }));
        let mut frame = encoded(&mut enc, 1, b"data");
        frame[17] ^= 1; // the header CRC itself
        assert_eq!(dec.decode(&frame), Err(FrameError::BadHeader { seq: 0 }));
        let mut frame = encoded(&mut enc, 1, b"data");
        frame[HEADER_LEN] ^= 0x80; // the payload
        assert_eq!(dec.decode(&frame), Err(FrameError::BadMac { seq: 0 }));
    }

    #[test]
    fn reflected_frame_is_rejected() {
        // The listener's own frame, sent back to it as if the dialer had sent it.
        let mut enc = Encoder::new(Side::Listener);
        enc.authenticate(key(5));
        let frame = encoded(&mut enc, 1, b"hello");
        let mut listener_dec = Decoder::new(Side::Dialer, 100);
        listener_dec.authenticate(key(5));
        assert_eq!(
            listener_dec.decode(&frame),
            Err(FrameError::BadMac { seq: 0 })
        );
        // The dialer, which expects the listener's frames, takes it.
        let mut dialer_dec = Decoder::new(Side::Listener, 100);
        dialer_dec.authenticate(key(5));
        assert!(dialer_dec.decode(&frame).unwrap().is_some());
    }

    #[test]
    fn frame_with_another_session_key_is_rejected() {
        let mut enc = Encoder::new(Side::Dialer);
        enc.authenticate(key(1));
        let frame = encoded(&mut enc, 1, b"x");
        let mut dec = Decoder::new(Side::Dialer, 100);
        dec.authenticate(key(2));
        assert_eq!(dec.decode(&frame), Err(FrameError::BadMac { seq: 0 }));
    }

    #[test]
    fn seq_gap_and_duplicate_are_rejected() {
        for authenticated in [false, true] {
            let mut enc = Encoder::new(Side::Dialer);
            if authenticated {
                enc.authenticate(key(4));
            }
            let f0 = encoded(&mut enc, 1, b"zero");
            let f1 = encoded(&mut enc, 1, b"one");
            let f2 = encoded(&mut enc, 1, b"two");
            let fresh = || {
                let mut dec = Decoder::new(Side::Dialer, 100);
                if authenticated {
                    dec.authenticate(key(4));
                }
                dec
            };

            let mut dec = fresh();
            assert!(dec.decode(&f0).unwrap().is_some());
            assert_eq!(
                dec.decode(&f2),
                Err(FrameError::BadSeq {
                    expected: 1,
                    got: 2
                }),
                "gap"
            );

            let mut dec = fresh();
            assert!(dec.decode(&f0).unwrap().is_some());
            assert_eq!(
                dec.decode(&f0),
                Err(FrameError::BadSeq {
                    expected: 1,
                    got: 0
                }),
                "duplicate"
            );
            assert!(
                dec.decode(&f1).unwrap().is_some(),
                "state unchanged by the error"
            );
        }
    }

    #[test]
    fn huge_length_is_rejected_before_the_payload_arrives() {
        let mut header = Vec::new();
        header.extend_from_slice(b"HB\x02\x07");
        header.extend_from_slice(&u32::MAX.to_le_bytes());
        let too_long = Err(FrameError::TooLong {
            len: u64::from(u32::MAX),
            max: PRE_AUTH_MAX,
        });
        // As soon as the length field is there, before the seq has even arrived.
        assert_eq!(Decoder::new(Side::Dialer, 100).decode(&header), too_long);
        header.extend_from_slice(&0u64.to_le_bytes());
        assert_eq!(Decoder::new(Side::Dialer, 100).decode(&header), too_long);

        let (_, mut dec) = pair(1 << 20);
        assert_eq!(
            dec.decode(&header),
            Err(FrameError::TooLong {
                len: u64::from(u32::MAX),
                max: 1 << 20
            })
        );
    }

    #[test]
    fn pre_auth_limit_holds_until_authenticated() {
        let mut enc = Encoder::new(Side::Dialer);
        let mut dec = Decoder::new(Side::Dialer, 1 << 16);
        let at_limit = encoded(&mut enc, 1, &[0u8; PRE_AUTH_MAX]);
        assert_eq!(dec.decode(&at_limit).unwrap().unwrap().1, at_limit.len());
        let over = encoded(&mut enc, 1, &[0u8; PRE_AUTH_MAX + 1]);
        assert_eq!(
            dec.decode(&over),
            Err(FrameError::TooLong {
                len: PRE_AUTH_MAX as u64 + 1,
                max: PRE_AUTH_MAX
            })
        );

        // After authentication the configured limit applies instead.
        let mut enc = Encoder::new(Side::Dialer);
        let mut dec = Decoder::new(Side::Dialer, 1 << 16);
        enc.authenticate(key(8));
        dec.authenticate(key(8));
        let big = encoded(&mut enc, 1, &[0u8; PRE_AUTH_MAX + 1]);
        assert!(dec.decode(&big).unwrap().is_some());
        let over = encoded(&mut enc, 1, &[0u8; (1 << 16) + 1]);
        assert_eq!(
            dec.decode(&over),
            Err(FrameError::TooLong {
                len: (1 << 16) + 1,
                max: 1 << 16
            })
        );
    }

    #[test]
    fn garbage_is_rejected_from_its_first_bytes() {
        let mut dec = Decoder::new(Side::Dialer, 100);
        assert_eq!(dec.decode(b"G"), Err(FrameError::BadMagic));
        assert_eq!(dec.decode(b"HT"), Err(FrameError::BadMagic));
        assert_eq!(dec.decode(b"GET / HTTP/1.1\r\n"), Err(FrameError::BadMagic));
        assert_eq!(dec.decode(b"HB\x01"), Err(FrameError::BadVersion(1)));
        assert_eq!(dec.decode(b"HB\x02"), Ok(None));
    }

    #[test]
    fn unauthenticated_frame_after_the_switch_is_rejected() {
        let mut plain = Encoder::new(Side::Dialer);
        let mut stream = encoded(&mut plain, 1, b"no mac here");
        stream.extend(encoded(&mut plain, 1, b"nor here"));
        let (_, mut dec) = pair(100);
        assert_eq!(dec.decode(&stream), Err(FrameError::BadMac { seq: 0 }));
    }

    #[test]
    fn session_key_debug_hides_the_bytes() {
        assert_eq!(format!("{:?}", key(0xab)), "SessionKey(..)");
        let mut enc = Encoder::new(Side::Dialer);
        enc.authenticate(key(0xab));
        let mut dec = Decoder::new(Side::Dialer, 10);
        dec.authenticate(key(0xab));
        let shown = format!("{enc:?} {dec:?}");
        assert!(!shown.contains("171") && !shown.contains("ab"), "{shown}");
        assert_eq!(key(1), key(1));
        assert_ne!(key(1), key(2));
    }

    #[test]
    fn errors_read_as_sentences_for_an_admin() {
        assert_eq!(
            FrameError::BadMac { seq: 12 }.to_string(),
            "frame authentication failed at seq 12: corrupted or forged data"
        );
        assert_eq!(
            FrameError::BadSeq {
                expected: 3,
                got: 5
            }
            .to_string(),
            "link frame out of sequence: expected seq 3, got 5 (frame lost, duplicated or replayed)"
        );
        assert_eq!(
            FrameError::TooLong { len: 9, max: 8 }.to_string(),
            "link frame payload of 9 bytes is over the limit of 8 bytes"
        );
    }
}
