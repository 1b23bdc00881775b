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
//! # Repairs
//!
//! A crash or power cut in the middle of an append leaves half a line at
//! the end of the log; a failing disk can leave garbage. [`Store::open`]
//! never just drops such bytes. Everything after the last complete record
//! whose own hash holds is:
//!
//! 1. copied to `<log>.cut-<seq>-<unix time>-from-<offset>` beside the log
//!    (owner-only, like the log; written under a temporary name, fsync'd,
//!    renamed, the directory fsync'd), where `seq` is the number the first
//!    cut record would have had and `offset` where the cut began;
//! 2. cut off the log (truncated back to the last good record, fsync'd);
//! 3. recorded in the chain as a `log_repaired` record (no door) whose
//!    details give `log`, the range `cut_start`..`cut_end` (end exclusive),
//!    `cut_bytes`, `cut_sha256`, `kept_in` and `seqs_cut` (the numbers of
//!    records that went with the cut, `[first, last]`, or null). The repair
//!    takes the number after those, so no number names two records.
//!
//! A crash between the steps is repaired on the next start, once: before
//! step 2 the same tail is found already kept, after it the kept file's
//! name is enough to write the record. [`verify`] lists every repair and
//! checks each kept file against the recorded hash.
//!
//! A last record that parses as one of ours but whose hash does not hold
//! is not damage from a crash (a torn write cannot produce one): `open`
//! refuses it, and the bridge runs without storage, refusing deliveries.
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

