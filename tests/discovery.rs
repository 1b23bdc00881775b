//! Home Assistant discovery, states and commands, read the way Home
//! Assistant reads them: field by field from the retained configs, then
//! state and command topics. The last tests go through a real Mosquitto.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::mosquitto::{Mosquitto, TestClient};
use doorwarden::config::{Config, Secret};
use doorwarden::core::{
    Action, CameraStatus, Command, DeliveryEvent, DeliveryEventKind, DeliveryState, DoorStatus,
    LockDisplay, MoveSource, RequestChannel, liveness::LivenessKind,
};
use doorwarden::ha::{CommandParse, CommandTopics, Message, Mirror};
use doorwarden::io::mqtt::{BrokerLink, Incoming};
use serde_json::{Value, json};

const HOME: &str = r#"
mqtt:
  url: mqtt://127.0.0.1:1883
locks:
  front:
    name: Front door
    zigbee2mqtt:
      topic: zigbee2mqtt/front_lock
    contact:
      zigbee2mqtt:
        topic: zigbee2mqtt/front_contact
    cameras: [porch]
  garage:
    zwave_js:
      node: 7
    cameras: [drive]
# Both cameras' pictures are not looked at (`off`): these are the stream's
# entities, which the fixtures and counts below pin down. snapshot_home()
# leaves porch at its default, which for a door's camera decodes pictures.
cameras:
  porch:
    name: Porch camera
    url: rtsp://porch.lan/stream1
    picture_check: off
  drive:
    url: rtsp://drive.lan/stream1
    picture_check: off
"#;

fn home() -> Config {
    config_from(HOME)
}

/// The default home with the porch camera's `picture_check` left out: the
/// front door names it, so its pictures are decoded (`required`).
fn snapshot_home() -> Config {
    config_from(&HOME.replacen(
        "    url: rtsp://porch.lan/stream1\n    picture_check: off\n",
        "    url: rtsp://porch.lan/stream1\n",
        1,
    ))
}

fn config_from(yaml: &str) -> Config {
    match doorwarden::config::load_str(yaml, "test.yaml") {
        Ok(c) => c,
        Err(e) => panic!("test config is invalid: {e}"),
    }
}

/// What Home Assistant would hold after reading every discovery topic:
/// topic -> parsed config.
fn discovered(config: &Config) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for m in Mirror::new(config).discovery() {
        if m.topic.ends_with("/config") {
            assert!(m.retain, "{} must be retained", m.topic);
            let v: Value = serde_json::from_str(&m.payload).expect("config is JSON");
            assert!(
                out.insert(m.topic.clone(), v).is_none(),
                "{} twice",
                m.topic
            );
        }
    }
    out
}

fn entity<'a>(all: &'a BTreeMap<String, Value>, component: &str, uid: &str) -> &'a Value {
    let topic = format!("homeassistant/{component}/{uid}/config");
    all.get(&topic)
        .unwrap_or_else(|| panic!("no discovery config at {topic}"))
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[test]
fn the_front_door_lock_as_home_assistant_reads_it() {
    let all = discovered(&home());
    let lock = entity(&all, "lock", "doorwarden_front_lock");
    // Golden payload: every key Home Assistant 2024.3+ reads.
    let expected = json!({
        "name": null,
        "unique_id": "doorwarden_front_lock",
        "device": {
            "identifiers": ["doorwarden_door_front"],
            "name": "Front door",
            "manufacturer": "doorwarden",
            "model": "Door with a Zigbee2MQTT lock",
            "sw_version": VERSION,
            "via_device": "doorwarden_bridge"
        },
        "origin": {"name": "doorwarden", "sw_version": VERSION},
        "availability": [
            {"topic": "doorwarden/bridge/availability"},
            {"topic": "doorwarden/front/availability"}
        ],
        "availability_mode": "all",
        "qos": 1,
        "state_topic": "doorwarden/front/state",
        "value_template": "{{ value_json.lock }}",
        "command_topic": "doorwarden/front/lock/set",
        "retain": false,
        "json_attributes_topic": "doorwarden/front/state",
        "json_attributes_template": "{{ {'lock_source': value_json.lock_source} | tojson }}",
        "payload_lock": "LOCK",
        "payload_unlock": "UNLOCK",
        "state_locked": "LOCKED",
        "state_unlocked": "UNLOCKED",
        "state_locking": "LOCKING",
        "state_unlocking": "UNLOCKING",
        "state_jammed": "JAMMED",
        "optimistic": false
    });
    assert_eq!(lock, &expected);
}

#[test]
fn door_entities_field_by_field() {
    let all = discovered(&home());

    let contact = entity(&all, "binary_sensor", "doorwarden_front_door");
    assert_eq!(contact["name"], "Door");
    assert_eq!(contact["device_class"], "door");
    assert_eq!(contact["state_topic"], "doorwarden/front/state");
    assert_eq!(
        contact["value_template"],
        "{% if value_json.door == 'open' %}ON{% elif value_json.door == 'closed' %}OFF{% else %}None{% endif %}"
    );
    assert_eq!(
        contact["device"]["identifiers"],
        json!(["doorwarden_door_front"])
    );
    // Only the lock follows the lock backend's availability.
    assert_eq!(
        contact["availability"],
        json!([{"topic": "doorwarden/bridge/availability"}])
    );

    let interlock = entity(&all, "binary_sensor", "doorwarden_front_interlock");
    assert_eq!(interlock["name"], "Interlock");
    assert_eq!(interlock["device_class"], "problem");
    assert_eq!(
        interlock["value_template"],
        "{{ 'ON' if value_json.interlock == 'blocking' else 'OFF' }}"
    );
    assert_eq!(interlock["json_attributes_topic"], "doorwarden/front/state");

    let delivery = entity(&all, "sensor", "doorwarden_front_delivery");
    assert_eq!(delivery["device_class"], "enum");
    assert_eq!(
        delivery["options"],
        json!([
            "idle",
            "window_open",
            "unlocked",
            "watching",
            "completed",
            "tripped",
            "denied"
        ])
    );
    assert_eq!(delivery["value_template"], "{{ value_json.delivery }}");

    let event = entity(&all, "event", "doorwarden_front_delivery_event");
    assert_eq!(event["name"], "Delivery event");
    assert_eq!(event["state_topic"], "doorwarden/front/delivery/event");
    let types: Vec<&str> = DeliveryEventKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(event["event_types"], json!(types));
    assert!(event.get("command_topic").is_none());

    for (uid, name, topic) in [
        (
            "doorwarden_front_grant",
            "Grant delivery window",
            "doorwarden/front/delivery/grant/set",
        ),
        (
            "doorwarden_front_end",
            "End delivery",
            "doorwarden/front/delivery/end/set",
        ),
        (
            "doorwarden_front_courier_unlock",
            "Courier unlock",
            "doorwarden/front/delivery/courier_unlock/set",
        ),
    ] {
        let button = entity(&all, "button", uid);
        assert_eq!(button["name"], name);
        assert_eq!(button["command_topic"], topic);
        assert_eq!(button["payload_press"], "PRESS");
        assert_eq!(button["retain"], false);
    }

    let minutes = entity(&all, "number", "doorwarden_front_grant_minutes");
    assert_eq!(minutes["entity_category"], "config");
    assert_eq!(minutes["min"], 1);
    assert_eq!(minutes["max"], 1440);
    assert_eq!(minutes["unit_of_measurement"], "min");
    assert_eq!(
        minutes["command_topic"],
        "doorwarden/front/delivery/grant_minutes/set"
    );
    assert_eq!(minutes["value_template"], "{{ value_json.grant_minutes }}");

    let code = entity(&all, "text", "doorwarden_front_code");
    assert_eq!(code["mode"], "password");
    assert_eq!(code["entity_category"], "config");
    assert_eq!(code["command_topic"], "doorwarden/front/delivery/code/set");
    // The state never carries the code back.
    assert_eq!(code["value_template"], "{{ '' }}");

    // The garage has no contact sensor: no door entity, and its device says
    // which backend its lock uses.
    assert!(!all.contains_key("homeassistant/binary_sensor/doorwarden_garage_door/config"));
    let garage = entity(&all, "lock", "doorwarden_garage_lock");
    assert_eq!(garage["device"]["name"], "garage");
    assert_eq!(garage["device"]["model"], "Door with a Z-Wave JS lock");
}

