//! The whole bridge, end to end, on real parts: a real Mosquitto, the
//! simulated Zigbee2MQTT lock and contact sensor, the simulated RTSP camera,
//! and `doorwarden run`'s own code ([`doorwarden::runtime::run`]). The tests
//! look only at what crosses the broker, as Home Assistant and the lock see
//! it.

mod common;

use std::time::{Duration, Instant};

use common::mosquitto::{Mosquitto, Received, TestClient};
use doorwarden_sim::demo::home::{CAMERA, DOOR, LOCK_TOPIC, SimHome};

const LONG: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_secs(3);

fn lock_set() -> String {
    format!("{LOCK_TOPIC}/set")
}

fn is_lock_command(m: &Received, word: &str) -> bool {
    m.topic == lock_set() && m.json()["state"] == word
}

async fn home(broker: &Mosquitto) -> (SimHome, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = SimHome::start(broker.port(), dir.path())
        .await
        .expect("simulated home starts");
    (home, dir)
}

/// Wait until the camera is proven live. (The interlock itself stays on
/// until a window opens: it answers "would a delivery be refused now".)
async fn ready(client: &mut TestClient) {
    let camera_state = format!("doorwarden/camera/{CAMERA}/state");
    client
        .wait_for(
            |m| m.topic == camera_state && m.json()["live"] == true,
            LONG,
            "the camera to be live",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_discovers_every_entity_and_gets_them_again_after_its_restart() {
    let broker = Mosquitto::start();
    let mut ha = TestClient::connect(&broker).await;
    ha.subscribe("homeassistant/#").await;
    ha.subscribe("doorwarden/bridge/availability").await;
    let (home, _dir) = home(&broker).await;

    ha.wait_for(
        |m| m.topic == "doorwarden/bridge/availability" && m.text() == "online",
        LONG,
        "bridge online",
    )
    .await;
    let mut configs = ha.collect(Duration::from_secs(2)).await;
    configs.retain(|m| m.topic.ends_with("/config") && !m.payload.is_empty());
    let ids: Vec<String> = configs
        .iter()
        .map(|m| m.json()["unique_id"].as_str().unwrap_or("").to_string())
        .collect();
    for want in [
        format!("doorwarden_{DOOR}_lock"),
        format!("doorwarden_{DOOR}_door"),
        format!("doorwarden_{DOOR}_interlock"),
        format!("doorwarden_{DOOR}_delivery"),
        format!("doorwarden_{DOOR}_delivery_event"),
        format!("doorwarden_{DOOR}_grant"),
        format!("doorwarden_{DOOR}_end"),
        format!("doorwarden_camera_{CAMERA}_live"),
        format!("doorwarden_camera_{CAMERA}_frozen"),
        "doorwarden_bridge_connectivity".to_string(),
    ] {
        assert!(
            ids.contains(&want),
            "Home Assistant did not get {want}; got {ids:?}"
        );
    }
    let lock = configs
        .iter()
        .find(|m| m.json()["unique_id"] == format!("doorwarden_{DOOR}_lock"))
        .map(Received::json)
        .expect("lock config");
    assert_eq!(lock["command_topic"], format!("doorwarden/{DOOR}/lock/set"));
    assert_eq!(lock["device"]["manufacturer"], "doorwarden");
    assert_eq!(lock["availability_mode"], "all");

    // Home Assistant restarts: its birth message brings every config back.
    ha.drain();
    ha.publish("homeassistant/status", "online", false).await;
    let again = ha.collect(Duration::from_secs(2)).await;
    let again = again
        .iter()
        .filter(|m| m.topic.ends_with("/config") && !m.payload.is_empty())
        .count();
    assert!(
        again >= configs.len(),
        "only {again} of {} configs republished",
        configs.len()
    );
    home.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_unlock_left_on_the_broker_never_opens_the_door() {
    let broker = Mosquitto::start();
    let mut watcher = TestClient::connect(&broker).await;
    watcher.subscribe(&lock_set()).await;
    // Someone left a retained UNLOCK on the command topic before doorwarden
    // started (a replayed or injected message).
    watcher
        .publish(&format!("doorwarden/{DOOR}/lock/set"), "UNLOCK", true)
        .await;
    watcher
        .publish(
            &format!("doorwarden/{DOOR}/delivery/courier_unlock/set"),
            "PRESS",
            true,
        )
        .await;
    // `publish` only queues: make sure the broker has both before doorwarden
    // subscribes, or the test could pass without a trap set. (A message that
    // arrives after this client subscribed comes live, before it retained:
    // either way the broker has it.)
    let mut check = TestClient::connect(&broker).await;
    check.subscribe(&format!("doorwarden/{DOOR}/#")).await;
    let traps = [
        format!("doorwarden/{DOOR}/lock/set"),
        format!("doorwarden/{DOOR}/delivery/courier_unlock/set"),
    ];
    let mut held = std::collections::BTreeSet::new();
    while held.len() < traps.len() {
        let m = check
            .wait_for(|m| traps.contains(&m.topic), LONG, "the planted messages")
            .await;
        held.insert(m.topic);
    }
    let (home, _dir) = home(&broker).await;
    let mut states = TestClient::connect(&broker).await;
    states.subscribe("doorwarden/#").await;
    ready(&mut states).await;
    let unlock = watcher
        .try_wait_for(|m| is_lock_command(m, "UNLOCK"), Duration::from_secs(3))
        .await;
    assert!(
        unlock.is_none(),
        "the lock was sent {:?}",
        unlock.map(|m| m.text())
    );
    assert!(home.lock.is_locked());
    watcher
        .clear_retained(&format!("doorwarden/{DOOR}/lock/set"))
        .await;
    watcher
        .clear_retained(&format!("doorwarden/{DOOR}/delivery/courier_unlock/set"))
        .await;
    home.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_camera_mid_delivery_relocks_the_door() {
    let broker = Mosquitto::start();
    let mut obs = TestClient::connect(&broker).await;
    obs.subscribe("doorwarden/#").await;
    // The lock's side on its own client, so waiting on one never drops
    // messages of the other.
    let mut lock = TestClient::connect(&broker).await;
    lock.subscribe(&format!("{LOCK_TOPIC}/#")).await;
    let (home, _dir) = home(&broker).await;
    ready(&mut obs).await;

    obs.publish(
        &format!("doorwarden/{DOOR}/delivery/grant/set"),
        "PRESS",
        false,
    )
    .await;
    obs.publish(
        &format!("doorwarden/{DOOR}/delivery/request"),
        r#"{"carrier":"Test Parcel"}"#,
        false,
    )
    .await;
    let answer = obs
        .wait_topic(&format!("doorwarden/{DOOR}/delivery/response"), LONG)
        .await;
    assert_eq!(answer.json()["granted"], true, "{}", answer.text());
    lock.wait_for(|m| is_lock_command(m, "UNLOCK"), LONG, "the unlock")
        .await;

    let fault = Instant::now();
    home.camera.freeze();
    let tripped = obs
        .wait_for(
            |m| {
                m.topic == format!("doorwarden/{DOOR}/delivery/event")
                    && m.json()["event_type"] == "interlock_tripped"
            },
            LONG,
            "interlock_tripped",
        )
        .await;
    assert_eq!(tripped.json()["camera"], CAMERA);
    lock.wait_for(|m| is_lock_command(m, "LOCK"), LONG, "the relock")
        .await;
    let relock_after = fault.elapsed();
    eprintln!(
        "relock command on {} {relock_after:?} after the freeze",
        lock_set()
    );
    lock.wait_for(
        |m| m.topic == LOCK_TOPIC && m.json()["lock_state"] == "locked",
        LONG,
        "the lock to confirm",
    )
    .await;
    assert!(home.lock.is_locked());

    // While frozen, a courier is refused with the camera named as the reason.
    obs.publish(&format!("doorwarden/{DOOR}/delivery/request"), "{}", false)
        .await;
    let refused = obs
        .wait_topic(&format!("doorwarden/{DOOR}/delivery/response"), LONG)
        .await;
    assert_eq!(refused.json()["granted"], false);
    let reason = refused.json()["reason"].as_str().unwrap_or("").to_string();
    assert!(
        reason.contains("porch") && reason.contains("frozen"),
        "{reason}"
    );
    home.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owners_lock_entity_moves_the_real_lock() {
    let broker = Mosquitto::start();
    let mut obs = TestClient::connect(&broker).await;
    obs.subscribe("doorwarden/#").await;
    obs.subscribe(&format!("{LOCK_TOPIC}/#")).await;
    let (home, _dir) = home(&broker).await;
    ready(&mut obs).await;
    obs.publish(&format!("doorwarden/{DOOR}/lock/set"), "UNLOCK", false)
        .await;
    obs.wait_for(|m| is_lock_command(m, "UNLOCK"), LONG, "the owner's unlock")
        .await;
    let state = format!("doorwarden/{DOOR}/state");
    obs.wait_for(
        |m| m.topic == state && m.json()["lock"] == "UNLOCKED",
        LONG,
        "the lock entity to show UNLOCKED",
    )
    .await;
    obs.publish(&format!("doorwarden/{DOOR}/lock/set"), "LOCK", false)
        .await;
    obs.wait_for(
        |m| m.topic == state && m.json()["lock"] == "LOCKED",
        LONG,
        "the lock entity to show LOCKED",
    )
    .await;
    home.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_brings_everything_back() {
    let mut broker = Mosquitto::start();
    let (home, _dir) = home(&broker).await;
    {
        let mut obs = TestClient::connect(&broker).await;
        obs.subscribe("doorwarden/#").await;
        ready(&mut obs).await;
    }
    broker.restart();
    // A fresh broker has no retained state: doorwarden must republish it.
    let mut ha = TestClient::connect(&broker).await;
    ha.subscribe("homeassistant/#").await;
    ha.subscribe("doorwarden/#").await;
    ha.wait_for(
        |m| m.topic == "doorwarden/bridge/availability" && m.text() == "online",
        LONG,
        "bridge online again",
    )
    .await;
    ha.wait_for(
        |m| m.topic.ends_with(&format!("doorwarden_{DOOR}_lock/config")),
        LONG,
        "the lock's discovery config",
    )
    .await;
    ha.wait_for(
        |m| m.topic == format!("doorwarden/{DOOR}/state"),
        LONG,
        "the door state",
    )
    .await;
    home.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_every_topic_changes_nothing() {
    let broker = Mosquitto::start();
    let mut obs = TestClient::connect(&broker).await;
    obs.subscribe("doorwarden/#").await;
    obs.subscribe(&format!("{LOCK_TOPIC}/set")).await;
    let (home, _dir) = home(&broker).await;
    ready(&mut obs).await;
    let topics = [
        format!("doorwarden/{DOOR}/lock/set"),
        format!("doorwarden/{DOOR}/delivery/grant/set"),
        format!("doorwarden/{DOOR}/delivery/request"),
        format!("doorwarden/{DOOR}/delivery/grant_minutes/set"),
        format!("doorwarden/{DOOR}/delivery/code/set"),
        LOCK_TOPIC.to_string(),
        format!("{LOCK_TOPIC}/availability"),
        "zigbee2mqtt/demo_front_contact".to_string(),
        "homeassistant/status".to_string(),
        "homeassistant/lock/doorwarden_front_door_lock/config".to_string(),
    ];
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..1000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 64) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|j| (seed.rotate_left(j as u32 * 7) & 0xff) as u8)
            .collect();
        // Words a parser might half-accept, among the random bytes.
        let payload = match i % 5 {
            0 => b"UNLOCK\xff".to_vec(),
            1 => br#"{"state":7,"contact":"yes"}"#.to_vec(),
            2 => br#"{"minutes":-3,"code":{}}"#.to_vec(),
            _ => bytes,
        };
        obs.publish(&topics[i % topics.len()], payload, false).await;
    }
    // The bridge still answers and never moved the lock.
    obs.publish(&format!("doorwarden/{DOOR}/delivery/request"), "{}", false)
        .await;
    let answer = obs
        .wait_topic(&format!("doorwarden/{DOOR}/delivery/response"), LONG)
        .await;
    assert_eq!(
        answer.json()["granted"],
        false,
        "no window is open: {}",
        answer.text()
    );
    let unlock = obs
        .try_wait_for(|m| is_lock_command(m, "UNLOCK"), SHORT)
        .await;
    assert!(unlock.is_none());
    assert!(home.lock.is_locked());
    assert!(!home.bridge_finished(), "the bridge stopped");
    home.stop().await;
}
