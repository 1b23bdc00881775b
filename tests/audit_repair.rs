//! A torn audit log, on real parts: `doorwarden run` as a child process
//! writes its audit log, is killed, finds the last line of `audit.jsonl`
//! cut in half when it starts again, and `doorwarden audit verify` is asked
//! what happened. What the owner must see afterwards: the cut bytes kept in
//! a file beside the log, a `log_repaired` record in the chain saying where
//! and what was cut, no sequence number used twice, and `audit verify`
//! telling the story with its own exit status.

mod common;
#[path = "common/process_home.rs"]
mod process_home;

use std::process::Command;

use common::mosquitto::{Mosquitto, Received, TestClient};
use process_home::{ProcessHome, Rules, audited, request, wait_all, wait_until};
use sha2::{Digest, Sha256};

const DOOR: &str = "front_door";

/// `audit verify`'s exit status for a chain that holds but was repaired,
/// with every kept file matching its recorded hash (README, `--help`).
const VERIFY_REPAIRED: i32 = 3;

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_audit_tail_is_kept_recorded_in_the_chain_and_explained_by_verify() {
    let broker = Mosquitto::start();
    let mut obs = TestClient::connect(&broker).await;
    obs.subscribe("doorwarden/#").await;
    let mut home = ProcessHome::start(&broker, Rules::default()).await;
    let lock_shown = |m: &Received| process_home::is_state(m, DOOR) && m.json()["lock"] == "LOCKED";
    wait_all(&mut obs, &[("the lock to be shown LOCKED", &lock_shown)]).await;

    // Outside any window: each request is refused and audited.
    for n in 1..=3 {
        let answer = request(&mut obs, DOOR, &format!(r#"{{"carrier":"Parcel {n}"}}"#)).await;
        assert_eq!(answer["granted"], false, "{answer}");
    }
    wait_until("three refusals in the audit log", || {
        audited(&home.audit(), DOOR, "denied").len() >= 3
    })
    .await;
    home.bridge.kill();
    obs.drain();

    // Cut the last line in half, as a crash in the middle of a write would.
    let log = home.storage().join("audit.jsonl");
    let before = std::fs::read(&log).expect("read the audit log");
    let records_before = home.audit();
    let last_seq = records_before
        .last()
        .and_then(|r| r["seq"].as_u64())
        .expect("a last record");
    let last_start = before[..before.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let cut_at = last_start + (before.len() - last_start) / 2;
    let kept_bytes = before[last_start..cut_at].to_vec();
    std::fs::write(&log, &before[..cut_at]).expect("tear the audit log");

    home.bridge.restart();
    wait_until("a log_repaired record in the audit log", || {
        home.audit().iter().any(|r| r["decision"] == "log_repaired")
    })
    .await;

    let records = home.audit();
    let repair = records
        .iter()
        .find(|r| r["decision"] == "log_repaired")
        .expect("a log_repaired record");
    // The torn record's seq is not handed out again: the repair record
    // comes after it and says which numbers went with the cut bytes.
    assert_eq!(repair["seq"].as_u64(), Some(last_seq + 1), "{repair}");
    assert_eq!(repair["door"], serde_json::Value::Null, "{repair}");
    assert_eq!(
        repair["details"]["seqs_cut"],
        serde_json::json!([last_seq, last_seq]),
        "{repair}"
    );
    let seqs: Vec<u64> = records.iter().filter_map(|r| r["seq"].as_u64()).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64 + 1)
        .filter(|&s| s != last_seq)
        .collect();
    assert_eq!(seqs, expected, "sequence numbers after the repair");

    // Where, how much and what: the half line, from its first byte on.
    let details = &repair["details"];
    assert_eq!(details["log"], "audit.jsonl", "{repair}");
    assert_eq!(
        details["cut_start"].as_u64(),
        Some(last_start as u64),
        "{repair}"
    );
    assert_eq!(details["cut_end"].as_u64(), Some(cut_at as u64), "{repair}");
    assert_eq!(details["cut_bytes"].as_u64(), Some(kept_bytes.len() as u64));
    assert_eq!(details["cut_sha256"], hex(&kept_bytes), "{repair}");
    let kept_in = details["kept_in"].as_str().expect("kept_in").to_string();
    assert!(
        kept_in.starts_with(&format!("audit.jsonl.cut-{last_seq}-")),
        "{kept_in}"
    );
    let kept = std::fs::read(home.storage().join(&kept_in)).expect("the kept file");
    assert_eq!(
        kept, kept_bytes,
        "the kept file holds exactly the cut bytes"
    );
    let reason = repair["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&kept_in), "{reason}");
    let log_line = home
        .bridge
        .last_log()
        .lines()
        .find(|l| l.contains("the audit log was damaged at its end"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        log_line.contains("ERROR"),
        "the repair is logged as an error:\n{}",
        home.bridge.last_log()
    );

    // After the repair the bridge keeps auditing on the same chain.
    wait_all(&mut obs, &[("the lock shown LOCKED again", &lock_shown)]).await;
    let answer = request(&mut obs, DOOR, r#"{"carrier":"After"}"#).await;
    assert_eq!(answer["granted"], false, "{answer}");
    wait_until("a refusal after the repair", || {
        home.audit()
            .iter()
            .any(|r| r["seq"].as_u64() > Some(last_seq) && r["decision"] == "denied")
    })
    .await;
    home.bridge.kill();

    let out = Command::new(env!("CARGO_BIN_EXE_doorwarden"))
        .args(["audit", "verify"])
        .arg(home.storage())
        .env_remove("RUST_LOG")
        .output()
        .expect("run doorwarden audit verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(VERIFY_REPAIRED), "{stdout}");
    assert!(!stdout.starts_with("audit log intact"), "{stdout}");
    assert!(stdout.contains("with 1 repair"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{} bytes cut at offset {last_start} of audit.jsonl",
            kept_bytes.len()
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&kept_in), "{stdout}");
    assert!(stdout.contains("the kept file matches"), "{stdout}");

    // Evidence that goes missing afterwards is named too.
    std::fs::remove_file(home.storage().join(&kept_in)).expect("remove the kept file");
    let out = Command::new(env!("CARGO_BIN_EXE_doorwarden"))
        .args(["audit", "verify"])
        .arg(home.storage())
        .output()
        .expect("run doorwarden audit verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{stdout}");
    assert!(stdout.contains("the kept file is missing"), "{stdout}");
}
