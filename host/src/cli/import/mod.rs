//! `waymark events import FILE`: an input's events posted in batches, in order, one batch in
//! flight (a customer's events must arrive in the order the file has them), resuming after an
//! interruption without anything processed twice:
//!
//! 1. The input is read once first: its size, lines and SHA-256 ([`checkpoint::Identity`]).
//! 2. A checkpoint, if present, says where the last acknowledged batch ended and what the
//!    input held before it; reading starts there. If those bytes changed, it is refused
//!    (a fixed bad line or appended events after it are fine).
//! 3. Each batch is retried until the server answers it: after `Retry-After` for 429 and 503,
//!    with backoff when the server is unreachable. A resent batch is harmless: every event has
//!    an id (its own, or one derived from the input's identity and its line,
//!    [`source`]), and the server answers an id it has seen `duplicate` and does not process it.
//! 4. After each acknowledged batch the checkpoint moves past it.
//!
//! Any other error (a bad line, a batch the server refuses) stops the import there: what
//! was acknowledged stays acknowledged, and a rerun after the fix continues from it.

mod checkpoint;
mod progress;
mod source;

use super::output;
use super::CliError;
use checkpoint::{Checkpoint, Identity, Position};
use progress::{Counts, Progress};
use serde::Serialize;
use sha2::{Digest, Sha256};
use source::{Format, Source};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;
use waymark_client::{Client, ClientError, StatusCode};

/// The largest batch the server takes (`POST /v1/events`: 1 to 10,000 events).
const MAX_BATCH: usize = 10_000;
/// A batch's body stays under this, well within the server's default 16 MiB.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Unreachable-server retries of one batch before giving up (backoff 1, 2, 4, 8, 16 s).
const TRANSPORT_RETRIES: u32 = 5;

/// `waymark events import`.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// An NDJSON (`.ndjson`, `.jsonl`) or CSV (`.csv`) file of events.
    file: PathBuf,
    /// The input's format, when its extension does not say.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Events per request (1 to 10,000).
    #[arg(long, default_value_t = 1_000)]
    batch_size: usize,
    /// Keep the checkpoint here instead of beside the input (`FILE.waymark-import.json`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Ignore an existing checkpoint and start from the first line. Within the server's dedup
    /// window, events with ids of their own, and every event of an unchanged file, are
    /// answered `duplicate`; derived ids change with the file's content.
    #[arg(long)]
    restart: bool,
    /// Without a terminal: print a progress line at most this often (0: after every batch).
    #[arg(long, default_value_t = 2_000)]
    progress_interval_ms: u64,
}

/// What an import prints at the end (`--json`), over all its runs.
#[derive(Debug, Serialize)]
struct Summary {
    file: PathBuf,
    checkpoint: PathBuf,
    lines: u64,
    accepted: u64,
    duplicates: u64,
    /// Of which in this run.
    accepted_now: u64,
    duplicates_now: u64,
    resumed_at_line: u64,
}

