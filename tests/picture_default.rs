//! The picture check's default as an owner meets it: `doorwarden run` (the
//! real binary, from a config file like a user's) guarding a door whose
//! camera streams H.265 (GStreamer's live x265 source, /cam-live265), with a
//! simulated Zigbee2MQTT lock and contact sensor on a real Mosquitto.
//!
//! The camera's block says nothing about `picture_check`: the door names the
//! camera, so its picture must be checked, and without ffmpeg an H.265
//! picture cannot be checked. Home Assistant shows the camera frozen with that reason,
//! never live, and a courier is refused with it. Saying `picture_check:
//! optional` lets the same stream be judged by its frames alone, and the
//! courier is let in.
//!
//! The bridge runs with a PATH that holds nothing, so the ffmpeg child that
//! decodes H.265 cannot be found: what is asserted is what an owner sees on
//! a machine without ffmpeg (tests/picture_ffmpeg.rs covers the machine
//! with it).

mod common;
#[path = "common/gst.rs"]
mod gst;
#[path = "common/process_home.rs"]
mod process_home;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::mosquitto::{Mosquitto, Received, TestClient};
use doorwarden_sim::zigbee2mqtt_lock::{SimZigbeeContact, SimZigbeeLock};
use gst::RtspTestServer;
use process_home::{
    CAMERA, LONG, Rules, camera_state_topic, config_text, contact_topic, door_topic, is_state,
    lock_topic,
};

const DOOR: &str = "front_door";

/// The camera's reason when no H.265 decoder is available.
const NO_H265_DECODER: &str = "cannot decode H.265 here: ffmpeg is not installed";

/// The bridge and the devices it talks to; the bridge is killed on drop.
struct Door {
    bridge: Child,
    lock: SimZigbeeLock,
    _contact: SimZigbeeContact,
    _dir: tempfile::TempDir,
}

impl Drop for Door {
    fn drop(&mut self) {
        let _ = self.bridge.kill();
        let _ = self.bridge.wait();
    }
}

/// Starts the lock, the contact sensor and `doorwarden run` for one door
/// watched by `camera_url`, the camera block extended by `camera_lines`.
async fn door(broker: &Mosquitto, camera_url: &str, camera_lines: &str) -> Door {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("storage");
    std::fs::create_dir_all(&storage).expect("storage dir");
    let lock = SimZigbeeLock::start("127.0.0.1", broker.port(), &lock_topic(DOOR))
        .await
        .expect("simulated lock");
    let contact = SimZigbeeContact::start("127.0.0.1", broker.port(), &contact_topic(DOOR))
        .await
        .expect("simulated contact sensor");
    let rules = Rules {
        doors: vec![DOOR],
        ..Rules::default()
    };
    let mut text = config_text(&rules, broker, camera_url, &storage);
    // The camera block ends with its warmup line.
    let warmup = format!("    warmup: {}\n", rules.warmup);
    assert!(text.contains(&warmup), "{text}");
    text = text.replacen(&warmup, &format!("{warmup}{camera_lines}"), 1);
    let config = dir.path().join("doorwarden.yaml");
    std::fs::write(&config, &text).expect("write config");
    let bridge = spawn_without_helpers(&config, dir.path());
    Door {
        bridge,
        lock,
        _contact: contact,
        _dir: dir,
    }
}

