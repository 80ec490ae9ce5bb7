//! The import's checkpoint: where the last acknowledged batch ended in the input, and which
//! input that was. It is written (to a temporary file, synced, then renamed over the old one)
//! only after the server acknowledged a batch, so after any interruption — a crash, a kill, a
//! network failure — the import resumes at the first event not known to be acknowledged.
//! Events past it may have been accepted already (the batch in flight when the import died);
//! they are sent again under the same ids, and the server answers `duplicate`.

use super::super::CliError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What identifies an input: its size and the SHA-256 of its bytes. A file changed in any
/// way is another input, whose checkpoint this is not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub bytes: u64,
    pub sha256: String,
    /// Newline bytes in it: the progress bar's total.
    pub lines: u64,
}

impl Identity {
    /// Reads `path` once, hashing it.
    pub fn of(path: &Path) -> Result<Identity, CliError> {
        let mut file = File::open(path).map_err(|e| CliError::io("cannot open", path, e))?;
        let mut hasher = Sha256::new();
        let (mut bytes, mut lines) = (0u64, 0u64);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| CliError::io("cannot read", path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            bytes += n as u64;
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
        Ok(Identity {
            bytes,
            sha256: hex::encode(hasher.finalize()),
            lines,
        })
    }

    /// The prefix of the ids derived for events without one: `imp-` and 64 bits of the hash,
    /// so the same input always yields the same ids and different inputs (almost surely)
    /// never share one.
    pub fn id_prefix(&self) -> String {
        format!("imp-{}", &self.sha256[..16])
    }
}

/// How far an import got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The input this is about.
    pub input: Identity,
    /// Where the next unacknowledged event starts.
    pub position: Position,
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
/// `state_dir` named after the input's name and hash (the input's directory may be read-only).
pub fn path_for(input: &Path, identity: &Identity, state_dir: Option<&Path>) -> PathBuf {
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "input".into());
    match state_dir {
        Some(dir) => dir.join(format!(
            "{name}.{}.waymark-import.json",
            &identity.sha256[..16]
        )),
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
        let identity = Identity::of(&input).unwrap();
        assert_eq!((identity.bytes, identity.lines), (6, 2));
        let path = path_for(&input, &identity, None);
        assert_eq!(path, dir.path().join("events.ndjson.waymark-import.json"));
        assert_eq!(load(&path).unwrap(), None);
        let mut checkpoint = Checkpoint {
            input: identity.clone(),
            position: Position {
                byte: 3,
                line: 2,
                record: 0,
            },
            accepted: 1,
            duplicates: 0,
            done: false,
        };
        store(&path, &checkpoint).unwrap();
        checkpoint.done = true;
        store(&path, &checkpoint).unwrap();
        assert_eq!(load(&path).unwrap(), Some(checkpoint));
    }

    #[test]
    fn the_identity_changes_with_the_content_and_names_the_derived_ids() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("a.csv");
        std::fs::write(&input, "customer,name\nada,x\n").unwrap();
        let one = Identity::of(&input).unwrap();
        std::fs::write(&input, "customer,name\nada,y\n").unwrap();
        let two = Identity::of(&input).unwrap();
        assert_ne!(one, two);
        assert!(one.id_prefix().starts_with("imp-"));
        assert_eq!(one.id_prefix().len(), 4 + 16);
        let state = path_for(&input, &one, Some(Path::new("/state")));
        assert!(state.starts_with("/state"));
    }
}
