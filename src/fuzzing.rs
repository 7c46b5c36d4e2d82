//! The bodies of the fuzz targets, shared by `fuzz/fuzz_targets/*.rs` (cargo-fuzz) and
//! `tests/fuzz_corpus.rs` (which replays every committed seed in `cargo test`), so the fuzzer
//! and the test suite run exactly the same code on the same bytes.
//!
//! Each `pub fn` takes arbitrary bytes and must never panic: a panic, an assertion failure
//! (an invariant below) or a sanitizer report is a finding. They only read outside input; the
//! file-based ones write the bytes into a fresh directory (under /dev/shm when it exists, else
//! the system temp directory) and remove it afterwards.
//!
//! Input layouts (the first bytes steer the harness where a raw file would almost never get
//! past a checksum):
//! - [`link_frame_preauth`]: the raw byte stream an unauthenticated peer sends.
//! - [`link_frame_auth`]: `tamper_pos u16 | tamper_xor u8 | preauth_frames u8 | step u8` then
//!   frames `ty u8 | len u8 | payload`; the frames are encoded (MACed after `preauth_frames`),
//!   one byte is flipped, and the wire is decoded in steps of `step` bytes. The whole input is
//!   also decoded as a raw stream by an authenticated decoder.
//! - [`link_msg`]: `ty u8 | payload`: the payload goes to the decoder of message type `ty`.
//! - [`journal_segment`], [`tape`], [`savefile`]: `flags u8 | file bytes`; flag bit 0 set:
//!   the harness recomputes the file's checksums first (so mutations reach the logic behind
//!   them).
//! - [`config`]: config text (bytes that are not UTF-8 are refused as `Config::load` does).
//!
//! Not part of the daemon: nothing in the server, the link or the ops calls this module.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::journal::format::{self, COMMIT_FLAG, HEADER_LEN, MAX_PAYLOAD, RECORD_HEADER_LEN};
use crate::journal::{DbId, JournalReader, recovery, tape as jtape};
use crate::link::auth::{self, DialerAuth, ListenerAuth, PeerId};
use crate::link::frame::{Decoder, Encoder, Frame, SessionKey, Side};
use crate::link::msg;
use crate::verify::{report::Outcome, wire};

/// The shared link key of the pre-authentication target.
pub const LINK_KEY: &[u8] = b"fuzz-link-key-0123456789abcdef!!";
/// The session key the authenticated-frame target MACs its frames with.
pub const SESSION_KEY: [u8; 32] = [0x42; 32];
/// The database id the journal targets expect (seeds are written with it).
pub const DB_ID: DbId = [7; 16];
/// The payload limit of the authenticated decoder (small, so the limit is reachable).
pub const AUTH_MAX_LEN: usize = 1 << 16;
/// The decompressed-size bound for SYNC_CHUNK / REPAIR_ITEMS, as the link's follower uses.
pub const CHUNK_MAX: usize = 256 << 20;

