//! The import's checkpoint: where the last acknowledged batch ended in the input, and what
//! the input held up to there. It is written (to a temporary file, synced, then renamed over
//! the old one) only after the server acknowledged a batch, so after any interruption — a
//! crash, a kill, a network failure — the import resumes at the first event not known to be
//! acknowledged. Events past it may have been accepted already (the batch in flight when the
//! import died); they are sent again under the same ids, and the server answers `duplicate`.
//!
//! The checkpoint holds the SHA-256 of the acknowledged bytes, not of the whole file: an
//! import stopped by a bad line resumes once the line is fixed, and a file that grew (a log
//! appended to) continues with its new lines; only a change to what was already sent is
//! refused. The id prefix chosen at the first run is kept, so every run derives the same ids.

use super::super::CliError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What an input is now: its size, the SHA-256 of its bytes, and its lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub bytes: u64,
    pub sha256: String,
    /// Newline bytes in it: the progress bar's total.
    pub lines: u64,
}

/// One pass over an input: its [`Identity`], and the hasher state after its first `mark`
/// bytes (where a checkpoint says the acknowledged part ends), to check and to continue.
pub struct Scan {
    pub identity: Identity,
    /// `None` when the input is shorter than `mark`.
    pub marked: Option<Sha256>,
}

impl Identity {
    /// Reads `path` once, hashing it, and keeping the hash of its first `mark` bytes.
    pub fn scan(path: &Path, mark: u64) -> Result<Scan, CliError> {
        let mut file = File::open(path).map_err(|e| CliError::io("cannot open", path, e))?;
        let mut hasher = Sha256::new();
        let mut marked = (mark == 0).then(Sha256::new);
        let (mut bytes, mut lines) = (0u64, 0u64);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| CliError::io("cannot read", path, e))?;
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            if marked.is_none() && bytes + n as u64 >= mark {
                // The mark falls in this chunk: hash up to it, keep that state, go on.
                let cut = (mark - bytes) as usize;
                let mut at_mark = hasher.clone();
                at_mark.update(&chunk[..cut]);
                marked = Some(at_mark);
            }
            hasher.update(chunk);
            bytes += n as u64;
            lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        }
        Ok(Scan {
            identity: Identity {
                bytes,
                sha256: hex::encode(hasher.finalize()),
                lines,
            },
            marked,
        })
    }

    /// The prefix of the ids derived for events without one: `imp-` and 64 bits of the hash
    /// of the input as the import first saw it, so different inputs (almost surely) never
    /// share an id.
    pub fn id_prefix(&self) -> String {
        format!("imp-{}", &self.sha256[..16])
    }
}

/// Adds the input's bytes `from..to` to `hasher`: a batch just acknowledged.
pub fn hash_range(path: &Path, hasher: &mut Sha256, from: u64, to: u64) -> Result<(), CliError> {
    let mut file = File::open(path).map_err(|e| CliError::io("cannot open", path, e))?;
    file.seek(SeekFrom::Start(from))
        .map_err(|e| CliError::io("cannot seek in", path, e))?;
    let mut left = to.saturating_sub(from);
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        file.read_exact(&mut buf[..want])
            .map_err(|e| CliError::io("cannot read", path, e))?;
        hasher.update(&buf[..want]);
        left -= want as u64;
    }
    Ok(())
}

/// How far an import got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The prefix of derived ids, fixed at the first run ([`Identity::id_prefix`]).
    pub id_prefix: String,
    /// Where the next unacknowledged event starts.
    pub position: Position,
    /// SHA-256 of the input's bytes before `position`: what was acknowledged.
    pub acknowledged_sha256: String,
    /// Events the server answered `accepted` / `duplicate`, over every run of this import.
    pub accepted: u64,
    pub duplicates: u64,
    /// Whether the whole input was acknowledged.
    pub done: bool,
}

/// A place in the input: a byte offset, and the line (1-based) and record (0-based, CSV
/// only) found there, so the ids derived after resuming are the ones a whole run derives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub byte: u64,
    pub line: u64,
    pub record: u64,
}

/// The checkpoint file of `input`: `<input>.waymark-import.json` beside it, or under
/// `state_dir` (the input's directory may be read-only) named after the input's name and a
/// hash of its absolute path, so inputs of the same name in different places never share one.
pub fn path_for(input: &Path, state_dir: Option<&Path>) -> PathBuf {
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "input".into());
    match state_dir {
        Some(dir) => {
            let absolute = std::path::absolute(input).unwrap_or_else(|_| input.to_path_buf());
            let digest = Sha256::digest(absolute.to_string_lossy().as_bytes());
            dir.join(format!(
                "{name}.{}.waymark-import.json",
                &hex::encode(digest)[..16]
            ))
        }
        None => input.with_file_name(format!("{name}.waymark-import.json")),
    }
}

/// The checkpoint at `path`, if there is one.
pub fn load(path: &Path) -> Result<Option<Checkpoint>, CliError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            CliError::Input(format!(
                "{}: not a checkpoint ({e}); remove it or pass --restart",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::io("cannot read", path, e)),
    }
}

/// Writes `checkpoint` to `path` so that a crash leaves either the old or the new one.
pub fn store(path: &Path, checkpoint: &Checkpoint) -> Result<(), CliError> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(checkpoint)
        .map_err(|e| CliError::Io(format!("cannot encode the checkpoint: {e}")))?;
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| CliError::io("cannot write the checkpoint", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("events.ndjson");
        std::fs::write(&input, "{}\n{}\n").unwrap();
        let scan = Identity::scan(&input, 0).unwrap();
        assert_eq!((scan.identity.bytes, scan.identity.lines), (6, 2));
        let path = path_for(&input, None);
        assert_eq!(path, dir.path().join("events.ndjson.waymark-import.json"));
        assert_eq!(load(&path).unwrap(), None);
        let mut checkpoint = Checkpoint {
            id_prefix: scan.identity.id_prefix(),
            position: Position {
                byte: 3,
                line: 1,
                record: 0,
            },
            acknowledged_sha256: hex::encode(Sha256::digest(b"{}\n")),
            accepted: 1,
            duplicates: 0,
            done: false,
        };
        store(&path, &checkpoint).unwrap();
        checkpoint.done = true;
        store(&path, &checkpoint).unwrap();
        assert_eq!(load(&path).unwrap(), Some(checkpoint));
        assert!(path_for(&input, Some(Path::new("/state"))).starts_with("/state"));
    }

    #[test]
    fn the_hash_at_the_mark_is_the_hash_of_the_bytes_before_it_and_can_be_continued() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("a.ndjson");
        // Longer than one read, so the mark falls inside a later chunk.
        let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&input, &text).unwrap();
        let mark = 100_003u64;
        let scan = Identity::scan(&input, mark).unwrap();
        let mut marked = scan.marked.unwrap();
        assert_eq!(
            hex::encode(marked.clone().finalize()),
            hex::encode(Sha256::digest(&text.as_bytes()[..mark as usize]))
        );
        hash_range(&input, &mut marked, mark, text.len() as u64).unwrap();
        assert_eq!(hex::encode(marked.finalize()), scan.identity.sha256);
        assert!(Identity::scan(&input, text.len() as u64 + 1)
            .unwrap()
            .marked
            .is_none());
        assert!(scan.identity.id_prefix().starts_with("imp-"));
        assert_eq!(scan.identity.id_prefix().len(), 4 + 16);
    }
}
