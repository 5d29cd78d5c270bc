//! Snapshots: a versioned binary file of key/value/TTL records with a CRC32C per block and one
//! for the whole file. Written to a temp file, fsynced, atomically renamed, the directory fsynced,
//! then verified by reading it back. At start the newest valid snapshot is restored; a torn or
//! corrupt file is reported and skipped, never half-loaded (records are decoded and checked in
//! full before the first one is inserted).
//!
//! Retention counts verified snapshots only: after a write, the newest [`KEEP_SNAPSHOTS`] files
//! that verify (the one just written among them) stay, and the older ones go. A file that does
//! not verify, at start or at retention, is moved aside into `corrupt/` (the newest
//! [`KEEP_CORRUPT`] of them are kept there for a post-mortem), so it neither counts as one of the
//! snapshots kept nor is tried again at the next start, and it can never push a valid snapshot
//! out.
//!
//! Layout (all integers little-endian):
//! ```text
//! header  "MAPCACHE" | version u32 (=2) | shards u32 | created_at_ms u64 | reserved u32 | crc32c(header[0..28]) u32
//! block*  'B' | records u32 | payload_len u32 | crc32c(payload) u32 | payload
//!         record = key_len u32 | key | expires_at_ms u64 (0 = no TTL) | kind u8 | body
//!           kind 0 (string) body = value_len u32 | value
//!           kind 1 (hash)   body = fields u32 | (field_len u32 | field | value_len u32 | value)*
//!           kind 2 (set)    body = members u32 | (member_len u32 | member)*
//! footer  'E' | total_keys u64 | blocks u32 | crc32c(every byte before this field) u32
//! ```
//! Version 1 files (strings only: record = key_len u32 | key | value_len u32 | value |
//! expires_at_ms u64) are still read.
//! TTLs are absolute Unix milliseconds, so a restored key expires when it would have.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

use super::collections::Collection;
use super::store::{Entry, Key, Store};
use super::value::{Value, WrongType};

pub const MAGIC: &[u8; 8] = b"MAPCACHE";
pub const FORMAT_VERSION: u32 = 2;
/// The strings-only format written before hashes and sets, still read.
const FORMAT_VERSION_STRINGS: u32 = 1;
const KIND_STRING: u8 = 0;
const KIND_HASH: u8 = 1;
const KIND_SET: u8 = 2;
const HEADER_LEN: usize = 32;
const BLOCK_HEADER_LEN: usize = 13;
const FOOTER_LEN: usize = 17;
/// Records are cut into blocks of at most this many payload bytes (one record may exceed it).
const BLOCK_TARGET_BYTES: usize = 1 << 20;
/// Verified snapshots kept on disk after a successful write (the newest ones).
pub const KEEP_SNAPSHOTS: usize = 2;
/// The subdirectory of the data directory unusable snapshot files are moved into.
pub const CORRUPT_DIR: &str = "corrupt";
/// Unusable files kept in [`CORRUPT_DIR`] (the newest generations); older ones are removed, so a
/// disk that keeps corrupting files cannot fill the volume with them.
pub const KEEP_CORRUPT: usize = 2;
/// Env var naming a pause, in ms, after each block is written and flushed to the temp file: a
/// crash-safety test hook, so a test can kill the process while a snapshot is half written.
pub const BLOCK_DELAY_ENV: &str = "MAPCACHE_SNAPSHOT_BLOCK_DELAY_MS";

/// The pause of [`BLOCK_DELAY_ENV`], when set to a number of ms above 0.
fn block_delay() -> Option<std::time::Duration> {
    let ms: u64 = std::env::var(BLOCK_DELAY_ENV).ok()?.trim().parse().ok()?;
    (ms > 0).then(|| std::time::Duration::from_millis(ms))
}

/// Why a snapshot could not be written, verified or restored. The variant name is the
/// `reason` label of `mapcache_snapshot_failures_total`.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("truncated at byte {at} (file is {len} bytes)")]
    Truncated { at: usize, len: usize },
    #[error("not a mapcache snapshot (bad magic)")]
    BadMagic,
    #[error(
        "unsupported snapshot format version {0} (this build reads {FORMAT_VERSION_STRINGS} and {FORMAT_VERSION})"
    )]
    UnsupportedVersion(u32),
    #[error("header checksum mismatch")]
    HeaderChecksum,
    #[error("block {block} checksum mismatch")]
    BlockChecksum { block: usize },
    #[error("file checksum mismatch")]
    FileChecksum,
    #[error("malformed: {0}")]
    Malformed(&'static str),
    #[error("key count mismatch: footer says {footer}, blocks hold {found}")]
    KeyCount { footer: u64, found: u64 },
}