/// A directory of its own under the system temp directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        // tmpfs when there is one: the fsyncs of recovery on a disk slow fuzzing down.
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("hotbackup-fuzz-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("fuzz harness: cannot create {}: {e}", dir.display());
        }
        Scratch(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        if let Err(e) = std::fs::write(&path, bytes) {
            panic!("fuzz harness: cannot write {}: {e}", path.display());
        }
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn me() -> PeerId {
    PeerId {
        node_id: [9; 16],
        name: "fuzz-node".into(),
    }
}

/// Decodes `wire` as bytes arriving `step` at a time: the frames, and the error that ended it.
fn decode_stream(
    dec: &mut Decoder,
    wire: &[u8],
    step: usize,
    mut on_frame: impl FnMut(&mut Decoder, &Frame),
) -> (Vec<Frame>, Option<crate::link::frame::FrameError>) {
    let mut frames = Vec::new();
    let mut start = 0;
    let mut have = 0;
    loop {
        match dec.decode(&wire[start..have]) {
            Ok(Some((frame, used))) => {
                assert!(
                    used >= crate::link::frame::HEADER_LEN && used <= have - start,
                    "decoder consumed {used} of {} bytes",
                    have - start
                );
                assert_eq!(frame.seq, frames.len() as u64, "frame seq out of order");
                start += used;
                on_frame(dec, &frame);
                frames.push(frame);
            }
            Ok(None) => {
                if have == wire.len() {
                    return (frames, None);
                }
                have = (have + step).min(wire.len());
            }
            Err(e) => return (frames, Some(e)),
        }
    }
}

/// Link frames before authentication, and the auth messages they carry: the unauthenticated
/// peer's whole reach. Arriving in one piece or byte by byte gives the same frames and error.
pub fn link_frame_preauth(data: &[u8]) {
    let mut listener: Option<ListenerAuth> = None;
    let mut feed = |_: &mut Decoder, frame: &Frame| match frame.ty {
        auth::T_HELLO => {
            if let Ok((state, challenge, _)) =
                ListenerAuth::on_hello(LINK_KEY, &me(), &frame.payload)
            {
                assert!(challenge.len() <= crate::link::frame::PRE_AUTH_MAX);
                listener = Some(state);
            }
        }
        auth::T_PROOF => {
            if let Some(state) = listener.take() {
                // A random proof verifying would mean the proof check is broken.
                assert!(
                    state.on_proof(&frame.payload).is_err(),
                    "a forged proof passed"
                );
            }
        }
        auth::T_CHALLENGE => {
            if let Ok((state, _hello)) = DialerAuth::start(LINK_KEY, &me()) {
                assert!(
                    state.on_challenge(&frame.payload).is_err(),
                    "a forged challenge passed"
                );
            }
        }
        auth::T_REFUSE => {
            let _ = auth::parse_refuse(&frame.payload);
        }
        _ => {}
    };
    let mut whole = Decoder::new(Side::Dialer, AUTH_MAX_LEN);
    let (frames, err) = decode_stream(&mut whole, data, data.len().max(1), &mut feed);
    for f in &frames {
        assert!(f.payload.len() <= crate::link::frame::PRE_AUTH_MAX);
    }
    let mut bytewise = Decoder::new(Side::Dialer, AUTH_MAX_LEN);
    let (frames1, err1) = decode_stream(&mut bytewise, data, 1, |_, _| {});
    assert_eq!(frames, frames1, "byte-by-byte arrival decodes other frames");
    assert_eq!(err, err1, "byte-by-byte arrival ends differently");
}

/// Link frames after authentication with a fixed session key: every frame that decodes past
/// the switch is exactly one that was sent (a flipped byte never yields an altered frame), and
/// an untouched stream decodes whole. Decoded payloads go on to the message decoders.
pub fn link_frame_auth(data: &[u8]) {
    // Raw: an authenticated decoder on the bytes as they are.
    let mut dec = Decoder::new(Side::Dialer, AUTH_MAX_LEN);
    dec.authenticate(SessionKey::from_bytes(SESSION_KEY));
    let (frames, _) = decode_stream(&mut dec, data, data.len().max(1), |_, _| {});
    for f in &frames {
        link_msg_payload(f.ty, &f.payload);
    }

    // Structured: real frames, one byte flipped.
    let [p0, p1, xor, preauth, step, rest @ ..] = data else {
        return;
    };
    let preauth = u64::from(*preauth % 4);
    let step = usize::from(*step % 31) + 1;
    let mut sent: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut rest = rest;
    while let [ty, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        sent.push((*ty, tail[..n].to_vec()));
        rest = &tail[n..];
    }
    let mut enc = Encoder::new(Side::Dialer);
    let mut wire = Vec::new();
    for (i, (ty, payload)) in sent.iter().enumerate() {
        if i as u64 == preauth {
            enc.authenticate(SessionKey::from_bytes(SESSION_KEY));
        }
        enc.encode(*ty, payload, &mut wire);
    }
    let tampered = *xor != 0 && !wire.is_empty();
    if tampered {
        let pos = usize::from(u16::from_le_bytes([*p0, *p1])) % wire.len();
        wire[pos] ^= *xor;
    }
    let mut dec = Decoder::new(Side::Dialer, AUTH_MAX_LEN);
    if preauth == 0 {
        dec.authenticate(SessionKey::from_bytes(SESSION_KEY));
    }
    let (got, err) = decode_stream(&mut dec, &wire, step, |dec, frame| {
        if frame.seq + 1 == preauth {
            dec.authenticate(SessionKey::from_bytes(SESSION_KEY));
        }
    });
    for f in &got {
        let Some((ty, payload)) = sent.get(f.seq as usize) else {
            panic!("frame seq {} decoded, only {} sent", f.seq, sent.len());
        };
        if f.seq >= preauth || !tampered {
            assert_eq!(
                (f.ty, &f.payload),
                (*ty, payload),
                "frame {} decoded altered",
                f.seq
            );
        }
    }
    if !tampered {
        assert_eq!(err, None, "an untouched stream failed");
        assert_eq!(got.len(), sent.len(), "an untouched stream lost frames");
    } else if preauth == 0 {
        assert!(
            got.len() < sent.len() || err.is_some(),
            "a flipped byte went unnoticed"
        );
    }
}

/// Link message payloads: `ty u8 | payload`.
pub fn link_msg(data: &[u8]) {
    if let [ty, payload @ ..] = data {
        link_msg_payload(*ty, payload);
    }
}

/// Decodes `payload` as message type `ty`; what decodes re-encodes to bytes that decode the
/// same (round trip), where the message has an encoder.
fn link_msg_payload(ty: u8, b: &[u8]) {
    macro_rules! round_trip {
        ($decode:expr, $encode:expr) => {
            if let Ok(m) = $decode(b) {
                let again = $decode(&$encode(&m));
                assert_eq!(again.as_ref(), Ok(&m), "message type {} round trip", ty);
            }
        };
    }
    match ty {
        msg::T_IDENT => round_trip!(msg::Ident::decode, msg::Ident::encode),
        msg::T_STREAM | msg::T_PROMOTE => {
            round_trip!(msg::decode_stream, |l: &u64| msg::encode_stream(*l))
        }
        msg::T_FORK => round_trip!(msg::decode_fork, |l: &u64| msg::encode_fork(*l)),
        msg::T_SYNC_BEGIN => round_trip!(msg::SyncBegin::decode, msg::SyncBegin::encode),
        msg::T_SYNC_CHUNK | msg::T_REPAIR_ITEMS => {
            round_trip!(|b| msg::decode_chunk(b, CHUNK_MAX), |c: &msg::Chunk| {
                msg::encode_chunk(&c.0, &c.1)
            })
        }
        msg::T_SYNC_END => round_trip!(msg::SyncEnd::decode, msg::SyncEnd::encode),
        msg::T_RECORDS => round_trip!(msg::decode_records, |rs: &Vec<msg::WireRecord>| {
            let mut w = msg::Writer::default();
            for r in rs {
                msg::push_record(&mut w, r.lsn, r.generation, &r.payload);
            }
            w.0
        }),
        msg::T_ACK => round_trip!(msg::Ack::decode, msg::Ack::encode),
        msg::T_HEARTBEAT => round_trip!(msg::Heartbeat::decode, msg::Heartbeat::encode),
        msg::T_REPAIR_KEYS => round_trip!(msg::decode_repair_keys, |k: &Vec<msg::RepairKey>| {
            msg::encode_repair_keys(k)
        }),
        msg::T_REPAIR_FILE => round_trip!(msg::RepairFile::decode, msg::RepairFile::encode),
        msg::T_REPAIR_END => round_trip!(msg::RepairEnd::decode, msg::RepairEnd::encode),
        msg::T_PROMOTED => round_trip!(msg::Promoted::decode, msg::Promoted::encode),
        msg::T_VERIFY_SUMS => round_trip!(wire::SumsMsg::decode, wire::SumsMsg::encode),
        msg::T_VERIFY_NARROW => round_trip!(wire::NarrowMsg::decode, wire::NarrowMsg::encode),
        msg::T_VERIFY_ITEMS => round_trip!(wire::ItemsMsg::decode, wire::ItemsMsg::encode),
        msg::T_VERIFY_RESULT => {
            round_trip!(Outcome::decode, Outcome::encode);
            if let Ok(o) = Outcome::decode(b) {
                // What the CLI and the logs show of a relayed outcome.
                let _ = (o.summary(), o.render(), o.to_json(), o.verdict());
            }
        }
        _ => {
            // Unknown types: every decoder must still refuse or accept without panicking.
            let _ = crate::store::rewind::RewindState::decode(b);
            let _ = auth::parse_refuse(b);
        }
    }
}

/// CRC32C as journal records use it: over the length word, then the rest after the CRC field.
fn record_crc(len: &[u8], rest: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len), rest)
}

