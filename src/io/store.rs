//! The disk side of the shell: the delivery state that must survive a crash,
//! and the tamper-evident audit log.
//!
//! # Files in `storage.dir`
//!
//! - `state.json`: the deliveries in progress ([`PersistedState`]). Replaced
//!   atomically: written to `state.json.tmp` in the same directory, fsync'd,
//!   renamed over the old file, and the directory fsync'd, so after a crash
//!   the file is either the old state or the new one, never a mix.
//! - `audit.jsonl`: one JSON object per line, one line per decision, fsync'd
//!   before [`Store::append`] returns. Once it would grow past
//!   `storage.audit_rotate_bytes` it is renamed `audit.<n>.jsonl` (n = 1, 2,
//!   … oldest first) and a new `audit.jsonl` continues the same chain.
//!
//! # The audit chain
//!
//! Each line is, in this field order:
//!
//! ```text
//! {"seq":7,"at":"2026-05-04T09:12:01Z","door":"front","decision":"granted",
//!  "reason":"…","details":{…},"prev":"<64 hex>","hash":"<64 hex>"}
//! ```
//!
//! `prev` is the SHA-256 of the previous line's bytes (without its newline),
//! or 64 zeros for the very first record. `hash` is the SHA-256 of the line
//! with its `,"hash":"…"` member removed, i.e. of everything before that
//! member followed by `}`. `seq` counts from 1 across rotated files. Changing,
//! inserting or removing a record breaks the chain at that point, and
//! [`verify`] names the first record where it breaks. Cutting records off the
//! *end* of the log cannot be detected from the log alone (no hash chain
//! can); the per-delivery summaries and Home Assistant's own history are the
//! cross-check for that. Likewise someone with write access who recomputes
//! every hash from the changed record to the end produces a consistent
//! chain: the chain proves the log was not edited *after* its head was seen
//! elsewhere, so publish [`Store::head`] somewhere the attacker cannot write
//! (Home Assistant's history, a remote syslog) to pin it.
//!
//! Text fields (`door`, `decision`, `reason` and every string inside
//! `details`) go through [`crate::redact::text`] before they are written, so
//! an RTSP URL with credentials in a reason never reaches the disk.
//!
//! # Blocking
//!
//! Every method does blocking `std::fs` I/O including an fsync, which takes
//! milliseconds on a healthy disk and may take much longer on a struggling
//! SD card. Call them from `tokio::task::spawn_blocking` or
//! `tokio::task::block_in_place`; the order of writes matters (state before
//! unlock), so do not run two of them at once. One `Store` per directory: two
//! writers on the same audit log would interleave their chains.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config;
use crate::core::{AuditRecord, PersistedState};

const STATE_FILE: &str = "state.json";
const STATE_TMP: &str = "state.json.tmp";
const AUDIT_FILE: &str = "audit.jsonl";
/// The `prev` of the first record of a chain.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// `,"hash":"` + 64 hex digits + `"}`: how every line ends.
const HASH_MEMBER_PREFIX: &[u8] = b",\"hash\":\"";
const HASH_SUFFIX_LEN: usize = HASH_MEMBER_PREFIX.len() + 64 + 2;
/// A last line longer than this is not one of ours.
const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// Why the store could not do what was asked. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, as a verb phrase ("write", "fsync", …).
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// The persisted state and the audit log of one doorwarden instance.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    rotate_bytes: u64,
    audit: File,
    /// Bytes in the current `audit.jsonl`.
    audit_len: u64,
    /// `seq` of the last record written (0 before the first).
    seq: u64,
    /// Hex SHA-256 of the last line written (the next record's `prev`).
    prev: String,
    /// Highest `n` among the `audit.<n>.jsonl` files.
    rotated: u64,
}