impl SnapshotError {
    pub fn reason(&self) -> &'static str {
        match self {
            SnapshotError::Io { .. } => "io",
            SnapshotError::Truncated { .. } => "truncated",
            SnapshotError::BadMagic
            | SnapshotError::UnsupportedVersion(_)
            | SnapshotError::Malformed(_) => "format",
            SnapshotError::HeaderChecksum
            | SnapshotError::BlockChecksum { .. }
            | SnapshotError::FileChecksum => "checksum",
            SnapshotError::KeyCount { .. } => "key_count",
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io { path: path.to_path_buf(), source }
}

/// What `POST /v1/snapshot` reports (see docs/admin-api.md).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SnapshotInfo {
    pub path: String,
    pub generation: u64,
    pub keys: u64,
    pub bytes: u64,
    pub crc32c: String,
    pub written_at: jiff::Timestamp,
    pub verified: bool,
    pub after_writes_stopped: bool,
    pub duration_ms: u64,
    /// Files retention found unusable after this write and moved aside (or could not).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub moved_aside: Vec<Unusable>,
}

/// A snapshot file that could not be used: why, and where it went.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Unusable {
    /// The file's name in the data directory.
    pub file: String,
    pub generation: u64,
    /// [`SnapshotError::reason`]: `truncated`, `checksum`, `format`, `key_count` or `io`.
    pub reason: &'static str,
    pub error: String,
    /// Where it was moved (`corrupt/<file>`); `None` when the move failed (logged) and the file
    /// stayed where it was.
    pub moved_to: Option<String>,
}

/// How the node's start went with the snapshots it found.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RestoreOutcome {
    /// The restore has not finished yet.
    #[default]
    Restoring,
    /// A snapshot was loaded.
    Restored,
    /// There was no snapshot: a first start.
    NoSnapshot,
    /// There were snapshots and none could be used: the node started empty.
    AllCorrupt,
}

/// What `restore` did: `restore` in `/v1/stats`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RestoreReport {
    pub outcome: RestoreOutcome,
    /// The generation restored.
    pub generation: Option<u64>,
    /// Keys loaded (keys whose TTL passed while the node was down are not).
    pub keys: u64,
    /// The files that could not be used, newest first.
    pub unusable: Vec<Unusable>,
    pub finished_at: Option<jiff::Timestamp>,
    /// The highest generation found (usable or not): new snapshots are numbered after it, so
    /// no two files, moved aside or not, ever share a generation.
    #[serde(skip)]
    pub newest_generation: u64,
}
/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Bytes,
    /// A string's bytes are still slices of the file (`ShardGuard::insert` copies them).
    pub value: Value,
    pub expires_at_ms: u64,
}

/// A fully decoded and checked snapshot.
#[derive(Debug)]
pub struct Decoded {
    pub records: Vec<Record>,
    pub file_crc: u32,
    pub created_at_ms: u64,
}

pub fn file_name(generation: u64) -> String {
    format!("mapcache-{generation:06}.snap")
}

/// The generation of a snapshot file name, `None` for anything else (temp files included).
pub fn generation_of(name: &str) -> Option<u64> {
    name.strip_prefix("mapcache-")?.strip_suffix(".snap")?.parse().ok()
}

/// Snapshot files in `dir`, newest first.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SnapshotError> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(generation) = entry.file_name().to_str().and_then(generation_of) {
            found.push((generation, entry.path()));
        }
    }
    found.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    Ok(found)
}

/// Writes everything to the writer and keeps a running CRC32C of it.
struct CrcWriter<W> {
    inner: W,
    crc: u32,
    written: u64,
}

impl<W: Write> CrcWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.written += bytes.len() as u64;
        self.inner.write_all(bytes)
    }
}

/// Copies the store's entries shard by shard (each lock held only while copying handles) and
/// writes generation `generation` into `dir`. Returns (path, keys, bytes, crc).
pub fn write(
    store: &Store,
    dir: &Path,
    generation: u64,
) -> Result<(PathBuf, u64, u64, u32), SnapshotError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let final_path = dir.join(file_name(generation));
    let tmp_path = dir.join(format!("{}.tmp", file_name(generation)));
    let written = write_temp_then_rename(store, dir, &tmp_path, &final_path);
    if written.is_err() {
        // A failed write (a full disk, say) must not leave its partial file holding the space
        // until the next start; the previous snapshots are untouched either way. After the
        // rename there is no temp file left, and the remove fails harmlessly.
        let _ = fs::remove_file(&tmp_path);
    }
    written
}