/// Runs the import.
pub async fn run(client: &Client, json: bool, args: ImportArgs) -> Result<(), CliError> {
    if !(1..=MAX_BATCH).contains(&args.batch_size) {
        return Err(CliError::Input(format!(
            "--batch-size must be 1 to {MAX_BATCH}"
        )));
    }
    let format = args
        .format
        .or_else(|| Format::guess(&args.file))
        .ok_or_else(|| {
            CliError::Input(format!(
                "{}: cannot tell the format from the extension; pass --format ndjson|csv",
                args.file.display()
            ))
        })?;
    if let Some(dir) = &args.state_dir {
        std::fs::create_dir_all(dir).map_err(|e| CliError::io("cannot create", dir, e))?;
    }
    let checkpoint_path = checkpoint::path_for(&args.file, args.state_dir.as_deref());
    let (mut state, mut acknowledged, identity) = start_or_resume(&args, &checkpoint_path)?;
    let resumed_at = state.position;
    let (accepted_before, duplicates_before) = (state.accepted, state.duplicates);
    let say = |text: String| {
        if json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    };
    if state.done {
        say(format!(
            "{} was imported already (checkpoint {}); pass --restart to send it again",
            args.file.display(),
            checkpoint_path.display()
        ));
    } else {
        if resumed_at.byte > 0 {
            say(format!(
                "resuming {} at byte {} (line {}): {} accepted and {} duplicates so far",
                args.file.display(),
                resumed_at.byte,
                resumed_at.line,
                state.accepted,
                state.duplicates
            ));
        }
        let mut progress = Progress::new(
            std::io::stdout().is_terminal(),
            json,
            identity.lines,
            resumed_at.line,
            Duration::from_millis(args.progress_interval_ms),
        );
        let mut source = Source::open(&args.file, format, state.position, state.id_prefix.clone())?;
        let mut import = Import {
            input: &args.file,
            checkpoint_path: &checkpoint_path,
            state: &mut state,
            acknowledged: &mut acknowledged,
        };
        let result = send_all(
            client,
            &mut source,
            args.batch_size,
            &mut import,
            &mut progress,
        )
        .await;
        progress.finish(counts(&state));
        result?;
        state.done = true;
        checkpoint::store(&checkpoint_path, &state)?;
    }
    let summary = Summary {
        file: args.file.clone(),
        checkpoint: checkpoint_path,
        lines: state.position.line,
        accepted: state.accepted,
        duplicates: state.duplicates,
        accepted_now: state.accepted - accepted_before,
        duplicates_now: state.duplicates - duplicates_before,
        resumed_at_line: resumed_at.line,
    };
    if json {
        return output::json(&summary);
    }
    println!(
        "imported {}: {} accepted, {} duplicates ({} accepted and {} duplicates in this run)",
        summary.file.display(),
        summary.accepted,
        summary.duplicates,
        summary.accepted_now,
        summary.duplicates_now
    );
    Ok(())
}

/// The checkpoint to go on from (a fresh one without a checkpoint or with `--restart`), the
/// hash of what it acknowledged, and what the input is now; refused when the acknowledged
/// part of the input changed.
fn start_or_resume(
    args: &ImportArgs,
    checkpoint_path: &Path,
) -> Result<(Checkpoint, Sha256, Identity), CliError> {
    let existing = if args.restart {
        None
    } else {
        checkpoint::load(checkpoint_path)?
    };
    let scan = Identity::scan(&args.file, existing.as_ref().map_or(0, |c| c.position.byte))?;
    let identity = scan.identity;
    let (state, acknowledged) = match existing {
        Some(mut found) => {
            let unchanged = scan
                .marked
                .filter(|h| hex::encode(h.clone().finalize()) == found.acknowledged_sha256)
                .ok_or_else(|| {
                    CliError::CheckpointMismatch(format!(
                        "what {} acknowledged of {} (its first {} bytes) has changed since; \
                         pass --restart to import it from the start, or move the checkpoint \
                         away",
                        checkpoint_path.display(),
                        args.file.display(),
                        found.position.byte
                    ))
                })?;
            // A finished import of a file that grew since goes on with the new events.
            found.done &= found.position.byte >= identity.bytes;
            (found, unchanged)
        }
        None => (
            Checkpoint {
                id_prefix: identity.id_prefix(),
                position: Position::default(),
                acknowledged_sha256: hex::encode(Sha256::new().finalize()),
                accepted: 0,
                duplicates: 0,
                done: false,
            },
            Sha256::new(),
        ),
    };
    Ok((state, acknowledged, identity))
}

fn counts(state: &Checkpoint) -> Counts {
    Counts {
        line: state.position.line,
        accepted: state.accepted,
        duplicates: state.duplicates,
    }
}

/// An import under way: its input, its checkpoint, and the hash of what was acknowledged.
struct Import<'a> {
    input: &'a Path,
    checkpoint_path: &'a Path,
    state: &'a mut Checkpoint,
    acknowledged: &'a mut Sha256,
}

impl Import<'_> {
    /// Everything before `to` is acknowledged: hash it in and move the checkpoint there.
    fn advance(&mut self, to: Position, accepted: u64, duplicates: u64) -> Result<(), CliError> {
        checkpoint::hash_range(
            self.input,
            self.acknowledged,
            self.state.position.byte,
            to.byte,
        )?;
        self.state.acknowledged_sha256 = hex::encode(self.acknowledged.clone().finalize());
        self.state.position = to;
        self.state.accepted += accepted;
        self.state.duplicates += duplicates;
        checkpoint::store(self.checkpoint_path, self.state)
    }
}