#[test]
fn camera_entities_field_by_field() {
    let all = discovered(&home());
    let device = json!({
        "identifiers": ["doorwarden_camera_porch"],
        "name": "Porch camera",
        "manufacturer": "doorwarden",
        "model": "RTSP camera",
        "sw_version": VERSION,
        "via_device": "doorwarden_bridge"
    });

    let live = entity(&all, "binary_sensor", "doorwarden_camera_porch_live");
    // Golden payload for a camera entity.
    assert_eq!(
        live,
        &json!({
            "name": "Live",
            "unique_id": "doorwarden_camera_porch_live",
            "device": device,
            "origin": {"name": "doorwarden", "sw_version": VERSION},
            "availability": [{"topic": "doorwarden/bridge/availability"}],
            "availability_mode": "all",
            "qos": 1,
            "state_topic": "doorwarden/camera/porch/state",
            "value_template": "{{ 'ON' if value_json.live else 'OFF' }}",
            "device_class": "connectivity"
        })
    );

    let frozen = entity(&all, "binary_sensor", "doorwarden_camera_porch_frozen");
    assert_eq!(frozen["device_class"], "problem");
    assert_eq!(
        frozen["value_template"],
        "{{ 'ON' if value_json.frozen else 'OFF' }}"
    );
    assert_eq!(frozen["device"], device);

    let liveness = entity(&all, "sensor", "doorwarden_camera_porch_liveness");
    assert_eq!(liveness["device_class"], "enum");
    assert_eq!(
        liveness["options"],
        json!(["connecting", "live", "stalled", "frozen", "offline"])
    );
    assert_eq!(
        liveness["json_attributes_template"],
        "{{ {'reason': value_json.reason, 'since': value_json.since, 'last_frame': value_json.last_frame} | tojson }}"
    );

    let fps = entity(&all, "sensor", "doorwarden_camera_porch_fps");
    assert_eq!(fps["entity_category"], "diagnostic");
    assert_eq!(fps["state_class"], "measurement");
    assert_eq!(fps["unit_of_measurement"], "fps");

    let bitrate = entity(&all, "sensor", "doorwarden_camera_porch_bitrate");
    assert_eq!(bitrate["device_class"], "data_rate");
    assert_eq!(bitrate["unit_of_measurement"], "kbit/s");
    assert_eq!(bitrate["value_template"], "{{ value_json.bitrate_kbps }}");

    // The last frame is an attribute of the liveness sensor (above), not a
    // timestamp sensor that would change state with every frame.
    assert!(
        !all.contains_key("homeassistant/sensor/doorwarden_camera_porch_last_frame/config"),
        "last_frame must not be an entity of its own"
    );

    // A camera without a name is named after its key.
    let drive = entity(&all, "binary_sensor", "doorwarden_camera_drive_live");
    assert_eq!(drive["device"]["name"], "drive");
}

#[test]
fn bridge_entities() {
    let all = discovered(&home());
    let connectivity = entity(&all, "binary_sensor", "doorwarden_bridge_connectivity");
    assert_eq!(
        connectivity["state_topic"],
        "doorwarden/bridge/availability"
    );
    assert_eq!(connectivity["payload_on"], "online");
    assert_eq!(connectivity["payload_off"], "offline");
    assert_eq!(connectivity["device_class"], "connectivity");
    assert_eq!(connectivity["entity_category"], "diagnostic");
    // It shows "off" when doorwarden is gone, not "unavailable".
    assert!(connectivity.get("availability").is_none());
    assert!(connectivity["device"].get("via_device").is_none());
    assert_eq!(
        connectivity["device"]["identifiers"],
        json!(["doorwarden_bridge"])
    );

    let version = entity(&all, "sensor", "doorwarden_bridge_version");
    assert_eq!(version["state_topic"], "doorwarden/bridge/info");
    assert_eq!(version["value_template"], "{{ value_json.version }}");

    let info = Mirror::new(&home())
        .discovery()
        .into_iter()
        .find(|m| m.topic == "doorwarden/bridge/info")
        .expect("bridge info published with discovery");
    assert!(info.retain);
    assert_eq!(
        serde_json::from_str::<Value>(&info.payload).expect("json"),
        json!({"version": VERSION, "doors": 2, "cameras": 2})
    );
}

fn door_status(door: &str) -> DoorStatus {
    DoorStatus {
        door: door.into(),
        lock: Some(LockDisplay::Locked),
        lock_source: Some(MoveSource::Manual),
        door_open: Some(false),
        interlock_blocking: Some("camera porch is connecting".into()),
        delivery: DeliveryState::Idle,
        window_ends: None,
        entries_left: 1,
        compromised: false,
        backstop_armed: false,
        grant_minutes: 30,
        schedule_warning: None,
    }
}

fn camera_status(camera: &str) -> CameraStatus {
    CameraStatus {
        camera: camera.into(),
        state: LivenessKind::Live,
        reason: None,
        since: "2026-11-28T14:00:00Z".parse().expect("ts"),
        fps: 15.0,
        bitrate_kbps: 2000.0,
        last_frame: Some("2026-11-28T14:02:10Z".parse().expect("ts")),
    }
}

fn event(door: &str) -> DeliveryEvent {
    DeliveryEvent {
        door: door.into(),
        kind: DeliveryEventKind::Granted,
        reason: "window open and camera porch live".into(),
        camera: None,
        source: None,
        duration_s: None,
        entries: Some(1),
        compromised: None,
        clip: None,
    }
}

/// Every message the mirror would publish for one of each action per door
/// and camera, plus discovery.
fn everything_published(config: &Config) -> Vec<Message> {
    let mut mirror = Mirror::new(config);
    let mut out = mirror.discovery();
    // The bridge's problem entity, as the runtime publishes it at start.
    let health = doorwarden::intake::Intake::new().health(std::time::Instant::now());
    out.extend(mirror.health(&health));
    for door in config.locks.keys() {
        out.extend(mirror.from_action(&Action::DoorState(door_status(door))));
        out.extend(mirror.from_action(&Action::DoorAvailability {
            door: door.clone(),
            online: true,
        }));
        out.extend(mirror.from_action(&Action::DeliveryEvent(event(door))));
        out.extend(mirror.from_action(&Action::DeliveryResponse {
            door: door.clone(),
            granted: false,
            reason: "camera porch frozen".into(),
            carrier: Some("DHL".into()),
        }));
    }
    for camera in config.cameras.keys() {
        out.extend(mirror.from_action(&Action::CameraState(camera_status(camera))));
    }
    out
}