/// [`write`] once the paths are known: the temp file, fsync, rename, directory fsync.
fn write_temp_then_rename(
    store: &Store,
    dir: &Path,
    tmp_path: &Path,
    final_path: &Path,
) -> Result<(PathBuf, u64, u64, u32), SnapshotError> {
    let file = File::create(tmp_path).map_err(io_err(tmp_path))?;
    let mut out =
        CrcWriter { inner: io::BufWriter::with_capacity(1 << 20, file), crc: 0, written: 0 };
    let now = store.now_ms();
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&(store.shard_count() as u32).to_le_bytes());
    header.extend_from_slice(&now.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&crc32c::crc32c(&header).to_le_bytes());
    out.put(&header).map_err(io_err(tmp_path))?;

    let delay = block_delay();
    let mut total_keys = 0u64;
    let mut blocks = 0u32;
    let mut payload = Vec::with_capacity(BLOCK_TARGET_BYTES + 4096);
    let mut in_block = 0u32;
    for shard in 0..store.shard_count() {
        let entries: Vec<(Key, Entry)> = {
            let guard = store.lock(shard, None);
            guard
                .map()
                .iter()
                .filter(|(_, e)| !e.is_expired(now))
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect()
        };
        for (key, entry) in entries {
            put_bytes(&mut payload, &key);
            payload.extend_from_slice(&entry.expires_at_ms.to_le_bytes());
            put_value(&mut payload, &entry.value);
            in_block += 1;
            total_keys += 1;
            if payload.len() >= BLOCK_TARGET_BYTES {
                write_block(&mut out, &payload, in_block).map_err(io_err(tmp_path))?;
                blocks += 1;
                payload.clear();
                in_block = 0;
                if let Some(delay) = delay {
                    out.inner.flush().map_err(io_err(tmp_path))?;
                    std::thread::sleep(delay);
                }
            }
        }
    }
    if in_block > 0 {
        write_block(&mut out, &payload, in_block).map_err(io_err(tmp_path))?;
        blocks += 1;
    }
    let mut footer = Vec::with_capacity(FOOTER_LEN);
    footer.push(b'E');
    footer.extend_from_slice(&total_keys.to_le_bytes());
    footer.extend_from_slice(&blocks.to_le_bytes());
    out.put(&footer).map_err(io_err(tmp_path))?;
    let file_crc = out.crc;
    out.put(&file_crc.to_le_bytes()).map_err(io_err(tmp_path))?;
    let written = out.written;
    let file = out.inner.into_inner().map_err(|e| io_err(tmp_path)(e.into_error()))?;
    file.sync_all().map_err(io_err(tmp_path))?;
    drop(file);
    fs::rename(tmp_path, final_path).map_err(io_err(final_path))?;
    // The rename is durable only once the directory entry is.
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    Ok((final_path.to_path_buf(), total_keys, written, file_crc))
}

/// `len u32 | bytes`.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A record's `kind u8 | body`.
fn put_value(out: &mut Vec<u8>, value: &Value) {
    match (value.as_bytes(), value.as_collection()) {
        (Ok(bytes), _) => {
            out.push(KIND_STRING);
            put_bytes(out, bytes);
        }
        (Err(WrongType), Some(Collection::Hash(hash))) => {
            out.push(KIND_HASH);
            out.extend_from_slice(&(hash.len() as u32).to_le_bytes());
            for (field, value) in hash.iter() {
                put_bytes(out, field);
                put_bytes(out, value.as_bytes().unwrap_or_default());
            }
        }
        (Err(WrongType), Some(Collection::Set(set))) => {
            out.push(KIND_SET);
            out.extend_from_slice(&(set.len() as u32).to_le_bytes());
            for (member, ()) in set.iter() {
                put_bytes(out, member);
            }
        }
        (Err(WrongType), None) => unreachable!("a value is a string or a collection"),
    }
}

fn write_block<W: Write>(out: &mut CrcWriter<W>, payload: &[u8], records: u32) -> io::Result<()> {
    let mut head = [0u8; BLOCK_HEADER_LEN];
    head[0] = b'B';
    head[1..5].copy_from_slice(&records.to_le_bytes());
    head[5..9].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    head[9..13].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.put(&head)?;
    out.put(payload)
}

/// A bounds-checked reader over the file's bytes.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(SnapshotError::Truncated { at: self.pos, len: self.data.len() });
        };
        let slice = &self.data[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }
}