impl Store {
    /// Open the store in `storage.dir`, creating the directory if needed, and
    /// resume the audit chain from the last complete record on disk. A torn
    /// last line (a write cut short by a crash, never acknowledged) is cut
    /// off; a last record that is not in the audit format is an error.
    pub fn open(storage: &config::Storage) -> Result<Store, StoreError> {
        let dir = storage.dir.clone();
        fs::create_dir_all(&dir).map_err(io_err("create the storage directory", &dir))?;
        let rotated = rotated_files(&dir)?.last().map_or(0, |(n, _)| *n);

        let path = dir.join(AUDIT_FILE);
        let existed = path.exists();
        let mut audit = open_for_append(&path)?;
        if !existed {
            sync_dir(&dir)?;
        }
        let (current_last, audit_len) = last_line(&mut audit, &path)?;
        let last = match current_last {
            Some((line, line_no)) => Some((line, line_no, path.clone())),
            // A crash between rotating and the first record of the new file:
            // the chain continues from the newest rotated file.
            None if rotated > 0 => {
                let older = rotated_path(&dir, rotated);
                let mut file = open_for_append(&older)?;
                last_line(&mut file, &older)?
                    .0
                    .map(|(line, n)| (line, n, older.clone()))
            }
            None => None,
        };
        let (seq, prev) = match last {
            None => (0, GENESIS.to_string()),
            Some((line, line_no, from)) => {
                let parsed = parse_line(&line).map_err(|why| StoreError::Corrupt {
                    path: from.clone(),
                    reason: format!(
                        "last record (line {line_no}) cannot continue the chain: {why}"
                    ),
                })?;
                (parsed.seq, sha256_hex(&line))
            }
        };
        Ok(Store {
            dir,
            rotate_bytes: storage.audit_rotate_bytes,
            audit,
            audit_len,
            seq,
            prev,
            rotated,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.join(AUDIT_FILE)
    }

    /// Replace the persisted state atomically (see the module doc). When this
    /// returns `Ok` the new state is on disk.
    pub fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
        let target = self.state_path();
        let tmp = self.dir.join(STATE_TMP);
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Corrupt {
            path: target.clone(),
            reason: format!("state cannot be encoded: {e}"),
        })?;
        let mut file = create_private(&tmp, true).map_err(io_err("create", &tmp))?;
        file.write_all(&bytes).map_err(io_err("write", &tmp))?;
        file.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(file);
        fs::rename(&tmp, &target).map_err(io_err("rename into place", &target))?;
        sync_dir(&self.dir)
    }

    /// The persisted state; empty when it was never saved. A file that cannot
    /// be read back is an error: the caller must then assume a delivery may
    /// have been open and fail closed.
    pub fn load(&self) -> Result<PersistedState, StoreError> {
        let path = self.state_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PersistedState::default());
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    /// Append one record to the audit log and fsync it. On error nothing is
    /// counted: the next record carries on from the last one that was written.
    pub fn append(&mut self, record: &AuditRecord) -> Result<(), StoreError> {
        let line = encode_line(self.seq + 1, record, &self.prev);
        let grows_to = self.audit_len + line.len() as u64 + 1;
        if self.audit_len > 0 && grows_to > self.rotate_bytes {
            self.rotate()?;
        }
        let path = self.audit_path();
        let mut bytes = line.clone();
        bytes.push(b'\n');
        let written = self
            .audit
            .write_all(&bytes)
            .map_err(io_err("append to", &path))
            .and_then(|()| self.audit.sync_data().map_err(io_err("fsync", &path)));
        if let Err(e) = written {
            // A torn line would break the chain for every later record; cut
            // it off. If even that fails, `open` cuts it on the next start.
            let _ = self.audit.set_len(self.audit_len);
            return Err(e);
        }
        self.audit_len += bytes.len() as u64;
        self.seq += 1;
        self.prev = sha256_hex(&line);
        Ok(())
    }

    /// `seq` of the last record written, 0 before the first.
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// The chain's head: the last record's `seq` and the SHA-256 (hex) of its
    /// line, i.e. the `prev` the next record will carry. Published elsewhere,
    /// it pins the log up to that record against a rewrite.
    pub fn head(&self) -> (u64, &str) {
        (self.seq, &self.prev)
    }

    fn rotate(&mut self) -> Result<(), StoreError> {
        let current = self.audit_path();
        let next = self.rotated + 1;
        let aside = rotated_path(&self.dir, next);
        fs::rename(&current, &aside).map_err(io_err("rotate", &current))?;
        self.rotated = next;
        sync_dir(&self.dir)?;
        self.audit = open_for_append(&current)?;
        self.audit_len = 0;
        sync_dir(&self.dir)
    }
}