/// The keys each `value_json.<key>` in `template` names.
fn json_keys(template: &str) -> Vec<String> {
    template
        .split("value_json.")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn invariants_over_every_entity() {
    let config = home();
    let all = discovered(&config);
    let published = everything_published(&config);
    let published_topics: BTreeSet<&str> = published.iter().map(|m| m.topic.as_str()).collect();
    // The bridge availability comes from the link (will + `online`).
    let mut state_sources: BTreeMap<String, Option<Value>> = published
        .iter()
        .filter(|m| !m.topic.ends_with("/config"))
        .map(|m| (m.topic.clone(), serde_json::from_str(&m.payload).ok()))
        .collect();
    state_sources.insert("doorwarden/bridge/availability".into(), None);
    let commands = CommandTopics::new(&config);

    let mut unique_ids = BTreeSet::new();
    let mut devices: BTreeMap<String, Value> = BTreeMap::new();
    for (topic, cfg) in &all {
        let uid = cfg["unique_id"].as_str().expect("unique_id is a string");
        assert!(unique_ids.insert(uid.to_string()), "unique_id {uid} twice");
        assert!(uid.starts_with("doorwarden_"), "{uid}");

        // <prefix>/<component>/<unique_id>/config, with valid levels.
        let levels: Vec<&str> = topic.split('/').collect();
        assert_eq!(levels.len(), 4, "{topic}");
        assert_eq!(levels[0], "homeassistant");
        assert!(
            [
                "lock",
                "binary_sensor",
                "sensor",
                "event",
                "button",
                "number",
                "text"
            ]
            .contains(&levels[1]),
            "{topic}"
        );
        assert_eq!(levels[2], uid);
        assert!(
            uid.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );

        // Options Home Assistant 2024.3 does not know, or that are deprecated.
        for key in [
            "object_id",
            "payload_open",
            "state_open",
            "state_opening",
            "cmps",
        ] {
            assert!(cfg.get(key).is_none(), "{topic} has {key}");
        }
        assert_eq!(cfg["origin"]["name"], "doorwarden");
        assert_eq!(cfg["device"]["manufacturer"], "doorwarden");

        // Same identifiers, same device block everywhere.
        let id = cfg["device"]["identifiers"][0]
            .as_str()
            .expect("identifier")
            .to_string();
        let device = devices.entry(id).or_insert_with(|| cfg["device"].clone());
        assert_eq!(device, &cfg["device"], "{topic}: device block differs");
        if let Some(via) = cfg["device"].get("via_device") {
            assert_eq!(via, "doorwarden_bridge");
        }

        // Every topic it reads is one we publish, and carries the keys its
        // templates name.
        for key in ["state_topic", "json_attributes_topic"] {
            if let Some(t) = cfg.get(key).and_then(Value::as_str) {
                assert!(!t.contains(['+', '#']), "{topic}: {key} {t}");
                let payload = state_sources
                    .get(t)
                    .unwrap_or_else(|| panic!("{topic}: {key} {t} is never published"));
                let template_key = if key == "state_topic" {
                    "value_template"
                } else {
                    "json_attributes_template"
                };
                if let Some(template) = cfg.get(template_key).and_then(Value::as_str) {
                    let json = payload
                        .as_ref()
                        .unwrap_or_else(|| panic!("{topic}: template on non-JSON {t}"));
                    for k in json_keys(template) {
                        assert!(json.get(&k).is_some(), "{topic}: {t} has no `{k}`");
                    }
                } else if key == "state_topic" && cfg.get("event_types").is_none() {
                    // Plain-text states only on the availability topic.
                    assert!(payload.is_none(), "{topic}: JSON state without template");
                }
            }
        }
        for a in cfg
            .get("availability")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let t = a["topic"].as_str().expect("availability topic");
            assert!(
                state_sources.contains_key(t),
                "{topic}: availability {t} never published"
            );
        }
        // Every command topic reaches a command.
        if let Some(t) = cfg.get("command_topic").and_then(Value::as_str) {
            let sample = match levels[1] {
                "lock" => "UNLOCK",
                "button" => "PRESS",
                "number" => "30",
                "text" => "482913",
                other => panic!("{topic}: unexpected command on {other}"),
            };
            assert!(
                matches!(
                    commands.parse(t, sample.as_bytes(), false),
                    CommandParse::Command { .. }
                ),
                "{topic}: {t} does not parse"
            );
        }
    }
    for t in &published_topics {
        assert!(
            !t.contains(['+', '#']) && !t.is_empty(),
            "published topic {t}"
        );
    }
    // One device per door and camera, plus the bridge.
    assert_eq!(devices.len(), 1 + 2 + 2);
    // Door (contact only for front), camera and bridge entities, all there.
    assert_eq!(all.len(), 3 + (10 + 9) + 5 * 2);
}

#[test]
fn only_changed_states_go_out_and_republish_sends_everything() {
    let mut mirror = Mirror::new(&home());
    let state = Action::DoorState(door_status("front"));
    let first = mirror.from_action(&state);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].topic, "doorwarden/front/state");
    assert!(first[0].retain);
    assert!(
        mirror.from_action(&state).is_empty(),
        "unchanged state re-sent"
    );

    let mut opened = door_status("front");
    opened.door_open = Some(true);
    let changed = mirror.from_action(&Action::DoorState(opened));
    assert_eq!(changed.len(), 1);
    let json: Value = serde_json::from_str(&changed[0].payload).expect("json");
    assert_eq!(json["door"], "open");

    // Events and responses are not states: always sent, never retained.
    for _ in 0..2 {
        let e = mirror.from_action(&Action::DeliveryEvent(event("front")));
        assert_eq!(e.len(), 1);
        assert!(!e[0].retain);
        assert_eq!(e[0].topic, "doorwarden/front/delivery/event");
    }
    let response = mirror.from_action(&Action::DeliveryResponse {
        door: "front".into(),
        granted: false,
        reason: "camera porch frozen since 14:02:11 (12 identical frames)".into(),
        carrier: Some("DHL".into()),
    });
    assert_eq!(response[0].topic, "doorwarden/front/delivery/response");
    assert!(!response[0].retain);
    assert_eq!(
        serde_json::from_str::<Value>(&response[0].payload).expect("json"),
        json!({"granted": false, "reason": "camera porch frozen since 14:02:11 (12 identical frames)", "carrier": "DHL"})
    );

    let offline = mirror.from_action(&Action::DoorAvailability {
        door: "front".into(),
        online: false,
    });
    assert_eq!(
        offline,
        vec![Message::retained(
            "doorwarden/front/availability",
            "offline"
        )]
    );

    // Not for Home Assistant.
    assert!(
        mirror
            .from_action(&Action::Lock {
                door: "front".into(),
                command: doorwarden::core::LockCommand::Unlock
            })
            .is_empty()
    );

    let again = mirror.republish_all();
    let topics: Vec<&str> = again.iter().map(|m| m.topic.as_str()).collect();
    assert!(topics.contains(&"homeassistant/lock/doorwarden_front_lock/config"));
    assert!(topics.contains(&"doorwarden/bridge/info"));
    let state = again
        .iter()
        .find(|m| m.topic == "doorwarden/front/state")
        .expect("cached state republished");
    assert_eq!(
        state.payload, changed[0].payload,
        "the latest state, not the first"
    );
    assert!(
        again
            .iter()
            .any(|m| m.topic == "doorwarden/front/availability" && m.payload == "offline")
    );
    assert!(
        !topics.contains(&"doorwarden/front/delivery/event"),
        "events are not replayed"
    );
    assert!(again.iter().all(|m| m.retain));
    // Discovery configs come before the states they describe.
    let last_config = topics
        .iter()
        .rposition(|t| t.ends_with("/config"))
        .expect("configs");
    let first_state = topics
        .iter()
        .position(|t| *t == "doorwarden/front/state")
        .expect("state");
    assert!(last_config < first_state);
}