/// Checks a file's header (magic, checksum, a version this build reads) and returns its format
/// version.
fn check_header(header: &[u8]) -> Result<u32, SnapshotError> {
    if &header[..8] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let stored_header_crc = u32::from_le_bytes([header[28], header[29], header[30], header[31]]);
    if crc32c::crc32c(&header[..28]) != stored_header_crc {
        return Err(SnapshotError::HeaderChecksum);
    }
    let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if version != FORMAT_VERSION && version != FORMAT_VERSION_STRINGS {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    Ok(version)
}

/// Decodes and checks a whole snapshot held in memory. Nothing is returned unless every
/// checksum and count is good.
pub fn decode(data: &Bytes) -> Result<Decoded, SnapshotError> {
    let mut cur = Cursor { data, pos: 0 };
    let header = cur.take(HEADER_LEN)?;
    let version = check_header(header)?;
    let mut created = [0u8; 8];
    created.copy_from_slice(&header[16..24]);
    let created_at_ms = u64::from_le_bytes(created);
    let mut records = Vec::new();
    let mut block = 0usize;
    loop {
        match cur.u8()? {
            b'B' => {
                let count = cur.u32()?;
                let len = cur.u32()? as usize;
                let crc = cur.u32()?;
                let payload_start = cur.pos;
                let payload = cur.take(len)?;
                if crc32c::crc32c(payload) != crc {
                    return Err(SnapshotError::BlockChecksum { block });
                }
                let mut rec = Cursor { data: payload, pos: 0 };
                // The block arrived whole (its checksum matched), so a record that does not
                // fit in it is a bad record, not a torn file. Lengths are checked against the
                // block before anything is taken: a length of 4 GB allocates nothing.
                let past_block = |_| SnapshotError::Malformed("a record runs past its block");
                let slice = |rec: &mut Cursor<'_>| -> Result<Bytes, SnapshotError> {
                    let len = rec.u32().map_err(past_block)? as usize;
                    let at = payload_start + rec.pos;
                    rec.take(len).map_err(past_block)?;
                    Ok(data.slice(at..at + len))
                };
                for _ in 0..count {
                    let key = slice(&mut rec)?;
                    let (value, expires_at_ms) = if version == FORMAT_VERSION_STRINGS {
                        let value = Value::from_owned(slice(&mut rec)?);
                        (value, rec.u64().map_err(past_block)?)
                    } else {
                        let expires_at_ms = rec.u64().map_err(past_block)?;
                        (decode_value(&mut rec, &mut |rec| slice(rec))?, expires_at_ms)
                    };
                    records.push(Record { key, value, expires_at_ms });
                }
                if rec.pos != payload.len() {
                    return Err(SnapshotError::Malformed("block payload longer than its records"));
                }
                block += 1;
            }
            b'E' => {
                let total = cur.u64()?;
                let blocks = cur.u32()?;
                let crc_at = cur.pos;
                let stored = cur.u32()?;
                if crc32c::crc32c(&data[..crc_at]) != stored {
                    return Err(SnapshotError::FileChecksum);
                }
                if cur.pos != data.len() {
                    return Err(SnapshotError::Malformed("bytes after the footer"));
                }
                if total != records.len() as u64 || blocks as usize != block {
                    return Err(SnapshotError::KeyCount {
                        footer: total,
                        found: records.len() as u64,
                    });
                }
                return Ok(Decoded { records, file_crc: stored, created_at_ms });
            }
            _ => return Err(SnapshotError::Malformed("unknown block tag")),
        }
    }
}

/// A version 2 record's `kind u8 | body`; `slice` takes one `len u32 | bytes`.
fn decode_value(
    rec: &mut Cursor<'_>,
    slice: &mut dyn FnMut(&mut Cursor<'_>) -> Result<Bytes, SnapshotError>,
) -> Result<Value, SnapshotError> {
    let past_block = |_| SnapshotError::Malformed("a record runs past its block");
    let kind = rec.u8().map_err(past_block)?;
    let value = match kind {
        KIND_STRING => Value::from_owned(slice(rec)?),
        KIND_HASH => {
            let mut value = Value::new_hash();
            let hash = value.as_hash_mut().expect("a new hash");
            for _ in 0..rec.u32().map_err(past_block)? {
                let field = slice(rec)?;
                let element = Value::copy_from_slice(&slice(rec)?);
                if hash.insert(&field, element).is_some() {
                    return Err(SnapshotError::Malformed("a hash with a field twice"));
                }
            }
            value
        }
        KIND_SET => {
            let mut value = Value::new_set();
            let set = value.as_set_mut().expect("a new set");
            for _ in 0..rec.u32().map_err(past_block)? {
                if set.insert(&slice(rec)?, ()).is_some() {
                    return Err(SnapshotError::Malformed("a set with a member twice"));
                }
            }
            value
        }
        _ => return Err(SnapshotError::Malformed("unknown value kind")),
    };
    if value.as_collection().is_some_and(Collection::is_empty) {
        return Err(SnapshotError::Malformed("an empty hash or set"));
    }
    Ok(value)
}

pub fn read(path: &Path) -> Result<Decoded, SnapshotError> {
    let data = fs::read(path).map_err(io_err(path))?;
    decode(&Bytes::from(data))
}

/// Retention after generation `newest` was written and verified: walking the files newest
/// first, the first [`KEEP_SNAPSHOTS`] that verify stay ([`verify_file`]; `newest` is not read
/// again), each one that does not on the way is moved aside ([`move_aside`]), and every file
/// past them is removed. Corrupt or junk files therefore never count, and the newest valid
/// snapshot is never removed. A file that cannot be removed is logged and left.
pub fn prune(dir: &Path, newest: u64) -> Result<Vec<Unusable>, SnapshotError> {
    let mut kept = 0;
    let mut moved_aside = Vec::new();
    for (generation, path) in list(dir)? {
        if kept < KEEP_SNAPSHOTS {
            let verified = if generation == newest { Ok(()) } else { verify_file(&path) };
            match verified {
                Ok(()) => kept += 1,
                Err(err) => moved_aside.push(move_aside(dir, &path, generation, &err)),
            }
            continue;
        }
        if let Err(err) = fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %err,
                "a snapshot older than those kept could not be removed");
        }
    }
    if !moved_aside.is_empty() {
        trim_corrupt(dir, &moved_aside);
    }
    Ok(moved_aside)
}

