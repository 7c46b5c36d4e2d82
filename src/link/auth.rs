//! Mutual authentication of a link connection: HMAC-SHA256 challenge-response over a shared key.
//!
//! This file owns the auth messages (their payloads; [`super::frame`] carries them in plain,
//! un-MACed frames) and the key derivation. It is a pair of pure state machines, payloads in and
//! payloads out; the only I/O is reading nonces from `/dev/urandom`. It never decides what to
//! do about a failure (refuse, raise an incident, retry): callers do, from the [`AuthError`].
//!
//! All integers are little-endian; `id` is `node_id [16] | name_len u16 | name` (UTF-8, at most
//! 255 bytes, no control characters).
//! ```text
//! HELLO     (dialer → listener, type 1):  version u16 (=1) | nonce_d [32] | id_d
//! CHALLENGE (listener → dialer, type 2):  nonce_l [32] | id_l | proof_l [32]
//! PROOF     (dialer → listener, type 3):  proof_d [32]
//! REFUSE    (either side, type 4):        reason_len u16 | reason (UTF-8), sent before closing
//!
//! proof_l     = HMAC(key, "hotbackup-link-v1 listener" || nonce_d || nonce_l || id_d || id_l)
//! proof_d     = HMAC(key, "hotbackup-link-v1 dialer"   || nonce_l || nonce_d || id_d || id_l)
//! session key = HMAC(key, "hotbackup-link-v1 session"  || nonce_d || nonce_l || id_d || id_l)
//! ```
//! Each side proves the key over the other side's fresh nonce, so a recorded CHALLENGE or PROOF
//! is worth nothing in a later session; the labels differ, so one side's proof can never be
//! replayed as the other's. The dialer checks `proof_l` before it sends PROOF: it never proves
//! itself to a peer that has not proved the key first. The identities (`id_d`, `id_l`) are
//! inside every proof and the session key, so a man in the middle without the key cannot swap
//! the node id or name one side announced: the proofs then fail ([`AuthError::WrongKey`]).
//! What the identities are worth beyond that is the caller's business: every holder of the
//! shared key can claim any name.
//!
//! After PROOF both sides switch their frame [`Encoder`](super::frame::Encoder) and
//! [`Decoder`](super::frame::Decoder) to the session key: the dialer's decoder once it has
//! accepted the CHALLENGE, its encoder after it has encoded PROOF; the listener's decoder and
//! encoder once it has accepted PROOF. The first MACed frame the listener sends is therefore
//! also its confirmation that PROOF was good.

use std::io::{self, Read};

use hmac::Mac;

use super::frame::{HmacSha256, SessionKey, keyed};

pub const T_HELLO: u8 = 1;
pub const T_CHALLENGE: u8 = 2;
pub const T_PROOF: u8 = 3;
pub const T_REFUSE: u8 = 4;

/// Version of this handshake, the first field of HELLO.
pub const VERSION: u16 = 1;
/// Shortest shared key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;
pub const NONCE_LEN: usize = 32;
pub const PROOF_LEN: usize = 32;
/// Longest node name, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// [`refuse_payload`] cuts longer reasons (at a character boundary).
pub const MAX_REASON_LEN: usize = 1024;

const LABEL_LISTENER: &[u8] = b"hotbackup-link-v1 listener";
const LABEL_DIALER: &[u8] = b"hotbackup-link-v1 dialer";
const LABEL_SESSION: &[u8] = b"hotbackup-link-v1 session";

const ID_MAX_LEN: usize = 16 + 2 + MAX_NAME_LEN;
// Every auth message fits in a pre-authentication frame.
const _: () = assert!(2 + NONCE_LEN + ID_MAX_LEN <= super::frame::PRE_AUTH_MAX);
const _: () = assert!(NONCE_LEN + ID_MAX_LEN + PROOF_LEN <= super::frame::PRE_AUTH_MAX);
const _: () = assert!(2 + MAX_REASON_LEN <= super::frame::PRE_AUTH_MAX);

