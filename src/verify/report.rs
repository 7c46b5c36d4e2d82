//! The outcome of one online verify on one slave: per file, match or mismatch with the
//! differing items. Its wire form (a VERIFY_RESULT frame, relayed up a cascading chain), its
//! text and its JSON.

use crate::codec::{MsgError, Reader, Writer};

/// How one file compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOutcome {
    pub file: String,
    /// "match", "mismatch", "missing" (upstream only) or "extra" (slave only).
    pub status: String,
    pub upstream_items: u64,
    pub local_items: u64,
    /// Differing items found: (id, what).
    pub items: Vec<(Vec<u8>, String)>,
    /// A note: why items are not (all) listed.
    pub note: String,
}

impl FileOutcome {
    pub fn matches(&self) -> bool {
        self.status == "match"
    }
}

/// One slave's comparison with its upstream at one marker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    pub id: u64,
    pub lsn: u64,
    /// The slave that compared.
    pub node: String,
    /// The node it compared with (its master in the chain).
    pub upstream: String,
    pub time_ms: u64,
    /// Slaves the reporting node feeds itself, whose outcomes will follow (cascading).
    pub downstream: u32,
    pub files: Vec<FileOutcome>,
    /// Set when the comparison could not be made.
    pub error: Option<String>,
}

impl Outcome {
    pub fn matches(&self) -> bool {
        self.error.is_none() && self.files.iter().all(FileOutcome::matches)
    }