#[test]
fn entities_removed_from_the_config_are_cleared_and_others_left_alone() {
    // Yesterday's config had a contact sensor on the garage door and a
    // camera that is gone now.
    let old = config_from(&format!("{HOME}  side:\n    url: rtsp://side.lan/s\n"));
    let old_configs = Mirror::new(&old).discovery();
    let mirror = Mirror::new(&home());

    let mut removed = Vec::new();
    for m in &old_configs {
        if let Some(clear) = mirror.stale_config(&m.topic, m.payload.as_bytes(), true) {
            assert_eq!(clear.payload, "");
            assert!(
                clear.retain,
                "removal must be retained or the old config comes back"
            );
            assert_eq!(clear.topic, m.topic);
            removed.push(clear.topic);
        }
    }
    let expected: Vec<String> = ["bitrate", "fps", "frozen", "live", "liveness"]
        .iter()
        .map(|k| {
            let component = if matches!(*k, "frozen" | "live") {
                "binary_sensor"
            } else {
                "sensor"
            };
            format!("homeassistant/{component}/doorwarden_camera_side_{k}/config")
        })
        // No door names side, so its pictures were decoded by default
        // (`optional`): its snapshot entity goes too.
        .chain(["homeassistant/image/doorwarden_camera_side_snapshot/config".to_string()])
        .collect();
    let mut removed_sorted = removed.clone();
    removed_sorted.sort();
    let mut expected_sorted = expected;
    expected_sorted.sort();
    assert_eq!(removed_sorted, expected_sorted);

    // Current configs, other integrations, removals and live messages stay.
    let current = mirror.discovery();
    let lock = &current[2];
    assert!(
        mirror
            .stale_config(&lock.topic, lock.payload.as_bytes(), true)
            .is_none()
    );
    let z2m = r#"{"unique_id":"0x1234_lock_zigbee2mqtt","origin":{"name":"Zigbee2MQTT"}}"#;
    assert!(
        mirror
            .stale_config(
                "homeassistant/lock/0x1234/lock/config",
                z2m.as_bytes(),
                true
            )
            .is_none()
    );
    assert!(
        mirror
            .stale_config(
                "homeassistant/lock/0x1234_lock/config",
                z2m.as_bytes(),
                true
            )
            .is_none()
    );
    let foreign_named_like_us = r#"{"origin":{"name":"someone else"}}"#;
    assert!(
        mirror
            .stale_config(
                "homeassistant/sensor/doorwarden_gone/config",
                foreign_named_like_us.as_bytes(),
                true
            )
            .is_none()
    );
    // Ours: doorwarden's origin and a device of this bridge (a config of
    // another doorwarden instance hangs from another bridge).
    let ours = r#"{"origin":{"name":"doorwarden"},"device":{"via_device":"doorwarden_bridge"}}"#;
    assert!(
        mirror
            .stale_config("homeassistant/sensor/doorwarden_gone/config", b"", true)
            .is_none()
    );
    assert!(
        mirror
            .stale_config(
                "homeassistant/sensor/doorwarden_gone/config",
                ours.as_bytes(),
                false
            )
            .is_none()
    );
    assert!(
        mirror
            .stale_config(
                "homeassistant/sensor/doorwarden_gone/config",
                ours.as_bytes(),
                true
            )
            .is_some()
    );
    assert!(
        mirror
            .stale_config(
                "homeassistant/sensor/doorwarden_gone/config",
                b"\xff\x00",
                true
            )
            .is_none()
    );
    assert_eq!(mirror.config_filter(), "homeassistant/+/+/config");
}

fn parse(topic: &str, payload: &str) -> CommandParse {
    CommandTopics::new(&home()).parse(topic, payload.as_bytes(), false)
}

fn command(topic: &str, payload: &str) -> Command {
    match parse(topic, payload) {
        CommandParse::Command { door, command } => {
            assert_eq!(door, "front");
            command
        }
        other => panic!("{topic} {payload:?}: {other:?}"),
    }
}

fn malformed_reason(topic: &str, payload: &str) -> String {
    match parse(topic, payload) {
        CommandParse::Malformed { reason, .. } => reason,
        other => panic!("{topic} {payload:?} should be malformed: {other:?}"),
    }
}

