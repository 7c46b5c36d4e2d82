//! Progress of a long admin command on stderr: a bar on a terminal (indicatif), a line every
//! few seconds otherwise (a log, a pipe, systemd), so either way someone can see it move.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const LINE_EVERY: Duration = Duration::from_secs(2);

pub struct Progress {
    what: &'static str,
    total: Option<u64>,
    bar: Option<ProgressBar>,
    last_line: Instant,
    started: Instant,
}

/// Bytes for people: "12.3 MiB".
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Progress {
    /// `total`: items expected, when known.
    pub fn new(what: &'static str, total: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
            let template = if total.is_some() {
                "{prefix} [{bar:30}] {percent:>3}% {pos}/{len} items {msg} ETA {eta}"
            } else {
                "{prefix} {spinner} {pos} items {msg}"
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(what);
            bar
        });
        Progress {
            what,
            total,
            bar,
            last_line: Instant::now(),
            started: Instant::now(),
        }
    }

    fn line(&self, items: u64, bytes: u64) -> String {
        match self.total {
            Some(t) if t > 0 => format!(
                "{}: {items}/{t} items ({}%), {}",
                self.what,
                items.saturating_mul(100) / t,
                human_bytes(bytes)
            ),
            _ => format!("{}: {items} items, {}", self.what, human_bytes(bytes)),
        }
    }

    /// Items and bytes done so far.
    pub fn set(&mut self, items: u64, bytes: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(items);
                bar.set_message(human_bytes(bytes));
            }
            None => {
                if self.last_line.elapsed() >= LINE_EVERY {
                    eprintln!("{}", self.line(items, bytes));
                    self.last_line = Instant::now();
                }
            }
        }
    }

    /// Clears the bar; the caller prints the summary.
    pub fn finish(self) -> Duration {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        self.started.elapsed()
    }
}
