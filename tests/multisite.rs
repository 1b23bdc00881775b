//! Several bridges, one Home Assistant: two doorwardens (instances `north`
//! and `south`), each on its own site's Mosquitto with its own simulated
//! Zigbee2MQTT lock, contact sensor and RTSP camera, both sites bridged by
//! Mosquitto's own `connection` feature into a central Mosquitto. A client
//! shaped like Home Assistant on the central broker reads the discovery
//! configs, sends commands to the command topics they name, and each command
//! must reach its own site's lock and no other.
//!
//! Both sites name their door `front_door` and their camera `porch`, the
//! collision the `instance` name exists to prevent.

mod common;
#[path = "common/process_home.rs"]
mod process_home;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use common::mosquitto::{Mosquitto, TestClient};
use doorwarden_sim::camera::{SimCamera, SimCameraOptions};
use doorwarden_sim::zigbee2mqtt_lock::{SimZigbeeContact, SimZigbeeLock};
use process_home::{
    Bridge, LONG, LogFormat, Rules, config_text, contact_topic, lock_commands, lock_topic,
};
use serde_json::Value;

const DOOR: &str = "front_door";

/// One site: its broker (bridged to the central one), its devices and its
/// doorwarden.
struct Site {
    _broker: Mosquitto,
    lock: SimZigbeeLock,
    _contact: SimZigbeeContact,
    _camera: SimCamera,
    bridge: Bridge,
    /// The topics of every discovery config this bridge's config produces.
    expected_configs: BTreeSet<String>,
    _dir: tempfile::TempDir,
}

/// A site broker's bridge to the central broker, as an installer would
/// write it: the site's own base topic both ways (states out, commands in),
/// its discovery configs out, Home Assistant's birth message in. Nothing
/// else crosses, so the lock backends' topics stay on the site.
fn bridge_section(site: &str, central: &Mosquitto) -> String {
    format!(
        "connection {site}_to_central\n\
         address 127.0.0.1:{port}\n\
         clientid site_{site}\n\
         cleansession true\n\
         try_private true\n\
         notifications false\n\
         restart_timeout 1\n\
         topic doorwarden_{site}/# both 1\n\
         topic homeassistant/+/+/config out 1\n\
         topic homeassistant/status in 1\n",
        port = central.port()
    )
}

/// The same bridge for a central broker that does not take Mosquitto's
/// bridge mode (`try_private false`): without it the central broker would
/// echo a `both` topic back and the message would loop, so no topic crosses
/// both ways: states, events and responses out, commands in.
fn split_bridge_section(site: &str, central: &Mosquitto) -> String {
    let mut text = format!(
        "connection {site}_to_central\n\
         address 127.0.0.1:{port}\n\
         clientid site_{site}\n\
         cleansession true\n\
         try_private false\n\
         notifications false\n\
         restart_timeout 1\n\
         topic homeassistant/+/+/config out 1\n\
         topic homeassistant/status in 1\n",
        port = central.port()
    );
    for out in [
        "bridge/#",
        "+/state",
        "+/availability",
        "+/delivery/event",
        "+/delivery/response",
        "camera/+/state",
    ] {
        text.push_str(&format!("topic doorwarden_{site}/{out} out 1\n"));
    }
    for command in ["+/lock/set", "+/delivery/+/set", "+/delivery/request"] {
        text.push_str(&format!("topic doorwarden_{site}/{command} in 1\n"));
    }
    text
}