/// Moves an unusable snapshot file into `dir/corrupt/` (fsyncing both directories). Never fails: a file that cannot be
/// moved stays where it is (logged), and says so in the report.
pub fn move_aside(dir: &Path, path: &Path, generation: u64, err: &SnapshotError) -> Unusable {
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let aside = dir.join(CORRUPT_DIR);
    let moved = fs::create_dir_all(&aside)
        .and_then(|()| fs::rename(path, aside.join(&file)))
        .and_then(|()| File::open(&aside)?.sync_all())
        .and_then(|()| File::open(dir)?.sync_all());
    let moved_to = match moved {
        Ok(()) => Some(format!("{CORRUPT_DIR}/{file}")),
        Err(move_err) => {
            tracing::error!(path = %path.display(), error = %move_err,
                "an unusable snapshot could not be moved aside; it stays, and is never counted");
            None
        }
    };
    Unusable { file, generation, reason: err.reason(), error: err.to_string(), moved_to }
}

/// Keeps `dir/corrupt/` to [`KEEP_CORRUPT`] files: every file `just_moved` there (what this
/// start or this retention found: the evidence of the failure at hand), then the newest
/// generations of those moved before, while there is room.
fn trim_corrupt(dir: &Path, just_moved: &[Unusable]) {
    let Ok(quarantined) = list(&dir.join(CORRUPT_DIR)) else {
        return;
    };
    let fresh = |generation: u64| {
        just_moved.iter().any(|u| u.generation == generation && u.moved_to.is_some())
    };
    let room = KEEP_CORRUPT.saturating_sub(quarantined.iter().filter(|(g, _)| fresh(*g)).count());
    let older = quarantined.into_iter().filter(|(g, _)| !fresh(*g));
    for (_, old) in older.skip(room) {
        if let Err(remove_err) = fs::remove_file(&old) {
            tracing::warn!(path = %old.display(), error = %remove_err,
                "an old unusable snapshot could not be removed");
        }
    }
}

/// Checks a snapshot file as [`decode`] does (header, every block's checksum, the footer's
/// counts, the whole file's checksum) while reading it in 64 KB pieces: retention verifies the
/// snapshots it keeps without holding any of them in memory. The records themselves are not
/// parsed: a file whose every checksum matches is the file that was written, and was read back
/// in full when it was.
pub fn verify_file(path: &Path) -> Result<(), SnapshotError> {
    let file = File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len() as usize;
    let mut input = StreamCursor {
        reader: io::BufReader::with_capacity(1 << 16, file),
        path,
        len,
        pos: 0,
        crc: 0,
    };
    let mut header = [0u8; HEADER_LEN];
    input.take(&mut header)?;
    check_header(&header)?;
    let (mut records, mut blocks) = (0u64, 0usize);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let mut tag = [0u8; 1];
        input.take(&mut tag)?;
        match tag[0] {
            b'B' => {
                let mut head = [0u8; BLOCK_HEADER_LEN - 1];
                input.take(&mut head)?;
                let count = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
                let payload_len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
                let stored = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
                if input.pos + payload_len > len {
                    return Err(SnapshotError::Truncated { at: input.pos, len });
                }
                let mut block_crc = 0u32;
                let mut left = payload_len;
                while left > 0 {
                    let n = left.min(chunk.len());
                    input.take(&mut chunk[..n])?;
                    block_crc = crc32c::crc32c_append(block_crc, &chunk[..n]);
                    left -= n;
                }
                if block_crc != stored {
                    return Err(SnapshotError::BlockChecksum { block: blocks });
                }
                records += u64::from(count);
                blocks += 1;
            }
            b'E' => {
                let mut footer = [0u8; 12];
                input.take(&mut footer)?;
                let file_crc = input.crc;
                let mut stored = [0u8; 4];
                input.take(&mut stored)?;
                if u32::from_le_bytes(stored) != file_crc {
                    return Err(SnapshotError::FileChecksum);
                }
                if input.pos != len {
                    return Err(SnapshotError::Malformed("bytes after the footer"));
                }
                let mut total = [0u8; 8];
                total.copy_from_slice(&footer[..8]);
                let total = u64::from_le_bytes(total);
                let footer_blocks =
                    u32::from_le_bytes([footer[8], footer[9], footer[10], footer[11]]);
                if total != records || footer_blocks as usize != blocks {
                    return Err(SnapshotError::KeyCount { footer: total, found: records });
                }
                return Ok(());
            }
            _ => return Err(SnapshotError::Malformed("unknown block tag")),
        }
    }
}

/// [`verify_file`]'s reader: the position and the running checksum of every byte read.
struct StreamCursor<'p, R> {
    reader: R,
    path: &'p Path,
    /// The file's length, for the `Truncated` error.
    len: usize,
    pos: usize,
    crc: u32,
}

impl<R: io::Read> StreamCursor<'_, R> {
    /// Fills `buf`, or fails `Truncated` where the file ends.
    fn take(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        match self.reader.read_exact(buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(SnapshotError::Truncated { at: self.pos, len: self.len });
            }
            Err(e) => return Err(io_err(self.path)(e)),
        }
        self.crc = crc32c::crc32c_append(self.crc, buf);
        self.pos += buf.len();
        Ok(())
    }
}