/// Recomputes a journal segment's (or tape's) header and record checksums in place.
fn fix_journal_checksums(b: &mut [u8]) {
    if b.len() < HEADER_LEN {
        return;
    }
    let crc = crc32c::crc32c(&b[0..40]);
    b[40..44].copy_from_slice(&crc.to_le_bytes());
    let mut pos = HEADER_LEN;
    while b.len() - pos >= RECORD_HEADER_LEN {
        let rec = &mut b[pos..];
        let word = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
        let len = (word & !COMMIT_FLAG) as usize;
        if len > MAX_PAYLOAD {
            return;
        }
        let trailer = if word & COMMIT_FLAG != 0 {
            format::COMMIT_TRAILER_LEN
        } else {
            0
        };
        let total = RECORD_HEADER_LEN + len + trailer;
        if rec.len() < total {
            return;
        }
        let crc = record_crc(&rec[0..4], &rec[8..total]);
        rec[4..8].copy_from_slice(&crc.to_le_bytes());
        pos += total;
    }
}

/// `flags u8 | bytes`, checksums fixed when flag bit 0 is set.
fn file_bytes(data: &[u8], fix: fn(&mut [u8])) -> Option<Vec<u8>> {
    let (flags, rest) = data.split_first()?;
    let mut bytes = rest.to_vec();
    if flags & 1 != 0 {
        fix(&mut bytes);
    }
    Some(bytes)
}