/// Who is at one end of a link: a node's id and its human name (from its config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerId {
    pub node_id: [u8; 16],
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The peer's message does not parse; the text names the message and the field.
    #[error("malformed link handshake message: {0}")]
    Malformed(&'static str),
    #[error("peer speaks link handshake version {0}; this node speaks version {VERSION}")]
    Version(u16),
    #[error("peer failed to prove the shared key (wrong or missing key)")]
    WrongKey,
    /// The peer's REFUSE reason (shown quoted and escaped: it is the peer's text).
    #[error("peer refused the link: {0:?}")]
    Refused(String),
    #[error("cannot read random bytes from /dev/urandom: {0}")]
    Random(#[source] io::Error),
    /// Our own configuration: the shared key is too short to be worth anything.
    #[error("the link key is {0} bytes long; it must be at least {MIN_KEY_LEN} bytes")]
    KeyTooShort(usize),
    /// Our own configuration: this node's name cannot be sent (the text says why).
    #[error("this node's name cannot be sent to a link peer: {0}")]
    BadOwnName(&'static str),
}

/// `N` bytes from `/dev/urandom`.
pub fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// The dialer's half of the handshake, between HELLO and CHALLENGE.
pub struct DialerAuth {
    key: HmacSha256,
    nonce_d: [u8; NONCE_LEN],
    me: PeerId,
}

impl std::fmt::Debug for DialerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DialerAuth")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl DialerAuth {
    /// Starts: returns the state and the HELLO payload to send.
    pub fn start(key: &[u8], me: &PeerId) -> Result<(DialerAuth, Vec<u8>), AuthError> {
        check_key(key)?;
        check_own_name(&me.name)?;
        let nonce_d = random_bytes().map_err(AuthError::Random)?;
        let mut hello = Vec::with_capacity(2 + NONCE_LEN + ID_MAX_LEN);
        hello.extend_from_slice(&VERSION.to_le_bytes());
        hello.extend_from_slice(&nonce_d);
        put_id(&mut hello, me);
        let state = DialerAuth {
            key: keyed(key),
            nonce_d,
            me: me.clone(),
        };
        Ok((state, hello))
    }

    /// On the listener's CHALLENGE: verifies it, returns the PROOF payload, the session key and
    /// who the listener is. [`AuthError::WrongKey`] if the listener did not prove the key: then
    /// nothing must be sent but a REFUSE.
    pub fn on_challenge(self, payload: &[u8]) -> Result<(Vec<u8>, SessionKey, PeerId), AuthError> {
        let mut r = Reader::new(payload, &CHALLENGE);
        let nonce_l: [u8; NONCE_LEN] = r.array()?;
        let listener = r.id()?;
        let proof_l: [u8; PROOF_LEN] = r.array()?;
        r.end()?;
        let ids = ids(&self.me, &listener);
        listener_proof(&self.key, &self.nonce_d, &nonce_l, &ids)
            .verify_slice(&proof_l)
            .map_err(|_| AuthError::WrongKey)?;
        let proof_d = dialer_proof(&self.key, &self.nonce_d, &nonce_l, &ids)
            .finalize()
            .into_bytes()
            .to_vec();
        let session = session_key(&self.key, &self.nonce_d, &nonce_l, &ids);
        Ok((proof_d, session, listener))
    }
}

/// The listener's half of the handshake, between CHALLENGE and PROOF.
pub struct ListenerAuth {
    key: HmacSha256,
    nonce_d: [u8; NONCE_LEN],
    nonce_l: [u8; NONCE_LEN],
    /// `id_d || id_l` as they went over the wire.
    ids: Vec<u8>,
}

impl std::fmt::Debug for ListenerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerAuth").finish_non_exhaustive()
    }
}

impl ListenerAuth {
    /// On the dialer's HELLO: returns the state, the CHALLENGE payload to send and who the
    /// dialer claims to be (proved only by [`ListenerAuth::on_proof`]).
    pub fn on_hello(
        key: &[u8],
        me: &PeerId,
        payload: &[u8],
    ) -> Result<(ListenerAuth, Vec<u8>, PeerId), AuthError> {
        check_key(key)?;
        check_own_name(&me.name)?;
        let mut r = Reader::new(payload, &HELLO);
        // The version first: a later version may lay out the rest differently.
        let version = r.u16()?;
        if version != VERSION {
            return Err(AuthError::Version(version));
        }
        let nonce_d: [u8; NONCE_LEN] = r.array()?;
        let dialer = r.id()?;
        r.end()?;
        let nonce_l = random_bytes().map_err(AuthError::Random)?;
        let key = keyed(key);
        let ids = ids(&dialer, me);
        let proof_l = listener_proof(&key, &nonce_d, &nonce_l, &ids)
            .finalize()
            .into_bytes();
        let mut challenge = Vec::with_capacity(NONCE_LEN + ID_MAX_LEN + PROOF_LEN);
        challenge.extend_from_slice(&nonce_l);
        put_id(&mut challenge, me);
        challenge.extend_from_slice(&proof_l);
        let state = ListenerAuth {
            key,
            nonce_d,
            nonce_l,
            ids,
        };
        Ok((state, challenge, dialer))
    }

