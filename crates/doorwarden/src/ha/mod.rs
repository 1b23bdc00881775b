//! Home Assistant over MQTT: discovery configs, state payloads and command
//! topics, as `docs/mqtt.md` describes them. Pure code: it builds and parses
//! messages; `crate::io::mqtt` carries them.
//!
//! # Layout
//!
//! - [`discovery`]: the entities of every door, camera and the bridge, from
//!   one table per device kind and one renderer ([`discovery::configs`]).
//! - [`keys`]: the Home Assistant release that reads each discovery key.
//! - [`state`]: the JSON published on state, event and response topics.
//! - [`commands`]: what arrives on command topics, turned into
//!   [`crate::core::Command`]s ([`CommandTopics`]).
//! - [`Mirror`] (here): what Home Assistant has been told, so that only
//!   changes go out, everything can be sent again when Home Assistant
//!   restarts, and entities that left the config are removed.
//!
//! # Use from the runtime
//!
//! ```text
//! let mut mirror = ha::Mirror::new(&config);
//! let commands = ha::CommandTopics::new(&config);
//! let mut subscriptions = commands.subscriptions();
//! subscriptions.push(mirror.config_filter());   // for stale-entity cleanup
//! // … plus the lock backends' topics …
//! // On Incoming::Connected, and on CommandParse::HaStatus { online: true }:
//! for m in mirror.republish_all() { link.publish(&m.topic, m.payload, m.retain)?; }
//! // For every core action:
//! for m in mirror.from_action(&action) { link.publish(&m.topic, m.payload, m.retain)?; }
//! // For every incoming message that is not a command:
//! for m in mirror.stale(&topic, &payload, retain) {
//!     link.publish(&m.topic, m.payload, m.retain)?;
//! }
//! ```

pub mod commands;
pub mod discovery;
pub mod keys;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};

pub use commands::{CommandParse, CommandTopics};

use crate::config::Config;
use crate::core::Action;

/// The name doorwarden gives itself in every discovery `origin` block, and
/// the manufacturer of its devices.
pub const ORIGIN_NAME: &str = "doorwarden";
/// Every unique id and device identifier starts with this (then the
/// instance name and `_`, when the config names one: [`Topics::ids`]).
pub const ID_PREFIX: &str = "doorwarden_";
/// The bridge device's identifier without an instance name, the
/// `via_device` of every other device ([`Topics::bridge_id`]).
pub const BRIDGE_ID: &str = "doorwarden_bridge";

/// One MQTT message to publish (QoS 1). An empty payload on a retained
/// discovery topic removes the entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: String,
    pub retain: bool,
}

impl Message {
    pub fn retained(topic: impl Into<String>, payload: impl Into<String>) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.into(),
            retain: true,
        }
    }

    pub fn transient(topic: impl Into<String>, payload: impl Into<String>) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.into(),
            retain: false,
        }
    }
}

/// Every topic doorwarden publishes or listens to on its own behalf, from
/// `mqtt.base_topic` and `mqtt.discovery_prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub base: String,
    pub prefix: String,
    /// What every unique id and device identifier starts with:
    /// `doorwarden_`, or `doorwarden_<instance>_`.
    pub ids: String,
    /// The config's `instance`, if any.
    pub instance: Option<String>,
}

impl Topics {
    pub fn new(config: &Config) -> Topics {
        let ids = match &config.instance {
            Some(instance) => format!("{ID_PREFIX}{instance}_"),
            None => ID_PREFIX.to_string(),
        };
        Topics {
            base: config.mqtt.base_topic.trim_end_matches('/').to_string(),
            prefix: config
                .mqtt
                .discovery_prefix
                .trim_end_matches('/')
                .to_string(),
            ids,
            instance: config.instance.clone(),
        }
    }

    /// The bridge device's identifier: [`BRIDGE_ID`] without an instance.
    pub fn bridge_id(&self) -> String {
        format!("{}bridge", self.ids)
    }