fn open_for_append(path: &Path) -> Result<File, StoreError> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    private(&mut options);
    options.open(path).map_err(io_err("open", path))
}

fn create_private(path: &Path, truncate: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(truncate);
    private(&mut options);
    options.open(path)
}

/// Who came and when is the household's business: owner-only files.
#[cfg(unix)]
fn private(options: &mut OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    options.mode(0o600);
}
#[cfg(not(unix))]
fn private(_options: &mut OpenOptions) {}

/// Make a rename or a new file in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync the directory", dir))
}

fn rotated_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("audit.{n}.jsonl"))
}

/// `audit.<n>.jsonl` files in `dir`, oldest (lowest n) first.
fn rotated_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let entries = fs::read_dir(dir).map_err(io_err("list", dir))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let n = name
            .strip_prefix("audit.")
            .and_then(|rest| rest.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = n {
            found.push((n, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// A line's bytes (without newline) and its 1-based line number.
type NumberedLine = (Vec<u8>, u64);

/// The last complete line of `file` with its 1-based line number, and the
/// length up to and including its newline. Bytes after the last newline (a
/// torn write) are cut off the file.
fn last_line(file: &mut File, path: &Path) -> Result<(Option<NumberedLine>, u64), StoreError> {
    let len = file.metadata().map_err(io_err("inspect", path))?.len();
    let mut tail: Vec<u8> = Vec::new();
    let mut pos = len;
    let (line, complete) = loop {
        if let Some(end) = tail.iter().rposition(|&b| b == b'\n') {
            let body = &tail[..end];
            if let Some(start) = body.iter().rposition(|&b| b == b'\n') {
                break (Some(body[start + 1..].to_vec()), pos + end as u64 + 1);
            }
            if pos == 0 {
                break (Some(body.to_vec()), end as u64 + 1);
            }
        } else if pos == 0 {
            break (None, 0);
        }
        if tail.len() > MAX_RECORD_BYTES {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("last record is longer than {MAX_RECORD_BYTES} bytes"),
            });
        }
        let take = pos.min(64 * 1024);
        pos -= take;
        let mut chunk = vec![0; take as usize];
        file.seek(SeekFrom::Start(pos))
            .map_err(io_err("read", path))?;
        file.read_exact(&mut chunk).map_err(io_err("read", path))?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
    };
    if complete < len {
        tracing::warn!(
            file = %path.display(),
            bytes = len - complete,
            "cutting off an incomplete audit record left by a crash"
        );
        file.set_len(complete).map_err(io_err("truncate", path))?;
        file.sync_all().map_err(io_err("fsync", path))?;
    }
    let numbered = match line {
        None => None,
        Some(line) => {
            // Counting lines means reading the file once; it happens only at
            // start and the file is bounded by the rotation size.
            let mut all = Vec::new();
            file.seek(SeekFrom::Start(0))
                .map_err(io_err("read", path))?;
            file.take(complete)
                .read_to_end(&mut all)
                .map_err(io_err("read", path))?;
            let line_no = all.iter().filter(|&&b| b == b'\n').count() as u64;
            Some((line, line_no))
        }
    };
    Ok((numbered, complete))
}

/// The hashed part of a line, in the order it is written.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: u64,
    at: jiff::Timestamp,
    door: Option<&'a str>,
    decision: &'a str,
    reason: &'a str,
    details: &'a serde_json::Value,
    prev: &'a str,
}

/// A line as read back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    seq: u64,
    #[allow(dead_code)] // parsed to check the field is a timestamp
    at: jiff::Timestamp,
    #[allow(dead_code)]
    door: Option<String>,
    #[allow(dead_code)]
    decision: String,
    #[allow(dead_code)]
    reason: String,
    #[allow(dead_code)]
    details: serde_json::Value,
    prev: String,
    hash: String,
}