    /// On the dialer's PROOF: the session key, or [`AuthError::WrongKey`].
    pub fn on_proof(self, payload: &[u8]) -> Result<SessionKey, AuthError> {
        let mut r = Reader::new(payload, &PROOF);
        let proof_d: [u8; PROOF_LEN] = r.array()?;
        r.end()?;
        dialer_proof(&self.key, &self.nonce_d, &self.nonce_l, &self.ids)
            .verify_slice(&proof_d)
            .map_err(|_| AuthError::WrongKey)?;
        Ok(session_key(
            &self.key,
            &self.nonce_d,
            &self.nonce_l,
            &self.ids,
        ))
    }
}

/// The REFUSE payload for `reason` (cut to [`MAX_REASON_LEN`] bytes at a character boundary).
pub fn refuse_payload(reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    let mut out = Vec::with_capacity(2 + reason.len());
    // `end` ≤ MAX_REASON_LEN < u16::MAX.
    out.extend_from_slice(&(reason.len() as u16).to_le_bytes());
    out.extend_from_slice(reason);
    out
}

/// The reason in a REFUSE payload.
pub fn parse_refuse(payload: &[u8]) -> Result<String, AuthError> {
    let mut r = Reader::new(payload, &REFUSE);
    let len = r.u16()?;
    let reason = r.take(usize::from(len))?;
    r.end()?;
    String::from_utf8(reason.to_vec()).map_err(|_| AuthError::Malformed(REFUSE.text_utf8))
}

fn check_key(key: &[u8]) -> Result<(), AuthError> {
    if key.len() < MIN_KEY_LEN {
        return Err(AuthError::KeyTooShort(key.len()));
    }
    Ok(())
}

fn check_own_name(name: &str) -> Result<(), AuthError> {
    if name.len() > MAX_NAME_LEN {
        return Err(AuthError::BadOwnName("longer than 255 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(AuthError::BadOwnName("contains control characters"));
    }
    Ok(())
}

/// Appends `node_id | name_len u16 | name`; the name was checked by [`check_own_name`] or
/// parsed by [`Reader::id`], so it is at most [`MAX_NAME_LEN`] bytes.
fn put_id(out: &mut Vec<u8>, id: &PeerId) {
    out.extend_from_slice(&id.node_id);
    out.extend_from_slice(&(id.name.len() as u16).to_le_bytes());
    out.extend_from_slice(id.name.as_bytes());
}

/// `id_d || id_l`, the identities every proof and the session key are bound to.
fn ids(dialer: &PeerId, listener: &PeerId) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 * ID_MAX_LEN);
    put_id(&mut out, dialer);
    put_id(&mut out, listener);
    out
}

/// HMAC(key, label || a || b || ids), ready to finalize or verify.
fn prf(key: &HmacSha256, label: &[u8], a: &[u8], b: &[u8], ids: &[u8]) -> HmacSha256 {
    let mut mac = key.clone();
    mac.update(label);
    mac.update(a);
    mac.update(b);
    mac.update(ids);
    mac
}

fn listener_proof(key: &HmacSha256, nonce_d: &[u8], nonce_l: &[u8], ids: &[u8]) -> HmacSha256 {
    prf(key, LABEL_LISTENER, nonce_d, nonce_l, ids)
}

fn dialer_proof(key: &HmacSha256, nonce_d: &[u8], nonce_l: &[u8], ids: &[u8]) -> HmacSha256 {
    prf(key, LABEL_DIALER, nonce_l, nonce_d, ids)
}

fn session_key(key: &HmacSha256, nonce_d: &[u8], nonce_l: &[u8], ids: &[u8]) -> SessionKey {
    let bytes = prf(key, LABEL_SESSION, nonce_d, nonce_l, ids)
        .finalize()
        .into_bytes();
    SessionKey::from_bytes(bytes.into())
}

/// What to call each way a message can be malformed (`AuthError::Malformed` takes a static
/// text naming the message and the field).
struct Texts {
    truncated: &'static str,
    trailing: &'static str,
    name_long: &'static str,
    name_utf8: &'static str,
    name_control: &'static str,
    text_utf8: &'static str,
}

const HELLO: Texts = Texts {
    truncated: "HELLO is truncated",
    trailing: "HELLO has bytes after its last field",
    name_long: "HELLO name is longer than 255 bytes",
    name_utf8: "HELLO name is not UTF-8",
    name_control: "HELLO name contains control characters",
    text_utf8: "",
};