#[test]
fn commands_as_home_assistant_sends_them() {
    assert_eq!(
        command("doorwarden/front/lock/set", "LOCK"),
        Command::OwnerLock
    );
    assert_eq!(
        command("doorwarden/front/lock/set", "UNLOCK"),
        Command::OwnerUnlock
    );
    assert_eq!(
        command("doorwarden/front/delivery/grant/set", "PRESS"),
        Command::Grant {
            duration: None,
            code: None
        }
    );
    assert_eq!(
        command(
            "doorwarden/front/delivery/grant/set",
            r#"{"minutes": 45, "code": "482913"}"#
        ),
        Command::Grant {
            duration: Some(Duration::from_secs(45 * 60)),
            code: Some(Secret::new("482913"))
        }
    );
    assert_eq!(
        command("doorwarden/front/delivery/end/set", "PRESS"),
        Command::EndDelivery
    );
    assert_eq!(
        command("doorwarden/front/delivery/courier_unlock/set", "PRESS"),
        Command::CourierUnlock {
            code: None,
            carrier: None,
            via: RequestChannel::Button
        }
    );
    assert_eq!(
        command("doorwarden/front/delivery/grant_minutes/set", "30"),
        Command::SetGrantDuration(Duration::from_secs(1800))
    );
    assert_eq!(
        command("doorwarden/front/delivery/grant_minutes/set", "90.0"),
        Command::SetGrantDuration(Duration::from_secs(5400))
    );
    assert_eq!(
        command("doorwarden/front/delivery/code/set", "0048291"),
        Command::SetCode(Secret::new("0048291"))
    );
    assert_eq!(
        command(
            "doorwarden/front/delivery/request",
            r#"{"code": "482913", "carrier": "DHL"}"#
        ),
        Command::CourierUnlock {
            code: Some(Secret::new("482913")),
            carrier: Some("DHL".into()),
            via: RequestChannel::Mqtt
        }
    );
    assert_eq!(
        command("doorwarden/front/delivery/request", ""),
        Command::CourierUnlock {
            code: None,
            carrier: None,
            via: RequestChannel::Mqtt
        }
    );

    let commands = CommandTopics::new(&home());
    assert_eq!(
        commands.parse("homeassistant/status", b"online", false),
        CommandParse::HaStatus { online: true }
    );
    assert_eq!(
        commands.parse("homeassistant/status", b"offline", false),
        CommandParse::HaStatus { online: false }
    );
    assert_eq!(
        commands.parse("zigbee2mqtt/front_lock", br#"{"state":"UNLOCK"}"#, false),
        CommandParse::NotCommand
    );
    assert_eq!(
        commands.parse("doorwarden/front/state", b"{}", false),
        CommandParse::NotCommand,
        "our own state topics are not commands"
    );
    assert_eq!(
        commands.subscriptions(),
        vec![
            "doorwarden/+/lock/set",
            "doorwarden/+/delivery/+/set",
            "doorwarden/+/delivery/request",
            "homeassistant/status",
        ]
    );
}

#[test]
fn a_retained_unlock_is_never_acted_on() {
    let commands = CommandTopics::new(&home());
    for (topic, payload) in [
        ("doorwarden/front/lock/set", "UNLOCK"),
        ("doorwarden/front/delivery/courier_unlock/set", "PRESS"),
        ("doorwarden/front/delivery/grant/set", "PRESS"),
        ("doorwarden/front/delivery/request", r#"{"code":"482913"}"#),
        ("doorwarden/nobody/lock/set", "UNLOCK"),
        // Acknowledging evidence lets retention delete a tripped
        // delivery's clips: a retained press must not do that either.
        ("doorwarden/front/delivery/evidence_ack/set", "PRESS"),
    ] {
        assert_eq!(
            commands.parse(topic, payload.as_bytes(), true),
            CommandParse::RetainedIgnored {
                topic: topic.into()
            },
            "{topic}"
        );
    }
}

#[test]
fn the_evidence_button_is_discovered_only_when_clips_are_recorded() {
    let uid = "homeassistant/button/doorwarden_front_evidence_ack/config";
    assert!(!discovered(&home()).contains_key(uid));
    let with = config_from(&format!("{HOME}recordings:\n  path: /media/doorwarden\n"));
    let all = discovered(&with);
    let button = entity(&all, "button", "doorwarden_front_evidence_ack");
    assert_eq!(button["name"], "Acknowledge delivery evidence");
    assert_eq!(
        button["command_topic"],
        "doorwarden/front/delivery/evidence_ack/set"
    );
    assert_eq!(button["payload_press"], "PRESS");
}

#[test]
fn the_evidence_button_is_the_shells_and_takes_only_a_press() {
    let commands = CommandTopics::new(&home());
    assert_eq!(
        commands.parse(
            "doorwarden/front/delivery/evidence_ack/set",
            b"PRESS",
            false
        ),
        CommandParse::EvidenceAck {
            door: "front".into()
        }
    );
    assert!(matches!(
        commands.parse(
            "doorwarden/front/delivery/evidence_ack/set",
            b"DELETE ALL",
            false
        ),
        CommandParse::Malformed { .. }
    ));
    assert!(matches!(
        commands.parse(
            "doorwarden/nobody/delivery/evidence_ack/set",
            b"PRESS",
            false
        ),
        CommandParse::Malformed { .. }
    ));
}

#[test]
fn malformed_payloads_are_refused_without_echoing_them() {
    for (topic, payload) in [
        ("doorwarden/front/lock/set", "OPEN"),
        ("doorwarden/front/lock/set", "unlock please"),
        ("doorwarden/front/delivery/end/set", "NOW"),
        ("doorwarden/front/delivery/grant/set", "{\"minutes\": 0}"),
        ("doorwarden/front/delivery/grant/set", "{\"minutes\": 1441}"),
        ("doorwarden/front/delivery/grant/set", "{\"minutes\": 2.5}"),
        ("doorwarden/front/delivery/grant/set", "{\"hours\": 2}"),
        ("doorwarden/front/delivery/grant/set", "[1,2]"),
        ("doorwarden/front/delivery/grant_minutes/set", "thirty"),
        ("doorwarden/front/delivery/grant_minutes/set", "-5"),
        ("doorwarden/front/delivery/grant_minutes/set", "NaN"),
        ("doorwarden/front/delivery/grant_minutes/set", "1e400"),
        ("doorwarden/front/delivery/request", "{\"carrier\": 5}"),
        ("doorwarden/front/delivery/request", "not json"),
    ] {
        let reason = malformed_reason(topic, payload);
        assert!(!reason.is_empty());
        assert!(
            !reason.contains(payload),
            "{topic}: reason echoes payload: {reason}"
        );
    }

    // A code in the wrong shape is refused and never repeated.
    for (topic, payload, secret) in [
        ("doorwarden/front/delivery/code/set", "48a913", "48a913"),
        ("doorwarden/front/delivery/code/set", "123", "123"),
        (
            "doorwarden/front/delivery/code/set",
            "12345678901",
            "12345678901",
        ),
        (
            "doorwarden/front/delivery/grant/set",
            r#"{"code": "9x7531"}"#,
            "9x7531",
        ),
        (
            "doorwarden/front/delivery/grant/set",
            r#"{"code": 975310}"#,
            "975310",
        ),
        (
            "doorwarden/front/delivery/request",
            r#"{"code": 975310, "carrier": "UPS"}"#,
            "975310",
        ),
        (
            "doorwarden/front/delivery/request",
            r#"{"code": "975310""#,
            "975310",
        ),
        (
            "doorwarden/front/delivery/request",
            r#"{"975310": true}"#,
            "975310",
        ),
    ] {
        let reason = malformed_reason(topic, payload);
        assert!(
            !reason.contains(secret),
            "{topic}: reason leaks the code: {reason}"
        );
    }

    assert!(malformed_reason("doorwarden/front/lock/set", "\u{0}\u{ff}").contains("LOCK"));
    let commands = CommandTopics::new(&home());
    assert!(matches!(
        commands.parse("doorwarden/front/lock/set", &[0xff, 0xfe], false),
        CommandParse::Malformed { .. }
    ));
    assert!(matches!(
        commands.parse("doorwarden/basement/lock/set", b"UNLOCK", false),
        CommandParse::Malformed { .. }
    ));
    assert!(matches!(
        commands.parse("homeassistant/status", b"rebooting", false),
        CommandParse::Malformed { .. }
    ));
}

#[test]
fn a_code_never_shows_in_a_parsed_command_debug() {
    let c = command("doorwarden/front/delivery/code/set", "482913");
    assert!(!format!("{c:?}").contains("482913"));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsing_never_panics(
            door in "[a-z_]{0,8}|front",
            slot in prop::sample::select(vec![
                "lock/set", "delivery/grant/set", "delivery/end/set",
                "delivery/courier_unlock/set", "delivery/grant_minutes/set",
                "delivery/code/set", "delivery/request", "delivery/x/set", "",
            ]),
            payload in prop::collection::vec(any::<u8>(), 0..64),
            retain in any::<bool>(),
        ) {
            let commands = CommandTopics::new(&home());
            let topic = format!("doorwarden/{door}/{slot}");
            let parsed = commands.parse(&topic, &payload, retain);
            if retain {
                let acted_on = matches!(parsed, CommandParse::Command { .. });
                prop_assert!(!acted_on);
            }
            let mirror = Mirror::new(&home());
            let _ = mirror.stale_config(&format!("homeassistant/x/{door}/config"), &payload, retain);
        }
    }
}

// ---- Through a real broker, as Home Assistant sees it -------------------

const WAIT: Duration = Duration::from_secs(10);

async fn next_message(
    rx: &mut tokio::sync::mpsc::Receiver<Incoming>,
    topic: &str,
) -> (Vec<u8>, bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Incoming::Message {
                topic: t,
                payload,
                retain,
            })) if t == topic => {
                return (payload, retain);
            }
            Ok(Some(_)) => {}
            _ => panic!("no message on {topic}"),
        }
    }
}

async fn connected(rx: &mut tokio::sync::mpsc::Receiver<Incoming>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Incoming::Connected)) => return,
            Ok(Some(_)) => {}
            _ => panic!("link did not connect"),
        }
    }
}

