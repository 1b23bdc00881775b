//! Attacks on the broker side, on real parts: anyone on the broker can flood
//! a topic doorwarden listens to, or leave a huge retained message on it.
//! Neither may keep a door open or cut doorwarden off its locks (issue 12,
//! findings 1 and 2). `doorwarden run` is the real binary, the broker a real
//! Mosquitto, the flood comes from `mosquitto_pub -l` as an attacker's would.

mod common;
#[path = "common/process_home.rs"]
mod process_home;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::mosquitto::{Mosquitto, TestClient};
use process_home::{
    LONG, ProcessHome, Rules, door_topic, is_event, lock_commands, ready, request, wait_until,
};

const DOOR: &str = "front_door";

/// A client that sees what Home Assistant would, but not the flooded topic
/// itself (a test client that reads 150,000 messages only slows the test).
async fn observer(broker: &Mosquitto) -> TestClient {
    let mut obs = TestClient::connect(broker).await;
    for topic in [
        door_topic(DOOR, "state"),
        door_topic(DOOR, "delivery/event"),
        door_topic(DOOR, "delivery/response"),
        process_home::camera_state_topic(),
        "doorwarden/bridge/health".to_string(),
    ] {
        obs.subscribe(&topic).await;
    }
    obs
}

/// `lines` messages on `topic` from `mosquitto_pub -l` at QoS `qos`, the
/// way an attacker on the broker would send them. Returns once the
/// publisher has been handed every line (it may still be sending).
fn flood(broker: &Mosquitto, topic: &str, qos: u8, lines: usize) -> std::process::Child {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
        .args(["-t", topic, "-q", &qos.to_string(), "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some((user, password)) = broker.credentials() {
        cmd.args(["-u", user, "-P", password]);
    }
    let mut child = cmd.spawn().expect("mosquitto_pub (mosquitto-clients)");
    let mut text = String::with_capacity(lines * 24);
    for n in 0..lines {
        text.push_str(&format!("{{\"carrier\":\"flood{n}\"}}\n"));
    }
    let mut stdin = child.stdin.take().expect("piped stdin");
    std::thread::spawn(move || {
        let _ = stdin.write_all(text.as_bytes());
    });
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_flood_during_a_delivery_cannot_keep_the_door_unlocked() {
    let broker = Mosquitto::start();
    let mut obs = observer(&broker).await;
    let home = ProcessHome::start(&broker, Rules::default()).await;
    let door = home.door();
    ready(&mut obs, DOOR).await;

    obs.publish(&door_topic(DOOR, "delivery/grant/set"), "PRESS", false)
        .await;
    let answer = request(&mut obs, DOOR, r#"{"carrier":"Real Parcel"}"#).await;
    assert_eq!(answer["granted"], true, "{answer}");
    wait_until("the courier's unlock to reach the lock", || {
        lock_commands(&door.lock, "UNLOCK") == 1 && !door.lock.is_locked()
    })
    .await;

    // Every answer the bridge gives during the flood, on a client of its own.
    let mut answers = TestClient::connect(&broker).await;
    answers
        .subscribe(&door_topic(DOOR, "delivery/response"))
        .await;
    let t0 = std::time::Instant::now();
    let mut attacker = flood(&broker, &door_topic(DOOR, "delivery/request"), 0, 150_000);
    tokio::time::sleep(Duration::from_secs(1)).await;
    home.camera.freeze();

    obs.wait_for(
        |m| is_event(m, DOOR, "interlock_tripped"),
        LONG,
        "the interlock to trip",
    )
    .await;
    wait_until("the relock to reach the lock during the flood", || {
        lock_commands(&door.lock, "LOCK") >= 1 && door.lock.is_locked()
    })
    .await;
    let _ = attacker.wait();

    // The flood was answered sparingly: refusals are not a second flood.
    // (Answers keep coming, a few a second, until the bridge has read the
    // whole flood; then they stop.)
    let responses = answers.collect(Duration::from_secs(3)).await.len();
    let drained = t0.elapsed().as_secs_f64();
    assert!(
        (responses as f64) < 20.0 + 5.0 * drained + 50.0,
        "{responses} answers to a flood read in {drained:.1} s"
    );
    // The owner is told, in one line a minute, not one per message.
    let log = home.bridge.last_log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("too many messages") && l.contains("delivery/request"))
        .count();
    assert!(
        (1..=3).contains(&warnings),
        "{warnings} rate-limit warnings in:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_retained_message_is_dropped_and_the_bridge_stays_on_the_broker() {
    let broker = Mosquitto::start();
    let mut obs = observer(&broker).await;
    // Left on the broker before doorwarden starts: every subscribe gets it.
    let huge = vec![b'x'; 2 * 1024 * 1024];
    // At QoS 1 mosquitto_pub exits only once the broker has stored it.
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
        .args([
            "-t",
            &door_topic(DOOR, "delivery/request"),
            "-r",
            "-q",
            "1",
            "-s",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            if let Some(mut stdin) = c.stdin.take() {
                stdin.write_all(&huge)?;
            }
            c.wait()
        })
        .expect("mosquitto_pub");
    assert!(status.success());

    let home = ProcessHome::start(&broker, Rules::default()).await;
    // Lock reports still arrive after the bridge subscribed: the lock is
    // shown LOCKED, not JAMMED, and a delivery works.
    ready(&mut obs, DOOR).await;
    obs.publish(&door_topic(DOOR, "delivery/grant/set"), "PRESS", false)
        .await;
    let answer = request(&mut obs, DOOR, "{}").await;
    assert_eq!(answer["granted"], true, "{answer}");

    // The bridge's problem entity says why something was dropped (its
    // retained state, as Home Assistant reads it).
    let mut fresh = TestClient::connect(&broker).await;
    fresh.subscribe("doorwarden/bridge/health").await;
    let health = fresh
        .wait_for(
            |m| m.topic == "doorwarden/bridge/health",
            LONG,
            "the bridge's problem entity",
        )
        .await
        .json();
    assert_eq!(health["problem"], true, "{health}");
    let reason = health["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("too large") && reason.contains("delivery/request"),
        "{health}"
    );
    assert_eq!(health["dropped"]["oversized"], 1, "{health}");
    // Still connected: one session, no reconnect loop.
    let log = home.bridge.last_log();
    assert_eq!(
        log.matches("connected to MQTT broker").count(),
        1,
        "reconnected:\n{log}"
    );
}