    pub fn bridge(&self) -> String {
        format!("{}/bridge", self.base)
    }
    pub fn bridge_availability(&self) -> String {
        format!("{}/bridge/availability", self.base)
    }
    pub fn bridge_info(&self) -> String {
        format!("{}/bridge/info", self.base)
    }
    /// What the bridge turned away from the broker (its problem entity).
    pub fn bridge_health(&self) -> String {
        format!("{}/bridge/health", self.base)
    }
    /// `<base>/<door>`: every door topic hangs below it.
    pub fn door(&self, door: &str) -> String {
        format!("{}/{door}", self.base)
    }
    pub fn door_state(&self, door: &str) -> String {
        format!("{}/{door}/state", self.base)
    }
    pub fn door_availability(&self, door: &str) -> String {
        format!("{}/{door}/availability", self.base)
    }
    pub fn delivery_event(&self, door: &str) -> String {
        format!("{}/{door}/delivery/event", self.base)
    }
    pub fn delivery_response(&self, door: &str) -> String {
        format!("{}/{door}/delivery/response", self.base)
    }
    /// `<base>/camera/<camera>`.
    pub fn camera(&self, camera: &str) -> String {
        format!("{}/camera/{camera}", self.base)
    }
    pub fn camera_state(&self, camera: &str) -> String {
        format!("{}/camera/{camera}/state", self.base)
    }
    /// The last verified snapshot (JPEG bytes, retained).
    pub fn camera_snapshot(&self, camera: &str) -> String {
        format!("{}/camera/{camera}/snapshot", self.base)
    }
    /// When that snapshot was taken (JSON, retained).
    pub fn camera_snapshot_meta(&self, camera: &str) -> String {
        format!("{}/camera/{camera}/snapshot/meta", self.base)
    }
    /// `<prefix>/<component>/<unique_id>/config`.
    pub fn discovery(&self, component: &str, unique_id: &str) -> String {
        format!("{}/{component}/{unique_id}/config", self.prefix)
    }
}

/// A name that can stand as one topic level: the config validates door
/// and camera keys as `[a-z0-9_]+`; this keeps a bad key from an action
/// (a bug) from ever turning into a wildcard or an extra level.
pub(crate) fn is_topic_level(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '+', '#', '\0'])
}

/// Whether a discovery config is of the bridge `bridge_id` or one of its
/// doors and cameras (full or abbreviated keys).
fn belongs_to(config: &serde_json::Value, bridge_id: &str) -> bool {
    let Some(device) = config.get("device").or_else(|| config.get("dev")) else {
        return false;
    };
    let via = device.get("via_device").and_then(|v| v.as_str());
    let is_bridge = device
        .get("identifiers")
        .or_else(|| device.get("ids"))
        .and_then(|ids| ids.as_array())
        .is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(bridge_id)));
    via == Some(bridge_id) || is_bridge
}

/// A topic with no wildcard or NUL, that can be published to.
fn is_plain_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// The topics a discovery config makes Home Assistant read: its state and
/// attributes topics and every availability topic.
fn topics_read(config: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["state_topic", "json_attributes_topic", "image_topic"] {
        if let Some(t) = config.get(key).and_then(|t| t.as_str()) {
            out.push(t.to_string());
        }
    }
    if let Some(list) = config.get("availability").and_then(|a| a.as_array()) {
        out.extend(
            list.iter()
                .filter_map(|a| a.get("topic").and_then(|t| t.as_str()))
                .map(str::to_string),
        );
    }
    if let Some(t) = config.get("availability_topic").and_then(|t| t.as_str()) {
        out.push(t.to_string());
    }
    out
}