async fn start_site(
    name: &'static str,
    central: &Mosquitto,
    section: fn(&str, &Mosquitto) -> String,
) -> Site {
    let broker = Mosquitto::builder().extra(&section(name, central)).start();
    let dir = tempfile::tempdir().expect("tempdir");
    let storage: PathBuf = dir.path().join("storage");
    std::fs::create_dir_all(&storage).expect("storage dir");
    let camera = SimCamera::start(SimCameraOptions::default())
        .await
        .expect("simulated camera");
    let lock = SimZigbeeLock::start("127.0.0.1", broker.port(), &lock_topic(DOOR))
        .await
        .expect("simulated lock");
    let contact = SimZigbeeContact::start("127.0.0.1", broker.port(), &contact_topic(DOOR))
        .await
        .expect("simulated contact sensor");
    let text = format!(
        "instance: {name}\n{}",
        config_text(&Rules::default(), &broker, &camera.url(), &storage)
    );
    let config = match doorwarden::config::load_str(&text, "site.yaml") {
        Ok(c) => c,
        Err(e) => panic!("site config: {e}"),
    };
    let expected_configs = doorwarden::ha::Mirror::new(&config)
        .discovery()
        .into_iter()
        .filter(|m| m.topic.ends_with("/config"))
        .map(|m| m.topic)
        .collect();
    let path = dir.path().join("doorwarden.yaml");
    std::fs::write(&path, text).expect("write config");
    let bridge = Bridge::start(&path, &dir.path().join("logs"), LogFormat::Text, "info");
    Site {
        _broker: broker,
        lock,
        _contact: contact,
        _camera: camera,
        bridge,
        expected_configs,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sites_bridged_into_one_broker_each_command_reaches_only_its_own_lock() {
    two_sites(bridge_section).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_without_bridge_mode_with_one_direction_per_topic() {
    two_sites(split_bridge_section).await;
}

async fn two_sites(section: fn(&str, &Mosquitto) -> String) {
    let central = Mosquitto::start();
    let mut ha = TestClient::connect(&central).await;
    ha.subscribe("homeassistant/#").await;
    ha.subscribe("doorwarden_north/#").await;
    ha.subscribe("doorwarden_south/#").await;
    let north = start_site("north", &central, section).await;
    let south = start_site("south", &central, section).await;
    let sites = [&north, &south];

    // Home Assistant sees both sets of entities, whole, and nothing else of
    // doorwarden's.
    let wanted: BTreeSet<String> = sites
        .iter()
        .flat_map(|s| s.expected_configs.iter().cloned())
        .collect();
    assert_eq!(
        wanted.len(),
        north.expected_configs.len() + south.expected_configs.len(),
        "the two bridges share a discovery topic"
    );
    let mut configs: std::collections::BTreeMap<String, Value> = Default::default();
    let mut locked_shown = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + LONG;
    while (configs.len() < wanted.len() || locked_shown.len() < 2)
        && tokio::time::Instant::now() < deadline
    {
        let Some(m) = ha.try_wait_for(|_| true, Duration::from_secs(1)).await else {
            continue;
        };
        if m.topic.ends_with("/config") && !m.payload.is_empty() {
            configs.insert(m.topic.clone(), m.json());
        } else if m.topic.ends_with(&format!("/{DOOR}/state")) && m.json()["lock"] == "LOCKED" {
            locked_shown.insert(m.topic.clone());
        }
    }
    let seen: BTreeSet<String> = configs.keys().cloned().collect();
    assert_eq!(
        seen,
        wanted,
        "Home Assistant's view of the discovery configs;\nnorth log:\n{}\nsouth log:\n{}",
        north.bridge.output(),
        south.bridge.output()
    );
    assert_eq!(
        locked_shown.len(),
        2,
        "both locks shown locked: {locked_shown:?}"
    );

    // Two devices per door name, one per site.
    let lock_config = |site: &str| {
        configs
            .get(&format!(
                "homeassistant/lock/doorwarden_{site}_{DOOR}_lock/config"
            ))
            .cloned()
            .unwrap_or_else(|| panic!("no lock config for {site}"))
    };
    let (north_lock, south_lock) = (lock_config("north"), lock_config("south"));
    assert_ne!(
        north_lock["device"]["identifiers"],
        south_lock["device"]["identifiers"]
    );

    // Home Assistant unlocks the north door, through the command topic the
    // north lock's config names, on the central broker.
    let command = |config: &Value| {
        config["command_topic"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let state = |config: &Value| {
        config["state_topic"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    ha.publish(&command(&north_lock), "UNLOCK", false).await;
    let north_state = state(&north_lock);
    ha.wait_for(
        |m| m.topic == north_state && m.json()["lock"] == "UNLOCKED",
        LONG,
        "the north lock shown unlocked on the central broker",
    )
    .await;
    assert_eq!(lock_commands(&north.lock, "UNLOCK"), 1, "north's lock");
    assert_eq!(lock_commands(&south.lock, "UNLOCK"), 0, "south's lock");

    // And then the south door: only the south lock moves.
    ha.publish(&command(&south_lock), "UNLOCK", false).await;
    let south_state = state(&south_lock);
    ha.wait_for(
        |m| m.topic == south_state && m.json()["lock"] == "UNLOCKED",
        LONG,
        "the south lock shown unlocked on the central broker",
    )
    .await;
    assert_eq!(lock_commands(&south.lock, "UNLOCK"), 1, "south's lock");
    assert_eq!(
        lock_commands(&north.lock, "UNLOCK"),
        1,
        "north's lock again"
    );

    // The lock backends' topics never left their sites.
    let mut z2m = TestClient::connect(&central).await;
    z2m.subscribe("zigbee2mqtt/#").await;
    assert!(z2m.collect(Duration::from_millis(300)).await.is_empty());
}
