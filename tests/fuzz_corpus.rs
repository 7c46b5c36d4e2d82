//! The fuzz targets of `fuzz/` replayed on their committed corpus in `cargo test`.
//!
//! Every file in `fuzz/corpus/<target>/` goes through `hotbackup::fuzzing::<target>`, the very
//! function the cargo-fuzz target calls, so a crash found by fuzzing and saved in the corpus
//! stays a regression test (crashes are named `crash_*`). The seeds are made by
//! [`seeds`] from real encoders and writers (a real HELLO frame, a segment written by the
//! journal writer, a tape, a save file, the shipped configs); they are checked here too, and
//! written into the corpus with
//! `cargo test --test fuzz_corpus -- --ignored write_fuzz_seeds`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hotbackup::fuzzing::{self, DB_ID, LINK_KEY, SESSION_KEY};
use hotbackup::journal::fs::RealFs;
use hotbackup::journal::tape::TapeWriter;
use hotbackup::journal::{Journal, JournalOptions};
use hotbackup::link::auth::{self, DialerAuth, ListenerAuth, PeerId};
use hotbackup::link::frame::{Encoder, SessionKey, Side};
use hotbackup::link::msg::{self, GenStart, Role};
use hotbackup::savefile::{self, SaveHeader, SaveWriter};
use hotbackup::verify::report::{FileOutcome, Outcome};
use hotbackup::verify::{sums, wire};

type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 7] = [
    ("link_frame_preauth", fuzzing::link_frame_preauth),
    ("link_frame_auth", fuzzing::link_frame_auth),
    ("link_msg", fuzzing::link_msg),
    ("journal_segment", fuzzing::journal_segment),
    ("tape", fuzzing::tape),
    ("savefile", fuzzing::savefile),
    ("config", fuzzing::config),
];

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn replay(target: &str, run: fn(&[u8])) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "{} holds only {} seeds",
        dir.display(),
        files.len()
    );
    for path in files {
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // A panic names the file: the harness's own message follows.
        eprintln!("replaying {}", path.display());
        run(&bytes);
    }
}

#[test]
fn link_frame_preauth_corpus_replays() {
    replay(TARGETS[0].0, TARGETS[0].1);
}

#[test]
fn link_frame_auth_corpus_replays() {
    replay(TARGETS[1].0, TARGETS[1].1);
}

#[test]
fn link_msg_corpus_replays() {
    replay(TARGETS[2].0, TARGETS[2].1);
}

#[test]
fn journal_segment_corpus_replays() {
    replay(TARGETS[3].0, TARGETS[3].1);
}

#[test]
fn tape_corpus_replays() {
    replay(TARGETS[4].0, TARGETS[4].1);
}

#[test]
fn savefile_corpus_replays() {
    replay(TARGETS[5].0, TARGETS[5].1);
}

#[test]
fn config_corpus_replays() {
    replay(TARGETS[6].0, TARGETS[6].1);
}

/// Freshly made seeds pass their harness too (the encoders and writers still agree with the
/// readers), and every target has some.
#[test]
fn fresh_seeds_pass_their_harness() {
    let all = seeds();
    for (target, run) in TARGETS {
        let mine: Vec<_> = all.iter().filter(|s| s.0 == target).collect();
        assert!(mine.len() >= 5, "{target}: only {} seeds", mine.len());
        for (_, name, bytes) in mine {
            eprintln!("seed {target}/{name}");
            run(bytes);
        }
    }
}

