//! Which delivery clips retention deletes, and the owner's acknowledgement
//! that keeps a compromised delivery's clips until then.
//!
//! Owns: reading the recordings directory (one group per sidecar: the
//! sidecar and the clips it names), choosing what to delete ([`plan`]:
//! older than `max_age`, then the oldest while all of them together exceed
//! `max_size`), and the `.ack` marker beside the sidecar of a compromised
//! delivery the owner acknowledged. A compromised delivery's group without
//! its marker is never chosen, whatever its age or size.
//!
//! Deleting is the shell's call: it writes the `evidence_deleted` audit
//! record first and only then asks for the files to go, so that a clip
//! missing from the disk is always explained by the chain.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

/// Largest sidecar read back (a sidecar is a few kilobytes).
const MAX_SIDECAR: u64 = 1024 * 1024;

/// One delivery's recording of one camera as found on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The sidecar's file name; the clips' names follow.
    pub sidecar: String,
    pub clips: Vec<String>,
    pub door: String,
    pub delivery: Timestamp,
    pub bytes: u64,
    /// Ended compromised and not acknowledged by the owner yet.
    pub protected: bool,
}

/// What [`plan`] chose, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Expired {
    pub files: Vec<String>,
    pub why: String,
}

/// The marker file that says the owner acknowledged a compromised
/// delivery's clip.
pub fn ack_marker(sidecar: &str) -> String {
    format!("{}.ack", sidecar.trim_end_matches(".json"))
}

/// Every group in `dir`, oldest delivery first. Sidecars that cannot be
/// read or are not doorwarden's are left alone (and never deleted).
pub fn scan(dir: &Path) -> std::io::Result<Vec<Group>> {
    let mut groups = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        let path = entry.path();
        if entry
            .metadata()
            .map(|m| m.len() > MAX_SIDECAR)
            .unwrap_or(true)
        {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(side) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let (Some(door), Some(delivery)) = (
            side["door"].as_str(),
            side["delivery"]
                .as_str()
                .and_then(|d| d.parse::<Timestamp>().ok()),
        ) else {
            continue;
        };
        let clips: Vec<String> = side["clips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["file"].as_str())
            // Only plain names inside this directory.
            .filter(|n| !n.contains('/') && !n.contains('\\') && !n.starts_with('.'))
            .map(str::to_string)
            .collect();
        let size = |n: &str| std::fs::metadata(dir.join(n)).map(|m| m.len()).unwrap_or(0);
        let bytes = bytes.len() as u64 + clips.iter().map(|c| size(c)).sum::<u64>();
        let compromised = side["compromised"].as_bool().unwrap_or(false);
        let acknowledged = dir.join(ack_marker(&name)).exists();
        groups.push(Group {
            sidecar: name,
            clips,
            door: door.to_string(),
            delivery,
            bytes,
            protected: compromised && !acknowledged,
        });
    }
    groups.sort_by(|a, b| (a.delivery, &a.sidecar).cmp(&(b.delivery, &b.sidecar)));
    Ok(groups)
}

/// The groups to delete at `now`: every unprotected one older than
/// `max_age`, then unprotected ones oldest first while the rest still
/// take more than `max_size`. `groups` oldest first.
pub fn plan(groups: &[Group], now: Timestamp, max_age: Duration, max_size: u64) -> Vec<Expired> {
    let cutoff = jiff::SignedDuration::try_from(max_age)
        .ok()
        .and_then(|d| now.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN);
    let mut out = Vec::new();
    let mut total: u64 = groups.iter().map(|g| g.bytes).sum();
    for g in groups {
        if g.protected {
            continue;
        }
        let why = if g.delivery < cutoff {
            format!(
                "older than {} (delivery at {})",
                humantime::format_duration(max_age),
                g.delivery
            )
        } else if total > max_size {
            format!("recordings take {total} bytes, more than the {max_size} allowed; oldest first")
        } else {
            continue;
        };
        total = total.saturating_sub(g.bytes);
        let mut files = g.clips.clone();
        files.push(g.sidecar.clone());
        let marker = ack_marker(&g.sidecar);
        files.push(marker);
        out.push(Expired { files, why });
    }
    out
}

/// Deletes `files` from `dir`; ones already gone are fine.
pub fn delete(dir: &Path, files: &[String]) -> Vec<(PathBuf, std::io::Error)> {
    let mut failed = Vec::new();
    for f in files {
        let path = dir.join(f);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => failed.push((path, e)),
        }
    }
    failed
}