/// What Home Assistant has been told: the discovery configs of the current
/// config, and the last payload of every retained state topic.
///
/// Only changed retained states go out ([`Mirror::from_action`]); on Home
/// Assistant's birth message and after every reconnect, everything goes out
/// again ([`Mirror::republish_all`]).
#[derive(Debug, Clone)]
pub struct Mirror {
    topics: Topics,
    configs: Vec<Message>,
    config_topics: BTreeSet<String>,
    bridge_info: Message,
    /// Retained state topic -> last payload sent.
    last: BTreeMap<String, String>,
    /// Every topic an entity of the current config reads.
    topics_read: BTreeSet<String>,
    /// Topics of removed entities already cleared.
    cleared: BTreeSet<String>,
    /// Each door's cameras that have a snapshot entity.
    snapshot_cameras: BTreeMap<String, Vec<String>>,
    /// When each camera's last verified snapshot was taken.
    snapshots: BTreeMap<String, jiff::Timestamp>,
    /// Cameras whose last state sent was live.
    live: BTreeSet<String>,
    /// Per door, when its cameras were last asked for the picture of an
    /// event (set by [`Mirror::snapshot_asked`] just before that event).
    asked: BTreeMap<String, jiff::Timestamp>,
}

impl Mirror {
    pub fn new(config: &Config) -> Mirror {
        let topics = Topics::new(config);
        let configs: Vec<Message> = discovery::configs(config)
            .into_iter()
            .map(|c| c.message())
            .collect();
        let config_topics = configs.iter().map(|m| m.topic.clone()).collect();
        let topics_read = discovery::configs(config)
            .iter()
            .flat_map(|c| topics_read(&c.payload))
            .collect();
        let bridge_info = Message::retained(
            topics.bridge_info(),
            state::bridge_info(config.locks.len(), config.cameras.len()),
        );
        let snapshot_cameras = config
            .locks
            .iter()
            .map(|(door, d)| {
                let cams = d
                    .cameras
                    .iter()
                    .filter(|c| config.cameras.get(*c).is_some_and(discovery::has_snapshot))
                    .cloned()
                    .collect();
                (door.clone(), cams)
            })
            .collect();
        Mirror {
            topics,
            configs,
            config_topics,
            bridge_info,
            last: BTreeMap::new(),
            topics_read,
            cleared: BTreeSet::new(),
            snapshot_cameras,
            snapshots: BTreeMap::new(),
            live: BTreeSet::new(),
            asked: BTreeMap::new(),
        }
    }

    /// The door's snapshot cameras were asked at `at` for the picture of
    /// the delivery event about to be sent.
    pub fn snapshot_asked(&mut self, door: &str, at: jiff::Timestamp) {
        self.asked.insert(door.to_string(), at);
    }

    /// A verified snapshot of `camera` taken at `taken_at` was published:
    /// the door's delivery events from now on carry its time.
    pub fn snapshot_published(&mut self, camera: &str, taken_at: jiff::Timestamp) {
        self.snapshots.insert(camera.to_string(), taken_at);
    }