use std::collections::BTreeSet;
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
/// The `decision` of the record a repair leaves in the chain.
const LOG_REPAIRED: &str = "log_repaired";
/// A delivery clip and its sidecar, with their SHA-256, entering the chain.
pub const EVIDENCE_CLIP: &str = "evidence_clip";
/// Clips retention deleted, named in the chain so that their absence is
/// explained.
pub const EVIDENCE_DELETED: &str = "evidence_deleted";
/// Between a log's name and the rest of a kept file's name.
const KEPT_INFIX: &str = ".cut-";
/// Where cut bytes are written before they get their kept file's name.
const KEPT_TMP_SUFFIX: &str = ".cut.tmp";

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
    /// resume the audit chain from the last complete record on disk.
    ///
    /// A damaged end of the log (half a line left by a crash, garbage, lines
    /// that are not audit records) is repaired, never silently: the damaged
    /// bytes are moved to a file beside the log (see the module doc,
    /// "Repairs"), the log is cut back to its last good record,
    /// and a `log_repaired` record saying what was cut enters the chain. A
    /// last record that *is* in the audit format but whose hash does not
    /// hold is tampering, not a torn write: that is an error and nothing is
    /// touched.
    pub fn open(storage: &config::Storage) -> Result<Store, StoreError> {
        Store::open_at(storage, jiff::Timestamp::now())
    }

    /// [`Store::open`], with the time a repair is recorded at.
    fn open_at(storage: &config::Storage, now: jiff::Timestamp) -> Result<Store, StoreError> {
        let dir = storage.dir.clone();
        fs::create_dir_all(&dir).map_err(io_err("create the storage directory", &dir))?;
        let rotated = rotated_files(&dir)?.last().map_or(0, |(n, _)| *n);

        let path = dir.join(AUDIT_FILE);
        let existed = path.exists();
        let mut audit = open_for_append(&path)?;
        if !existed {
            sync_dir(&dir)?;
        }
        let mut resume = scan_log(&mut audit, &path)?;
        let mut older = None;
        if resume.last.is_none() && rotated > 0 {
            // A crash between rotating and the first record of the new file:
            // the chain continues from the newest rotated file.
            let older_path = rotated_path(&dir, rotated);
            let mut file = open_for_append(&older_path)?;
            let scan = scan_log(&mut file, &older_path)?;
            older = Some((file, older_path, scan));
        }
        // Every file has been read and judged before anything is cut.
        let audit_len = resume.good_end;
        let next_seq = match &older {
            Some((_, _, scan)) => scan.last.as_ref().map_or(1, |l| l.seq + 1),
            None => resume.last.as_ref().map_or(1, |l| l.seq + 1),
        };
        if let Some((file, older_path, scan)) = &older {
            set_aside_tail(&dir, file, older_path, scan, next_seq, now)?;
        }
        set_aside_tail(&dir, &audit, &path, &resume, next_seq, now)?;
        if let Some((_, _, scan)) = older {
            resume = scan;
        }
        let (seq, prev) = match &resume.last {
            None => (0, GENESIS.to_string()),
            Some(last) => (last.seq, last.hash.clone()),
        };
        let mut store = Store {
            dir,
            rotate_bytes: storage.audit_rotate_bytes,
            audit,
            audit_len,
            seq,
            prev,
            rotated,
        };
        store.record_repairs(&resume, now)?;
        Ok(store)
    }

    /// Append a `log_repaired` record for every kept file that the chain does
    /// not mention yet: the one just set aside, and any left by a crash
    /// between setting bytes aside and recording it.
    fn record_repairs(&mut self, resume: &Scan, now: jiff::Timestamp) -> Result<(), StoreError> {
        // A kept file is named after the seq its bytes would have had, so one
        // from before the resumed file's first record was recorded long ago.
        let floor = resume.first_seq.unwrap_or(self.seq + 1);
        let mut pending: Vec<KeptName> = kept_files(&self.dir)?
            .into_iter()
            .filter(|k| k.seq >= floor && !resume.recorded.contains(&k.name))
            .collect();
        pending.sort_by(|a, b| (a.seq, a.unix, &a.name).cmp(&(b.seq, b.unix, &b.name)));
        for kept in pending {
            let path = self.dir.join(&kept.name);
            let bytes = fs::read(&path).map_err(io_err("read", &path))?;
            let first = self.seq + 1;
            let claimed = claimed_seqs(&bytes, first);
            let seq = claimed.map_or(first, |last| last + 1);
            let sha = sha256_hex(&bytes);
            let end = kept.start + bytes.len() as u64;
            let after = match self.seq {
                0 => "before its first record".to_string(),
                n => format!("after record {n}"),
            };
            let lost = match claimed {
                None => String::new(),
                Some(last) if last == first => format!("; record {first} was among them"),
                Some(last) => format!("; records {first}-{last} were among them"),
            };
            let reason = format!(
                "the audit log was damaged at its end, most likely by a crash or power cut \
                 during a write: {} bytes {after} in {} (bytes {}-{end}) were moved to {} \
                 (sha256 {sha}) and the log carries on from the last good record{lost}",
                bytes.len(),
                kept.log,
                kept.start,
                kept.name,
            );
            tracing::error!(
                file = %self.dir.join(&kept.log).display(),
                kept_in = %path.display(),
                bytes = bytes.len(),
                offset = kept.start,
                sha256 = %sha,
                "the audit log was damaged at its end: moved the damaged bytes aside and \
                 recorded the repair in the log"
            );
            let record = AuditRecord {
                at: now,
                door: None,
                decision: LOG_REPAIRED.into(),
                reason,
                details: serde_json::json!({
                    "log": kept.log,
                    "cut_start": kept.start,
                    "cut_end": end,
                    "cut_bytes": bytes.len(),
                    "cut_sha256": sha,
                    "kept_in": kept.name,
                    "seqs_cut": claimed.map(|last| [first, last]),
                }),
            };
            self.append_as(seq, &record)?;
        }
        Ok(())
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
        self.append_as(self.seq + 1, record)
    }

    /// [`Store::append`] with `seq` given: above the next one only for a
    /// repair whose cut bytes held the numbers in between.
    fn append_as(&mut self, seq: u64, record: &AuditRecord) -> Result<(), StoreError> {
        let line = encode_line(seq, record, &self.prev);
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
        self.seq = seq;
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

/// The last good record of a log file.
#[derive(Debug)]
struct LastRecord {
    seq: u64,
    /// Hex SHA-256 of its line: the next record's `prev`.
    hash: String,
}

/// What [`scan_log`] found in one log file.
#[derive(Debug)]
struct Scan {
    /// The last complete record whose own hash holds.
    last: Option<LastRecord>,
    /// Length of the file up to and including that record's newline.
    good_end: u64,
    /// Everything after it: a torn write, garbage, lines that are not
    /// records. Empty for a healthy file.
    tail: Vec<u8>,
    /// `seq` of the file's first line, if it has one.
    first_seq: Option<u64>,
    /// Kept files named by the `log_repaired` records of the file.
    recorded: BTreeSet<String>,
}

/// Read a whole log file and find where its good part ends. A line in the
/// audit format whose hash does not hold is an error: damage from a crash
/// does not produce a well-formed record with a wrong hash, an edit does.
fn scan_log(file: &mut File, path: &Path) -> Result<Scan, StoreError> {
    // The file is bounded by the rotation size, and this happens once per
    // start. Read no more than its length: a device file never ends.
    let len = file.metadata().map_err(io_err("inspect", path))?.len();
    let mut all = Vec::new();
    file.seek(SeekFrom::Start(0))
        .map_err(io_err("read", path))?;
    file.take(len)
        .read_to_end(&mut all)
        .map_err(io_err("read", path))?;

    // Complete lines end with a newline; bytes after the last one are torn.
    let mut good_end = all.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut last = None;
    while good_end > 0 {
        let body = &all[..good_end - 1];
        let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let line = &body[start..];
        match parse_line(line) {
            Ok(parsed) => {
                last = Some(LastRecord {
                    seq: parsed.seq,
                    hash: sha256_hex(line),
                });
                break;
            }
            Err(why) if serde_json::from_slice::<Line>(line).is_ok() => {
                let line_no = all[..good_end].iter().filter(|&&b| b == b'\n').count();
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!(
                        "last record (line {line_no}) cannot continue the chain: {why}"
                    ),
                });
            }
            Err(_) => good_end = start,
        }
    }
    let good = &all[..good_end];
    let first_seq = good.split(|&b| b == b'\n').next().and_then(seq_of);
    let recorded = good
        .split(|&b| b == b'\n')
        .filter(|line| contains(line, LOG_REPAIRED.as_bytes()))
        .filter_map(|line| parse_line(line).ok())
        .filter(|parsed| parsed.decision == LOG_REPAIRED)
        .filter_map(|parsed| parsed.details["kept_in"].as_str().map(str::to_owned))
        .collect();
    Ok(Scan {
        last,
        good_end: good_end as u64,
        tail: all[good_end..].to_vec(),
        first_seq,
        recorded,
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Move `scan`'s damaged tail out of the log at `path` and cut the log back
/// to its last good record.
///
/// The order is what makes a crash at any point harmless: the bytes reach
/// their own file (written under a temporary name, fsync'd, renamed, the
/// directory fsync'd) before the log is cut. A crash before the cut leaves
/// the same tail, which the next start finds already kept and does not copy
/// twice; a crash after the cut leaves a kept file the chain does not
/// mention yet, which [`Store::record_repairs`] then records.
fn set_aside_tail(
    dir: &Path,
    log: &File,
    path: &Path,
    scan: &Scan,
    next_seq: u64,
    now: jiff::Timestamp,
) -> Result<(), StoreError> {
    if scan.tail.is_empty() {
        return Ok(());
    }
    let log_name = file_name(path);
    let already = kept_files(dir)?.into_iter().find(|k| {
        k.log == log_name
            && k.seq == next_seq
            && k.start == scan.good_end
            && fs::read(dir.join(&k.name)).is_ok_and(|bytes| bytes == scan.tail)
    });
    if already.is_none() {
        let tmp = dir.join(format!("{log_name}{KEPT_TMP_SUFFIX}"));
        let mut file = create_private(&tmp, true).map_err(io_err("create", &tmp))?;
        file.write_all(&scan.tail).map_err(io_err("write", &tmp))?;
        file.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(file);
        let base = format!(
            "{log_name}{KEPT_INFIX}{next_seq}-{}-from-{}",
            now.as_second(),
            scan.good_end
        );
        let mut name = base.clone();
        let mut n = 1;
        while dir.join(&name).exists() {
            n += 1;
            name = format!("{base}.{n}");
        }
        let kept = dir.join(&name);
        fs::rename(&tmp, &kept).map_err(io_err("rename into place", &kept))?;
        sync_dir(dir)?;
    }
    log.set_len(scan.good_end)
        .map_err(io_err("truncate", path))?;
    log.sync_all().map_err(io_err("fsync", path))
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// A file holding bytes cut off a log: `<log>.cut-<seq>-<unix time>-from-<offset>`,
/// where `seq` is the number the first cut record would have had and
/// `offset` is where the cut bytes began in the log. The name alone is
/// enough to record the repair after a crash.
#[derive(Debug)]
struct KeptName {
    name: String,
    log: String,
    seq: u64,
    unix: i64,
    start: u64,
}

fn parse_kept_name(name: &str) -> Option<KeptName> {
    let (log, rest) = name.split_once(KEPT_INFIX)?;
    let is_log = log == AUDIT_FILE
        || log
            .strip_prefix("audit.")
            .and_then(|r| r.strip_suffix(".jsonl"))
            .is_some_and(|n| n.parse::<u64>().is_ok());
    if !is_log {
        return None;
    }
    let mut parts = rest.splitn(4, '-');
    let seq = parts.next()?.parse().ok()?;
    let unix = parts.next()?.parse().ok()?;
    if parts.next()? != "from" {
        return None;
    }
    // A `.<n>` suffix tells apart two cuts named in the same second.
    let start = parts.next()?.split('.').next()?.parse().ok()?;
    Some(KeptName {
        name: name.to_string(),
        log: log.to_string(),
        seq,
        unix,
        start,
    })
}

/// The kept files in `dir`.
fn kept_files(dir: &Path) -> Result<Vec<KeptName>, StoreError> {
    let entries = fs::read_dir(dir).map_err(io_err("list", dir))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        if let Some(kept) = entry.file_name().to_str().and_then(parse_kept_name) {
            found.push(kept);
        }
    }
    Ok(found)
}

/// The highest `seq` the cut bytes claim for a record of theirs, counting
/// from `first`: each line in them begins `{"seq":N` if it was ever one of
/// ours. Only numbers that fit (one per line) count, so garbage cannot push
/// the chain's numbers arbitrarily far.
fn claimed_seqs(cut: &[u8], first: u64) -> Option<u64> {
    let lines = cut.split(|&b| b == b'\n').count() as u64;
    cut.split(|&b| b == b'\n')
        .filter_map(|line| {
            let digits = line.strip_prefix(b"{\"seq\":")?;
            let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
            std::str::from_utf8(&digits[..len])
                .ok()?
                .parse::<u64>()
                .ok()
        })
        .filter(|&seq| seq >= first && seq < first + lines)
        .max()
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
    at: jiff::Timestamp,
    #[allow(dead_code)]
    door: Option<String>,
    decision: String,
    #[allow(dead_code)]
    reason: String,
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

/// What [`verify`] found. `Display` gives the text for the CLI: one line,
/// plus one line per repair when the log was repaired.
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
    /// The `log_repaired` records among the checked ones, oldest first.
    pub repairs: Vec<Repair>,
    /// The delivery-evidence records among the checked ones (clips kept,
    /// clips deleted by retention): `(seq, decision, details)`, oldest
    /// first. `crate::io::record::verify` checks the files they name.
    pub evidence: Vec<(u64, String, serde_json::Value)>,
}

/// A `log_repaired` record: bytes cut off the end of a log when the store
/// opened, and where they were kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// The repair record's own `seq` and time.
    pub record: u64,
    pub at: String,
    /// The record before it in the chain, if it was checked.
    pub after: Option<u64>,
    /// The log the bytes were cut from, as named when they were cut.
    pub log: String,
    /// The byte range cut, `[start, end)`.
    pub start: u64,
    pub end: u64,
    pub sha256: String,
    /// `seq` numbers that went with the cut bytes (first, last).
    pub seqs_cut: Option<(u64, u64)>,
    /// The kept file's name, beside the log.
    pub kept_in: String,
    pub kept: Kept,
}

/// The kept file of a repair, checked against the recorded hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    Matches,
    Missing,
    Altered,
}