/// Reads, posts and checkpoints batch after batch until the input ends.
async fn send_all(
    client: &Client,
    source: &mut Source,
    batch_size: usize,
    import: &mut Import<'_>,
    progress: &mut Progress,
) -> Result<(), CliError> {
    loop {
        // The body is built as the events are read: `[e1,e2,...]`.
        let mut body = Vec::with_capacity(256 * batch_size);
        let (mut events, mut after) = (0usize, import.state.position);
        let mut lines = Vec::with_capacity(batch_size);
        body.push(b'[');
        while events < batch_size && body.len() < MAX_BATCH_BYTES {
            let Some(read) = source.next_event()? else {
                break;
            };
            if events > 0 {
                body.push(b',');
            }
            lines.push(read.line);
            serde_json::to_writer(&mut body, &read.event)
                .map_err(|e| CliError::Io(format!("cannot encode an event: {e}")))?;
            events += 1;
            after = read.after;
        }
        body.push(b']');
        if events == 0 {
            // Blank lines at the end still count as read.
            if after != import.state.position {
                import.advance(after, 0, 0)?;
            }
            return Ok(());
        }
        let answer = post(client, body, progress).await.map_err(|e| match e {
            CliError::Api { code, message } => CliError::Api {
                code,
                message: format!(
                    "{}; nothing from line {} on was imported (fix the input and run again)",
                    at_line(&message, &lines),
                    lines[0]
                ),
            },
            other => other,
        })?;
        if answer.results.len() != events {
            return Err(CliError::Unreachable(format!(
                "the server answered {} results for a batch of {events}",
                answer.results.len()
            )));
        }
        import.advance(after, answer.accepted, answer.duplicates)?;
        progress.update(counts(import.state));
    }
}

/// The server's refusal of a batch, whose `event {i}: ` (the index in the batch) is turned
/// into the line of the input that event came from.
fn at_line(message: &str, lines: &[u64]) -> String {
    let located = message.strip_prefix("event ").and_then(|rest| {
        let (index, reason) = rest.split_once(": ")?;
        let line = lines.get(index.parse::<usize>().ok()?)?;
        Some(format!("line {line}: {reason}"))
    });
    located.unwrap_or_else(|| format!("line {}: {message}", lines[0]))
}

/// Posts one batch until the server answers it with anything but "later".
async fn post(
    client: &Client,
    body: Vec<u8>,
    progress: &mut Progress,
) -> Result<waymark_client::api::events::EventsAccepted, CliError> {
    let mut unreachable = 0u32;
    loop {
        let wait = match client.post_events_json(body.clone()).await {
            Ok(answer) => return Ok(answer),
            Err(e)
                if matches!(
                    e.status(),
                    Some(StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
                ) =>
            {
                // The server's own pacing: 429 over the tenant's rate, 503 a full shard queue.
                let wait = e
                    .retry_after()
                    .unwrap_or(Duration::from_secs(1))
                    .max(Duration::from_millis(100));
                progress.waiting(e.code().unwrap_or("overloaded"), wait);
                wait
            }
            Err(e @ ClientError::Transport { .. }) if unreachable < TRANSPORT_RETRIES => {
                let wait = Duration::from_secs(1 << unreachable);
                unreachable += 1;
                progress.waiting(&format!("unreachable ({e})"), wait);
                wait
            }
            Err(e) => return Err(e.into()),
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::at_line;

    #[test]
    fn a_refused_events_index_in_the_batch_becomes_its_line_in_the_input() {
        let lines = [3, 4, 9];
        assert_eq!(
            at_line("event 2: name is empty", &lines),
            "line 9: name is empty"
        );
        // A refusal naming no event (a single-event batch) is placed at the batch's start.
        assert_eq!(at_line("id is empty", &lines), "line 3: id is empty");
        assert_eq!(at_line("event 7: x", &lines), "line 3: event 7: x");
    }
}