/// Writes the seeds into `fuzz/corpus/<target>/` (run by hand after a format change).
#[test]
#[ignore]
fn write_fuzz_seeds() {
    for (target, name, bytes) in seeds() {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Seed makers.

type Seed = (&'static str, String, Vec<u8>);

fn node(name: &str, id: u8) -> PeerId {
    PeerId {
        node_id: [id; 16],
        name: name.into(),
    }
}

fn seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    preauth_seeds(&mut out);
    auth_seeds(&mut out);
    msg_seeds(&mut out);
    journal_seeds(&mut out);
    tape_seeds(&mut out);
    save_seeds(&mut out);
    config_seeds(&mut out);
    out
}

fn push(out: &mut Vec<Seed>, target: &'static str, name: &str, bytes: Vec<u8>) {
    out.push((target, name.to_string(), bytes));
}

fn preauth_seeds(out: &mut Vec<Seed>) {
    const T: &str = "link_frame_preauth";
    let (dialer, hello) = DialerAuth::start(LINK_KEY, &node("db1-master", 1)).unwrap();
    let (_, challenge, _) =
        ListenerAuth::on_hello(LINK_KEY, &node("db1-slave", 2), &hello).unwrap();
    // The dialer's side of a conversation: HELLO, then (after the challenge) PROOF.
    let mut d = Encoder::new(Side::Dialer);
    let mut wire = Vec::new();
    d.encode(auth::T_HELLO, &hello, &mut wire);
    push(out, T, "hello", wire.clone());
    let listener_proofed = {
        let (_, challenge2, _) =
            ListenerAuth::on_hello(LINK_KEY, &node("db1-slave", 2), &hello).unwrap();
        challenge2
    };
    let (proof, _, _) = dialer.on_challenge(&listener_proofed).unwrap();
    d.encode(auth::T_PROOF, &proof, &mut wire);
    push(out, T, "hello_proof", wire);
    // The listener's side: CHALLENGE, REFUSE.
    let mut l = Encoder::new(Side::Listener);
    let mut wire = Vec::new();
    l.encode(auth::T_CHALLENGE, &challenge, &mut wire);
    push(out, T, "challenge", wire.clone());
    l.encode(
        auth::T_REFUSE,
        &auth::refuse_payload("wrong key"),
        &mut wire,
    );
    push(out, T, "challenge_refuse", wire);
    let mut wire = Vec::new();
    Encoder::new(Side::Listener).encode(
        auth::T_REFUSE,
        &auth::refuse_payload("not a slave"),
        &mut wire,
    );
    push(out, T, "refuse", wire);
    let mut wire = Vec::new();
    Encoder::new(Side::Dialer).encode(auth::T_HELLO, &[0u8; 3], &mut wire);
    push(out, T, "hello_short", wire);
    push(out, T, "bad_magic", b"*1\r\n$4\r\nPING\r\n".to_vec());
    push(
        out,
        T,
        "bad_version",
        b"HB\x09\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec(),
    );
    push(out, T, "too_long", b"HB\x02\x01\x01\x10\0\0".to_vec());
    push(out, T, "header_cut", b"HB\x02\x01\x02\0".to_vec());
}

/// `tamper_pos u16 | xor u8 | preauth u8 | step u8` then `ty | len u8 | payload` frames.
fn structured(tamper: (u16, u8), preauth: u8, step: u8, frames: &[(u8, &[u8])]) -> Vec<u8> {
    let mut b = tamper.0.to_le_bytes().to_vec();
    b.extend_from_slice(&[tamper.1, preauth, step]);
    for (ty, p) in frames {
        let p = &p[..p.len().min(255)];
        b.push(*ty);
        b.push(p.len() as u8);
        b.extend_from_slice(p);
    }
    b
}

fn auth_seeds(out: &mut Vec<Seed>) {
    const T: &str = "link_frame_auth";
    let ack = msg::Ack {
        received: 10,
        durable: 9,
        applied: 8,
    }
    .encode();
    let hb = msg::Heartbeat {
        time_ms: 1_700_000_000_000,
        durable: 9,
    }
    .encode();
    let mut recs = msg::Writer::default();
    msg::push_record(&mut recs, 10, 1, b"payload");
    let ident = sample_ident().encode();
    let frames: [(u8, &[u8]); 4] = [
        (msg::T_IDENT, &ident),
        (msg::T_RECORDS, &recs.0),
        (msg::T_ACK, &ack),
        (msg::T_HEARTBEAT, &hb),
    ];
    push(out, T, "authenticated", structured((0, 0), 0, 30, &frames));
    push(out, T, "bytewise", structured((0, 0), 0, 0, &frames));
    push(
        out,
        T,
        "switch_after_two",
        structured(
            (0, 0),
            2,
            7,
            &[
                (auth::T_HELLO, b"hello"),
                (auth::T_PROOF, b"proof"),
                (msg::T_ACK, &ack),
            ],
        ),
    );
    push(out, T, "flip_mac", structured((40, 1), 0, 5, &frames[2..]));
    push(
        out,
        T,
        "flip_seq",
        structured((9, 0x80), 0, 5, &frames[2..]),
    );
    push(
        out,
        T,
        "flip_len_preauth",
        structured((4, 3), 1, 5, &frames[1..]),
    );
    // Raw: real authenticated frames as they cross the wire.
    let mut enc = Encoder::new(Side::Dialer);
    enc.authenticate(SessionKey::from_bytes(SESSION_KEY));
    let mut w = Vec::new();
    enc.encode(msg::T_ACK, &ack, &mut w);
    enc.encode(msg::T_HEARTBEAT, &hb, &mut w);
    push(out, T, "raw_wire", w);
}

fn sample_ident() -> msg::Ident {
    let mut rewind = hotbackup::store::rewind::RewindState {
        fork: 40,
        ..Default::default()
    };
    rewind.keys.insert(("main".into(), b"k".to_vec()));
    msg::Ident {
        role: Role::Slave,
        db_id: DB_ID,
        history: vec![
            GenStart {
                generation: 1,
                first_lsn: 1,
            },
            GenStart {
                generation: 2,
                first_lsn: 41,
            },
        ],
        lsn: 43,
        catalog: vec![("main".into(), true), ("tmp/x".into(), false)],
        client_addr: "10.0.0.2:7379".into(),
        rewind: Some(rewind),
        sentinel_addr: String::new(),
        tail: (
            40,
            vec![
                1_700_000_000_000,
                1_700_000_000_001,
                1_700_000_000_001,
                1_700_000_000_005,
            ],
        ),
    }
}

fn msg_seeds(out: &mut Vec<Seed>) {
    const T: &str = "link_msg";
    let mut add = |name: &str, ty: u8, payload: Vec<u8>| {
        let mut b = vec![ty];
        b.extend_from_slice(&payload);
        push(out, T, name, b);
    };
    let ident = sample_ident();
    add("ident", msg::T_IDENT, ident.encode());
    add(
        "ident_new_slave",
        msg::T_IDENT,
        msg::Ident {
            role: Role::Master,
            db_id: [0; 16],
            history: vec![],
            lsn: 0,
            catalog: vec![],
            client_addr: String::new(),
            rewind: None,
            sentinel_addr: "0.0.0.0:27379".into(),
            tail: (0, Vec::new()),
        }
        .encode(),
    );
    add("stream", msg::T_STREAM, msg::encode_stream(41));
    add("fork", msg::T_FORK, msg::encode_fork(41));
    add("promote", msg::T_PROMOTE, msg::encode_stream(99));
    add(
        "sync_begin",
        msg::T_SYNC_BEGIN,
        msg::SyncBegin {
            lsn: 43,
            db_id: DB_ID,
            history: ident.history.clone(),
            catalog: ident.catalog.clone(),
            items_total: 2,
        }
        .encode(),
    );
    let items = vec![
        (b"k".to_vec(), b"sv".to_vec()),
        (b"h".to_vec(), b"h\x01\0\0\0f\x01\0\0\0v".to_vec()),
    ];
    add(
        "sync_chunk",
        msg::T_SYNC_CHUNK,
        msg::encode_chunk("main", &items),
    );
    add(
        "repair_items",
        msg::T_REPAIR_ITEMS,
        msg::encode_chunk("tmp/x", &items),
    );
    add(
        "sync_end",
        msg::T_SYNC_END,
        msg::SyncEnd {
            items: 2,
            chunks: 1,
        }
        .encode(),
    );
    let mut recs = msg::Writer::default();
    msg::push_record(&mut recs, 44, 2, b"txn-1");
    msg::push_record(&mut recs, 45, 2, b"");
    add("records", msg::T_RECORDS, recs.0);
    add(
        "ack",
        msg::T_ACK,
        msg::Ack {
            received: 45,
            durable: 44,
            applied: 43,
        }
        .encode(),
    );
    add(
        "heartbeat",
        msg::T_HEARTBEAT,
        msg::Heartbeat {
            time_ms: 1_700_000_000_000,
            durable: 45,
        }
        .encode(),
    );
    add(
        "repair_keys",
        msg::T_REPAIR_KEYS,
        msg::encode_repair_keys(&[
            msg::RepairKey {
                file: "main".into(),
                id: b"a".to_vec(),
                raw: Some(b"sv".to_vec()),
            },
            msg::RepairKey {
                file: "main".into(),
                id: b"b".to_vec(),
                raw: None,
            },
        ]),
    );
    add(
        "repair_file",
        msg::T_REPAIR_FILE,
        msg::RepairFile {
            file: "tmp".into(),
            logged: Some(false),
        }
        .encode(),
    );
    add(
        "repair_end",
        msg::T_REPAIR_END,
        msg::RepairEnd {
            upto: 99,
            files: vec!["tmp".into()],
            keys: 2,
            items: 5,
        }
        .encode(),
    );
    add(
        "promoted",
        msg::T_PROMOTED,
        msg::Promoted {
            ok: false,
            generation: 3,
            message: "not caught up".into(),
        }
        .encode(),
    );
    let mut s = sums::Sums::new();
    let mut f = sums::FileSum::default();
    f.add(b"k", b"v");
    s.insert("main".into(), f);
    add(
        "verify_sums",
        msg::T_VERIFY_SUMS,
        wire::SumsMsg {
            id: 3,
            lsn: 99,
            from: "db1-master".into(),
            sums: s,
        }
        .encode(),
    );
    add(
        "verify_narrow",
        msg::T_VERIFY_NARROW,
        wire::NarrowMsg {
            id: 3,
            file: "main".into(),
            buckets: vec![0, 17, 255],
        }
        .encode(),
    );
    add(
        "verify_items",
        msg::T_VERIFY_ITEMS,
        wire::ItemsMsg {
            id: 3,
            file: "main".into(),
            buckets: vec![17],
            items: Ok(vec![(b"k".to_vec(), 5)]),
        }
        .encode(),
    );
    add(
        "verify_items_err",
        msg::T_VERIFY_ITEMS,
        wire::ItemsMsg {
            id: 3,
            file: "main".into(),
            buckets: vec![],
            items: Err("no snapshot".into()),
        }
        .encode(),
    );
    add(
        "verify_result",
        msg::T_VERIFY_RESULT,
        Outcome {
            id: 3,
            lsn: 99,
            node: "db1-slave".into(),
            upstream: "db1-master".into(),
            time_ms: 1_700_000_000_000,
            downstream: 1,
            files: vec![
                FileOutcome {
                    file: "main".into(),
                    status: "mismatch".into(),
                    upstream_items: 2,
                    local_items: 1,
                    items: vec![(b"k\xff".to_vec(), "missing".into())],
                    note: String::new(),
                },
                FileOutcome {
                    file: "tmp".into(),
                    status: "match".into(),
                    upstream_items: 0,
                    local_items: 0,
                    items: vec![],
                    note: "none".into(),
                },
            ],
            error: None,
        }
        .encode(),
    );
    add(
        "verify_result_error",
        msg::T_VERIFY_RESULT,
        Outcome {
            error: Some("snapshot gone".into()),
            ..Default::default()
        }
        .encode(),
    );
    add("rewind_state_unknown_type", 200, {
        let mut st = hotbackup::store::rewind::RewindState {
            fork: 7,
            ..Default::default()
        };
        st.keys.insert(("main".into(), b"x".to_vec()));
        st.encode()
    });
}

/// A journal directory written by the real writer: `commits` groups of `per` records.
fn write_journal(dir: &Path, commits: u64, per: u64) {
    let opts = JournalOptions {
        segment_size: 1 << 20,
        ..Default::default()
    };
    let (mut j, _) = Journal::open(dir, DB_ID, 1, opts, Arc::new(RealFs)).unwrap();
    for c in 0..commits {
        for i in 0..per {
            j.append(1 + c / 2, format!("txn {c}.{i}").as_bytes());
        }
        j.commit().unwrap();
    }
}

/// The one segment of `dir`, cut to its valid part (the writer may preallocate zeros).
fn only_segment(dir: &Path) -> Vec<u8> {
    let scan = hotbackup::journal::recovery::scan(dir, Some(&DB_ID)).unwrap();
    assert_eq!(scan.segments.len(), 1, "one segment");
    assert!(scan.tail.is_none(), "a clean journal");
    let seg = &scan.segments[0];
    let mut bytes = fs::read(&seg.info.path).unwrap();
    bytes.truncate(seg.valid_len as usize);
    bytes
}

fn flagged(flags: u8, bytes: &[u8]) -> Vec<u8> {
    let mut b = vec![flags];
    b.extend_from_slice(bytes);
    b
}

fn journal_seeds(out: &mut Vec<Seed>) {
    const T: &str = "journal_segment";
    let tmp = tempfile::tempdir().unwrap();
    write_journal(tmp.path(), 4, 3);
    let seg = &only_segment(tmp.path())[..];
    push(out, T, "segment", flagged(0, seg));
    push(out, T, "segment_fixed", flagged(1, seg));
    let mut zeros = seg.to_vec();
    zeros.extend_from_slice(&[0u8; 64]);
    push(out, T, "segment_zero_tail", flagged(0, &zeros));
    push(out, T, "torn_tail", flagged(0, &seg[..seg.len() - 5]));
    push(out, T, "torn_header", flagged(0, &seg[..20]));
    let mut mid = seg.to_vec();
    mid[60] ^= 0xff;
    push(out, T, "corrupt_first_record", flagged(0, &mid));
    push(out, T, "corrupt_first_record_fixed", flagged(1, &mid));
    let tmp2 = tempfile::tempdir().unwrap();
    write_journal(tmp2.path(), 1, 1);
    push(out, T, "one_record", flagged(0, &only_segment(tmp2.path())));
}

fn tape_seeds(out: &mut Vec<Seed>) {
    const T: &str = "tape";
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t.hbt");
    let mut w = TapeWriter::create(&path, DB_ID, 10).unwrap();
    for (lsn, g, p) in [
        (10, 1, &b"a"[..]),
        (11, 1, b""),
        (12, 2, b"ccc"),
        (13, 2, b"dd"),
    ] {
        w.append(lsn, g, p).unwrap();
    }
    w.finish().unwrap();
    let tape = fs::read(&path).unwrap();
    push(out, T, "tape", flagged(0, &tape));
    push(out, T, "tape_fixed", flagged(1, &tape));
    push(out, T, "tape_cut", flagged(0, &tape[..tape.len() - 3]));
    push(out, T, "tape_header_only", flagged(0, &tape[..48]));
    let mut bad = tape.clone();
    bad[60] ^= 1;
    push(out, T, "tape_lsn_changed_fixed", flagged(1, &bad));
    let empty = tmp.path().join("e.hbt");
    TapeWriter::create(&empty, DB_ID, 1)
        .unwrap()
        .finish()
        .unwrap();
    push(out, T, "tape_empty", flagged(0, &fs::read(&empty).unwrap()));
}

fn save_seeds(out: &mut Vec<Seed>) {
    const T: &str = "savefile";
    let tmp = tempfile::tempdir().unwrap();
    let header = SaveHeader {
        db_id: DB_ID,
        lsn: 43,
        saved_ms: 1_700_000_000_000,
        items: 3,
        history: vec![(1, 1), (2, 41)],
        catalog: vec![("main".into(), true), ("tmp".into(), false)],
        source: "db1-master".into(),
    };
    let path = tmp.path().join("s.hbsave");
    let mut w = SaveWriter::create(&path, &header).unwrap();
    let items = vec![
        (b"k".to_vec(), b"sv".to_vec()),
        (b"l".to_vec(), b"sw".to_vec()),
    ];
    w.add_chunk(&savefile::encode_chunk("main", &items), 2)
        .unwrap();
    w.add_chunk(&savefile::encode_chunk("tmp", &items[..1]), 1)
        .unwrap();
    w.finish().unwrap();
    let save = fs::read(&path).unwrap();
    push(out, T, "save", flagged(0, &save));
    push(out, T, "save_fixed", flagged(1, &save));
    push(out, T, "save_cut", flagged(0, &save[..save.len() - 10]));
    let mut bad = save.clone();
    let n = bad.len();
    bad[n - 60] ^= 4;
    push(out, T, "save_flipped_fixed", flagged(1, &bad));
    let empty = tmp.path().join("e.hbsave");
    SaveWriter::create(&empty, &header)
        .unwrap()
        .finish()
        .unwrap();
    push(out, T, "save_empty", flagged(0, &fs::read(&empty).unwrap()));
}

fn config_seeds(out: &mut Vec<Seed>) {
    const T: &str = "config";
    let etc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("etc/hotbackup");
    for name in [
        "example",
        "local",
        "local-master",
        "local-slave",
        "setup-template",
    ] {
        let text = fs::read(etc.join(format!("{name}.toml"))).unwrap();
        push(out, T, name, text.clone());
        if name == "example" {
            // Without its key file (absent here), so the parse runs to the end.
            let text = String::from_utf8(text).unwrap();
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("key_file"))
                .collect();
            push(out, T, "example_no_key", kept.join("\n").into_bytes());
        }
    }
    push(
        out,
        T,
        "minimal",
        b"data_dir = \"/var/lib/hotbackup/db1\"\n".to_vec(),
    );
    push(
        out,
        T,
        "unknown_key",
        b"data_dir = \"/d\"\n[link]\nlisten = \"127.0.0.1:7380\"\npeer = \"x\"\n".to_vec(),
    );
    push(
        out,
        T,
        "sizes_and_intervals",
        b"data_dir = \"d\"\n[durability]\nsegment_size = \"64MiB\"\n[link]\nheartbeat_interval = \"1s\"\npeer_timeout = \"1500ms\"\nmax_frame = \"16 MiB\"\n".to_vec(),
    );
    push(out, T, "not_toml", b"data_dir = [\n".to_vec());
}
