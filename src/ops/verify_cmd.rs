//! `hotbackup verify [--last] [--json] [--timeout S]`: online verify of a running pair.
//!
//! Starts a run on the master (HB.VERIFY) and waits for every slave's outcome (HB.VERIFY
//! RESULT), or shows the last run (`--last`, on any node). Exit codes: 0 every file of every
//! slave matches, 1 a mismatch, 2 bad usage or config, 3 the run could not compare everything
//! (failed or incomplete), 4 timed out waiting.

use std::time::{Duration, Instant};

use super::client::{Client, pairs};
use crate::config::Config;
use crate::resp::Value;

/// How `verify` ended: its exit code and what to print.
pub struct VerifyOutcome {
    pub code: u8,
    pub text: String,
}

fn done(code: u8, text: impl Into<String>) -> VerifyOutcome {
    VerifyOutcome {
        code,
        text: text.into(),
    }
}

fn code_of(state: &str) -> u8 {
    match state {
        "match" | "kept" => 0,
        "mismatch" => 1,
        "running" => 4,
        _ => 3,
    }
}

fn field(f: &[(String, String)], k: &str) -> String {
    f.iter()
        .find(|(x, _)| x == k)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn result(c: &mut Client, id: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let mut args: Vec<&[u8]> = vec![b"HB.VERIFY", b"RESULT"];
    if let Some(id) = id {
        args.push(id.as_bytes());
    }
    match c.call(&args) {
        Ok(Value::Error(e)) => Err(e),
        Ok(v) => Ok(pairs(&v)),
        Err(e) => Err(format!("the daemon did not answer: {e}")),
    }
}

fn show(f: &[(String, String)], json: bool) -> String {
    if json {
        format!("{}\n", field(f, "json"))
    } else {
        field(f, "text")
    }
}

pub fn verify(cfg: &Config, last: bool, json: bool, timeout: Duration) -> VerifyOutcome {
    let mut c = match Client::for_config(cfg, Duration::from_secs(10)) {
        Ok(c) => c,
        Err(e) => {
            return done(
                3,
                format!(
                    "{} is not running ({e}): verify compares a running master with its slaves",
                    cfg.instance
                ),
            );
        }
    };
    if last {
        return match result(&mut c, None) {
            Ok(f) => done(code_of(&field(&f, "state")), show(&f, json)),
            Err(e) => done(3, e),
        };
    }
    let id = match c.call(&[b"HB.VERIFY"]) {
        Ok(Value::Simple(s)) => match s.strip_prefix("OK ") {
            Some(id) => id.trim().to_string(),
            None => return done(3, format!("unexpected answer: {s}")),
        },
        Ok(Value::Error(e)) => return done(3, e.trim_start_matches("ERR ").to_string()),
        Ok(other) => return done(3, format!("unexpected answer: {other:?}")),
        Err(e) => return done(3, format!("the daemon did not answer: {e}")),
    };
    let deadline = Instant::now() + timeout;
    loop {
        match result(&mut c, Some(&id)) {
            Ok(f) => {
                let state = field(&f, "state");
                if state != "running" {
                    return done(code_of(&state), show(&f, json));
                }
                if Instant::now() >= deadline {
                    return done(
                        4,
                        format!(
                            "{}(still running after {timeout:?}; see `hotbackup verify --last`)\n",
                            show(&f, json)
                        ),
                    );
                }
            }
            Err(e) => return done(3, e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
