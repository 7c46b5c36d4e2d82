//! The Prometheus endpoint and the link statistics, on a real master/slave pair: every line of
//! a scrape parses against the text exposition grammar, the values say what the pair is doing,
//! and `hotbackup stats` counts across reconnects.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pair::*;
use common::proxy::Proxy;
use common::{cli, free_port, wait_until};

/// One parsed sample: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed and checked against the exposition format.
#[derive(Debug, Default)]
struct Scrape {
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Scrape {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {:#?}", self.samples))
    }
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    let ok_rest = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(ok_rest)
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s
            .parse::<f64>()
            .map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

/// Parses `name{k="v",...} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value: {line:?}"))?;
    let name = &line[..name_end];
    if !is_name(name, true) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut r = r;
        loop {
            if let Some(after) = r.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = r
                .find('=')
                .ok_or_else(|| format!("no '=' in labels: {line:?}"))?;
            let key = &r[..eq];
            if !is_name(key, false) || key.starts_with("__") {
                return Err(format!("bad label name {key:?} in {line:?}"));
            }
            r = r[eq + 1..]
                .strip_prefix('"')
                .ok_or_else(|| format!("label value not quoted: {line:?}"))?;
            let mut value = String::new();
            let mut chars = r.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err(format!("unterminated label value: {line:?}")),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("bad escape {other:?} in {line:?}")),
                    },
                    Some((_, c)) => value.push(c),
                }
            };
            if labels.insert(key.to_string(), value).is_some() {
                return Err(format!("label {key} twice in {line:?}"));
            }
            r = &r[end + 1..];
            if let Some(after) = r.strip_prefix(',') {
                r = after;
            } else if !r.starts_with('}') {
                return Err(format!("expected ',' or '}}' in {line:?}"));
            }
        }
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("expected a space before the value: {line:?}"))?;
    let mut parts = rest.split(' ');
    let value = parse_value(parts.next().unwrap_or(""))?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|e| format!("bad timestamp in {line:?}: {e}"))?;
    }
    if parts.next().is_some() {
        return Err(format!("trailing text: {line:?}"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The family a sample belongs to (a histogram's `_bucket`, `_sum`, `_count` belong to it).
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).map(String::as_str) == Some("histogram") {
                return base;
            }
        }
    }
    name
}

/// Parses a whole exposition and checks the rules of format 0.0.4 that a Prometheus server
/// enforces: HELP/TYPE before the samples, one TYPE per family, families not interleaved, no
/// series twice, histograms cumulative with +Inf equal to _count.
fn parse_exposition(text: &str) -> Result<Scrape, String> {
    let mut s = Scrape::default();
    let mut helped = HashSet::new();
    let mut seen_families: Vec<String> = Vec::new();
    let mut series = HashSet::new();
    if !text.ends_with('\n') {
        return Err("the exposition must end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let mut w = c.trim_start().splitn(3, ' ');
            match (w.next(), w.next(), w.next()) {
                (Some("HELP"), Some(name), _)
                    if !is_name(name, true) || !helped.insert(name.to_string()) =>
                {
                    return Err(at(format!("bad or repeated HELP for {name}")));
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(at(format!("bad type {kind}")));
                    }
                    if s.types.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(at(format!("TYPE {name} twice")));
                    }
                    if seen_families.iter().any(|f| f == name) {
                        return Err(at(format!("TYPE {name} after its samples")));
                    }
                }
                _ => {} // a comment
            }
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let fam = family_of(&sample.name, &s.types).to_string();
        if !s.types.contains_key(&fam) {
            return Err(at(format!("{} has no TYPE line", sample.name)));
        }
        if !helped.contains(&fam) {
            return Err(at(format!("{fam} has no HELP line")));
        }
        match seen_families.last() {
            Some(last) if *last == fam => {}
            _ if seen_families.contains(&fam) => {
                return Err(at(format!("the samples of {fam} are not together")));
            }
            _ => seen_families.push(fam.clone()),
        }
        if !series.insert(format!("{}{:?}", sample.name, sample.labels)) {
            return Err(at(format!(
                "series {} {:?} twice",
                sample.name, sample.labels
            )));
        }
        if s.types[&fam] == "counter" && !fam.ends_with("_total") {
            return Err(at(format!("counter {fam} should end in _total")));
        }
        s.samples.push(sample);
    }
    // Histograms: cumulative buckets, +Inf = _count.
    for (name, kind) in &s.types {
        if kind != "histogram" {
            continue;
        }
        let mut buckets: Vec<(f64, f64)> = s
            .samples
            .iter()
            .filter(|x| x.name == format!("{name}_bucket"))
            .map(|x| {
                let le = x.labels.get("le").map(String::as_str).unwrap_or("");
                (parse_value(le).unwrap_or(f64::NAN), x.value)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
            return Err(format!("{name} has no +Inf bucket"));
        }
        for w in buckets.windows(2) {
            if w[1].1 < w[0].1 {
                return Err(format!("{name} is not cumulative: {buckets:?}"));
            }
        }
        let count = s.value(&format!("{name}_count"), &[]);
        if buckets.last().map(|b| b.1) != Some(count) {
            return Err(format!("{name}: +Inf bucket {buckets:?} != _count {count}"));
        }
        s.value(&format!("{name}_sum"), &[]);
    }
    Ok(s)
}