fn config_for(broker: &Mosquitto) -> Config {
    config_from(&HOME.replace("mqtt://127.0.0.1:1883", &broker.url()))
}

#[tokio::test]
async fn home_assistant_sees_every_entity_and_its_commands_arrive() {
    let broker = Mosquitto::start();
    let config = config_for(&broker);
    let mut mirror = Mirror::new(&config);
    let commands = CommandTopics::new(&config);

    // A retained UNLOCK left on the broker before doorwarden starts.
    let stray = TestClient::connect(&broker).await;
    stray
        .publish("doorwarden/front/lock/set", "UNLOCK", true)
        .await;

    let mut subscriptions = commands.subscriptions();
    subscriptions.push(mirror.config_filter());
    let mut link = BrokerLink::start(&config.mqtt, subscriptions, std::future::pending())
        .expect("link starts");
    connected(&mut link.incoming).await;
    for m in mirror.republish_all() {
        link.handle
            .publish(&m.topic, m.payload, m.retain)
            .expect("queued");
    }
    for m in mirror.from_action(&Action::DoorState(door_status("front"))) {
        link.handle
            .publish(&m.topic, m.payload, m.retain)
            .expect("queued");
    }

    // The retained UNLOCK reached the link and was recognised as such.
    let (payload, retain) = next_message(&mut link.incoming, "doorwarden/front/lock/set").await;
    assert!(retain);
    assert_eq!(
        commands.parse("doorwarden/front/lock/set", &payload, retain),
        CommandParse::RetainedIgnored {
            topic: "doorwarden/front/lock/set".into()
        }
    );

    // Home Assistant starts: every config is there, retained, as built.
    let mut ha = TestClient::connect(&broker).await;
    ha.subscribe("homeassistant/#").await;
    ha.subscribe("doorwarden/#").await;
    let seen = ha.collect(Duration::from_millis(500)).await;
    let configs: BTreeMap<&str, Value> = seen
        .iter()
        .filter(|m| m.topic.ends_with("/config"))
        .map(|m| {
            assert!(m.retain, "{} not retained", m.topic);
            (m.topic.as_str(), m.json())
        })
        .collect();
    let expected = discovered(&config);
    assert_eq!(configs.len(), expected.len());
    for (topic, cfg) in &expected {
        assert_eq!(configs.get(topic.as_str()), Some(cfg), "{topic}");
    }
    let state = seen
        .iter()
        .find(|m| m.topic == "doorwarden/front/state")
        .expect("door state retained");
    assert_eq!(state.json()["lock"], "LOCKED");
    assert!(
        seen.iter()
            .any(|m| m.topic == "doorwarden/bridge/availability" && m.text() == "online")
    );

    // Home Assistant presses "Courier unlock" and locks the door.
    ha.publish(
        "doorwarden/front/delivery/courier_unlock/set",
        "PRESS",
        false,
    )
    .await;
    let (payload, retain) = next_message(
        &mut link.incoming,
        "doorwarden/front/delivery/courier_unlock/set",
    )
    .await;
    assert_eq!(
        commands.parse(
            "doorwarden/front/delivery/courier_unlock/set",
            &payload,
            retain
        ),
        CommandParse::Command {
            door: "front".into(),
            command: Command::CourierUnlock {
                code: None,
                carrier: None,
                via: RequestChannel::Button
            }
        }
    );
    ha.publish("doorwarden/front/lock/set", "LOCK", false).await;
    let (payload, retain) = next_message(&mut link.incoming, "doorwarden/front/lock/set").await;
    assert_eq!(
        commands.parse("doorwarden/front/lock/set", &payload, retain),
        CommandParse::Command {
            door: "front".into(),
            command: Command::OwnerLock
        }
    );

    // Home Assistant restarts: its birth message brings everything back.
    ha.drain();
    ha.publish("homeassistant/status", "online", false).await;
    let (payload, retain) = next_message(&mut link.incoming, "homeassistant/status").await;
    assert_eq!(
        commands.parse("homeassistant/status", &payload, retain),
        CommandParse::HaStatus { online: true }
    );
    for m in mirror.republish_all() {
        link.handle
            .publish(&m.topic, m.payload, m.retain)
            .expect("queued");
    }
    let again = ha.collect(Duration::from_millis(500)).await;
    let republished: BTreeSet<&str> = again.iter().map(|m| m.topic.as_str()).collect();
    for topic in expected.keys() {
        assert!(
            republished.contains(topic.as_str()),
            "{topic} not republished"
        );
    }
    assert!(republished.contains("doorwarden/front/state"));
}

#[tokio::test]
async fn stale_entities_on_the_broker_are_removed_at_start() {
    let broker = Mosquitto::start();
    // Yesterday's doorwarden had a side camera.
    let old = config_from(&format!(
        "{}  side:\n    url: rtsp://side.lan/s\n",
        HOME.replace("mqtt://127.0.0.1:1883", &broker.url())
    ));
    let publisher = TestClient::connect(&broker).await;
    for m in Mirror::new(&old).discovery() {
        publisher.publish(&m.topic, m.payload, m.retain).await;
    }
    // Their last states, retained: the removed camera's must go, the
    // remaining camera's must stay.
    for camera in ["side", "porch"] {
        publisher
            .publish(
                &format!("doorwarden/camera/{camera}/state"),
                r#"{"state":"live"}"#,
                true,
            )
            .await;
    }
    // Another integration's config must survive.
    publisher
        .publish(
            "homeassistant/lock/0x1234_lock/config",
            r#"{"unique_id":"0x1234_lock","origin":{"name":"Zigbee2MQTT"}}"#,
            true,
        )
        .await;
    // `publish` only queues: wait until the broker holds every retained
    // config, or doorwarden could subscribe before some arrive.
    let planted = Mirror::new(&old)
        .discovery()
        .iter()
        .filter(|m| m.retain && m.topic.ends_with("/config"))
        .count()
        + 1;
    let mut check = TestClient::connect(&broker).await;
    check.subscribe("homeassistant/+/+/config").await;
    let mut held = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while held.len() < planted && tokio::time::Instant::now() < deadline {
        for m in check.collect(Duration::from_millis(200)).await {
            held.insert(m.topic);
        }
        if held.len() < planted {
            drop(check);
            check = TestClient::connect(&broker).await;
            check.subscribe("homeassistant/+/+/config").await;
            held.clear();
        }
    }
    assert_eq!(held.len(), planted, "the broker holds the old configs");

    let config = config_for(&broker);
    let mut mirror = Mirror::new(&config);
    let mut link = BrokerLink::start(
        &config.mqtt,
        vec![mirror.config_filter()],
        std::future::pending(),
    )
    .expect("link starts");
    connected(&mut link.incoming).await;
    let mut cleared = 0;
    while let Ok(Some(incoming)) =
        tokio::time::timeout(Duration::from_millis(500), link.incoming.recv()).await
    {
        if let Incoming::Message {
            topic,
            payload,
            retain,
        } = incoming
        {
            for m in mirror.stale(&topic, &payload, retain) {
                link.handle
                    .publish(&m.topic, m.payload, m.retain)
                    .expect("queued");
                cleared += 1;
            }
        }
    }
    // Six entities (the snapshot image among them: a camera no door names
    // has its pictures decoded by default), the state topic, and the
    // snapshot's picture and meta topics.
    assert_eq!(
        cleared, 9,
        "the six entities of the removed camera, its state and its snapshot topics"
    );

    let mut ha = TestClient::connect(&broker).await;
    ha.subscribe("homeassistant/#").await;
    let left: BTreeSet<String> = ha
        .collect(Duration::from_millis(500))
        .await
        .into_iter()
        .map(|m| m.topic)
        .collect();
    assert!(left.iter().all(|t| !t.contains("camera_side")), "{left:?}");
    assert!(left.contains("homeassistant/lock/0x1234_lock/config"));
    assert!(left.contains("homeassistant/lock/doorwarden_front_lock/config"));

    let mut states = TestClient::connect(&broker).await;
    states.subscribe("doorwarden/camera/+/state").await;
    let held: BTreeSet<String> = states
        .collect(Duration::from_millis(500))
        .await
        .into_iter()
        .map(|m| m.topic)
        .collect();
    assert_eq!(
        held,
        BTreeSet::from(["doorwarden/camera/porch/state".to_string()])
    );
}