/// One audit line (without newline) for `record`, redacted and hashed.
fn encode_line(seq: u64, record: &AuditRecord, prev: &str) -> Vec<u8> {
    let door = record.door.as_deref().map(crate::redact::text);
    let decision = crate::redact::text(&record.decision);
    let reason = crate::redact::text(&record.reason);
    let details = redact_value(&record.details);
    let canonical = Canonical {
        seq,
        at: record.at,
        door: door.as_deref(),
        decision: &decision,
        reason: &reason,
        details: &details,
        prev,
    };
    // Serializing plain strings, numbers and a `Value` cannot fail: there
    // are no maps with non-string keys and no custom serializers.
    let mut line = serde_json::to_vec(&canonical).unwrap_or_else(|_| b"{}".to_vec());
    let hash = sha256_hex(&line);
    line.pop(); // the closing brace, put back after the hash
    line.extend_from_slice(HASH_MEMBER_PREFIX);
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}");
    line
}

fn redact_value(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(crate::redact::text(s)),
        Value::Array(items) => Value::Array(items.iter().map(redact_value).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (crate::redact::text(k), redact_value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Parse one line and check its own hash. The error says what is wrong.
fn parse_line(line: &[u8]) -> Result<Line, String> {
    let parsed: Line =
        serde_json::from_slice(line).map_err(|e| format!("not an audit record ({e})"))?;
    let len = line.len();
    let well_formed = len >= HASH_SUFFIX_LEN
        && line[len - HASH_SUFFIX_LEN..].starts_with(HASH_MEMBER_PREFIX)
        && line.ends_with(b"\"}");
    if !well_formed {
        return Err("not an audit record (hash is not its last field)".into());
    }
    let mut canonical = line[..len - HASH_SUFFIX_LEN].to_vec();
    canonical.push(b'}');
    if sha256_hex(&canonical) != parsed.hash {
        return Err("hash mismatch (the record was changed)".into());
    }
    Ok(parsed)
}

fn sha256_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// What [`verify`] found. `Display` gives the one line for the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records whose hash and link to the one before were checked and hold
    /// (those before the break, if any).
    pub records: u64,
    pub files: usize,
    /// `seq` of the first record: above 1 when older files were removed or
    /// a single rotated file was checked on its own.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The first record where the chain breaks.
    pub broken: Option<ChainBreak>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The record's `seq` if it could be read, else the one expected there.
    pub record: u64,
    pub file: PathBuf,
    /// 1-based line in `file`.
    pub line: u64,
    pub why: String,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.file.file_name().map_or_else(
            || self.file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        write!(
            f,
            "record {} ({name} line {}): {}",
            self.record, self.line, self.why
        )
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = if self.files == 1 { "file" } else { "files" };
        if let Some(broken) = &self.broken {
            return write!(
                f,
                "audit log BROKEN at {broken}; {} record(s) before it are intact",
                self.records
            );
        }
        match (self.first_seq, self.last_seq) {
            (Some(first), Some(last)) => {
                write!(
                    f,
                    "audit log intact: {} records (seq {first}-{last}) in {} {files}",
                    self.records, self.files
                )?;
                if first > 1 {
                    write!(f, "; records before {first} are not in this log")?;
                }
                Ok(())
            }
            _ => write!(f, "audit log intact: no records in {} {files}", self.files),
        }
    }
}

/// Check an audit log: one file, or a storage directory (its rotated files
/// oldest first, then `audit.jsonl`). A broken chain is reported in the
/// [`VerifyReport`], not as an error; `Err` means the log could not be read.
pub fn verify(path: &Path) -> Result<VerifyReport, StoreError> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = rotated_files(path)?.into_iter().map(|(_, p)| p).collect();
        let current = path.join(AUDIT_FILE);
        if current.exists() {
            files.push(current);
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut report = VerifyReport {
        records: 0,
        files: files.len(),
        first_seq: None,
        last_seq: None,
        broken: None,
    };
    // (seq, hash of the line) of the last good record.
    let mut last: Option<(u64, String)> = None;
    for file in &files {
        let bytes = fs::read(file).map_err(io_err("read", file))?;
        let mut rest: &[u8] = &bytes;
        let mut line_no = 0u64;
        while !rest.is_empty() {
            line_no += 1;
            let expected = last.as_ref().map_or(1, |(seq, _)| seq + 1);
            let broken = |record: u64, why: String| ChainBreak {
                record,
                file: file.clone(),
                line: line_no,
                why,
            };
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                report.broken = Some(broken(
                    expected,
                    "incomplete record (no newline at the end)".into(),
                ));
                return Ok(report);
            };
            let line = &rest[..end];
            rest = &rest[end + 1..];
            let parsed = match parse_line(line) {
                Ok(parsed) => parsed,
                Err(why) => {
                    let record = seq_of(line).unwrap_or(expected);
                    report.broken = Some(broken(record, why));
                    return Ok(report);
                }
            };
            let why = match &last {
                None if parsed.seq == 1 && parsed.prev != GENESIS => {
                    Some("the first record's prev is not all zeros".to_string())
                }
                Some((seq, hash)) if parsed.prev != *hash => Some(format!(
                    "prev does not match record {seq} (a record before it was removed, \
                     changed or inserted)"
                )),
                Some((seq, _)) if parsed.seq != seq + 1 => {
                    Some(format!("seq {} follows record {seq}", parsed.seq))
                }
                _ => None,
            };
            if let Some(why) = why {
                report.broken = Some(broken(parsed.seq, why));
                return Ok(report);
            }
            report.records += 1;
            report.first_seq.get_or_insert(parsed.seq);
            report.last_seq = Some(parsed.seq);
            last = Some((parsed.seq, sha256_hex(line)));
        }
    }
    Ok(report)
}

/// The `seq` of a line that failed its checks, if it still has one.
fn seq_of(line: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct SeqOnly {
        seq: u64,
    }
    serde_json::from_slice::<SeqOnly>(line).ok().map(|s| s.seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::SessionRecord;

    fn storage(dir: &Path, rotate_bytes: u64) -> config::Storage {
        config::Storage {
            dir: dir.to_path_buf(),
            audit_rotate_bytes: rotate_bytes,
        }
    }

    fn record(n: u32, reason: &str) -> AuditRecord {
        AuditRecord {
            at: jiff::Timestamp::from_second(1_780_000_000 + i64::from(n)).expect("in range"),
            door: Some("front".into()),
            decision: "denied".into(),
            reason: reason.into(),
            details: serde_json::json!({ "cameras": { "porch": "frozen" }, "n": n }),
        }
    }

    /// A store in a fresh directory with `count` records appended.
    fn with_records(count: u32, rotate_bytes: u64) -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut store = Store::open(&storage(tmp.path(), rotate_bytes)).expect("open");
        for n in 1..=count {
            store
                .append(&record(n, &format!("camera porch frozen (entry {n})")))
                .expect("append");
        }
        (tmp, store)
    }

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .expect("read")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn state_round_trips_and_missing_state_is_empty() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("not/yet/there");
        let store = Store::open(&storage(&dir, 1 << 20)).expect("open creates the directory");
        assert_eq!(store.load().expect("load"), PersistedState::default());

        let state = PersistedState {
            sessions: vec![SessionRecord {
                door: "front".into(),
                unlocked_at: "2026-05-04T09:12:01Z".parse().expect("timestamp"),
                carrier: Some("DHL".into()),
                restore_auto_relock: Some(30),
            }],
            ..Default::default()
        };
        store.save(&state).expect("save");
        assert_eq!(store.load().expect("load"), state);
        // The temp file is gone: the rename took it.
        assert!(!dir.join(STATE_TMP).exists());
        store.save(&PersistedState::default()).expect("save empty");
        assert_eq!(store.load().expect("load"), PersistedState::default());
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&storage(tmp.path(), 1 << 20)).expect("open");
        fs::write(store.state_path(), b"{\"sessions\": [tru").expect("write");
        let err = store.load().expect_err("corrupt state must not load");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("{} is corrupt:", store.state_path().display())),
            "{text}"
        );
    }

    #[test]
    fn save_to_unwritable_storage_returns_an_error_naming_the_path() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("store");
        let store = Store::open(&storage(&dir, 1 << 20)).expect("open");
        // Tests run as root, where permission bits stop nothing: replace the
        // directory with a regular file so every write beneath it fails.
        fs::remove_dir_all(&dir).expect("remove");
        fs::write(&dir, b"not a directory").expect("write");
        let err = store
            .save(&PersistedState::default())
            .expect_err("save must fail");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("cannot create {}", dir.join(STATE_TMP).display())),
            "{text}"
        );
        let err = Store::open(&storage(&dir.join("sub"), 1 << 20)).expect_err("open must fail");
        assert!(
            err.to_string()
                .contains(&dir.join("sub").display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_full_disk_on_append_is_an_error_and_nothing_is_counted() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path();
        // /dev/full refuses every write with ENOSPC, like a full disk.
        std::os::unix::fs::symlink("/dev/full", dir.join(AUDIT_FILE)).expect("symlink");
        let mut store = Store::open(&storage(dir, 1 << 20)).expect("open");
        let err = store
            .append(&record(1, "granted"))
            .expect_err("disk is full");
        assert!(err.to_string().starts_with("cannot append to "), "{err}");
        assert!(err.to_string().contains("audit.jsonl"), "{err}");
        assert_eq!(store.last_seq(), 0, "a failed write is not counted");
    }

    #[test]
    fn an_intact_log_verifies() {
        let (tmp, store) = with_records(5, 1 << 20);
        let report = verify(&store.audit_path()).expect("verify");
        assert_eq!(
            report.to_string(),
            "audit log intact: 5 records (seq 1-5) in 1 file"
        );
        let report = verify(tmp.path()).expect("verify dir");
        assert!(report.is_intact());
        let first = &lines(&store.audit_path())[0];
        assert!(
            first.contains(&format!("\"prev\":\"{GENESIS}\"")),
            "{first}"
        );
        assert!(first.starts_with("{\"seq\":1,\"at\":\"2026-"), "{first}");
    }

    #[test]
    fn a_changed_byte_is_named_by_its_record() {
        let (_tmp, store) = with_records(5, 1 << 20);
        let path = store.audit_path();
        let mut text = lines(&path);
        // One character of record 3's reason: still valid JSON, now a lie.
        text[2] = text[2].replacen("entry 3", "entry 8", 1);
        fs::write(&path, text.join("\n") + "\n").expect("write");
        let report = verify(&path).expect("verify");
        assert_eq!(
            report.to_string(),
            "audit log BROKEN at record 3 (audit.jsonl line 3): hash mismatch (the record was \
             changed); 2 record(s) before it are intact"
        );
    }

    #[test]
    fn a_rehashed_forgery_is_caught_by_the_next_record() {
        let (_tmp, store) = with_records(5, 1 << 20);
        let path = store.audit_path();
        let mut text = lines(&path);
        // Rewrite record 3 with a valid hash of its own: record 4's prev
        // still holds the original's hash.
        let forged = record(3, "nothing happened");
        let prev = sha256_hex(text[1].as_bytes());
        text[2] = String::from_utf8(encode_line(3, &forged, &prev)).expect("utf-8");
        fs::write(&path, text.join("\n") + "\n").expect("write");
        let broken = verify(&path).expect("verify").broken.expect("broken");
        assert_eq!((broken.record, broken.line), (4, 4));
        assert!(
            broken.why.starts_with("prev does not match record 3"),
            "{}",
            broken.why
        );
    }

    #[test]
    fn a_deleted_record_is_detected() {
        let (_tmp, store) = with_records(5, 1 << 20);
        let path = store.audit_path();
        let mut text = lines(&path);
        text.remove(2);
        fs::write(&path, text.join("\n") + "\n").expect("write");
        let report = verify(&path).expect("verify");
        let broken = report.broken.expect("broken");
        assert_eq!(
            broken.to_string(),
            "record 4 (audit.jsonl line 3): prev does not match record 2 (a record before it \
             was removed, changed or inserted)"
        );
        assert_eq!(report.records, 2);
    }

    #[test]
    fn rotation_keeps_one_verifiable_chain() {
        // Small files: a few records each.
        let (tmp, store) = with_records(12, 800);
        let dir = tmp.path();
        let rotated = rotated_files(dir).expect("list");
        assert!(
            rotated.len() >= 3,
            "expected several rotated files, got {rotated:?}"
        );
        for (_, file) in &rotated {
            let size = fs::metadata(file).expect("metadata").len();
            assert!(size <= 800, "{} is {size} bytes", file.display());
        }
        let report = verify(dir).expect("verify");
        assert!(report.is_intact(), "{report}");
        assert_eq!(
            (report.records, report.first_seq, report.last_seq),
            (12, Some(1), Some(12))
        );
        assert_eq!(report.files, rotated.len() + 1);

        // The new file's first record links to the old file's last line.
        let old_last = lines(&rotated[rotated.len() - 1].1).pop().expect("a line");
        let new_first = lines(&store.audit_path()).remove(0);
        let link = format!("\"prev\":\"{}\"", sha256_hex(old_last.as_bytes()));
        assert!(new_first.contains(&link), "{new_first}");

        // A single rotated file checked alone starts mid-chain, and says so.
        let alone = verify(&rotated[1].1).expect("verify");
        assert!(alone.is_intact());
        assert!(alone.to_string().contains("are not in this log"), "{alone}");

        // Dropping a middle file breaks the chain at the next file's start.
        fs::remove_file(&rotated[1].1).expect("remove");
        let broken = verify(dir).expect("verify").broken.expect("broken");
        assert_eq!(broken.file, rotated[2].1);
        assert_eq!(broken.line, 1);
    }

    #[test]
    fn reopening_resumes_the_chain() {
        let (tmp, store) = with_records(3, 1 << 20);
        drop(store);
        let mut store = Store::open(&storage(tmp.path(), 1 << 20)).expect("reopen");
        assert_eq!(store.last_seq(), 3);
        store.append(&record(4, "after restart")).expect("append");
        let report = verify(tmp.path()).expect("verify");
        assert_eq!(
            report.to_string(),
            "audit log intact: 4 records (seq 1-4) in 1 file"
        );
        let last = lines(&store.audit_path()).pop().expect("a line");
        assert_eq!(store.head(), (4, sha256_hex(last.as_bytes()).as_str()));
    }

    #[test]
    fn reopening_cuts_a_torn_last_line_and_resumes_after_rotation() {
        let (tmp, store) = with_records(3, 1 << 20);
        let path = store.audit_path();
        drop(store);
        // A crash in the middle of writing record 4.
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(b"{\"seq\":4,\"at\":\"2026-").expect("write");
        drop(file);
        assert!(!verify(&path).expect("verify").is_intact());
        let mut store = Store::open(&storage(tmp.path(), 1 << 20)).expect("reopen");
        store.append(&record(4, "after crash")).expect("append");
        assert!(verify(tmp.path()).expect("verify").is_intact());

        // A crash right after a rotation: audit.jsonl is empty, the chain
        // continues from the newest rotated file.
        drop(store);
        fs::rename(&path, rotated_path(tmp.path(), 1)).expect("rename");
        let mut store = Store::open(&storage(tmp.path(), 1 << 20)).expect("reopen");
        assert_eq!(store.last_seq(), 4);
        store.append(&record(5, "after rotation")).expect("append");
        let report = verify(tmp.path()).expect("verify");
        assert_eq!(
            report.to_string(),
            "audit log intact: 5 records (seq 1-5) in 2 files"
        );
    }

    /// The `log_repaired` records in `dir`'s current audit log.
    fn repairs_in(dir: &Path) -> Vec<serde_json::Value> {
        lines(&dir.join(AUDIT_FILE))
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["decision"] == "log_repaired")
            .collect()
    }

    #[test]
    fn a_torn_tail_is_moved_aside_and_the_repair_enters_the_chain() {
        let (tmp, store) = with_records(3, 1 << 20);
        let path = store.audit_path();
        drop(store);
        let good_len = fs::metadata(&path).expect("metadata").len();
        // A line that is not a record, then a crash halfway through record 4.
        let tail = b"garbage from a bad sector\n{\"seq\":4,\"at\":\"2026-".to_vec();
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(&tail).expect("write");
        drop(file);

        let mut store = Store::open(&storage(tmp.path(), 1 << 20)).expect("reopen");
        // Record 4 went with the cut bytes: the repair is 5, the next is 6.
        assert_eq!(store.last_seq(), 5);
        let repairs = repairs_in(tmp.path());
        assert_eq!(repairs.len(), 1, "{repairs:?}");
        let repair = &repairs[0];
        assert_eq!(repair["seq"], 5);
        assert_eq!(repair["door"], serde_json::Value::Null);
        let kept_in = repair["details"]["kept_in"].as_str().expect("kept_in");
        assert!(kept_in.starts_with("audit.jsonl.cut-4-"), "{kept_in}");
        assert_eq!(
            repair["details"],
            serde_json::json!({
                "log": "audit.jsonl",
                "cut_start": good_len,
                "cut_end": good_len + tail.len() as u64,
                "cut_bytes": tail.len(),
                "cut_sha256": sha256_hex(&tail),
                "kept_in": kept_in,
                "seqs_cut": [4, 4],
            })
        );
        assert_eq!(fs::read(tmp.path().join(kept_in)).expect("kept"), tail);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(tmp.path().join(kept_in))
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "the kept file is private");
        }
        store.append(&record(6, "after the repair")).expect("append");
        assert_eq!(store.last_seq(), 6);

        // Opening again finds nothing more to repair.
        drop(store);
        let store = Store::open(&storage(tmp.path(), 1 << 20)).expect("reopen");
        assert_eq!(store.last_seq(), 6);
        assert_eq!(repairs_in(tmp.path()).len(), 1);

        let report = verify(tmp.path()).expect("verify");
        assert!(report.is_intact(), "{report}");
        let text = report.to_string();
        assert!(
            text.starts_with(
                "audit log REPAIRED: chain intact over 5 records (seq 1-6) in 1 file, with 1 repair:"
            ),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "record 5 ({}): {} bytes cut at offset {good_len} of audit.jsonl after record 3 \
                 (sha256 {}), kept in {kept_in}; record 4 was in the cut bytes; the kept file \
                 matches",
                repair["at"].as_str().expect("at"),
                tail.len(),
                sha256_hex(&tail),
            )),
            "{text}"
        );
        assert_eq!(report.kept_files(), KeptFiles::AllMatch);

        fs::write(tmp.path().join(kept_in), b"something else").expect("alter");
        let report = verify(tmp.path()).expect("verify");
        assert!(report.to_string().contains("the kept file was altered"), "{report}");
        assert_eq!(report.kept_files(), KeptFiles::MissingOrAltered);
        fs::remove_file(tmp.path().join(kept_in)).expect("remove");
        let report = verify(tmp.path()).expect("verify");
        assert!(report.to_string().contains("the kept file is missing"), "{report}");
    }

    #[test]
    fn a_tampered_last_record_stops_the_store_from_opening() {
        let (tmp, store) = with_records(2, 1 << 20);
        let path = store.audit_path();
        drop(store);
        let text = fs::read_to_string(&path)
            .expect("read")
            .replacen("entry 2", "entry 9", 1);
        fs::write(&path, text).expect("write");
        let err = Store::open(&storage(tmp.path(), 1 << 20)).expect_err("must not resume");
        assert_eq!(
            err.to_string(),
            format!(
                "{} is corrupt: last record (line 2) cannot continue the chain: hash mismatch \
                 (the record was changed)",
                path.display()
            )
        );
    }

    #[test]
    fn no_secret_reaches_the_audit_log() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut store = Store::open(&storage(tmp.path(), 1 << 20)).expect("open");
        let mut rec = record(
            1,
            "camera porch down: connect rtsp://admin:hunter2@porch-camera.local:554/s1 refused",
        );
        rec.details = serde_json::json!({
            "cameras": [{ "porch": { "url": "rtsp://admin:hunter2@porch-camera.local/s1", "state": "offline" } }],
            "rtsp://viewer:hunter2@cam": true,
        });
        store.append(&rec).expect("append");
        let written = fs::read_to_string(store.audit_path()).expect("read");
        assert!(!written.contains("hunter2"), "{written}");
        assert!(
            written.contains("rtsp://***@porch-camera.local:554/s1 refused"),
            "{written}"
        );
        assert!(verify(tmp.path()).expect("verify").is_intact());
    }
}