/// The journal's readers and recovery on one segment file: scan, read by LSN, recover. What
/// recovery accepts scans clean afterwards and reads back whole; recovery never grows a file.
pub fn journal_segment(data: &[u8]) {
    let Some(bytes) = file_bytes(data, fix_journal_checksums) else {
        return;
    };
    let scratch = Scratch::new("journal");
    // Name the segment after the first LSN its header claims, when that is a valid name.
    let first = format::SegmentHeader::decode(&bytes).map_or(1, |h| h.first_lsn.max(1));
    let path = scratch.write(&format::segment_name(first), &bytes);
    let scan = recovery::scan(&scratch.0, Some(&DB_ID));
    if let Ok(mut reader) = JournalReader::open(&scratch.0, first, None) {
        let mut last = None;
        for _ in 0..100_000 {
            match reader.next_record() {
                Ok(Some(r)) => {
                    if let Some(prev) = last {
                        let next = u64::checked_add(prev, 1);
                        assert_eq!(Some(r.lsn), next, "reader skipped an LSN");
                    }
                    last = Some(r.lsn);
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    let Ok(rec) = recovery::recover(&scratch.0, &DB_ID, &crate::journal::fs::RealFs) else {
        return;
    };
    assert_eq!(
        scan.as_ref().map(|s| s.records).ok(),
        Some(rec.report.records),
        "recover and scan disagree"
    );
    let after = recovery::scan(&scratch.0, Some(&DB_ID));
    let Ok(after) = after else {
        panic!("a recovered journal does not scan: {after:?}");
    };
    assert!(
        after.tail.is_none(),
        "a recovered journal still has a torn tail"
    );
    assert_eq!(after.records, rec.report.records, "recovery lost records");
    let len = std::fs::metadata(&path).map_or(0, |m| m.len());
    assert!(len <= bytes.len() as u64, "recovery grew the segment");
    if after.records > 0 {
        let reader = JournalReader::open(&scratch.0, first, None);
        let Ok(reader) = reader else {
            panic!("a recovered journal does not open: {:?}", reader.err());
        };
        let read: Result<Vec<_>, _> = reader.collect();
        match read {
            Ok(v) => assert_eq!(v.len() as u64, after.records, "reader and scan disagree"),
            Err(e) => panic!("a recovered journal does not read back: {e}"),
        }
    }
}

/// A tape (an exported journal file) read whole, and read record by record.
pub fn tape(data: &[u8]) {
    let Some(bytes) = file_bytes(data, fix_journal_checksums) else {
        return;
    };
    let scratch = Scratch::new("tape");
    let path = scratch.write("fuzz.hbt", &bytes);
    let whole = jtape::read_tape(&path);
    if let Ok(t) = &whole {
        for w in t.records.windows(2) {
            assert_eq!(
                Some(w[1].lsn),
                w[0].lsn.checked_add(1),
                "a tape read with a gap"
            );
        }
        if let Some(first) = t.records.first() {
            assert_eq!(first.lsn, t.header.first_lsn, "tape starts off its header");
        }
    }
    if let Ok(mut r) = jtape::TapeReader::open(&path) {
        let mut n = 0usize;
        loop {
            match r.next_record() {
                Ok(Some(_)) => n += 1,
                Ok(None) => {
                    if let Ok(t) = &whole {
                        assert_eq!(n, t.records.len(), "record by record reads another count");
                    }
                    break;
                }
                Err(_) => {
                    assert!(
                        whole.is_err(),
                        "record by record fails where read_tape did not"
                    );
                    break;
                }
            }
        }
    }
}

/// Recomputes a save file's header CRC, frame CRCs and the SHA-256 its end frame records.
fn fix_save_checksums(b: &mut [u8]) {
    use sha2::{Digest, Sha256};
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    if b.len() < 16 {
        return;
    }
    let hlen = u32_at(b, 12) as usize;
    let Some(hend) = hlen.checked_add(16).filter(|&e| e + 4 <= b.len()) else {
        return;
    };
    let crc = crc32c::crc32c(&b[16..hend]);
    b[hend..hend + 4].copy_from_slice(&crc.to_le_bytes());
    let mut pos = hend + 4;
    while b.len() - pos >= 9 {
        let kind = b[pos];
        let len = u32_at(b, pos + 1) as usize;
        let start = pos + 9;
        if b.len() - start < len {
            return;
        }
        if kind == b'E' && len >= 48 {
            let digest = Sha256::digest(&b[..pos]);
            b[start + 16..start + 48].copy_from_slice(&digest);
        }
        let crc = crc32c::crc32c(&b[start..start + len]);
        b[pos + 5..pos + 9].copy_from_slice(&crc.to_le_bytes());
        pos = start + len;
    }
}

/// A save file (`hotbackup save`) opened and read to its end, as `restore` does.
pub fn savefile(data: &[u8]) {
    let Some(bytes) = file_bytes(data, fix_save_checksums) else {
        return;
    };
    let scratch = Scratch::new("save");
    let path = scratch.write("fuzz.hbsave", &bytes);
    let Ok(mut r) = crate::savefile::SaveReader::open(&path) else {
        return;
    };
    let _ = r.header();
    let mut items = 0u64;
    // Each chunk is at least one frame header: the loop ends.
    while let Ok(Some((_, chunk))) = r.next_chunk() {
        items += chunk.len() as u64;
        let _ = r.progress();
    }
    assert_eq!(items, r.items(), "items counted differently");
}

/// The config parser on text: a parse error or a config, never a panic. A parsed config
/// parses again from the same text to the same result (no hidden state).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/hotbackup/fuzz.toml");
    if crate::config::Config::parse(text, path).is_ok() {
        assert!(
            crate::config::Config::parse(text, path).is_ok(),
            "a config parsed once and failed the second time"
        );
    }
}
