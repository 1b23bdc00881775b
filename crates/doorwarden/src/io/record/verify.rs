//! `doorwarden audit verify`'s look at the delivery clips: every clip and
//! sidecar the audit chain names is still on disk with the hash the chain
//! holds, or its deletion by retention is in the chain too.
//!
//! Owns: reading the evidence records the chain check collected and the
//! files they name. The chain itself is checked by `crate::io::store`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::file_facts;
use crate::io::store::{EVIDENCE_CLIP, EVIDENCE_DELETED};

/// What became of one file the chain names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// On disk, with the hash the chain holds.
    Intact,
    /// On disk with another hash.
    Altered,
    /// Gone, and the chain says retention deleted it (in that record).
    DeletedByRetention { record: u64 },
    /// Gone without a word in the chain.
    Missing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedFile {
    pub name: String,
    pub path: PathBuf,
    /// The record that put its hash in the chain.
    pub record: u64,
    pub state: FileState,
}

/// Every evidence file the chain names, checked.
#[derive(Debug, Clone, Default)]
pub struct EvidenceReport {
    pub files: Vec<CheckedFile>,
}

impl EvidenceReport {
    /// No file altered, none missing without a retention record.
    pub fn holds(&self) -> bool {
        self.files.iter().all(|f| {
            matches!(
                f.state,
                FileState::Intact | FileState::DeletedByRetention { .. }
            )
        })
    }
}

/// Checks the files named by `evidence` (the `(seq, decision, details)` of
/// the chain's evidence records). The clips are looked for in the directory
/// each record names, or in `dir` if given (recordings moved elsewhere).
pub fn check(evidence: &[(u64, String, Value)], dir: Option<&Path>) -> EvidenceReport {
    let mut deleted: BTreeMap<String, u64> = BTreeMap::new();
    for (seq, decision, details) in evidence {
        if decision == EVIDENCE_DELETED {
            for name in details["files"].as_array().into_iter().flatten() {
                if let Some(name) = name.as_str() {
                    deleted.insert(name.to_string(), *seq);
                }
            }
        }
    }
    let mut report = EvidenceReport::default();
    for (seq, decision, details) in evidence {
        if decision != EVIDENCE_CLIP {
            continue;
        }
        let base = match dir {
            Some(d) => d.to_path_buf(),
            None => PathBuf::from(details["dir"].as_str().unwrap_or(".")),
        };
        let named = details["clips"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(std::iter::once(&details["sidecar"]));
        for file in named {
            let (Some(name), Some(sha256)) = (file["file"].as_str(), file["sha256"].as_str())
            else {
                continue;
            };
            // A record is data from a file anyone may have edited: a name
            // must not lead outside the recordings directory.
            if name.contains('/') || name.contains('\\') || name.starts_with('.') {
                continue;
            }
            let path = base.join(name);
            let state = match file_facts(&path) {
                Ok((actual, _)) if actual == sha256 => FileState::Intact,
                Ok(_) => FileState::Altered,
                Err(_) => match deleted.get(name) {
                    Some(record) => FileState::DeletedByRetention { record: *record },
                    None => FileState::Missing,
                },
            };
            report.files.push(CheckedFile {
                name: name.to_string(),
                path,
                record: *seq,
                state,
            });
        }
    }
    report
}

impl fmt::Display for EvidenceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count =
            |want: fn(&FileState) -> bool| self.files.iter().filter(|f| want(&f.state)).count();
        let intact = count(|s| *s == FileState::Intact);
        let deleted = count(|s| matches!(s, FileState::DeletedByRetention { .. }));
        let altered = count(|s| *s == FileState::Altered);
        let missing = count(|s| *s == FileState::Missing);
        write!(
            f,
            "delivery evidence: {} file(s) named in the chain: {intact} intact, {deleted} deleted by retention, {altered} ALTERED, {missing} MISSING",
            self.files.len()
        )?;
        for file in &self.files {
            match file.state {
                FileState::Intact => {}
                FileState::Altered => write!(
                    f,
                    "\n  altered: {} (its SHA-256 differs from audit record {})",
                    file.path.display(),
                    file.record
                )?,
                FileState::DeletedByRetention { record } => write!(
                    f,
                    "\n  deleted by retention: {} (audit record {record})",
                    file.name
                )?,
                FileState::Missing => write!(
                    f,
                    "\n  missing: {} (kept by audit record {}, no retention record deletes it)",
                    file.path.display(),
                    file.record
                )?,
            }
        }
        Ok(())
    }
}