/// Home Assistant logs "Invalid state message" (and keeps warning) for a
/// timestamp sensor whose template renders anything but a time. Every
/// timestamp sensor must read a field that holds a time in every state
/// doorwarden can publish on its topic, including before a camera's first
/// frame and a door's first window.
#[test]
fn no_timestamp_sensor_ever_reads_a_null() {
    let config = home();
    let all = discovered(&config);
    let mut mirror = Mirror::new(&config);
    let mut states: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut keep = |m: Message| {
        let v: Value = serde_json::from_str(&m.payload).expect("state is JSON");
        states.entry(m.topic).or_default().push(v);
    };
    for camera in config.cameras.keys() {
        let mut first = camera_status(camera);
        first.state = LivenessKind::Connecting;
        first.last_frame = None;
        for m in mirror.from_action(&Action::CameraState(first)) {
            keep(m);
        }
        for m in mirror.from_action(&Action::CameraState(camera_status(camera))) {
            keep(m);
        }
    }
    for door in config.locks.keys() {
        for m in mirror.from_action(&Action::DoorState(door_status(door))) {
            keep(m);
        }
    }
    for (topic, entity) in &all {
        if entity["device_class"] != "timestamp" {
            continue;
        }
        let template = entity["value_template"].as_str().unwrap_or_default();
        let field = template
            .trim_start_matches("{{ value_json.")
            .trim_end_matches(" }}");
        let state_topic = entity["state_topic"].as_str().unwrap_or_default();
        for state in states.get(state_topic).into_iter().flatten() {
            assert!(
                state[field].is_string(),
                "{topic} reads `{field}`, which is {} in {state}",
                state[field]
            );
        }
    }
}

/// Every key in every discovery payload says which Home Assistant release
/// reads it (`ha::keys`), and docs/mqtt.md carries the same table.
#[test]
fn every_discovery_key_names_the_release_that_reads_it() {
    use doorwarden::ha::keys::{KEYS, OLDEST_SUPPORTED, find};
    let mut sent = BTreeSet::new();
    // The snapshot image entity exists only for a camera whose pictures
    // are decoded, which the default home has none of.
    let mut all = discovered(&home());
    all.extend(discovered(&snapshot_home()));
    for (topic, payload) in all {
        let Some(object) = payload.as_object() else {
            panic!("{topic}: not an object");
        };
        for key in object.keys() {
            assert!(
                find(key).is_some(),
                "{topic}: key `{key}` is not in ha::keys::KEYS"
            );
            sent.insert(key.clone());
        }
    }
    // And the table lists nothing that is never sent.
    for k in KEYS {
        assert!(
            sent.contains(k.name),
            "`{}` is listed but never sent",
            k.name
        );
    }

    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/mqtt.md"))
        .expect("docs/mqtt.md");
    let expected: Vec<String> = KEYS
        .iter()
        .map(|k| {
            format!(
                "| `{}` | {} | {} | {} |",
                k.name,
                k.on,
                k.since,
                if k.note.is_empty() { "" } else { k.note }
            )
            .replace("|  |", "| |")
        })
        .collect();
    let documented: Vec<String> = doc
        .lines()
        .skip_while(|l| !l.starts_with("### Discovery keys and the Home Assistant release"))
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter(|l| l.starts_with("| `"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        documented,
        expected,
        "docs/mqtt.md's key table differs from ha::keys; it should read:\n{}",
        expected.join("\n")
    );
    // The claim the issue found untrue: 2024.3 drops the enum options.
    assert!(find("options").is_some_and(|k| k.since > OLDEST_SUPPORTED));
    assert!(
        !doc.contains("only 2024.3 keys"),
        "docs still claim only 2024.3 keys"
    );
}

/// A removed camera or door leaves nothing retained behind: with its
/// discovery configs go its retained state and availability topics, and
/// nothing a remaining door, camera or the bridge uses.
#[test]
fn a_removed_camera_and_door_take_their_retained_topics_with_them() {
    // Yesterday's config had a side camera (with a snapshot) and a shed
    // door.
    let old = config_from(&format!(
        "{}  side:\n    url: rtsp://side.lan/s\n    picture_check: optional\n",
        HOME.replace(
            "cameras:\n  porch:",
            "  shed:\n    zigbee2mqtt:\n      topic: zigbee2mqtt/shed_lock\n    cameras: [side]\ncameras:\n  porch:"
        )
    ));
    assert!(old.locks.contains_key("shed") && old.cameras.contains_key("side"));
    let mut mirror = Mirror::new(&home());
    let mut cleared = BTreeSet::new();
    for m in Mirror::new(&old).discovery() {
        for clear in mirror.stale(&m.topic, m.payload.as_bytes(), true) {
            assert_eq!(clear.payload, "");
            assert!(clear.retain);
            assert!(cleared.insert(clear.topic.clone()), "{} twice", clear.topic);
        }
    }
    let states: BTreeSet<&str> = cleared
        .iter()
        .map(String::as_str)
        .filter(|t| !t.ends_with("/config"))
        .collect();
    assert_eq!(
        states,
        BTreeSet::from([
            "doorwarden/camera/side/snapshot",
            "doorwarden/camera/side/snapshot/meta",
            "doorwarden/camera/side/state",
            "doorwarden/shed/availability",
            "doorwarden/shed/state",
        ])
    );
    // The configs went too (6 camera entities with the snapshot, 9 door
    // entities).
    assert_eq!(cleared.len() - states.len(), 6 + 9);
}

/// Every retained message of `config`'s discovery, one `topic payload` line
/// each, with the version written as `{VERSION}` so a release does not
/// change it.
fn discovery_text(config: &Config) -> String {
    Mirror::new(config)
        .discovery()
        .iter()
        .map(|m| format!("{} {}\n", m.topic, m.payload.replace(VERSION, "{VERSION}")))
        .collect()
}

/// A config without `instance` keeps every topic, unique id, device id and
/// payload exactly as before instances existed: nobody's entities are
/// renamed by the upgrade. The fixture was written from the code before
/// `instance` was added; since then only the delivery event's
/// `evidence_saved` / `evidence_failed` event types were added to it (issue
/// 14), by hand.
#[test]
fn without_an_instance_discovery_is_byte_for_byte_what_it_was() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/discovery/home_without_instance.txt"
    );
    let now = discovery_text(&home());
    let before = std::fs::read_to_string(path).expect("fixture");
    assert!(before.lines().count() > 30, "fixture too short");
    for (i, (a, b)) in before.lines().zip(now.lines()).enumerate() {
        assert_eq!(a, b, "line {} differs", i + 1);
    }
    assert_eq!(before, now);
}