const CHALLENGE: Texts = Texts {
    truncated: "CHALLENGE is truncated",
    trailing: "CHALLENGE has bytes after its last field",
    name_long: "CHALLENGE name is longer than 255 bytes",
    name_utf8: "CHALLENGE name is not UTF-8",
    name_control: "CHALLENGE name contains control characters",
    text_utf8: "",
};

const PROOF: Texts = Texts {
    truncated: "PROOF is shorter than 32 bytes",
    trailing: "PROOF is longer than 32 bytes",
    name_long: "",
    name_utf8: "",
    name_control: "",
    text_utf8: "",
};

const REFUSE: Texts = Texts {
    truncated: "REFUSE is truncated",
    trailing: "REFUSE has bytes after its reason",
    name_long: "",
    name_utf8: "",
    name_control: "",
    text_utf8: "REFUSE reason is not UTF-8",
};

/// Reads the fields of one message in order; every shortfall is `Malformed`, never a panic.
struct Reader<'a> {
    buf: &'a [u8],
    texts: &'static Texts,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], texts: &'static Texts) -> Reader<'a> {
        Reader { buf, texts }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], AuthError> {
        if self.buf.len() < n {
            return Err(AuthError::Malformed(self.texts.truncated));
        }
        let (field, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(field)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], AuthError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u16(&mut self) -> Result<u16, AuthError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn id(&mut self) -> Result<PeerId, AuthError> {
        let node_id = self.array()?;
        let len = usize::from(self.u16()?);
        if len > MAX_NAME_LEN {
            return Err(AuthError::Malformed(self.texts.name_long));
        }
        let name = std::str::from_utf8(self.take(len)?)
            .map_err(|_| AuthError::Malformed(self.texts.name_utf8))?;
        if name.chars().any(char::is_control) {
            return Err(AuthError::Malformed(self.texts.name_control));
        }
        Ok(PeerId {
            node_id,
            name: name.to_owned(),
        })
    }

    fn end(self) -> Result<(), AuthError> {
        if !self.buf.is_empty() {
            return Err(AuthError::Malformed(self.texts.trailing));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::frame::{Decoder, Encoder, FrameError, HEADER_LEN, PRE_AUTH_MAX, Side};
    use proptest::prelude::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER_KEY: &[u8] = b"fedcba9876543210fedcba9876543210";

    fn master() -> PeerId {
        PeerId {
            node_id: [1; 16],
            name: "db1-master".into(),
        }
    }

    fn slave() -> PeerId {
        PeerId {
            node_id: [2; 16],
            name: "db1-slave".into(),
        }
    }

    /// A whole exchange; returns both session keys and what each side learnt of the other.
    fn exchange(
        dialer_key: &[u8],
        listener_key: &[u8],
    ) -> Result<(SessionKey, SessionKey, PeerId, PeerId), AuthError> {
        let (dialer, hello) = DialerAuth::start(dialer_key, &master())?;
        let (listener, challenge, dialer_id) =
            ListenerAuth::on_hello(listener_key, &slave(), &hello)?;
        let (proof, dialer_session, listener_id) = dialer.on_challenge(&challenge)?;
        let listener_session = listener.on_proof(&proof)?;
        Ok((dialer_session, listener_session, dialer_id, listener_id))
    }

    fn is_malformed(e: &AuthError) -> bool {
        matches!(e, AuthError::Malformed(_))
    }

    #[test]
    fn both_sides_derive_the_same_session_key() {
        let (d, l, dialer_id, listener_id) = exchange(KEY, KEY).unwrap();
        assert_eq!(d, l);
        assert_eq!(dialer_id, master());
        assert_eq!(listener_id, slave());
        // A second session gets another key (fresh nonces).
        let (d2, _, _, _) = exchange(KEY, KEY).unwrap();
        assert_ne!(d, d2);
    }

    /// The whole conversation in frames, as the sender and receiver will run it.
    #[test]
    fn authenticated_frames_flow_after_the_exchange() {
        let mut wire_dl = Vec::new(); // dialer → listener
        let mut wire_ld = Vec::new(); // listener → dialer
        let mut d_enc = Encoder::new(Side::Dialer);
        let mut d_dec = Decoder::new(Side::Listener, 1 << 20);
        let mut l_enc = Encoder::new(Side::Listener);
        let mut l_dec = Decoder::new(Side::Dialer, 1 << 20);

        let (dialer, hello) = DialerAuth::start(KEY, &master()).unwrap();
        d_enc.encode(T_HELLO, &hello, &mut wire_dl);

        let (frame, n) = l_dec.decode(&wire_dl).unwrap().unwrap();
        wire_dl.drain(..n);
        assert_eq!(frame.ty, T_HELLO);
        let (listener, challenge, _) =
            ListenerAuth::on_hello(KEY, &slave(), &frame.payload).unwrap();
        l_enc.encode(T_CHALLENGE, &challenge, &mut wire_ld);

        let (frame, n) = d_dec.decode(&wire_ld).unwrap().unwrap();
        wire_ld.drain(..n);
        assert_eq!(frame.ty, T_CHALLENGE);
        let (proof, d_key, _) = dialer.on_challenge(&frame.payload).unwrap();
        d_enc.encode(T_PROOF, &proof, &mut wire_dl);
        d_enc.authenticate(d_key.clone());
        d_dec.authenticate(d_key);
        d_enc.encode(10, b"first authenticated dialer frame", &mut wire_dl);

        let (frame, n) = l_dec.decode(&wire_dl).unwrap().unwrap();
        wire_dl.drain(..n);
        assert_eq!(frame.ty, T_PROOF);
        let l_key = listener.on_proof(&frame.payload).unwrap();
        l_enc.authenticate(l_key.clone());
        l_dec.authenticate(l_key);
        let (frame, n) = l_dec.decode(&wire_dl).unwrap().unwrap();
        wire_dl.drain(..n);
        assert_eq!(
            (frame.ty, frame.seq, &frame.payload[..]),
            (10, 2, &b"first authenticated dialer frame"[..])
        );
        assert!(wire_dl.is_empty());

        l_enc.encode(11, &vec![7u8; PRE_AUTH_MAX * 2], &mut wire_ld);
        let (frame, n) = d_dec.decode(&wire_ld).unwrap().unwrap();
        assert_eq!(n, wire_ld.len());
        assert_eq!((frame.ty, frame.seq), (11, 1));
        assert_eq!(frame.payload.len(), PRE_AUTH_MAX * 2);
    }

    #[test]
    fn frames_under_another_sessions_key_fail() {
        let (a, _, _, _) = exchange(KEY, KEY).unwrap();
        let (b, _, _, _) = exchange(KEY, KEY).unwrap();
        let mut enc = Encoder::new(Side::Dialer);
        enc.authenticate(a);
        let mut dec = Decoder::new(Side::Dialer, 100);
        dec.authenticate(b);
        let mut out = Vec::new();
        enc.encode(1, b"x", &mut out);
        assert_eq!(dec.decode(&out), Err(FrameError::BadMac { seq: 0 }));
    }

    #[test]
    fn dialer_refuses_a_listener_with_the_wrong_key() {
        // The dialer checks first, so it never produces a PROOF for this listener.
        let err = exchange(KEY, OTHER_KEY).unwrap_err();
        assert!(matches!(err, AuthError::WrongKey), "{err:?}");
    }

    #[test]
    fn slave_refuses_wrong_key() {
        // A dialer that skips its own check still cannot make a PROOF without the key.
        let (_, hello) = DialerAuth::start(OTHER_KEY, &master()).unwrap();
        let (listener, challenge, _) = ListenerAuth::on_hello(KEY, &slave(), &hello).unwrap();
        let nonce_d = &hello[2..2 + NONCE_LEN];
        let nonce_l = &challenge[..NONCE_LEN];
        let forged = dialer_proof(
            &keyed(OTHER_KEY),
            nonce_d,
            nonce_l,
            &ids(&master(), &slave()),
        )
        .finalize()
        .into_bytes();
        let err = listener.on_proof(&forged).unwrap_err();
        assert!(matches!(err, AuthError::WrongKey), "{err:?}");
    }

    #[test]
    fn listener_proof_is_not_accepted_as_dialer_proof() {
        // Reflection: send the listener its own proof back.
        let (_, hello) = DialerAuth::start(KEY, &master()).unwrap();
        let (listener, challenge, _) = ListenerAuth::on_hello(KEY, &slave(), &hello).unwrap();
        let proof_l = &challenge[challenge.len() - PROOF_LEN..];
        assert!(matches!(
            listener.on_proof(proof_l).unwrap_err(),
            AuthError::WrongKey
        ));
    }

    #[test]
    fn replayed_challenge_is_rejected() {
        let (_, hello) = DialerAuth::start(KEY, &master()).unwrap();
        let (_, old_challenge, _) = ListenerAuth::on_hello(KEY, &slave(), &hello).unwrap();
        // A new session: the recorded CHALLENGE does not answer the new nonce.
        let (dialer, _) = DialerAuth::start(KEY, &master()).unwrap();
        assert!(matches!(
            dialer.on_challenge(&old_challenge).unwrap_err(),
            AuthError::WrongKey
        ));
    }

    #[test]
    fn replayed_proof_is_rejected() {
        let (dialer, hello) = DialerAuth::start(KEY, &master()).unwrap();
        let (_, challenge, _) = ListenerAuth::on_hello(KEY, &slave(), &hello).unwrap();
        let (old_proof, _, _) = dialer.on_challenge(&challenge).unwrap();
        // The attacker replays the recorded HELLO and PROOF to a new listener session.
        let (listener, _, _) = ListenerAuth::on_hello(KEY, &slave(), &hello).unwrap();
        assert!(matches!(
            listener.on_proof(&old_proof).unwrap_err(),
            AuthError::WrongKey
        ));
    }

    #[test]
    fn identities_swapped_in_transit_are_detected() {
        let impostor = PeerId {
            node_id: [9; 16],
            name: "db1-other".into(),
        };
        // The HELLO's identity changed on the way: the dialer sees a listener proof over an
        // identity it never sent.
        let (dialer, hello) = DialerAuth::start(KEY, &master()).unwrap();
        let mut tampered = hello[..2 + NONCE_LEN].to_vec();
        put_id(&mut tampered, &impostor);
        let (_, challenge, claimed) = ListenerAuth::on_hello(KEY, &slave(), &tampered).unwrap();
        assert_eq!(claimed, impostor);
        assert!(matches!(
            dialer.on_challenge(&challenge).unwrap_err(),
            AuthError::WrongKey
        ));

        // The CHALLENGE's identity changed on the way.
        let (dialer, hello) = DialerAuth::start(KEY, &master()).unwrap();
        let (_, challenge, _) = ListenerAuth::on_hello(KEY, &slave(), &hello).unwrap();
        let mut tampered = challenge[..NONCE_LEN].to_vec();
        put_id(&mut tampered, &impostor);
        tampered.extend_from_slice(&challenge[challenge.len() - PROOF_LEN..]);
        assert!(matches!(
            dialer.on_challenge(&tampered).unwrap_err(),
            AuthError::WrongKey
        ));
    }

    #[test]
    fn other_hello_version_is_reported_as_such() {
        let (_, mut hello) = DialerAuth::start(KEY, &master()).unwrap();
        hello[..2].copy_from_slice(&2u16.to_le_bytes());
        let err = ListenerAuth::on_hello(KEY, &slave(), &hello).unwrap_err();
        assert!(matches!(err, AuthError::Version(2)), "{err:?}");
        // Even when the rest would not parse as version 1.
        let err = ListenerAuth::on_hello(KEY, &slave(), &[2, 0, 0xff]).unwrap_err();
        assert!(matches!(err, AuthError::Version(2)), "{err:?}");
    }

    #[test]
    fn short_key_and_bad_own_name_are_refused_before_anything_is_sent() {
        let short = &KEY[..MIN_KEY_LEN - 1];
        assert!(matches!(
            DialerAuth::start(short, &master()).unwrap_err(),
            AuthError::KeyTooShort(15)
        ));
        let (_, hello) = DialerAuth::start(KEY, &master()).unwrap();
        assert!(matches!(
            ListenerAuth::on_hello(short, &slave(), &hello).unwrap_err(),
            AuthError::KeyTooShort(15)
        ));
        assert!(DialerAuth::start(&KEY[..MIN_KEY_LEN], &master()).is_ok());

        let long = PeerId {
            node_id: [0; 16],
            name: "x".repeat(MAX_NAME_LEN + 1),
        };
        assert!(matches!(
            DialerAuth::start(KEY, &long).unwrap_err(),
            AuthError::BadOwnName(_)
        ));
        assert!(matches!(
            ListenerAuth::on_hello(KEY, &long, &hello).unwrap_err(),
            AuthError::BadOwnName(_)
        ));
        let newline = PeerId {
            node_id: [0; 16],
            name: "a\nb".into(),
        };
        assert!(matches!(
            DialerAuth::start(KEY, &newline).unwrap_err(),
            AuthError::BadOwnName(_)
        ));
        let longest = PeerId {
            node_id: [0; 16],
            name: "é".repeat(MAX_NAME_LEN / 2),
        };
        let (_, hello) = DialerAuth::start(KEY, &longest).unwrap();
        assert_eq!(
            ListenerAuth::on_hello(KEY, &slave(), &hello).unwrap().2,
            longest
        );
    }

    #[test]
    fn every_truncation_and_extension_is_malformed() {
        let (dialer, hello) = DialerAuth::start(KEY, &master()).unwrap();
        let (listener, challenge, _) = ListenerAuth::on_hello(KEY, &slave(), &hello).unwrap();
        let (dialer_b, _) = DialerAuth::start(KEY, &master()).unwrap();
        let (proof, _, _) = dialer.on_challenge(&challenge).unwrap();
        let refuse = refuse_payload("no slot for you");

        for n in 2..hello.len() {
            let e = ListenerAuth::on_hello(KEY, &slave(), &hello[..n]).unwrap_err();
            assert!(is_malformed(&e), "HELLO cut at {n}: {e:?}");
        }
        for n in 0..2 {
            let e = ListenerAuth::on_hello(KEY, &slave(), &hello[..n]).unwrap_err();
            assert!(is_malformed(&e), "HELLO cut at {n}: {e:?}");
        }
        let mut longer = hello.clone();
        longer.push(0);
        assert!(is_malformed(
            &ListenerAuth::on_hello(KEY, &slave(), &longer).unwrap_err()
        ));

        // A fresh dialer per attempt: `on_challenge` consumes it.
        for n in 0..challenge.len() {
            let (d, _) = DialerAuth::start(KEY, &master()).unwrap();
            let e = d.on_challenge(&challenge[..n]).unwrap_err();
            assert!(is_malformed(&e), "CHALLENGE cut at {n}: {e:?}");
        }
        let mut longer = challenge.clone();
        longer.push(0);
        assert!(is_malformed(&dialer_b.on_challenge(&longer).unwrap_err()));

        for n in 0..proof.len() {
            let (l, _, _) = ListenerAuth::on_hello(KEY, &slave(), &hello).unwrap();
            assert!(is_malformed(&l.on_proof(&proof[..n]).unwrap_err()));
        }
        let mut longer = proof.clone();
        longer.push(0);
        assert!(is_malformed(&listener.on_proof(&longer).unwrap_err()));

        for n in 0..refuse.len() {
            assert!(is_malformed(&parse_refuse(&refuse[..n]).unwrap_err()));
        }
        let mut longer = refuse.clone();
        longer.push(b'!');
        assert!(is_malformed(&parse_refuse(&longer).unwrap_err()));
    }

    #[test]
    fn bad_names_in_hello_are_malformed() {
        let hello_with = |name: &[u8], len: u16| {
            let mut h = VERSION.to_le_bytes().to_vec();
            h.extend_from_slice(&[0; NONCE_LEN]);
            h.extend_from_slice(&[1; 16]);
            h.extend_from_slice(&len.to_le_bytes());
            h.extend_from_slice(name);
            h
        };
        let on_hello = |h: &[u8]| ListenerAuth::on_hello(KEY, &slave(), h).map(|r| r.2);
        assert_eq!(on_hello(&hello_with(b"ok", 2)).unwrap().name, "ok");
        assert_eq!(on_hello(&hello_with(b"", 0)).unwrap().name, "");
        let cases: [(&[u8], u16, &str); 4] = [
            (&[b'a'; 256], 256, "HELLO name is longer than 255 bytes"),
            (b"x", u16::MAX, "HELLO name is longer than 255 bytes"),
            (b"\xff\xfe", 2, "HELLO name is not UTF-8"),
            (b"a\x1b[2J", 5, "HELLO name contains control characters"),
        ];
        for (name, len, want) in cases {
            match on_hello(&hello_with(name, len)) {
                Err(AuthError::Malformed(text)) => assert_eq!(text, want),
                other => panic!("{name:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn refuse_round_trips_and_cuts_long_reasons() {
        let reason = "master at generation 5 refuses a stream";
        assert_eq!(parse_refuse(&refuse_payload(reason)).unwrap(), reason);
        assert_eq!(parse_refuse(&refuse_payload("")).unwrap(), "");
        let long = "é".repeat(MAX_REASON_LEN); // 2 bytes each
        let cut = parse_refuse(&refuse_payload(&long)).unwrap();
        assert_eq!(cut.len(), MAX_REASON_LEN);
        let long = format!("a{}", "é".repeat(MAX_REASON_LEN));
        let cut = parse_refuse(&refuse_payload(&long)).unwrap();
        assert_eq!(cut.len(), MAX_REASON_LEN - 1, "cut at a character boundary");
        assert!(is_malformed(
            &parse_refuse(&[2, 0, 0xc3, 0x28]).unwrap_err()
        ));
    }

    #[test]
    fn errors_read_as_sentences_for_an_admin() {
        assert_eq!(
            AuthError::WrongKey.to_string(),
            "peer failed to prove the shared key (wrong or missing key)"
        );
        assert_eq!(
            AuthError::Refused("line\nforged".into()).to_string(),
            "peer refused the link: \"line\\nforged\""
        );
        assert_eq!(
            AuthError::Malformed(HELLO.truncated).to_string(),
            "malformed link handshake message: HELLO is truncated"
        );
        assert_eq!(
            AuthError::Version(7).to_string(),
            "peer speaks link handshake version 7; this node speaks version 1"
        );
    }

    #[test]
    fn random_bytes_differ() {
        let a: [u8; 32] = random_bytes().unwrap();
        let b: [u8; 32] = random_bytes().unwrap();
        assert_ne!(a, b);
        let empty: [u8; 0] = random_bytes().unwrap();
        assert_eq!(empty, []);
    }

    #[test]
    fn auth_messages_fit_a_pre_auth_frame() {
        let longest = PeerId {
            node_id: [0; 16],
            name: "n".repeat(MAX_NAME_LEN),
        };
        let (_, hello) = DialerAuth::start(KEY, &longest).unwrap();
        let (_, challenge, _) = ListenerAuth::on_hello(KEY, &longest, &hello).unwrap();
        assert!(hello.len() <= PRE_AUTH_MAX && challenge.len() <= PRE_AUTH_MAX);
        assert!(HEADER_LEN + refuse_payload(&"r".repeat(5000)).len() <= HEADER_LEN + PRE_AUTH_MAX);
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    proptest! {
        #[test]
        fn random_hello_never_panics(mut payload in bytes(400), v1 in any::<bool>()) {
            if v1 && payload.len() >= 2 {
                payload[..2].copy_from_slice(&VERSION.to_le_bytes());
            }
            match ListenerAuth::on_hello(KEY, &slave(), &payload) {
                Ok(_) | Err(AuthError::Malformed(_)) | Err(AuthError::Version(_)) => {}
                Err(e) => prop_assert!(false, "{e:?}"),
            }
        }

        #[test]
        fn random_challenge_never_panics(payload in bytes(400)) {
            let (dialer, _) = DialerAuth::start(KEY, &master()).unwrap();
            match dialer.on_challenge(&payload) {
                Err(AuthError::Malformed(_)) | Err(AuthError::WrongKey) => {}
                other => prop_assert!(false, "{other:?}"),
            }
        }

        #[test]
        fn random_proof_never_panics(payload in bytes(64)) {
            let (_, hello) = DialerAuth::start(KEY, &master()).unwrap();
            let (listener, _, _) = ListenerAuth::on_hello(KEY, &slave(), &hello).unwrap();
            match listener.on_proof(&payload) {
                Err(AuthError::WrongKey) => prop_assert_eq!(payload.len(), PROOF_LEN),
                Err(AuthError::Malformed(_)) => prop_assert_ne!(payload.len(), PROOF_LEN),
                other => prop_assert!(false, "{other:?}"),
            }
        }

        #[test]
        fn random_refuse_never_panics(payload in bytes(300)) {
            match parse_refuse(&payload) {
                Ok(reason) => prop_assert_eq!(reason.len() + 2, payload.len()),
                Err(AuthError::Malformed(_)) => {}
                Err(e) => prop_assert!(false, "{e:?}"),
            }
        }

        #[test]
        fn changed_messages_are_caught_and_never_panic(
            pos in any::<prop::sample::Index>(),
            delta in 1u8..,
        ) {
            let (dialer, hello) = DialerAuth::start(KEY, &master()).unwrap();
            let (_, mut challenge, _) = ListenerAuth::on_hello(KEY, &slave(), &hello).unwrap();
            let i = pos.index(challenge.len());
            challenge[i] ^= delta;
            prop_assert!(dialer.on_challenge(&challenge).is_err());

            let (dialer, mut hello) = DialerAuth::start(KEY, &master()).unwrap();
            let (listener, challenge, _) = ListenerAuth::on_hello(KEY, &slave(), &hello).unwrap();
            let (mut proof, _, _) = dialer.on_challenge(&challenge).unwrap();
            let i = pos.index(proof.len());
            proof[i] ^= delta;
            prop_assert!(listener.on_proof(&proof).is_err());

            // A changed HELLO may still parse (another nonce or name), but never panics.
            let i = pos.index(hello.len());
            hello[i] ^= delta;
            let _ = ListenerAuth::on_hello(KEY, &slave(), &hello);
        }
    }
}
