//! The compiled-code cache: native code this host compiled, kept on disk so that a restart
//! loads every registered component instead of compiling it again.
//!
//! An entry is `{sha256 of the component}-{engine hash}.cwasm` plus a `.sha256` sidecar with the
//! digest of the code, written after it. Loading native code is `unsafe` (it is trusted as if
//! this host had just compiled it), so an entry is used only when its sidecar matches; anything
//! else is recompiled. The cache never holds what a tenant sent: only what this engine produced.
//!
//! Code is written only for components the store keeps (a registered journey version or
//! channel, [`Sandbox::keep_compiled`](super::Sandbox::keep_compiled)): a refused upload leaves
//! nothing behind. [`evict`] bounds the directory by what is stored: entries of components no
//! stored version names, entries of another engine configuration, and temporary files left by a
//! crash are removed.

use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Where the compiled code of `bytes` lives in `dir`, for an engine whose compatibility hash is
/// `engine_hash`.
pub(super) fn entry_path(dir: &Path, bytes: &[u8], engine_hash: u64) -> PathBuf {
    digest_entry_path(dir, &hex::encode(Sha256::digest(bytes)), engine_hash)
}

/// Where the compiled code of the component with SHA-256 `digest` (hex) lives in `dir`.
pub(super) fn digest_entry_path(dir: &Path, digest: &str, engine_hash: u64) -> PathBuf {
    dir.join(format!("{digest}-{engine_hash:016x}.cwasm"))
}

/// Removes from `dir` every file that is not the entry (code or sidecar) of a component in
/// `keep` (SHA-256 hex digests) compiled by the engine with `engine_hash`, including the
/// temporary files of writes a crash interrupted when `temporaries` is set (only while nothing
/// else writes). Returns how many files were removed.
pub(super) fn evict(
    dir: &Path,
    keep: &HashSet<String>,
    engine_hash: u64,
    temporaries: bool,
) -> std::io::Result<usize> {
    let suffix = format!("-{engine_hash:016x}");
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.is_file() {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some((stem, extension)) = name.split_once('.') else {
            continue;
        };
        let wanted = match extension {
            "cwasm" | "sha256" => stem
                .strip_suffix(&suffix)
                .is_some_and(|digest| keep.contains(digest)),
            temporary if temporary.starts_with("tmp") => !temporaries,
            // Not the cache's: leave it.
            _ => true,
        };
        if !wanted {
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// Loads code this host compiled and cached, if it is there and intact: the sidecar
/// digest, written after the code, must match, so a torn or altered file is recompiled.
pub(super) fn load(engine: &Engine, path: &Path) -> Option<Component> {
    let code = std::fs::read(path).ok()?;
    let digest = std::fs::read_to_string(path.with_extension("sha256")).ok()?;
    if hex::encode(Sha256::digest(&code)) != digest.trim() {
        tracing::warn!(path = %path.display(), "compiled-code cache entry is damaged; recompiling");
        return None;
    }
    // SAFETY: the cache directory is written only by `store`, with code this host's engine
    // produced from validated bytes, and the digest check above ensures the file is what was
    // written. The key includes the engine's compatibility hash, and wasmtime checks
    // compatibility again while deserializing.
    match unsafe { Component::deserialize(engine, &code) } {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot load cached code; recompiling");
            None
        }
    }
}

/// Writes compiled code to the cache, then its digest; each through a temporary file and a
/// rename, so a crash leaves either a complete entry or one that fails the digest check. A
/// cache that cannot be written only costs a recompilation at the next start.
pub(super) fn store(path: &Path, component: &Component) {
    let write = || -> std::io::Result<()> {
        let code = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let digest = hex::encode(Sha256::digest(&code));
        write_atomically(path, &code)?;
        write_atomically(&path.with_extension("sha256"), digest.as_bytes())
    };
    if let Err(e) = write() {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the compiled-code cache");
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
