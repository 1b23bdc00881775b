//! The command-topic parser and the stale-discovery check on arbitrary MQTT
//! messages: both read whatever anyone publishes on the broker.
//!
//! ```text
//! byte 0      bit 0: the message arrived retained
//!             bit 7 set: the text below is the whole topic
//!             bit 7 clear: bits 1-4 pick a topic shape (a command topic,
//!             Home Assistant's status, a discovery config topic) that the
//!             text completes, or (shapes past the list) one of
//!             doorwarden's own discovery topics
//! then        text, NUL, payload   (no NUL: all of it is the payload)
//! ```
//!
//! Checked, besides "no panic":
//! - a retained message never becomes a command (a retained `UNLOCK` left
//!   on the broker must never open a door);
//! - a command only ever names a configured door;
//! - `Malformed` reasons never repeat a code-like digit run of the payload;
//! - `stale_config` only ever removes a retained, non-empty message on the
//!   very topic it saw, and never one of the current config's entities.

#![no_main]

use std::collections::BTreeSet;
use std::sync::LazyLock;

use doorwarden::config::Config;
use doorwarden::ha::{CommandParse, CommandTopics, Mirror};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
mqtt: { url: "mqtt://127.0.0.1:1883" }
cameras:
  porch: { url: "rtsp://127.0.0.1/porch" }
locks:
  front:
    zigbee2mqtt: { topic: "zigbee2mqtt/Front door" }
    contact: { zigbee2mqtt: { topic: "zigbee2mqtt/Front contact" } }
    cameras: [porch]
  back:
    zwave_js: { node: 12 }
deliveries:
  front: { time_zone: UTC, code_slot: 5 }
"#;

struct Home {
    config: Config,
    commands: CommandTopics,
    mirror: Mirror,
    /// Topics of the current config's own discovery configs.
    own: Vec<String>,
}

static HOME: LazyLock<Home> = LazyLock::new(|| {
    // The YAML above is fixed and valid; failing here is a broken harness.
    let config = match doorwarden::config::load_str(CONFIG, "fuzz.yaml") {
        Ok(c) => c,
        Err(e) => panic!("fuzz harness config: {e}"),
    };
    let commands = CommandTopics::new(&config);
    let mirror = Mirror::new(&config);
    let own = mirror
        .discovery()
        .into_iter()
        .filter(|m| m.topic.ends_with("/config"))
        .map(|m| m.topic)
        .collect();
    Home {
        config,
        commands,
        mirror,
        own,
    }
});

/// A topic shape; `{}` is where the text goes.
const SHAPES: [&str; 13] = [
    "doorwarden/{}/lock/set",
    "doorwarden/{}/delivery/grant/set",
    "doorwarden/{}/delivery/end/set",
    "doorwarden/{}/delivery/courier_unlock/set",
    "doorwarden/{}/delivery/grant_minutes/set",
    "doorwarden/{}/delivery/code/set",
    "doorwarden/{}/delivery/request",
    "homeassistant/status{}",
    "homeassistant/lock/{}/config",
    "homeassistant/{}/config",
    "doorwarden/{}",
    "{}",
    "doorwarden/{}/delivery/evidence_ack/set",
];

const CODE_DIGITS: usize = 6;

fn digit_runs(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() >= CODE_DIGITS)
}

fuzz_target!(|data: &[u8]| {
    let home = &*HOME;
    let [flags, rest @ ..] = data else {
        return;
    };
    let retain = flags & 1 != 0;
    let (text, payload) = match rest.iter().position(|b| *b == 0) {
        Some(nul) => (&rest[..nul], &rest[nul + 1..]),
        None => (&rest[..0], rest),
    };
    let text = String::from_utf8_lossy(text);
    let shape = usize::from((flags >> 1) & 0x0f);
    let topic = if flags & 0x80 != 0 {
        text.into_owned()
    } else if shape < SHAPES.len() {
        // An empty door level would rarely be what the fuzzer wants; a
        // configured door makes the payload parsers reachable at once.
        let level = if text.is_empty() { "front" } else { &*text };
        SHAPES[shape].replace("{}", level)
    } else if let Some(own) = home.own.get(text.len() % home.own.len().max(1)) {
        // One of doorwarden's own discovery configs, picked by the text's
        // length.
        own.clone()
    } else {
        return;
    };

    let doors: BTreeSet<&str> = home.config.locks.keys().map(String::as_str).collect();
    match home.commands.parse(&topic, payload, retain) {
        CommandParse::Command { door, command } => {
            assert!(!retain, "retained message acted on: {topic} -> {command:?}");
            assert!(
                doors.contains(door.as_str()),
                "command for unknown door {door:?}"
            );
        }
        CommandParse::EvidenceAck { door } => {
            assert!(!retain, "retained evidence acknowledgement acted on: {topic}");
            assert!(
                doors.contains(door.as_str()),
                "acknowledgement for unknown door {door:?}"
            );
        }
        CommandParse::RetainedIgnored { .. } => {
            assert!(retain, "fresh message ignored as retained")
        }
        CommandParse::Malformed { reason, .. } => {
            let shown = String::from_utf8_lossy(payload);
            for run in digit_runs(&shown) {
                assert!(
                    !reason.contains(run),
                    "payload digits {run:?} in reason {reason:?}"
                );
            }
        }
        CommandParse::HaStatus { .. } | CommandParse::NotCommand => {}
    }

    if let Some(removal) = home.mirror.stale_config(&topic, payload, retain) {
        assert!(
            retain && !payload.is_empty(),
            "removal for a fresh or empty message"
        );
        assert_eq!(removal.topic, topic, "removal on another topic");
        assert!(
            removal.retain && removal.payload.is_empty(),
            "removal is not an empty retained message"
        );
        assert!(
            !home.own.contains(&topic),
            "removal of a current entity: {topic}"
        );
    }
});