/// One HTTP exchange over plain TCP: (status line, headers, body).
fn http(addr: SocketAddr, request: &[u8]) -> (String, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    // The server closes the connection after its answer.
    s.read_to_end(&mut buf).expect("read the answer");
    let text = String::from_utf8(buf).expect("the answer is UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("").to_string();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
    h.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

fn scrape(addr: SocketAddr) -> Scrape {
    let (status, headers, body) = http(addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert_eq!(
        header(&headers, "content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(header(&headers, "content-length"), body.len().to_string());
    parse_exposition(&body).unwrap_or_else(|e| panic!("invalid exposition: {e}\n{body}"))
}

fn metrics_config(port: u16) -> String {
    format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n")
}

#[test]
fn metrics_endpoint_serves_valid_prometheus_text_with_the_pairs_figures() {
    let (mport, sport) = (free_port(), free_port());
    let p = Pair::start(&metrics_config(mport), &metrics_config(sport));
    let maddr: SocketAddr = format!("127.0.0.1:{mport}").parse().unwrap();
    let saddr: SocketAddr = format!("127.0.0.1:{sport}").parse().unwrap();
    let before = durable(&p.master);
    const N: u64 = 50;
    for i in 0..N {
        set(&p.master, &format!("k{i}"), "v");
    }
    wait_caught_up(&p.master, &p.slave, Duration::from_secs(20));
    let slave_peer = format!("127.0.0.1:{}", p.slave_port);

    // The master: its role, LSNs, a streaming link with no lag, counters, the histogram.
    let ok = wait_until(Duration::from_secs(10), || {
        let m = scrape(maddr);
        m.get(
            "hotbackup_link_state",
            &[("peer", &slave_peer), ("state", "streaming")],
        ) == Some(1.0)
            && m.get("hotbackup_link_lag_entries", &[("peer", &slave_peer)]) == Some(0.0)
    });
    assert!(ok, "the master's link never showed streaming with no lag");
    let t = Instant::now();
    let (_, _, body) = http(maddr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    let latency = t.elapsed();
    eprintln!(
        "metrics: one scrape of the master took {latency:?}, {} bytes, {} lines",
        body.len(),
        body.lines().count()
    );
    let m = parse_exposition(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    let after = durable(&p.master);
    assert_eq!(m.value("hotbackup_role", &[("role", "master")]), 1.0);
    assert_eq!(m.value("hotbackup_role", &[("role", "slave")]), 0.0);
    assert_eq!(m.value("hotbackup_generation", &[]), 1.0);
    assert_eq!(m.value("hotbackup_writes_accepted", &[]), 1.0);
    assert_eq!(m.value("hotbackup_canary_late", &[]), 0.0);
    assert_eq!(m.value("hotbackup_canary_late_slaves", &[]), 0.0);
    let d = m.value("hotbackup_durable_lsn", &[]) as u64;
    assert!(
        d >= before + N && d <= after,
        "{before} + {N} <= {d} <= {after}"
    );
    assert_eq!(m.value("hotbackup_next_lsn", &[]) as u64, d + 1);
    assert!(m.value("hotbackup_applied_lsn", &[]) as u64 >= before + N);
    assert!(m.value("hotbackup_journal_size_bytes", &[]) > 0.0);
    // Every state of the link is listed, only one set.
    let states: Vec<f64> = m
        .samples
        .iter()
        .filter(|s| s.name == "hotbackup_link_state" && s.labels["peer"] == slave_peer)
        .map(|s| s.value)
        .collect();
    assert_eq!(states.len(), 7, "{states:?}");
    assert_eq!(states.iter().sum::<f64>(), 1.0);
    assert_eq!(
        m.value("hotbackup_link_state", &[("peer", &slave_peer)])
            + m.value("hotbackup_link_lag_bytes", &[("peer", &slave_peer)]),
        0.0
    );
    assert!(
        m.value("hotbackup_link_acked_applied_lsn", &[("peer", &slave_peer)]) as u64 >= before + N
    );
    for dir in ["in", "out"] {
        assert!(
            m.value(
                "hotbackup_link_frames_total",
                &[("peer", &slave_peer), ("direction", dir)]
            ) > 0.0
        );
    }
    assert!(
        m.value(
            "hotbackup_link_bytes_total",
            &[("peer", &slave_peer), ("direction", "out")]
        ) > 0.0
    );
    assert!(m.value("hotbackup_link_connects_total", &[("peer", &slave_peer)]) >= 1.0);
    assert!(
        m.value(
            "hotbackup_link_syncs_total",
            &[("peer", &slave_peer), ("kind", "full")]
        ) >= 0.0
    );
    // The journal fsynced every group commit: the histogram counted them.
    let fsyncs = m.value("hotbackup_fsync_duration_seconds_count", &[]);
    assert!(fsyncs >= 1.0, "{fsyncs}");
    assert!(m.value("hotbackup_fsync_duration_seconds_sum", &[]) > 0.0);
    assert!(
        m.get("hotbackup_incidents_total", &[("kind", "link_down")])
            .is_some()
    );
    assert!(
        m.get("hotbackup_incidents_kept", &[("kind", "link_up")])
            .is_some()
    );
    // Counters only grow: a second scrape after more writes.
    for i in 0..10 {
        set(&p.master, &format!("more{i}"), "v");
    }
    let m2 = scrape(maddr);
    assert!(m2.value("hotbackup_fsync_duration_seconds_count", &[]) >= fsyncs + 1.0);
    assert!(
        m2.value(
            "hotbackup_link_bytes_total",
            &[("peer", &slave_peer), ("direction", "out")]
        ) > m.value(
            "hotbackup_link_bytes_total",
            &[("peer", &slave_peer), ("direction", "out")]
        )
    );

    // The slave: its role, and the link to its master (the configured peer address).
    let master_peer = {
        let text = std::fs::read_to_string(&p.slave.config).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("peers = [\""))
            .map(|v| v.trim_end_matches("\"]").to_string())
            .expect("the slave's peers")
    };
    wait_caught_up(&p.master, &p.slave, Duration::from_secs(20));
    let ok = wait_until(Duration::from_secs(10), || {
        scrape(saddr).get(
            "hotbackup_link_state",
            &[
                ("peer", &master_peer),
                ("role", "master"),
                ("state", "streaming"),
            ],
        ) == Some(1.0)
    });
    assert!(
        ok,
        "the slave's link to {master_peer} never showed streaming"
    );
    let s = scrape(saddr);
    assert_eq!(s.value("hotbackup_role", &[("role", "slave")]), 1.0);
    assert_eq!(s.value("hotbackup_writes_accepted", &[]), 0.0);
    assert!(s.value("hotbackup_durable_lsn", &[]) as u64 >= before + N);
    assert!(
        s.value(
            "hotbackup_link_frames_total",
            &[("peer", &master_peer), ("direction", "in")]
        ) > 0.0
    );

    // Anything but GET /metrics is refused, and every answer closes the connection.
    let (st, _, _) = http(maddr, b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(st, "HTTP/1.1 404 Not Found");
    let (st, h, _) = http(maddr, b"POST /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(st, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(header(&h, "allow"), "GET, HEAD");
    let (st, _, _) = http(maddr, b"hello\r\n\r\n");
    assert_eq!(st, "HTTP/1.1 400 Bad Request");
    let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 9_000));
    let (st, _, _) = http(maddr, &big);
    assert_eq!(st, "HTTP/1.1 431 Request Header Fields Too Large");
    let (st, h, body) = http(maddr, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(st, "HTTP/1.1 200 OK");
    assert!(body.is_empty() && header(&h, "content-length").parse::<usize>().unwrap() > 0);
    // A scraper that connects and says nothing does not hold up the others.
    let idle = TcpStream::connect(maddr).unwrap();
    scrape(maddr);
    drop(idle);
    // The node still serves its clients.
    set(&p.master, "after", "1");
}

/// The stats of one link from `hotbackup stats --json`: (field, value) of the link `peer`.
fn link_stats(n: &common::Node, peer: &str) -> HashMap<String, String> {
    let (code, out, err) = cli(&["stats", "--json", "--config", n.config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let links = out
        .split_once("\"links\":[")
        .map(|(_, l)| l)
        .unwrap_or_else(|| panic!("no links in {out}"));
    for obj in links.split("},{") {
        let obj = obj.trim_matches(|c| c == '{' || c == '}' || c == ']' || c == '\n');
        let fields: HashMap<String, String> = obj
            .split(',')
            .filter_map(|kv| kv.split_once(':'))
            .map(|(k, v)| {
                (
                    k.trim_matches('"').to_string(),
                    v.trim_matches('"').to_string(),
                )
            })
            .collect();
        if fields.get("peer").map(String::as_str) == Some(peer) {
            return fields;
        }
    }
    panic!("no link {peer} in {out}");
}

fn num(f: &HashMap<String, String>, k: &str) -> u64 {
    f.get(k)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {k} in {f:?}"))
}

#[test]
fn stats_count_reconnects_and_keep_frames_and_bytes_growing_across_cuts() {
    let cell: Arc<Mutex<Option<Proxy>>> = Default::default();
    let c2 = cell.clone();
    let p = Pair::start_with("", "", move |sp| {
        let proxy = Proxy::start(format!("127.0.0.1:{sp}").parse().unwrap());
        let port = proxy.addr().port();
        *c2.lock().unwrap() = Some(proxy);
        port
    });
    let guard = cell.lock().unwrap();
    let proxy = guard.as_ref().unwrap();
    let peer = proxy.addr().to_string();
    load(&p.master, "a", 200);
    wait_caught_up(&p.master, &p.slave, Duration::from_secs(20));
    let streaming = |n: &common::Node, peer: &str| {
        wait_until(Duration::from_secs(20), || {
            link_stats(n, peer).get("state").map(String::as_str) == Some("streaming")
        })
    };
    assert!(streaming(&p.master, &peer));
    let mut last = link_stats(&p.master, &peer);
    assert_eq!(num(&last, "reconnects"), 0, "{last:?}");
    const CUTS: u64 = 3;
    for i in 0..CUTS {
        proxy.cut();
        // Right after the cut the counters hold what the dead connection did.
        let now = link_stats(&p.master, &peer);
        for k in ["frames_out", "bytes_out", "frames_in", "bytes_in"] {
            assert!(
                num(&now, k) >= num(&last, k),
                "{k} went back: {last:?} -> {now:?}"
            );
        }
        load(&p.master, &format!("c{i}-"), 100);
        wait_caught_up(&p.master, &p.slave, Duration::from_secs(20));
        assert!(streaming(&p.master, &peer), "no reconnect after cut {i}");
        let now = link_stats(&p.master, &peer);
        for k in ["frames_out", "bytes_out", "frames_in", "bytes_in"] {
            assert!(
                num(&now, k) > num(&last, k),
                "{k} did not grow: {last:?} -> {now:?}"
            );
        }
        last = now;
    }
    assert!(num(&last, "reconnects") >= CUTS, "{last:?}");
    assert!(num(&last, "disconnects") >= CUTS, "{last:?}");
    assert!(num(&last, "partial_syncs") >= CUTS, "{last:?}");
    assert_eq!(last["role"], "slave");
    assert_eq!(last["direction"], "dial");
    assert!(num(&last, "acked_applied") > 0);
    // The slave counts its side of the same link, under its configured master address.
    let master_peer = {
        let text = std::fs::read_to_string(&p.slave.config).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("peers = [\""))
            .map(|v| v.trim_end_matches("\"]").to_string())
            .unwrap()
    };
    let s = link_stats(&p.slave, &master_peer);
    assert!(num(&s, "reconnects") >= CUTS, "{s:?}");
    assert_eq!(s["role"], "master");
    assert_eq!(s["direction"], "accept");
    // The text report says the figures reset on restart, and INFO has the counters.
    let (code, out, err) = cli(&["stats", "--config", p.master.config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("they reset when it restarts"), "{out}");
    eprintln!("{out}");
    assert!(out.contains(&format!("link {peer}")), "{out}");
    let info = info(&p.master, "replication");
    assert!(
        field(&info, "link_reconnects").and_then(|v| v.parse::<u64>().ok()) >= Some(CUTS),
        "{info}"
    );
    assert!(
        field(&info, "total_net_repl_output_bytes").is_some(),
        "{info}"
    );
    assert!(
        field(&info, "link0").is_some_and(|l| l.contains(&format!("peer={peer}"))),
        "{info}"
    );
    // A stopped node has no statistics to show.
    drop(guard);
    let mut slave = p.slave;
    slave.stop();
    let (code, _, err) = cli(&["stats", "--config", slave.config.to_str().unwrap()]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("running daemon only"), "{err}");
}