/// `doorwarden run --config <config>` with an empty PATH.
fn spawn_without_helpers(config: &Path, dir: &Path) -> Child {
    let empty = dir.join("empty-path");
    std::fs::create_dir_all(&empty).expect("empty PATH dir");
    let log = |name: &str| {
        std::fs::File::create(dir.join(name))
            .map(Stdio::from)
            .expect("log file")
    };
    Command::new(env!("CARGO_BIN_EXE_doorwarden"))
        .args(["--log-level", "info", "run", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .env("PATH", &empty)
        .env_remove("DOORWARDEN_FFMPEG")
        .stdin(Stdio::null())
        .stdout(log("stdout"))
        .stderr(log("stderr"))
        .spawn()
        .expect("spawn doorwarden")
}

fn camera_state(m: &Received) -> Option<serde_json::Value> {
    (m.topic == camera_state_topic()).then(|| m.json())
}

/// Waits for the lock to be shown LOCKED (the door is ready for a request).
async fn lock_shown_locked(obs: &mut TestClient) {
    obs.wait_for(
        |m| is_state(m, DOOR) && m.json()["lock"] == "LOCKED",
        LONG,
        "the lock to be shown LOCKED",
    )
    .await;
}

/// Grants a window and asks for a delivery, as a courier's app would; the
/// answer's JSON.
async fn courier_asks(obs: &mut TestClient) -> serde_json::Value {
    obs.publish(&door_topic(DOOR, "delivery/grant/set"), "PRESS", false)
        .await;
    obs.publish(
        &door_topic(DOOR, "delivery/request"),
        r#"{"carrier":"DHL"}"#,
        false,
    )
    .await;
    obs.wait_topic(&door_topic(DOOR, "delivery/response"), LONG)
        .await
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_door_camera_left_at_the_default_is_never_live_over_h265_and_the_courier_is_refused() {
    let broker = Mosquitto::start();
    let server = RtspTestServer::start();
    let mut obs = TestClient::connect(&broker).await;
    obs.subscribe("doorwarden/#").await;
    // Every state the camera is ever shown in, from before the bridge starts.
    let mut camera = TestClient::connect(&broker).await;
    camera.subscribe(&camera_state_topic()).await;
    let door = door(&broker, &server.url("/cam-live265"), "").await;
    lock_shown_locked(&mut obs).await;

    // Home Assistant's camera state: frozen, and why.
    let mut shown = Vec::new();
    let frozen = camera
        .wait_for(
            |m| {
                let state = camera_state(m);
                shown.extend(state.clone());
                state.is_some_and(|s| s["state"] == "frozen")
            },
            LONG,
            "the camera to be shown frozen",
        )
        .await
        .json();
    assert_eq!(frozen["reason"], NO_H265_DECODER, "{frozen}");
    assert_eq!(frozen["live"], false, "{frozen}");

    let answer = courier_asks(&mut obs).await;
    assert_eq!(answer["granted"], false, "{answer}");
    let reason = answer["reason"].as_str().unwrap_or_default();
    // "camera porch frozen since 10:00:07 (cannot decode H.265 ...)".
    let (since, why) = reason
        .strip_prefix(&format!("camera {CAMERA} frozen since "))
        .and_then(|rest| rest.split_once(' '))
        .unwrap_or_else(|| panic!("reason: {reason}"));
    assert!(
        since.len() == 8 && since.bytes().filter(|b| *b == b':').count() == 2,
        "reason: {reason}"
    );
    assert_eq!(why, format!("({NO_H265_DECODER})"), "reason: {reason}");

    // Ten more seconds of a good H.265 stream: never shown live, from the
    // start on, and the lock was never told to open.
    tokio::time::sleep(Duration::from_secs(10)).await;
    shown.extend(
        camera
            .collect(Duration::from_secs(1))
            .await
            .iter()
            .filter_map(camera_state),
    );
    assert!(
        shown.iter().all(|s| s["live"] == false),
        "the camera was shown live: {shown:?}"
    );
    assert!(
        !door
            .lock
            .received()
            .iter()
            .any(|c| c.to_string().contains("UNLOCK")),
        "the lock got {:?}",
        door.lock.received()
    );
    assert!(door.lock.is_locked());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_camera_with_picture_check_optional_is_live_and_lets_the_courier_in() {
    let broker = Mosquitto::start();
    let server = RtspTestServer::start();
    let mut obs = TestClient::connect(&broker).await;
    obs.subscribe("doorwarden/#").await;
    let door = door(
        &broker,
        &server.url("/cam-live265"),
        "    picture_check: optional\n",
    )
    .await;
    lock_shown_locked(&mut obs).await;
    // Asked again: the retained state comes back, were it already live.
    obs.subscribe(&camera_state_topic()).await;
    obs.wait_for(
        |m| camera_state(m).is_some_and(|s| s["live"] == true),
        LONG,
        "the camera to be shown live",
    )
    .await;
    let answer = courier_asks(&mut obs).await;
    assert_eq!(answer["granted"], true, "{answer}");
    obs.wait_for(
        |m| is_state(m, DOOR) && m.json()["lock"] == "UNLOCKED",
        LONG,
        "the lock to be shown UNLOCKED",
    )
    .await;
    assert!(!door.lock.is_locked());
}
