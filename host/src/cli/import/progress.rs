//! How an import shows its progress: a bar with rate and ETA (indicatif) for a person at a
//! terminal; otherwise a plain line every `--progress-interval-ms`, which a log or a CI job
//! reads without control codes. Progress is counted in input lines, whose total the input's
//! identity pass counted.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::time::{Duration, Instant};

/// Where progress goes.
pub enum Progress {
    Bar(ProgressBar),
    Lines(Lines),
}

/// Plain periodic lines.
pub struct Lines {
    every: Duration,
    last: Option<Instant>,
    started: Instant,
    start_line: u64,
    total: u64,
    /// stdout, or stderr when stdout carries `--json`.
    to_stderr: bool,
}

/// What an import has done, over all its runs.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub line: u64,
    pub accepted: u64,
    pub duplicates: u64,
}

impl Progress {
    /// A bar when `terminal`, else plain lines (on stderr when `json` owns stdout).
    pub fn new(terminal: bool, json: bool, total: u64, start_line: u64, every: Duration) -> Self {
        if terminal && !json {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stdout())
                .with_position(start_line.min(total));
            let style = ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {human_pos}/{human_len} lines {rate} ETA {eta} {msg}",
            );
            if let Ok(style) = style {
                // indicatif's own `{per_sec}` prints four decimals; a whole number reads better.
                let rate = |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}/s", state.per_sec());
                };
                bar.set_style(style.with_key("rate", rate).progress_chars("=> "));
            }
            bar.reset_eta();
            Progress::Bar(bar)
        } else {
            Progress::Lines(Lines {
                every,
                last: None,
                started: Instant::now(),
                start_line,
                total,
                to_stderr: json,
            })
        }
    }

    /// A batch was acknowledged.
    pub fn update(&mut self, counts: Counts) {
        match self {
            Progress::Bar(bar) => {
                // The total counts newlines: a last line without one, or a CSV reader's
                // position past the end, must not run the bar over 100%.
                bar.set_position(counts.line.min(bar.length().unwrap_or(u64::MAX)));
                bar.set_message(format!(
                    "accepted {} duplicates {}",
                    counts.accepted, counts.duplicates
                ));
            }
            Progress::Lines(lines) => {
                let now = Instant::now();
                if lines.last.is_none_or(|last| now - last >= lines.every) {
                    lines.last = Some(now);
                    lines.print(&lines.line(counts, now));
                }
            }
        }
    }

    /// The server asked us to wait (429/503) or could not be reached; we retry after `wait`.
    pub fn waiting(&mut self, why: &str, wait: Duration) {
        let text = format!("waiting {:.1}s: {why}", wait.as_secs_f64());
        match self {
            Progress::Bar(bar) => bar.set_message(text),
            Progress::Lines(lines) => lines.print(&text),
        }
    }

    /// The import ended (finished or failed).
    pub fn finish(&mut self, counts: Counts) {
        match self {
            Progress::Bar(bar) => bar.finish_and_clear(),
            Progress::Lines(lines) => lines.print(&lines.line(counts, Instant::now())),
        }
    }
}

impl Lines {
    fn line(&self, mut c: Counts, now: Instant) -> String {
        // As for the bar: never past the counted total.
        c.line = c.line.min(self.total);
        let secs = (now - self.started).as_secs_f64();
        let done = c.line.saturating_sub(self.start_line);
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let left = self.total.saturating_sub(c.line);
        let eta = if rate > 0.0 {
            format!("{:.0}s", left as f64 / rate)
        } else {
            "-".into()
        };
        let percent = if self.total > 0 {
            c.line as f64 * 100.0 / self.total as f64
        } else {
            100.0
        };
        format!(
            "progress: {}/{} lines ({percent:.1}%), {rate:.0} lines/s, eta {eta}, accepted {}, duplicates {}",
            c.line, self.total, c.accepted, c.duplicates
        )
    }

    fn print(&self, text: &str) {
        // A closed pipe must not kill the import: progress is only a courtesy.
        let _ = if self.to_stderr {
            writeln!(std::io::stderr(), "{text}")
        } else {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}").and_then(|()| out.flush())
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_says_how_far_how_fast_and_what_the_server_answered() {
        let started = Instant::now();
        let lines = Lines {
            every: Duration::ZERO,
            last: None,
            started,
            start_line: 100,
            total: 1_000,
            to_stderr: false,
        };
        let text = lines.line(
            Counts {
                line: 300,
                accepted: 290,
                duplicates: 10,
            },
            started + Duration::from_secs(2),
        );
        assert_eq!(
            text,
            "progress: 300/1000 lines (30.0%), 100 lines/s, eta 7s, accepted 290, duplicates 10"
        );
        let past_the_end = Counts {
            line: 1_001,
            accepted: 1_000,
            duplicates: 0,
        };
        let text = lines.line(past_the_end, started + Duration::from_secs(9));
        assert!(
            text.starts_with("progress: 1000/1000 lines (100.0%)"),
            "{text}"
        );
    }
}