/// A second bridge (another building) names its `instance`: it goes into
/// every unique id, device id and, unless set, the base topic and client id,
/// so two bridges on one Home Assistant never collide, and neither takes the
/// other's entities for stale ones of its own.
#[test]
fn an_instance_name_keeps_two_bridges_apart() {
    let north = config_from(&format!("instance: north\n{HOME}"));
    assert_eq!(north.mqtt.base_topic, "doorwarden_north");
    assert_eq!(north.mqtt.client_id, "doorwarden_north");
    let all = discovered(&north);
    let lock = entity(&all, "lock", "doorwarden_north_front_lock");
    assert_eq!(lock["unique_id"], "doorwarden_north_front_lock");
    assert_eq!(
        lock["device"]["identifiers"],
        json!(["doorwarden_north_door_front"])
    );
    assert_eq!(lock["device"]["via_device"], "doorwarden_north_bridge");
    assert_eq!(lock["command_topic"], "doorwarden_north/front/lock/set");
    assert_eq!(
        lock["availability"],
        json!([
            {"topic": "doorwarden_north/bridge/availability"},
            {"topic": "doorwarden_north/front/availability"}
        ])
    );
    let live = entity(&all, "binary_sensor", "doorwarden_north_camera_porch_live");
    assert_eq!(live["state_topic"], "doorwarden_north/camera/porch/state");
    assert_eq!(
        live["device"]["identifiers"],
        json!(["doorwarden_north_camera_porch"])
    );
    let bridge = entity(
        &all,
        "binary_sensor",
        "doorwarden_north_bridge_connectivity",
    );
    assert_eq!(
        bridge["device"]["identifiers"],
        json!(["doorwarden_north_bridge"])
    );
    // The device names shown in Home Assistant say which bridge.
    assert_eq!(bridge["device"]["name"], "doorwarden north");

    // No topic or id of one bridge is the other's.
    let default_topics: BTreeSet<String> = discovered(&home()).into_keys().collect();
    assert!(all.keys().all(|t| !default_topics.contains(t)));
    let north_commands = CommandTopics::new(&north).subscriptions();
    let default_commands = CommandTopics::new(&home()).subscriptions();
    for filter in &north_commands {
        // Both listen to Home Assistant's birth message, nothing else.
        if filter != "homeassistant/status" {
            assert!(!default_commands.contains(filter), "{filter} shared");
        }
    }
    assert!(
        north_commands
            .iter()
            .any(|f| f.starts_with("doorwarden_north/"))
    );

    // Each bridge leaves the other's retained configs alone, and still
    // clears its own removed ones.
    let mut north_mirror = Mirror::new(&north);
    let mut default_mirror = Mirror::new(&home());
    for m in Mirror::new(&home()).discovery() {
        assert!(
            north_mirror
                .stale(&m.topic, m.payload.as_bytes(), true)
                .is_empty()
        );
    }
    for m in Mirror::new(&north).discovery() {
        assert!(
            default_mirror
                .stale(&m.topic, m.payload.as_bytes(), true)
                .is_empty(),
            "the default bridge would remove {}",
            m.topic
        );
    }
    let north_yesterday = config_from(&format!(
        "instance: north\n{HOME}  side:\n    url: rtsp://side.lan/s\n"
    ));
    let side: Vec<Message> = Mirror::new(&north_yesterday)
        .discovery()
        .into_iter()
        .flat_map(|m| north_mirror.stale(&m.topic, m.payload.as_bytes(), true))
        .collect();
    // Six entities (with the snapshot of its default `optional` picture
    // check), its state, its snapshot's picture and meta.
    assert_eq!(side.len(), 6 + 1 + 2, "{side:?}");
    assert!(
        side.iter()
            .any(|m| m.topic == "doorwarden_north/camera/side/state")
    );
}

#[test]
fn an_instance_name_must_be_a_plain_word() {
    for bad in [
        "North",
        "no rth",
        "a/b",
        "\"\"",
        "x123456789012345678901234567890123",
    ] {
        let Err(errors) =
            doorwarden::config::load_str(&format!("instance: {bad}\n{HOME}"), "test.yaml")
        else {
            panic!("instance `{bad}` accepted");
        };
        let shown = errors.to_string();
        assert!(shown.starts_with("test.yaml:1:11: instance"), "{shown}");
    }
    // An explicit base topic and client id win over the instance's.
    let c = config_from(&format!(
        "instance: north\n{}",
        HOME.replace(
            "  url: mqtt://127.0.0.1:1883",
            "  url: mqtt://127.0.0.1:1883\n  base_topic: gate\n  client_id: gate-bridge"
        )
    ));
    assert_eq!(c.mqtt.base_topic, "gate");
    assert_eq!(c.mqtt.client_id, "gate-bridge");
    assert_eq!(c.instance.as_deref(), Some("north"));
}

/// A camera whose pictures are decoded shows the last verified picture as
/// an MQTT image entity on its device; a camera whose pictures are not
/// decoded has none (there is no picture to show).
#[test]
fn a_camera_whose_pictures_are_decoded_has_a_snapshot_image_entity() {
    let all = discovered(&snapshot_home());
    let image = entity(&all, "image", "doorwarden_camera_porch_snapshot");
    assert_eq!(image["name"], "Snapshot");
    assert_eq!(image["image_topic"], "doorwarden/camera/porch/snapshot");
    assert_eq!(image["content_type"], "image/jpeg");
    assert_eq!(
        image["json_attributes_topic"],
        "doorwarden/camera/porch/snapshot/meta"
    );
    assert_eq!(
        image["device"]["identifiers"],
        json!(["doorwarden_camera_porch"])
    );
    assert!(image.get("state_topic").is_none());
    assert!(
        !all.contains_key("homeassistant/image/doorwarden_camera_drive_snapshot/config"),
        "drive's pictures are not decoded"
    );
    assert!(
        !discovered(&home())
            .keys()
            .any(|t| t.starts_with("homeassistant/image/")),
        "no image entity with picture_check off"
    );
}

/// A door with a snapshot camera: its delivery events say when the newest
/// verified snapshot was taken (null before the first), so a notification
/// can attach it; a door without one leaves the field out.
#[test]
fn delivery_events_carry_the_time_of_the_newest_verified_snapshot() {
    let mut mirror = Mirror::new(&snapshot_home());
    let event = |door: &str| {
        Action::DeliveryEvent(DeliveryEvent {
            door: door.into(),
            kind: DeliveryEventKind::Unlocked,
            reason: "courier let in".into(),
            camera: None,
            source: None,
            duration_s: None,
            entries: None,
            compromised: None,
            clip: None,
        })
    };
    let payload = |mirror: &mut Mirror, door: &str| -> Value {
        let out = mirror.from_action(&event(door));
        assert_eq!(out.len(), 1);
        serde_json::from_str(&out[0].payload).expect("JSON")
    };
    assert_eq!(payload(&mut mirror, "front")["snapshot_at"], Value::Null);
    assert!(payload(&mut mirror, "front").get("snapshot_at").is_some());
    let taken: jiff::Timestamp = "2026-12-07T06:00:10Z".parse().expect("time");
    mirror.snapshot_published("porch", taken);
    assert_eq!(
        payload(&mut mirror, "front")["snapshot_at"],
        "2026-12-07T06:00:10+00:00"
    );
    // The garage's camera has no snapshots: no field at all.
    assert!(payload(&mut mirror, "garage").get("snapshot_at").is_none());
}
