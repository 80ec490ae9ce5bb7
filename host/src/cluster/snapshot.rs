//! Snapshots of partitions' copies (issue 16, `docs/SCALING.md` "Snapshots and catch-up"): one
//! object per partition, `p<n>`, in the object store `wm-snapshots`, replaced by each new one.
//!
//! A snapshot is the copy's records as changelog frames after the position it covers, streamed
//! both ways: written from the copy's dump a frame at a time while the object store takes it
//! in chunks, and read back a frame at a time into the new copy, so neither side holds more
//! than a frame or two of a partition of any size.
//!
//! Layout: `WMSNAP02`, the chain's last record and epoch (8 bytes each, big-endian), then
//! frames (an 8-byte length and [`changelog::encode`]d changes), then an 8-byte zero: the end.
//! Without that end a snapshot was cut short and is refused, never read as a smaller copy.
//! `WMSNAP01` (the first layout, frames to the end of the object, no end marker) is still read.

use super::log::Chain;
use super::ClusterError;
use crate::store::{changelog, Store, StoreError};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt as _};

/// The object store bucket of the partitions' snapshots.
pub const SNAPSHOTS: &str = "wm-snapshots";

/// The first bytes of a snapshot: what it is and the version of its layout.
const MAGIC: &[u8; 8] = b"WMSNAP02";
/// The first layout: no end marker.
const MAGIC_V1: &[u8; 8] = b"WMSNAP01";

/// How many bytes of records go in one frame of a snapshot.
const FRAME_BYTES: usize = 1 << 20;

/// Frames handed from the dump to the object store ahead of its reading them.
const FRAMES_AHEAD: usize = 4;

/// The partitions' snapshots ([`super::Nats::snapshots`]).
#[derive(Clone)]
pub struct Snapshots(pub(super) async_nats::jetstream::object_store::ObjectStore);

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(SNAPSHOTS)
    }
}

fn object_name(partition: u16) -> String {
    format!("p{partition}")
}

fn header(chain: &Chain) -> Bytes {
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&chain.previous.to_be_bytes());
    header.extend_from_slice(&chain.epoch.to_be_bytes());
    header.into()
}

fn frame(changes: &[changelog::Change]) -> Bytes {
    let encoded = changelog::encode(changes);
    let mut frame = Vec::with_capacity(8 + encoded.len());
    frame.extend_from_slice(&(encoded.len() as u64).to_be_bytes());
    frame.extend_from_slice(&encoded);
    frame.into()
}

/// The end of a snapshot's frames.
const END: [u8; 8] = [0; 8];

impl Snapshots {
    /// Writes `store` (a standby's copy, not written meanwhile) as `partition`'s snapshot,
    /// covering the log through `chain`. The dump runs on a blocking thread, a few frames ahead
    /// of the object store; if it fails, the object store's read fails with it and the
    /// partition's previous snapshot stays (the chunks already sent are left unreferenced).
    pub async fn write(
        &self,
        partition: u16,
        chain: &Chain,
        store: Store,
    ) -> Result<(), ClusterError> {
        let (frames, mut next) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(FRAMES_AHEAD);
        let header = header(chain);
        let dump = tokio::task::spawn_blocking(move || {
            let send = |bytes: Bytes| {
                frames
                    .blocking_send(Ok(bytes))
                    .map_err(|_| StoreError::Flush("the object store stopped reading".into()))
            };
            let dumped = send(header)
                .and_then(|()| store.dump(FRAME_BYTES, |changes| send(frame(&changes))))
                .and_then(|()| send(Bytes::from_static(&END)));
            if let Err(e) = &dumped {
                let _ = frames.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
            dumped
        });
        let stream = futures::stream::poll_fn(move |cx| next.poll_recv(cx));
        let mut reader = tokio_util::io::StreamReader::new(Box::pin(stream));
        let put = self
            .0
            .put(object_name(partition).as_str(), &mut reader)
            .await;
        // A put that failed stops reading: the dump stops at its next frame.
        drop(reader);
        let dumped = dump
            .await
            .map_err(|e| ClusterError::Corrupt(format!("the snapshot's dump: {e}")))?;
        dumped.map_err(|e| ClusterError::Corrupt(format!("the copy could not be read: {e}")))?;
        put.map_err(|e| ClusterError::nats("write a snapshot", e))?;
        Ok(())
    }

    /// Reads `partition`'s latest snapshot into `store` (an empty copy), a frame at a time;
    /// answers the position it covers, or `None` when there is no snapshot yet.
    pub async fn read_into(
        &self,
        partition: u16,
        store: &Store,
    ) -> Result<Option<Chain>, ClusterError> {
        self.read_with(partition, |changes| store.apply_changes(&changes))
            .await
    }

    /// Reads `partition`'s latest snapshot, handing each frame's changes to `apply` in order;
    /// answers the position it covers, or `None` when there is no snapshot yet.
    pub async fn read_with(
        &self,
        partition: u16,
        apply: impl FnMut(Vec<changelog::Change>) -> Result<(), StoreError>,
    ) -> Result<Option<Chain>, ClusterError> {
        use async_nats::jetstream::object_store::GetErrorKind;
        let mut object = match self.0.get(object_name(partition)).await {
            Ok(object) => object,
            Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ClusterError::nats("read a snapshot", e)),
        };
        read_frames(&mut object, partition, apply).await.map(Some)
    }
}