    pub fn verdict(&self) -> &'static str {
        if self.error.is_some() {
            "incomplete"
        } else if self.matches() {
            "match"
        } else {
            "mismatch"
        }
    }

    /// A one-line summary for incidents and logs.
    pub fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return format!(
                "verify {} at LSN {}: {} vs {}: not compared: {e}",
                self.id, self.lsn, self.node, self.upstream
            );
        }
        let bad: Vec<String> = self
            .files
            .iter()
            .filter(|f| !f.matches())
            .map(|f| {
                let mut s = format!("{} {}", f.file, f.status);
                if !f.items.is_empty() {
                    let names: Vec<String> = f
                        .items
                        .iter()
                        .take(5)
                        .map(|(id, what)| format!("{} ({what})", String::from_utf8_lossy(id)))
                        .collect();
                    s.push_str(&format!(": {}", names.join(", ")));
                    if f.items.len() > 5 {
                        s.push_str(&format!(" and {} more", f.items.len() - 5));
                    }
                }
                s
            })
            .collect();
        if bad.is_empty() {
            format!(
                "verify {} at LSN {}: {} matches {} ({} file(s))",
                self.id,
                self.lsn,
                self.node,
                self.upstream,
                self.files.len()
            )
        } else {
            format!(
                "verify {} at LSN {}: {} differs from {}: {}",
                self.id,
                self.lsn,
                self.node,
                self.upstream,
                bad.join("; ")
            )
        }
    }

    /// The full text: one line per file, the differing items below.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{} vs {} at LSN {}: {}\n",
            self.node,
            self.upstream,
            self.lsn,
            self.verdict()
        );
        if let Some(e) = &self.error {
            s.push_str(&format!("  {e}\n"));
        }
        for f in &self.files {
            s.push_str(&format!(
                "  {:<24} {:<9} {} item(s) upstream, {} here\n",
                f.file, f.status, f.upstream_items, f.local_items
            ));
            for (id, what) in &f.items {
                s.push_str(&format!("      {}: {what}\n", String::from_utf8_lossy(id)));
            }
            if !f.note.is_empty() {
                s.push_str(&format!("      ({})\n", f.note));
            }
        }
        s
    }

    pub fn to_json(&self) -> String {
        let files: Vec<String> = self
            .files
            .iter()
            .map(|f| {
                let items: Vec<String> = f
                    .items
                    .iter()
                    .map(|(id, what)| {
                        let mut k = String::new();
                        crate::json::bytes(&mut k, id);
                        crate::json::Object::new()
                            .raw("id", &k)
                            .str("what", what)
                            .finish()
                    })
                    .collect();
                crate::json::Object::new()
                    .str("file", &f.file)
                    .str("status", &f.status)
                    .num("upstream_items", f.upstream_items)
                    .num("local_items", f.local_items)
                    .raw("items", &format!("[{}]", items.join(",")))
                    .str("note", &f.note)
                    .finish()
            })
            .collect();
        let mut o = crate::json::Object::new()
            .num("id", self.id)
            .num("lsn", self.lsn)
            .str("node", &self.node)
            .str("upstream", &self.upstream)
            .num("time_ms", self.time_ms)
            .str("verdict", self.verdict())
            .raw("files", &format!("[{}]", files.join(",")));
        if let Some(e) = &self.error {
            o = o.str("error", e);
        }
        o.finish()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.id).u64(self.lsn).u64(self.time_ms);
        w.bytes(self.node.as_bytes())
            .bytes(self.upstream.as_bytes())
            .u32(self.downstream);
        match &self.error {
            Some(e) => w.u8(1).bytes(e.as_bytes()),
            None => w.u8(0),
        };
        w.u32(self.files.len() as u32);
        for f in &self.files {
            w.bytes(f.file.as_bytes())
                .bytes(f.status.as_bytes())
                .u64(f.upstream_items)
                .u64(f.local_items)
                .bytes(f.note.as_bytes());
            w.u32(f.items.len() as u32);
            for (id, what) in &f.items {
                w.bytes(id).bytes(what.as_bytes());
            }
        }
        w.0
    }

    pub fn decode(b: &[u8]) -> Result<Outcome, MsgError> {
        let mut r = Reader::new(b, "VERIFY_RESULT");
        let id = r.u64()?;
        let lsn = r.u64()?;
        let time_ms = r.u64()?;
        let node = r.string()?;
        let upstream = r.string()?;
        let downstream = r.u32()?;
        let error = match r.u8()? {
            0 => None,
            1 => Some(r.string()?),
            _ => return Err(r.err("bad error flag")),
        };
        let n = r.count(4 * 3 + 16 + 4)?;
        let mut files = Vec::with_capacity(n);
        for _ in 0..n {
            let file = r.string()?;
            let status = r.string()?;
            let upstream_items = r.u64()?;
            let local_items = r.u64()?;
            let note = r.string()?;
            let m = r.count(8)?;
            let mut items = Vec::with_capacity(m);
            for _ in 0..m {
                let id = r.bytes()?.to_vec();
                items.push((id, r.string()?));
            }
            files.push(FileOutcome {
                file,
                status,
                upstream_items,
                local_items,
                items,
                note,
            });
        }
        r.end()?;
        Ok(Outcome {
            id,
            lsn,
            node,
            upstream,
            time_ms,
            downstream,
            files,
            error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Outcome {
        Outcome {
            id: 7,
            lsn: 1041,
            node: "db1@b".into(),
            upstream: "db1@a".into(),
            time_ms: 1_700_000_000_000,
            downstream: 1,
            files: vec![
                FileOutcome {
                    file: "main".into(),
                    status: "mismatch".into(),
                    upstream_items: 10,
                    local_items: 10,
                    items: vec![(b"k42".to_vec(), "value differs".into())],
                    note: String::new(),
                },
                FileOutcome {
                    file: "sys/canary".into(),
                    status: "match".into(),
                    upstream_items: 1,
                    local_items: 1,
                    items: vec![],
                    note: String::new(),
                },
            ],
            error: None,
        }
    }

    #[test]
    fn an_outcome_round_trips_and_names_the_differing_item() {
        let o = sample();
        assert_eq!(Outcome::decode(&o.encode()).unwrap(), o);
        assert!(!o.matches());
        assert_eq!(o.verdict(), "mismatch");
        assert!(
            o.summary().contains("main mismatch: k42 (value differs)"),
            "{}",
            o.summary()
        );
        assert!(o.render().contains("k42: value differs"));
        assert!(o.to_json().contains("\"verdict\":\"mismatch\""));
        let bytes = o.encode();
        for cut in [0, 5, bytes.len() / 2, bytes.len() - 1] {
            assert!(Outcome::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