/// Marks every compromised, unacknowledged group of `door` acknowledged.
/// Returns the sidecars marked.
pub fn acknowledge(dir: &Path, door: &str) -> std::io::Result<Vec<String>> {
    let mut marked = Vec::new();
    for g in scan(dir)? {
        if g.door == door && g.protected {
            std::fs::write(
                dir.join(ack_marker(&g.sidecar)),
                b"acknowledged by the owner\n",
            )?;
            marked.push(g.sidecar);
        }
    }
    Ok(marked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, days_ago: i64, bytes: u64, protected: bool, now: Timestamp) -> Group {
        Group {
            sidecar: format!("{name}.json"),
            clips: vec![format!("{name}.mp4")],
            door: "front".into(),
            delivery: now - jiff::SignedDuration::from_hours(24 * days_ago),
            bytes,
            protected,
        }
    }

    fn names(plan: &[Expired]) -> Vec<&str> {
        plan.iter().map(|e| e.files[0].as_str()).collect()
    }

    #[test]
    fn old_clips_go_then_the_oldest_until_the_rest_fits_and_a_compromised_one_stays() {
        let now: Timestamp = "2026-12-07T12:00:00Z".parse().expect("time");
        let day = Duration::from_secs(24 * 3600);
        let groups = vec![
            group("a", 40, 100, false, now),
            group("b", 35, 100, true, now), // tripped, not acknowledged
            group("c", 5, 300, false, now),
            group("d", 4, 300, false, now),
            group("e", 1, 300, false, now),
        ];
        // By age alone: a goes, b is kept although it is older still.
        assert_eq!(names(&plan(&groups, now, 30 * day, 10_000)), ["a.mp4"]);
        // By size: a (age), then c until 100 + 300 + 300 fits in 700.
        let p = plan(&groups, now, 30 * day, 700);
        assert_eq!(names(&p), ["a.mp4", "c.mp4"]);
        assert!(p[1].why.contains("oldest first"), "{:?}", p[1]);
        assert_eq!(p[1].files, ["c.mp4", "c.json", "c.ack"]);
        // Even when only b is left over the limit, b stays.
        let p = plan(&groups, now, 30 * day, 0);
        assert_eq!(names(&p), ["a.mp4", "c.mp4", "d.mp4", "e.mp4"]);
    }

    #[test]
    fn the_owners_acknowledgement_releases_a_compromised_delivery() {
        let dir = tempfile::tempdir().expect("tempdir");
        let side = serde_json::json!({
            "door": "front",
            "delivery": "2026-10-01T10:00:00Z",
            "compromised": true,
            "clips": [{"file": "front_x_porch.mp4"}, {"file": "../../etc/passwd"}],
        });
        std::fs::write(dir.path().join("front_x_porch.json"), side.to_string()).expect("sidecar");
        std::fs::write(dir.path().join("front_x_porch.mp4"), [0u8; 1000]).expect("clip");
        let now: Timestamp = "2026-12-07T12:00:00Z".parse().expect("time");
        let day = Duration::from_secs(24 * 3600);

        let groups = scan(dir.path()).expect("scan");
        assert_eq!(groups.len(), 1);
        assert!(groups[0].protected);
        assert_eq!(
            groups[0].clips,
            ["front_x_porch.mp4"],
            "no path leaves the directory"
        );
        assert!(plan(&groups, now, 30 * day, 0).is_empty());

        assert_eq!(
            acknowledge(dir.path(), "back").expect("ack"),
            Vec::<String>::new()
        );
        assert_eq!(
            acknowledge(dir.path(), "front").expect("ack"),
            ["front_x_porch.json"]
        );
        let groups = scan(dir.path()).expect("scan");
        let p = plan(&groups, now, 30 * day, u64::MAX);
        assert_eq!(names(&p), ["front_x_porch.mp4"]);
        assert!(delete(dir.path(), &p[0].files).is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("dir").count(),
            0,
            "clip, sidecar and marker are gone"
        );
    }
}