    /// For a door with snapshot cameras: the time of the newest verified
    /// snapshot among them, and from when the event's own picture will be
    /// taken if one of them is live. `None` for a door without any, whose
    /// events then leave the fields out.
    fn door_snapshot(&self, door: &str) -> Option<state::EventSnapshots> {
        let cams = self.snapshot_cameras.get(door).filter(|c| !c.is_empty())?;
        let at = cams
            .iter()
            .filter_map(|c| self.snapshots.get(c))
            .max()
            .copied();
        // Only a camera live now can give a picture that will be verified;
        // otherwise saying one is due would make a notification wait for
        // nothing.
        let due = self
            .asked
            .get(door)
            .copied()
            .filter(|_| cams.iter().any(|c| self.live.contains(c)));
        Some(state::EventSnapshots { at, due })
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Every discovery config (retained), then the bridge's info topic.
    pub fn discovery(&self) -> Vec<Message> {
        let mut out = self.configs.clone();
        out.push(self.bridge_info.clone());
        out
    }

    /// The messages that carry out one core action. Retained states are
    /// compared with the last one sent on their topic and left out when
    /// unchanged; events and responses always go out. Actions that are not
    /// for Home Assistant give nothing.
    pub fn from_action(&mut self, action: &Action) -> Vec<Message> {
        if let Action::CameraState(status) = action {
            if status.state == crate::core::liveness::LivenessKind::Live {
                self.live.insert(status.camera.clone());
            } else {
                self.live.remove(&status.camera);
            }
        }
        let t = &self.topics;
        let message = match action {
            Action::DoorState(status) if is_topic_level(&status.door) => {
                Message::retained(t.door_state(&status.door), state::door_state(status))
            }
            Action::DoorAvailability { door, online } if is_topic_level(door) => {
                Message::retained(t.door_availability(door), state::availability(*online))
            }
            Action::CameraState(status) if is_topic_level(&status.camera) => {
                Message::retained(t.camera_state(&status.camera), state::camera_state(status))
            }
            Action::DeliveryEvent(event) if is_topic_level(&event.door) => {
                let snapshot = self.door_snapshot(&event.door);
                Message::transient(
                    t.delivery_event(&event.door),
                    state::delivery_event(event, snapshot),
                )
            }
            Action::DeliveryResponse {
                door,
                granted,
                reason,
                carrier,
            } if is_topic_level(door) => Message::transient(
                t.delivery_response(door),
                state::delivery_response(*granted, reason, carrier.as_deref()),
            ),
            _ => return Vec::new(),
        };
        if message.retain {
            if self.last.get(&message.topic) == Some(&message.payload) {
                return Vec::new();
            }
            self.last
                .insert(message.topic.clone(), message.payload.clone());
        }
        vec![message]
    }

    /// The bridge's problem entity, when it changed (retained, and sent
    /// again by [`Mirror::republish_all`] like every state).
    pub fn health(&mut self, health: &crate::intake::Health) -> Vec<Message> {
        let message = Message::retained(self.topics.bridge_health(), state::health(health));
        if self.last.get(&message.topic) == Some(&message.payload) {
            return Vec::new();
        }
        self.last
            .insert(message.topic.clone(), message.payload.clone());
        vec![message]
    }

    /// Forgets what was last sent on `topic`, so the next state for it goes
    /// out even if unchanged. Call it when a message from
    /// [`Mirror::from_action`] could not be queued.
    pub fn forget(&mut self, topic: &str) {
        self.last.remove(topic);
    }

    /// Everything again: discovery configs, bridge info, then the last
    /// payload of every retained state topic. For Home Assistant's birth
    /// message (`online` on `mqtt.ha_status_topic`) and after a reconnect.
    pub fn republish_all(&self) -> Vec<Message> {
        let mut out = self.discovery();
        out.extend(
            self.last
                .iter()
                .map(|(topic, payload)| Message::retained(topic.clone(), payload.clone())),
        );
        out
    }

    /// Everything to clear for a message seen on [`Mirror::config_filter`]:
    /// the removal of a stale config ([`Mirror::stale_config`]), then the
    /// retained state and availability topics that config read, unless an
    /// entity of the current config reads them too (a removed contact
    /// sensor leaves its door's state alone) or they were cleared already.
    /// Without this, a removed camera's last state stays on the broker for
    /// every client that subscribes later.
    pub fn stale(&mut self, topic: &str, payload: &[u8], retain: bool) -> Vec<Message> {
        let Some(removal) = self.stale_config(topic, payload, retain) else {
            return Vec::new();
        };
        let mut out = vec![removal];
        let Ok(config) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return out;
        };
        let own = format!("{}/", self.topics.base);
        for read in topics_read(&config) {
            // Only what doorwarden itself leaves retained below its base
            // topic: never a topic of another program, never an event or
            // command topic (an empty message there would reach live
            // subscribers as a message).
            let retained_kind = ["/state", "/availability", "/snapshot", "/snapshot/meta"]
                .iter()
                .any(|end| read.ends_with(end));
            if read.starts_with(&own)
                && retained_kind
                && is_plain_topic(&read)
                && !self.topics_read.contains(&read)
                && self.cleared.insert(read.clone())
            {
                out.push(Message::retained(read, ""));
            }
        }
        out
    }

    /// The filter to subscribe to at start to find doorwarden's own
    /// discovery configs left on the broker: `<prefix>/+/+/config`.
    pub fn config_filter(&self) -> String {
        format!("{}/+/+/config", self.topics.prefix)
    }