/// Restores the newest snapshot of `dir` that decodes in full into the (empty) store, trying
/// older ones in turn. Every file that cannot be used on the way is moved aside
/// ([`move_aside`]): it is never tried again, and never counted by retention. Files older than
/// the one restored are left for retention to verify.
pub fn restore(dir: &Path, store: &Store) -> Result<RestoreReport, SnapshotError> {
    let candidates = list(dir)?;
    let mut report = RestoreReport {
        // A junk name at the very end of the range must not leave no generation to write next.
        newest_generation: candidates
            .iter()
            .map(|(generation, _)| *generation)
            .filter(|&g| g < u64::MAX)
            .max()
            .unwrap_or(0),
        ..RestoreReport::default()
    };
    for (generation, path) in candidates {
        match read(&path) {
            Ok(decoded) => {
                report.keys = load_into(store, decoded) as u64;
                report.generation = Some(generation);
                report.outcome = RestoreOutcome::Restored;
                break;
            }
            Err(err) => report.unusable.push(move_aside(dir, &path, generation, &err)),
        }
    }
    if !report.unusable.is_empty() {
        trim_corrupt(dir, &report.unusable);
    }
    if report.outcome != RestoreOutcome::Restored {
        report.outcome = if report.unusable.is_empty() {
            RestoreOutcome::NoSnapshot
        } else {
            RestoreOutcome::AllCorrupt
        };
    }
    report.finished_at = Some(jiff::Timestamp::now());
    Ok(report)
}