/// Reads a snapshot from `reader`, handing each frame's changes to `apply` in order; answers
/// the position it covers. A snapshot cut short (no end marker, or a frame cut), of another
/// layout, or followed by anything is refused.
async fn read_frames(
    reader: &mut (impl AsyncRead + Unpin),
    partition: u16,
    mut apply: impl FnMut(Vec<changelog::Change>) -> Result<(), StoreError>,
) -> Result<Chain, ClusterError> {
    let corrupt =
        |why: &str| ClusterError::Corrupt(format!("partition {partition}'s snapshot: {why}"));
    let cut = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => corrupt("cut short"),
        _ => ClusterError::nats("read a snapshot", e),
    };
    let mut head = [0u8; 24];
    reader.read_exact(&mut head).await.map_err(cut)?;
    let ended = match &head[..8] {
        m if m == MAGIC => true,
        m if m == MAGIC_V1 => false,
        _ => return Err(corrupt("not a snapshot of a layout this build reads")),
    };
    let number = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("eight bytes"));
    let chain = Chain {
        previous: number(&head[8..16]),
        epoch: number(&head[16..24]),
    };
    loop {
        let mut len = [0u8; 8];
        if !ended {
            // The first layout ends where the object does, between two frames.
            let mut read = 0;
            while read < 8 {
                match reader.read(&mut len[read..]).await.map_err(cut)? {
                    0 if read == 0 => return Ok(chain),
                    0 => return Err(corrupt("cut short")),
                    n => read += n,
                }
            }
        } else {
            reader.read_exact(&mut len).await.map_err(cut)?;
        }
        let len = usize::try_from(number(&len)).map_err(|_| corrupt("a frame too long"))?;
        if len == 0 && ended {
            break;
        }
        let mut encoded = vec![0u8; len];
        reader.read_exact(&mut encoded).await.map_err(cut)?;
        let changes = changelog::decode(&encoded).map_err(|e| corrupt(&e))?;
        apply(changes).map_err(|e| corrupt(&e.to_string()))?;
    }
    // Read to the object's end (the object store checks its digest there): nothing after.
    let mut rest = [0u8; 1];
    match reader.read(&mut rest).await.map_err(cut)? {
        0 => Ok(chain),
        _ => Err(corrupt("bytes after its end")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::changelog::Change;

    fn changes(from: u8, n: u8) -> Vec<Change> {
        (from..from + n)
            .map(|i| Change::Put {
                tree: "t".into(),
                key: vec![i].into(),
                value: vec![i; 100].into(),
            })
            .collect()
    }

    /// A snapshot's bytes: the header, a frame per chunk of changes, and the end (unless
    /// `v1`, which has none).
    fn snapshot(chain: &Chain, chunks: &[Vec<Change>], v1: bool) -> Vec<u8> {
        let mut bytes = header(chain).to_vec();
        if v1 {
            bytes[..8].copy_from_slice(MAGIC_V1);
        }
        for chunk in chunks {
            bytes.extend_from_slice(&frame(chunk));
        }
        if !v1 {
            bytes.extend_from_slice(&END);
        }
        bytes
    }

    async fn read(bytes: &[u8]) -> Result<(Chain, Vec<Change>), ClusterError> {
        let mut applied = Vec::new();
        let chain = read_frames(&mut &bytes[..], 7, |c| {
            applied.extend(c);
            Ok(())
        })
        .await?;
        Ok((chain, applied))
    }

    /// A snapshot reads back as the chain and the changes written, in order; one cut short
    /// anywhere (even between two frames), or with bytes after its end, is refused; the first
    /// layout, which had no end marker, still reads.
    #[tokio::test]
    async fn a_snapshot_reads_back_whole_or_is_refused() {
        let chain = Chain {
            previous: 41,
            epoch: 3,
        };
        let chunks = [changes(0, 5), changes(5, 3), Vec::new()];
        let all: Vec<Change> = chunks.iter().flatten().cloned().collect();
        let whole = snapshot(&chain, &chunks, false);
        let (read_chain, applied) = read(&whole).await.expect("a whole snapshot reads");
        assert_eq!(read_chain, chain);
        assert_eq!(applied, all);
        for cut in 0..whole.len() {
            let refused = read(&whole[..cut]).await;
            assert!(
                matches!(refused, Err(ClusterError::Corrupt(_))),
                "cut at {cut}: {refused:?}"
            );
        }
        let mut longer = whole.clone();
        longer.push(0);
        assert!(matches!(read(&longer).await, Err(ClusterError::Corrupt(_))));
        let old = snapshot(&chain, &chunks, true);
        let (old_chain, old_applied) = read(&old).await.expect("the first layout reads");
        assert_eq!((old_chain, old_applied), (chain, all));
        let mut other = whole.clone();
        other[..8].copy_from_slice(b"WMSNAP99");
        assert!(matches!(read(&other).await, Err(ClusterError::Corrupt(_))));
    }
}
