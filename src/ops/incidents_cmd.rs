//! `hotbackup incidents [--since WHEN] [--json]`: the incidents a node keeps, from the running
//! daemon (HB.INCIDENTS) or, when it is stopped, from its store.

use std::time::Duration;

use super::client::Client;
use crate::config::Config;
use crate::datadir::DataDir;
use crate::incident::Incident;
use crate::resp::Value;

/// When `--since` starts: "10m"-style durations back from now, or a UTC time
/// "YYYY-MM-DD[THH:MM[:SS]]". Returns ms since the epoch.
pub fn parse_since(s: &str, now_ms: u64) -> Result<u64, String> {
    let s = s.trim();
    if let Some(d) = parse_duration(s) {
        return Ok(now_ms.saturating_sub(d.as_millis() as u64));
    }
    parse_utc(s).ok_or_else(|| {
        format!("--since {s:?}: expected a duration like \"10m\", \"2h\", \"3d\", or a UTC time like \"2026-11-29T12:00\"")
    })
}

fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

fn parse_utc(s: &str) -> Option<u64> {
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00:00"));
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let time = time.trim_end_matches('Z');
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let hh = t.next()??;
    let mm = t.next().unwrap_or(Some(0))?;
    let ss = t.next().unwrap_or(Some(0))?;
    if !(0..24).contains(&hh) || !(0..60).contains(&mm) || !(0..61).contains(&ss) {
        return None;
    }
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs).ok().map(|s| s * 1000)
}

/// The incidents since `since_ms`: from the daemon, or from the stopped node's store.
pub fn fetch(cfg: &Config, since_ms: u64) -> Result<Vec<Incident>, String> {
    if let Ok(mut c) = Client::for_config(cfg, Duration::from_secs(10)) {
        let since = since_ms.to_string();
        return match c.call(&[b"HB.INCIDENTS", since.as_bytes(), b"RAW"]) {
            Ok(Value::Array(items)) => Ok(items
                .iter()
                .filter_map(|v| match v {
                    Value::Bulk(b) => Incident::decode(b).ok(),
                    _ => None,
                })
                .collect()),
            Ok(Value::Error(e)) => Err(e),
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(e) => Err(format!("the daemon did not answer: {e}")),
        };
    }
    let data = DataDir::new(&cfg.data_dir);
    let live = data
        .live()
        .map_err(|e| format!("{}: no data directory ({e})", cfg.data_dir.display()))?;
    let path = live.join(crate::datadir::STORE_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let store =
        crate::store::Store::open(&path, &crate::store::StoreOptions::default()).map_err(|e| {
            format!(
                "cannot read {}: {e} (is the daemon running but not answering?)",
                path.display()
            )
        })?;
    let list = store.incidents().map_err(|e| e.to_string())?;
    Ok(list.into_iter().filter(|i| i.time_ms >= since_ms).collect())
}

/// The report: one line per incident, or a JSON array.
pub fn render(list: &[Incident], json: bool) -> String {
    if json {
        let items: Vec<String> = list.iter().map(Incident::to_json).collect();
        return format!("[{}]\n", items.join(",\n"));
    }
    if list.is_empty() {
        return "no incidents\n".into();
    }
    let mut out = String::new();
    for i in list {
        out.push_str(&i.line());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_utc_times() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_since("10m", now), Ok(now - 600_000));
        assert_eq!(parse_since("2h", now), Ok(now - 7_200_000));
        assert_eq!(parse_since("1970-01-02", now), Ok(86_400_000));
        assert_eq!(
            parse_since("2026-11-29T12:00:00Z", now),
            Ok(1_795_953_600_000)
        );
        assert_eq!(parse_since("2026-11-29 12:30", now), Ok(1_795_955_400_000));
        for bad in [
            "",
            "10",
            "5x",
            "2026-13-01",
            "2026-11-29T25:00",
            "yesterday",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }
}
