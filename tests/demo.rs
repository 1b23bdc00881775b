//! `doorwarden demo` tells its story headless, and what it prints matches
//! what a separate MQTT client sees on the broker.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::mosquitto::{Mosquitto, TestClient};

const DOORWARDEN: &str = env!("CARGO_BIN_EXE_doorwarden");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_story_runs_headless_and_matches_the_broker() {
    let broker = Mosquitto::start();
    let mut watcher = TestClient::connect(&broker).await;
    watcher.subscribe("doorwarden/#").await;
    watcher.subscribe("zigbee2mqtt/#").await;
    let storage = tempfile::tempdir().expect("tempdir");

    let child = tokio::process::Command::new(DOORWARDEN)
        .args(["demo", "--exit-after-story", "--broker", &broker.url()])
        .env("NO_COLOR", "1")
        .env("TMPDIR", storage.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start doorwarden demo");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the demo ends within two minutes")
        .expect("demo output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The timeline's key lines, in order.
    let mut rest: &str = &stdout;
    for line in [
        "camera porch is live",
        "delivery window open",
        "granted: window open, lock confirmed locked, camera live",
        "unlock sent to the lock  [zigbee2mqtt/demo_front_lock/set]",
        "lock confirms: unlocked",
        "courier opens the door",
        "saboteur freezes the camera",
        "interlock tripped",
        "relock sent to the lock  [zigbee2mqtt/demo_front_lock/set]",
        "lock confirms: locked",
        "owner alerted",
        "refused: camera porch frozen since",
        "camera porch live again",
        "interlock clear: deliveries possible again",
        "saboteur swaps the camera's picture for a recording of its last 3 seconds",
        "s: a replayed recording  [doorwarden/camera/porch/state]",
        "a courier asks to be let in in front of the recording",
        "refused: camera porch frozen since",
        "s: a replayed recording)  [doorwarden/front_door/delivery/response]",
        "camera fixed and rebooted",
        "camera porch live again: a new live picture",
        "story complete",
    ] {
        match rest.find(line) {
            Some(i) => rest = &rest[i + line.len()..],
            None => panic!("timeline lacks {line:?} (or has it out of order):\n{stdout}"),
        }
    }
    assert!(!stdout.contains('\x1b'), "NO_COLOR must turn colours off");

    // What the separate client saw, in the same order.
    let seen = watcher.collect(Duration::from_secs(1)).await;
    let position = |what: &str, test: &dyn Fn(&common::mosquitto::Received) -> bool| {
        seen.iter()
            .position(test)
            .unwrap_or_else(|| panic!("the broker never carried {what}"))
    };
    let unlock = position("the unlock", &|m| {
        m.topic == "zigbee2mqtt/demo_front_lock/set" && m.json()["state"] == "UNLOCK"
    });
    let tripped = position("interlock_tripped", &|m| {
        m.topic == "doorwarden/front_door/delivery/event"
            && m.json()["event_type"] == "interlock_tripped"
    });
    let relock = position("the relock", &|m| {
        m.topic == "zigbee2mqtt/demo_front_lock/set" && m.json()["state"] == "LOCK"
    });
    let refused = position("the refusal", &|m| {
        m.topic == "doorwarden/front_door/delivery/response" && m.json()["granted"] == false
    });
    // The replayed camera's refusal names the replay, after the first.
    let replay_refused = position("the refusal in front of the replay", &|m| {
        m.topic == "doorwarden/front_door/delivery/response"
            && m.json()["granted"] == false
            && m.json()["reason"]
                .as_str()
                .is_some_and(|r| r.ends_with("s: a replayed recording)"))
    });
    assert!(
        unlock < tripped && tripped < relock && relock < refused && refused < replay_refused,
        "{unlock} {tripped} {relock} {refused} {replay_refused}"
    );
    assert_eq!(seen[tripped].json()["camera"], "porch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_commands_act_on_the_simulated_home() {
    use tokio::io::AsyncWriteExt;
    let broker = Mosquitto::start();
    let storage = tempfile::tempdir().expect("tempdir");
    let mut child = tokio::process::Command::new(DOORWARDEN)
        .args(["demo", "--interactive", "--broker", &broker.url()])
        .env("NO_COLOR", "1")
        .env("TMPDIR", storage.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start doorwarden demo");
    // Read only after the story; ending the window first makes the answer
    // to the request certain.
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"end\nrequest\nquit\n")
        .await
        .expect("write commands");
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the demo ends after quit")
        .expect("demo output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let after_story = stdout.split("story complete").nth(1).unwrap_or_default();
    assert!(after_story.contains("→ end"), "{stdout}");
    assert!(after_story.contains("window_closed"), "{stdout}");
    assert!(
        after_story.contains("refused: no delivery window is open"),
        "{stdout}"
    );
}

/// With its embedded broker (what a newcomer runs first), the demo prints
/// its story and nothing from the broker library: no ERROR line from
/// rumqttd on stdout or stderr. The broker's own lines go to a file the
/// demo names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_keeps_its_log_lines_out_of_the_story() {
    let storage = tempfile::tempdir().expect("tempdir");
    let child = tokio::process::Command::new(DOORWARDEN)
        .args(["demo", "--exit-after-story"])
        .env("NO_COLOR", "1")
        .env("TMPDIR", storage.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start doorwarden demo");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the demo ends within two minutes")
        .expect("demo output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("story complete"), "{stdout}");
    let log = stdout
        .lines()
        .find_map(|l| l.strip_prefix("broker log:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("the demo does not say where the broker log is:\n{stdout}"));
    assert!(
        std::path::Path::new(log).starts_with(storage.path())
            && std::path::Path::new(log).is_file(),
        "broker log {log}"
    );
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        for line in text.lines() {
            assert!(
                !(line.contains("ERROR") || line.contains("rumqttd")),
                "the demo's {name} has a broker library line: {line}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
            );
        }
    }
}