/// The kept files of all repairs in a report, taken together: what
/// `audit verify` turns into its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptFiles {
    /// The log was never repaired.
    NoRepairs,
    AllMatch,
    /// At least one kept file is missing or does not match its hash: the
    /// evidence of a repair was lost or changed after the repair.
    MissingOrAltered,
}

impl Repair {
    /// Read back from a checked `log_repaired` line in `file`; `None` if its
    /// details are not those of a repair (then it is shown as any record).
    fn read(parsed: &Line, after: Option<u64>, file: &Path) -> Option<Repair> {
        let d = &parsed.details;
        let kept_in = d["kept_in"].as_str()?.to_string();
        let sha256 = d["cut_sha256"].as_str()?.to_string();
        let seqs_cut = match &d["seqs_cut"] {
            serde_json::Value::Array(v) if v.len() == 2 => Some((v[0].as_u64()?, v[1].as_u64()?)),
            _ => None,
        };
        // Only a plain file name beside the log: a record must not send
        // the checker anywhere else on the disk.
        let plain = Path::new(&kept_in).file_name() == Some(std::ffi::OsStr::new(&kept_in));
        let beside = file.parent().unwrap_or(Path::new("."));
        let kept = match fs::read(beside.join(&kept_in)) {
            Ok(bytes) if plain && sha256_hex(&bytes) == sha256 => Kept::Matches,
            Ok(_) if plain => Kept::Altered,
            _ => Kept::Missing,
        };
        Some(Repair {
            record: parsed.seq,
            at: parsed.at.to_string(),
            after,
            log: d["log"].as_str()?.to_string(),
            start: d["cut_start"].as_u64()?,
            end: d["cut_end"].as_u64()?,
            sha256,
            seqs_cut,
            kept_in,
            kept,
        })
    }
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record {} ({}): {} bytes cut at offset {} of {}",
            self.record,
            self.at,
            self.end.saturating_sub(self.start),
            self.start,
            self.log
        )?;
        if let Some(after) = self.after {
            write!(f, " after record {after}")?;
        }
        write!(f, " (sha256 {}), kept in {}", self.sha256, self.kept_in)?;
        match self.seqs_cut {
            Some((first, last)) if first == last => {
                write!(f, "; record {first} was in the cut bytes")?
            }
            Some((first, last)) => write!(f, "; records {first}-{last} were in the cut bytes")?,
            None => {}
        }
        f.write_str(match self.kept {
            Kept::Matches => "; the kept file matches",
            Kept::Missing => "; the kept file is missing",
            Kept::Altered => "; the kept file was altered (its sha256 differs)",
        })
    }
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
    /// The chain holds from the first record to the last (repairs, if any,
    /// are part of it).
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }

    pub fn kept_files(&self) -> KeptFiles {
        if self.repairs.is_empty() {
            KeptFiles::NoRepairs
        } else if self.repairs.iter().all(|r| r.kept == Kept::Matches) {
            KeptFiles::AllMatch
        } else {
            KeptFiles::MissingOrAltered
        }
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
            write!(
                f,
                "audit log BROKEN at {broken}; {} record(s) before it are intact",
                self.records
            )?;
        } else {
            match (self.first_seq, self.last_seq) {
                (Some(first), Some(last)) if self.repairs.is_empty() => write!(
                    f,
                    "audit log intact: {} records (seq {first}-{last}) in {} {files}",
                    self.records, self.files
                )?,
                (Some(first), Some(last)) => {
                    let n = self.repairs.len();
                    write!(
                        f,
                        "audit log REPAIRED: chain intact over {} records (seq {first}-{last}) \
                         in {} {files}, with {n} {}",
                        self.records,
                        self.files,
                        if n == 1 { "repair" } else { "repairs" }
                    )?;
                }
                _ => write!(f, "audit log intact: no records in {} {files}", self.files)?,
            }
            if let Some(first) = self.first_seq.filter(|&first| first > 1) {
                write!(f, "; records before {first} are not in this log")?;
            }
            if !self.repairs.is_empty() {
                f.write_str(":")?;
            }
        }
        for repair in &self.repairs {
            write!(f, "\n  repair: {repair}")?;
        }
        Ok(())
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
        repairs: Vec::new(),
        evidence: Vec::new(),
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
                // A repair takes the numbers of the records it cut.
                Some((seq, _))
                    if parsed.seq != seq + 1
                        && !(parsed.decision == LOG_REPAIRED
                            && parsed.details["seqs_cut"]
                                == serde_json::json!([seq + 1, parsed.seq.saturating_sub(1)])) =>
                {
                    Some(format!("seq {} follows record {seq}", parsed.seq))
                }
                _ => None,
            };
            if let Some(why) = why {
                report.broken = Some(broken(parsed.seq, why));
                return Ok(report);
            }
            if parsed.decision == LOG_REPAIRED {
                let after = last.as_ref().map(|(seq, _)| *seq);
                report.repairs.extend(Repair::read(&parsed, after, file));
            }
            if parsed.decision == EVIDENCE_CLIP || parsed.decision == EVIDENCE_DELETED {
                report
                    .evidence
                    .push((parsed.seq, parsed.decision.clone(), parsed.details.clone()));
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
    fn reopening_repairs_a_torn_last_line_and_resumes_after_rotation() {
        let (tmp, store) = with_records(3, 1 << 20);
        let path = store.audit_path();
        drop(store);
        // A crash in the middle of writing record 4.
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(b"{\"seq\":4,\"at\":\"2026-").expect("write");
        drop(file);
        assert!(!verify(&path).expect("verify").is_intact());
        let mut store = Store::open(&storage(tmp.path(), 1 << 20)).expect("reopen");
        // The repair took 5; record 4 went with the cut bytes.
        assert_eq!(store.last_seq(), 5);
        store.append(&record(6, "after crash")).expect("append");
        assert!(verify(tmp.path()).expect("verify").is_intact());

        // A crash right after a rotation: audit.jsonl is empty, the chain
        // continues from the newest rotated file.
        drop(store);
        fs::rename(&path, rotated_path(tmp.path(), 1)).expect("rename");
        let mut store = Store::open(&storage(tmp.path(), 1 << 20)).expect("reopen");
        assert_eq!(store.last_seq(), 6);
        store.append(&record(7, "after rotation")).expect("append");
        let report = verify(tmp.path()).expect("verify");
        assert!(report.is_intact(), "{report}");
        assert_eq!((report.records, report.files), (6, 2));
        assert_eq!(report.repairs.len(), 1, "{report}");
        // The kept file still names the log by the name it had when cut.
        assert_eq!(report.repairs[0].log, AUDIT_FILE);
        assert_eq!(report.repairs[0].kept, Kept::Matches);
    }

    #[test]
    fn a_torn_rotated_file_and_a_garbage_current_file_are_both_kept() {
        let (tmp, store) = with_records(3, 1 << 20);
        let path = store.audit_path();
        drop(store);
        // Rotated, then the rotated file lost the end of its last line and the
        // new file got garbage instead of its first record.
        let mut text = fs::read(&path).expect("read");
        let torn_from = text.len() - 10;
        let torn = text.split_off(torn_from);
        fs::write(rotated_path(tmp.path(), 1), &text).expect("write rotated");
        fs::write(&path, b"\0\0\0\0").expect("write garbage");
        drop(torn);

        let store = Store::open(&storage(tmp.path(), 1 << 20)).expect("reopen");
        // Record 3 was torn: the chain resumes after 2, and the two repairs
        // take 4 and 5 (3 went with the first cut).
        assert_eq!(store.last_seq(), 5);
        let report = verify(tmp.path()).expect("verify");
        assert!(report.is_intact(), "{report}");
        let logs: Vec<&str> = report.repairs.iter().map(|r| r.log.as_str()).collect();
        assert_eq!(logs, ["audit.1.jsonl", "audit.jsonl"], "{report}");
        assert_eq!(report.kept_files(), KeptFiles::AllMatch);
        assert_eq!(fs::read(&path).expect("read").len() as u64, {
            // Only the two repair records are in the new file.
            let current = lines(&path);
            assert_eq!(current.len(), 2, "{current:?}");
            current.iter().map(|l| l.len() as u64 + 1).sum::<u64>()
        });
    }

    #[test]
    fn a_crash_between_the_steps_of_a_repair_neither_loses_nor_doubles_it() {
        let (tmp, store) = with_records(3, 1 << 20);
        let path = store.audit_path();
        drop(store);
        let good = fs::read(&path).expect("read");
        let tail = b"{\"seq\":4,\"at\":\"20".to_vec();
        let mut torn = good.clone();
        torn.extend_from_slice(&tail);
        let at = jiff::Timestamp::from_second(1_780_000_100).expect("in range");
        let scan = |file: &mut File| scan_log(file, &path).expect("scan");

        // Crash after the bytes were kept, before the log was cut: the next
        // start finds the same tail and keeps it once.
        fs::write(&path, &torn).expect("write");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        let found = scan(&mut file);
        set_aside_tail(tmp.path(), &file, &path, &found, 4, at).expect("set aside");
        fs::write(&path, &torn).expect("the cut never reached the disk");
        drop(file);
        let store = Store::open_at(&storage(tmp.path(), 1 << 20), at).expect("reopen");
        assert_eq!(kept_files(tmp.path()).expect("list").len(), 1);
        assert_eq!(repairs_in(tmp.path()).len(), 1);
        assert_eq!(store.last_seq(), 5);
        drop(store);

        // Crash after the cut, before the repair was recorded: the kept file
        // alone is enough to record it on the next start, with the same range.
        let (tmp2, store) = with_records(3, 1 << 20);
        let path2 = store.audit_path();
        drop(store);
        fs::write(&path2, &torn).expect("write");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path2)
            .expect("open");
        let found = scan_log(&mut file, &path2).expect("scan");
        set_aside_tail(tmp2.path(), &file, &path2, &found, 4, at).expect("set aside");
        drop(file);
        assert_eq!(fs::read(&path2).expect("read"), good, "the log was cut");
        let store = Store::open(&storage(tmp2.path(), 1 << 20)).expect("reopen");
        assert_eq!(store.last_seq(), 5);
        let repairs = repairs_in(tmp2.path());
        assert_eq!(repairs.len(), 1, "{repairs:?}");
        assert_eq!(repairs[0]["details"]["cut_start"], good.len());
        assert_eq!(repairs[0]["details"]["cut_sha256"], sha256_hex(&tail));
        drop(store);
        // And once recorded, opening again changes nothing.
        let before = fs::read(&path2).expect("read");
        let store = Store::open(&storage(tmp2.path(), 1 << 20)).expect("reopen");
        assert_eq!(store.last_seq(), 5);
        assert_eq!(fs::read(&path2).expect("read"), before);
        assert!(verify(tmp2.path()).expect("verify").is_intact());
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
        store
            .append(&record(6, "after the repair"))
            .expect("append");
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
        assert!(
            report.to_string().contains("the kept file was altered"),
            "{report}"
        );
        assert_eq!(report.kept_files(), KeptFiles::MissingOrAltered);
        fs::remove_file(tmp.path().join(kept_in)).expect("remove");
        let report = verify(tmp.path()).expect("verify");
        assert!(
            report.to_string().contains("the kept file is missing"),
            "{report}"
        );
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
