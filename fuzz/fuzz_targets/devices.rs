//! The lock and contact-sensor translators on arbitrary MQTT messages.
//!
//! Four doors cover every pairing of backends: a Zigbee2MQTT lock alone (its
//! own door sensor counts), a Zigbee2MQTT lock with a Z-Wave contact sensor,
//! a Z-Wave JS UI lock alone, and a Z-Wave lock with a Zigbee2MQTT contact
//! sensor. Each input is one message to one door:
//!
//! ```text
//! byte 0      which door
//! byte 1      bit 7 set: the text below is the whole topic
//!             bit 7 clear: the low bits pick one of the door's subscriptions;
//!             the text replaces each `+` in it, or is appended to it
//! then        text, NUL, payload   (no NUL: all of it is the payload)
//! ```
//!
//! So most inputs land on a topic the door really listens to, with an
//! arbitrary payload, while the rest try the routing with arbitrary topics.
//!
//! Checked: no panic; and a digit run long enough to be a PIN that appears
//! in the payload is never repeated in a `Malformed` text (that text goes to
//! the log), unless the topic itself carries it.

#![no_main]

use std::sync::LazyLock;

use doorwarden::devices::{DoorDevices, Parsed};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
mqtt: { url: "mqtt://127.0.0.1:1883" }
locks:
  zigbee_alone:
    zigbee2mqtt: { topic: "zigbee2mqtt/Front door" }
  zigbee_zwave_contact:
    zigbee2mqtt: { topic: "zigbee2mqtt/Back door" }
    contact: { zwave_js: { node: 7 } }
  zwave_alone:
    zwave_js: { node: 12 }
  zwave_zigbee_contact:
    zwave_js: { topic: "zwave/Garage/side_door_lock", prefix: zwave, gateway: zwave-js-ui }
    contact: { zigbee2mqtt: { topic: "zigbee2mqtt/Garage contact" } }
"#;

/// The doors, with the topics each subscribes to.
static DOORS: LazyLock<Vec<(DoorDevices, Vec<String>)>> = LazyLock::new(|| {
    // The YAML above is fixed and valid; failing here is a broken harness,
    // not a finding.
    let config = match doorwarden::config::load_str(CONFIG, "fuzz.yaml") {
        Ok(c) => c,
        Err(e) => panic!("fuzz harness config: {e}"),
    };
    config
        .locks
        .iter()
        .map(|(name, door)| {
            let devices = DoorDevices::from_config(name, door);
            let subs = devices.subscriptions();
            (devices, subs)
        })
        .collect()
});

/// Shortest digit run treated as a possible PIN.
const PIN_DIGITS: usize = 6;

fn digit_runs(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() >= PIN_DIGITS)
}

fuzz_target!(|data: &[u8]| {
    let [door, mode, rest @ ..] = data else {
        return;
    };
    let (devices, subs) = &DOORS[usize::from(*door) % DOORS.len()];
    let (text, payload) = match rest.iter().position(|b| *b == 0) {
        Some(nul) => (&rest[..nul], &rest[nul + 1..]),
        None => (&rest[..0], rest),
    };
    let text = String::from_utf8_lossy(text);
    let topic = if mode & 0x80 != 0 || subs.is_empty() {
        text.into_owned()
    } else {
        let sub = &subs[usize::from(mode & 0x7f) % subs.len()];
        if sub.contains('+') {
            sub.replace('+', &text)
        } else {
            format!("{sub}{text}")
        }
    };
    if let Parsed::Malformed(why) = devices.parse(&topic, payload) {
        let shown = String::from_utf8_lossy(payload);
        for run in digit_runs(&shown) {
            assert!(
                topic.contains(run) || !why.contains(run),
                "payload digits {run:?} repeated in the log text {why:?}"
            );
        }
    }
});