    /// Given a message seen on [`Mirror::config_filter`], the empty retained
    /// message that removes it from Home Assistant, when it is a retained
    /// discovery config of this doorwarden's (its object id starts with
    /// [`Topics::ids`], its `origin` names doorwarden and its device is this
    /// bridge or hangs from it) that the current
    /// config no longer produces: a door, camera or contact sensor that was
    /// removed. Anything else, other integrations' configs included, gives
    /// `None`.
    pub fn stale_config(&self, topic: &str, payload: &[u8], retain: bool) -> Option<Message> {
        if !retain || payload.is_empty() || self.config_topics.contains(topic) {
            return None;
        }
        let rest = topic.strip_prefix(&self.topics.prefix)?.strip_prefix('/')?;
        let mut levels = rest.split('/');
        let (_component, object_id, last) = (levels.next()?, levels.next()?, levels.next()?);
        if last != "config" || levels.next().is_some() || !object_id.starts_with(&self.topics.ids) {
            return None;
        }
        let json: serde_json::Value = serde_json::from_slice(payload).ok()?;
        let origin = json.get("origin").or_else(|| json.get("o"))?;
        if origin.get("name").and_then(|n| n.as_str()) != Some(ORIGIN_NAME) {
            return None;
        }
        // Another doorwarden on the same broker (another instance) is also
        // "doorwarden" with ids under `doorwarden_`: only configs of this
        // bridge's own devices are its to remove.
        if !belongs_to(&json, &self.topics.bridge_id()) {
            return None;
        }
        Some(Message::retained(topic, ""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::liveness::LivenessKind;
    use crate::core::{CameraStatus, DeliveryEvent, DeliveryEventKind};

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().expect("test timestamp")
    }

    fn camera(state: LivenessKind) -> Action {
        Action::CameraState(CameraStatus {
            camera: "porch".into(),
            state,
            reason: None,
            since: ts("2026-12-07T06:00:00Z"),
            fps: 15.0,
            bitrate_kbps: 300.0,
            last_frame: None,
        })
    }

    fn event_json(mirror: &mut Mirror, kind: DeliveryEventKind) -> serde_json::Value {
        let event = DeliveryEvent {
            door: "front".into(),
            kind,
            reason: "test".into(),
            camera: None,
            source: None,
            duration_s: None,
            entries: None,
            compromised: None,
            clip: None,
        };
        let out = mirror.from_action(&Action::DeliveryEvent(event));
        serde_json::from_str(&out[0].payload).expect("event JSON")
    }

    /// An event promises a picture of its moment only while a camera of
    /// the door is live: after an interlock trip (the camera not live) a
    /// notification must not wait for a picture that cannot come.
    #[test]
    fn an_event_says_a_picture_is_due_only_while_a_door_camera_is_live() {
        let text = "mqtt:\n  url: mqtt://127.0.0.1:1883\n\
                    locks:\n  front:\n    zigbee2mqtt:\n      topic: zigbee2mqtt/front_lock\n    cameras: [porch]\n\
                    cameras:\n  porch:\n    url: rtsp://127.0.0.1:8554/cam\n    picture_check: required\n";
        let config = match crate::config::load_str(text, "test.yaml") {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let mut mirror = Mirror::new(&config);
        mirror.from_action(&camera(LivenessKind::Live));
        mirror.snapshot_published("porch", ts("2026-12-07T06:00:05Z"));
        mirror.snapshot_asked("front", ts("2026-12-07T06:00:07.5Z"));
        let e = event_json(&mut mirror, DeliveryEventKind::Unlocked);
        assert_eq!(e["snapshot_at"], "2026-12-07T06:00:05+00:00");
        assert_eq!(e["snapshot_due"], "2026-12-07T06:00:07.5+00:00");

        mirror.from_action(&camera(LivenessKind::Frozen));
        mirror.snapshot_asked("front", ts("2026-12-07T06:00:09Z"));
        let e = event_json(&mut mirror, DeliveryEventKind::InterlockTripped);
        assert_eq!(e["snapshot_at"], "2026-12-07T06:00:05+00:00");
        assert_eq!(e["snapshot_due"], serde_json::Value::Null);
    }
}