/// Removes `*.snap.tmp` left by a crash mid-write.
pub fn remove_temp_files(dir: &Path) -> Result<usize, SnapshotError> {
    let mut removed = 0;
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(0);
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("mapcache-") && n.ends_with(".snap.tmp"))
        {
            fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Writes, then verifies by reading back. `after_writes_stopped` is recorded as given.
pub fn write_verified(
    store: &Store,
    dir: &Path,
    generation: u64,
    after_writes_stopped: bool,
) -> Result<SnapshotInfo, SnapshotError> {
    let started = Instant::now();
    let (path, keys, bytes, crc) = write(store, dir, generation)?;
    let decoded = read(&path)?;
    let verified = decoded.records.len() as u64 == keys && decoded.file_crc == crc;
    if !verified {
        return Err(SnapshotError::KeyCount { footer: keys, found: decoded.records.len() as u64 });
    }
    // The new snapshot is durable and verified: failing to list or remove an older one is no
    // reason to report it failed (a drain would then 500 and the checklist never pass).
    let moved_aside = prune(dir, generation).unwrap_or_else(|err| {
        tracing::warn!(error = %err, "snapshot verified, but older snapshots could not be listed");
        Vec::new()
    });
    Ok(SnapshotInfo {
        path: path.display().to_string(),
        generation,
        keys,
        bytes,
        crc32c: format!("{crc:08x}"),
        written_at: jiff::Timestamp::now(),
        verified,
        after_writes_stopped,
        duration_ms: started.elapsed().as_millis() as u64,
        moved_aside,
    })
}

/// Loads records into the (empty) store, skipping keys whose TTL already passed. Returns the
/// number of keys loaded.
pub fn load_into(store: &Store, decoded: Decoded) -> usize {
    let now = store.now_ms();
    let mut loaded = 0;
    for record in decoded.records {
        if record.expires_at_ms != 0 && record.expires_at_ms <= now {
            continue;
        }
        let shard = store.shard_of(&record.key);
        let mut guard = store.lock(shard, None);
        guard.insert(record.key, Entry::new(record.value, record.expires_at_ms, now));
        loaded += 1;
    }
    loaded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::clock::ManualClock;
    use crate::server::store::EvictionPolicy;

    fn filled_store(n: usize) -> Store {
        let store = Store::new(4, ManualClock::new(1_000), 0, EvictionPolicy::Noeviction);
        for i in 0..n {
            let key = Bytes::from(format!("key:{i}"));
            let mut g = store.lock(store.shard_of(&key), None);
            let ttl = if i % 2 == 0 { 0 } else { 10_000 + i as u64 };
            g.insert(key, Entry::new(Bytes::from(format!("value:{i}")), ttl, 1_000));
        }
        store
    }

    #[test]
    fn round_trip_keeps_every_key_value_and_absolute_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let store = filled_store(1000);
        let info = write_verified(&store, dir.path(), 1, false).unwrap();
        assert_eq!(info.keys, 1000);
        assert!(info.verified);
        let decoded = read(Path::new(&info.path)).unwrap();
        let restored = Store::new(8, ManualClock::new(1_000), 0, EvictionPolicy::Noeviction);
        assert_eq!(load_into(&restored, decoded), 1000);
        let key = Bytes::from("key:7");
        let g = restored.lock(restored.shard_of(&key), None);
        let entry = g.map().get(&key[..]).unwrap();
        assert_eq!(entry.value.as_bytes(), Ok(&b"value:7"[..]));
        assert_eq!(entry.expires_at_ms, 10_007);
    }

    #[test]
    fn hashes_and_sets_round_trip_with_their_ttls() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(4, ManualClock::new(1_000), 0, EvictionPolicy::Noeviction);
        let mut hash = Value::new_hash();
        for i in 0..100 {
            let field = format!("f{i}");
            hash.as_hash_mut().unwrap().insert(field.as_bytes(), Value::copy_from_slice(b"v"));
        }
        let mut set = Value::new_set();
        set.as_set_mut().unwrap().insert(b"\x00member", ());
        for (key, value, ttl) in [("h", hash.clone(), 0), ("s", set.clone(), 50_000)] {
            let key = Bytes::from(key);
            store.lock(store.shard_of(&key), None).insert(key, Entry::new(value, ttl, 1_000));
        }
        let info = write_verified(&store, dir.path(), 1, false).unwrap();
        let restored = Store::new(2, ManualClock::new(1_000), 0, EvictionPolicy::Noeviction);
        assert_eq!(load_into(&restored, read(Path::new(&info.path)).unwrap()), 2);
        for (key, value, ttl) in [("h", hash, 0), ("s", set, 50_000)] {
            let g = restored.lock(restored.shard_of(key.as_bytes()), None);
            let entry = g.map().get(key.as_bytes()).unwrap();
            assert_eq!((&entry.value, entry.expires_at_ms), (&value, ttl), "{key}");
        }
    }

    /// A version 2 record as the writer lays it out: key, TTL, then `body` (kind and payload).
    fn v2_file(body: &[u8]) -> Bytes {
        let mut payload = Vec::new();
        put_bytes(&mut payload, b"key");
        payload.extend_from_slice(&0u64.to_le_bytes());
        payload.extend_from_slice(body);
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        data.extend_from_slice(&1u32.to_le_bytes());
        data.extend_from_slice(&0u64.to_le_bytes());
        data.extend_from_slice(&0u32.to_le_bytes());
        let crc = crc32c::crc32c(&data);
        data.extend_from_slice(&crc.to_le_bytes());
        data.push(b'B');
        data.extend_from_slice(&1u32.to_le_bytes());
        data.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        data.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        data.extend_from_slice(&payload);
        data.push(b'E');
        data.extend_from_slice(&1u64.to_le_bytes());
        data.extend_from_slice(&1u32.to_le_bytes());
        let crc = crc32c::crc32c(&data);
        data.extend_from_slice(&crc.to_le_bytes());
        Bytes::from(data)
    }

    #[test]
    fn malformed_hash_and_set_records_are_refused_whole() {
        let mut good = vec![KIND_SET];
        good.extend_from_slice(&1u32.to_le_bytes());
        put_bytes(&mut good, b"m");
        assert_eq!(decode(&v2_file(&good)).unwrap().records.len(), 1);
        let mut twice = vec![KIND_HASH];
        twice.extend_from_slice(&2u32.to_le_bytes());
        for _ in 0..2 {
            put_bytes(&mut twice, b"f");
            put_bytes(&mut twice, b"v");
        }
        let mut empty = vec![KIND_SET];
        empty.extend_from_slice(&0u32.to_le_bytes());
        let mut too_many = vec![KIND_SET];
        too_many.extend_from_slice(&u32::MAX.to_le_bytes());
        put_bytes(&mut too_many, b"m");
        for (body, why) in [
            (&twice[..], "a hash with a field twice"),
            (&empty[..], "an empty hash or set"),
            (&[9u8, 0, 0, 0, 0][..], "unknown value kind"),
            (&too_many[..], "a record runs past its block"),
        ] {
            match decode(&v2_file(body)) {
                Err(SnapshotError::Malformed(reason)) => assert_eq!(reason, why),
                other => panic!("{why}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = filled_store(50);
        let info = write_verified(&store, dir.path(), 1, false).unwrap();
        let data = fs::read(&info.path).unwrap();
        let cut_file = dir.path().join("cut.snap");
        for cut in 0..data.len() {
            let err = decode(&Bytes::copy_from_slice(&data[..cut])).unwrap_err();
            assert!(matches!(err, SnapshotError::Truncated { .. }), "cut {cut}: {err}");
            fs::write(&cut_file, &data[..cut]).unwrap();
            let streamed = verify_file(&cut_file).unwrap_err();
            assert!(matches!(streamed, SnapshotError::Truncated { .. }), "cut {cut}: {streamed}");
        }
        assert_eq!(verify_file(Path::new(&info.path)).map_err(|e| e.to_string()), Ok(()));
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = filled_store(20);
        let info = write_verified(&store, dir.path(), 1, false).unwrap();
        let data = fs::read(&info.path).unwrap();
        let bad_file = dir.path().join("bad.snap");
        for at in 0..data.len() {
            let mut bad = data.clone();
            bad[at] ^= 0x40;
            fs::write(&bad_file, &bad).unwrap();
            assert!(verify_file(&bad_file).is_err(), "flip at byte {at} passed verify_file");
            assert!(decode(&Bytes::from(bad)).is_err(), "flip at byte {at} went unnoticed");
        }
    }

    #[test]
    fn generation_names_round_trip_and_temp_files_are_not_snapshots() {
        assert_eq!(generation_of(&file_name(17)), Some(17));
        assert_eq!(generation_of("mapcache-000017.snap.tmp"), None);
        assert_eq!(generation_of("other.snap"), None);
    }

    /// The snapshot files in `dir` and in its `corrupt/`, by generation.
    fn generations(dir: &Path) -> (Vec<u64>, Vec<u64>) {
        let of = |d: &Path| {
            let mut g: Vec<u64> = list(d).unwrap().into_iter().map(|(g, _)| g).collect();
            g.sort_unstable();
            g
        };
        (of(dir), of(&dir.join(CORRUPT_DIR)))
    }

    /// Flips one byte in the middle of a file.
    fn corrupt(path: &Path) {
        let mut data = fs::read(path).unwrap();
        let middle = data.len() / 2;
        data[middle] ^= 0xff;
        fs::write(path, data).unwrap();
    }

    #[test]
    fn retention_keeps_the_newest_verified_snapshots_and_moves_corrupt_ones_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = filled_store(10);
        write_verified(&store, dir.path(), 1, false).unwrap();
        write_verified(&store, dir.path(), 2, false).unwrap();
        corrupt(&dir.path().join(file_name(2)));
        // Before, the two newest names stayed: 3 and the corrupt 2, and the good 1 went.
        let info = write_verified(&store, dir.path(), 3, false).unwrap();
        assert_eq!(generations(dir.path()), (vec![1, 3], vec![2]));
        assert_eq!(info.moved_aside.len(), 1);
        let aside = &info.moved_aside[0];
        assert_eq!(
            (aside.file.as_str(), aside.generation, aside.reason, aside.moved_to.as_deref()),
            ("mapcache-000002.snap", 2, "checksum", Some("corrupt/mapcache-000002.snap"))
        );
        write_verified(&store, dir.path(), 4, false).unwrap();
        assert_eq!(generations(dir.path()), (vec![3, 4], vec![2]));
    }

    #[test]
    fn a_junk_file_with_a_high_generation_never_pushes_a_valid_snapshot_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = filled_store(10);
        write_verified(&store, dir.path(), 1, false).unwrap();
        fs::write(dir.path().join(file_name(999_999)), b"not a snapshot").unwrap();
        let info = write_verified(&store, dir.path(), 2, false).unwrap();
        assert_eq!(generations(dir.path()), (vec![1, 2], vec![999_999]));
        assert_eq!(info.moved_aside[0].reason, "truncated");
    }

    #[test]
    fn only_the_newest_unusable_files_are_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = filled_store(10);
        for generation in 1..=5 {
            write_verified(&store, dir.path(), generation * 10, false).unwrap();
            fs::write(dir.path().join(file_name(generation * 10 + 1)), b"junk").unwrap();
        }
        write_verified(&store, dir.path(), 60, false).unwrap();
        let (kept, aside) = generations(dir.path());
        assert_eq!(kept, [50, 60]);
        assert_eq!(aside.len(), KEEP_CORRUPT);
        assert_eq!(aside, [41, 51]);
    }

    #[test]
    fn restore_moves_every_unusable_file_aside_and_says_when_none_was_usable() {
        let dir = tempfile::tempdir().unwrap();
        let store = filled_store(10);
        write_verified(&store, dir.path(), 1, false).unwrap();
        write_verified(&store, dir.path(), 2, false).unwrap();
        fs::write(dir.path().join(file_name(3)), b"junk").unwrap();
        corrupt(&dir.path().join(file_name(2)));

        let restored = Store::new(4, ManualClock::new(1_000), 0, EvictionPolicy::Noeviction);
        let report = restore(dir.path(), &restored).unwrap();
        assert_eq!(
            (report.outcome, report.generation, report.keys, report.newest_generation),
            (RestoreOutcome::Restored, Some(1), 10, 3)
        );
        let reasons: Vec<_> = report.unusable.iter().map(|u| (u.generation, u.reason)).collect();
        assert_eq!(reasons, [(3, "truncated"), (2, "checksum")]);
        assert_eq!(generations(dir.path()), (vec![1], vec![2, 3]));

        corrupt(&dir.path().join(file_name(1)));
        let empty = Store::new(4, ManualClock::new(1_000), 0, EvictionPolicy::Noeviction);
        let report = restore(dir.path(), &empty).unwrap();
        assert_eq!(
            (report.outcome, report.generation, report.keys),
            (RestoreOutcome::AllCorrupt, None, 0)
        );
        assert_eq!(report.newest_generation, 1);
        assert!(empty.is_empty(None));
        // The file found bad at this start stays aside, with the newest of those found before.
        assert_eq!(generations(dir.path()), (vec![], vec![1, 3]));

        let report = restore(dir.path(), &empty).unwrap();
        assert_eq!(report.outcome, RestoreOutcome::NoSnapshot);
    }
}
