//! Pure translators between the lock backends' MQTT messages and the core's
//! vocabulary: [`DoorReport`] in, [`LockCommand`] out. Nothing here opens a
//! socket or reads a clock; the shell subscribes to [`DoorDevices::subscriptions`],
//! hands every message to [`DoorDevices::parse`] and publishes what
//! [`DoorDevices::commands`] returns.
//!
//! - [`zigbee2mqtt`]: a lock or contact sensor exposed by Zigbee2MQTT 1.x/2.x.
//! - [`zwave_js`]: a node of Z-Wave JS UI's MQTT gateway in ValueId topic
//!   mode (the default), in any of its three payload styles.
//! - [`zwave_server`]: a node of a Z-Wave JS server, over its WebSocket API
//!   (the messages only; the connection is `io::zwave_server`'s).
//! - [`zwave_meaning`]: what Door Lock / Notification / User Code values
//!   mean, shared by both Z-Wave transports.
//!
//! A door has at most one lock and at most one contact sensor; each may live
//! on either backend. The lock's own door sensor (Zigbee `door_state`,
//! Z-Wave Access Control "Door state") is reported only when the door has no
//! separate contact sensor, so two sensors never argue about the same door.

pub mod zigbee2mqtt;
pub mod zwave_js;
mod zwave_meaning;
pub mod zwave_server;

use std::sync::atomic::{AtomicU8, Ordering};

use crate::config;
use crate::core::{DoorReport, LockCommand};

/// What one MQTT message meant for a door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The message came from this door's devices. It may carry no report at
    /// all (a link-quality update, a failed PIN attempt).
    Reports(Vec<DoorReport>),
    /// Not a topic of this door's devices (or a command echo); ignore it.
    NotMine,
    /// A topic of this door's devices with a payload that could not be
    /// understood. The text is for a warning log: it names the device and the
    /// field, never the payload (which may hold a PIN).
    Malformed(String),
}

/// One MQTT message to publish. Commands are never retained: a retained
/// `UNLOCK` left on a broker would open the door again whenever the bridge
/// reconnects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Outgoing {
    pub(crate) fn command(topic: String, payload: impl Into<Vec<u8>>) -> Outgoing {
        Outgoing {
            topic,
            payload: payload.into(),
            retain: false,
        }
    }
}

#[derive(Debug, Clone)]
enum LockLink {
    Zigbee(zigbee2mqtt::ZigbeeLock),
    Zwave(zwave_js::ZwaveLock),
}

#[derive(Debug, Clone)]
enum ContactLink {
    Zigbee(zigbee2mqtt::ZigbeeContact),
    Zwave(zwave_js::ZwaveContact),
}

/// The devices of one door (its lock and contact sensor) as seen on MQTT. A
/// device on a Z-Wave JS server is not here: `io::zwave_server` talks to it.
#[derive(Debug, Clone)]
pub struct DoorDevices {
    door: String,
    lock: Option<LockLink>,
    contact: Option<ContactLink>,
}

impl DoorDevices {
    /// Build from the door's config. A door with both a `zigbee2mqtt` and a
    /// `zwave_js` lock (rejected by validation) uses the Zigbee one.
    pub fn from_config(door: &str, cfg: &config::Door) -> DoorDevices {
        let has_contact = cfg.contact.as_ref().is_some_and(|c| {
            c.zigbee2mqtt.is_some() || c.zwave_js.is_some() || c.zwave_js_server.is_some()
        });
        let lock = match (&cfg.zigbee2mqtt, &cfg.zwave_js) {
            (Some(z), _) => Some(LockLink::Zigbee(zigbee2mqtt::ZigbeeLock::new(
                &z.topic,
                !has_contact,
            ))),
            (None, Some(z)) => Some(LockLink::Zwave(zwave_js::ZwaveLock::new(z, !has_contact))),
            (None, None) => None,
        };
        let contact = cfg
            .contact
            .as_ref()
            .and_then(|c| match (&c.zigbee2mqtt, &c.zwave_js) {
                (Some(z), _) => Some(ContactLink::Zigbee(zigbee2mqtt::ZigbeeContact::new(
                    &z.topic,
                ))),
                (None, Some(z)) => Some(ContactLink::Zwave(zwave_js::ZwaveContact::new(z))),
                (None, None) => None,
            });
        DoorDevices {
            door: door.to_string(),
            lock,
            contact,
        }
    }

    /// The door's name, as given to [`DoorDevices::from_config`].
    pub fn door(&self) -> &str {
        &self.door
    }

    /// MQTT topic filters to subscribe to, without duplicates. Subscribe to
    /// them in this order (ideally in one SUBSCRIBE): bridge-wide status
    /// comes first, so a device's own retained availability is delivered
    /// after it and has the last word. For several doors use
    /// [`subscriptions_of`], which keeps that order across doors.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |list: Vec<String>| {
            for t in list {
                if !out.contains(&t) {
                    out.push(t);
                }
            }
        };
        match &self.lock {
            Some(LockLink::Zigbee(l)) => add(l.subscriptions()),
            Some(LockLink::Zwave(l)) => add(l.subscriptions()),
            None => {}
        }
        match &self.contact {
            Some(ContactLink::Zigbee(c)) => add(c.subscriptions()),
            Some(ContactLink::Zwave(c)) => add(c.subscriptions()),
            None => {}
        }
        // Bridge-wide topics first (see the doc above); the sort is stable,
        // so the order within each group is kept.
        out.sort_by_key(|t| !is_bridge_topic(t));
        out
    }

    /// Translate one received message. Retained or not makes no difference
    /// here: a retained state is still the device's last known state. The
    /// only memory kept is the last bridge and device availability, so that
    /// their order of arrival does not matter (see `Reachability`).
    pub fn parse(&self, topic: &str, payload: &[u8]) -> Parsed {
        let from_lock = match &self.lock {
            Some(LockLink::Zigbee(l)) => l.parse(topic, payload),
            Some(LockLink::Zwave(l)) => l.parse(topic, payload),
            None => Parsed::NotMine,
        };
        let from_contact = match &self.contact {
            Some(ContactLink::Zigbee(c)) => c.parse(topic, payload),
            Some(ContactLink::Zwave(c)) => c.parse(topic, payload),
            None => Parsed::NotMine,
        };
        match (from_lock, from_contact) {
            (Parsed::NotMine, other) | (other, Parsed::NotMine) => other,
            (Parsed::Malformed(why), _) | (_, Parsed::Malformed(why)) => Parsed::Malformed(why),
            (Parsed::Reports(mut a), Parsed::Reports(b)) => {
                a.extend(b);
                Parsed::Reports(a)
            }
        }
    }

    /// The messages that carry out `cmd` on this door's lock (empty without
    /// a lock, or when the backend has no way to do it).
    pub fn commands(&self, cmd: &LockCommand) -> Vec<Outgoing> {
        match &self.lock {
            Some(LockLink::Zigbee(l)) => l.commands(cmd),
            Some(LockLink::Zwave(l)) => l.commands(cmd),
            None => Vec::new(),
        }
    }

    /// Ask the door's devices for their current state (sent at start).
    pub fn refresh(&self) -> Vec<Outgoing> {
        self.commands(&LockCommand::Refresh)
    }

    /// Whether the lock's backend has a way to set the lock's own auto-relock
    /// timer. The lock model may still ignore it: only an
    /// [`DoorReport::AutoRelock`] read back proves the lock has one.
    pub fn supports_auto_relock(&self) -> bool {
        self.lock.is_some()
    }
}

/// The topic filters of several doors, for one SUBSCRIBE: without
/// duplicates, every bridge-wide topic first. Subscribing door by door
/// instead would let a second copy of a retained `bridge/state: online`
/// arrive after another door's retained `availability: offline` and undo it.
pub fn subscriptions_of<'a>(doors: impl IntoIterator<Item = &'a DoorDevices>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for door in doors {
        for t in door.subscriptions() {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out.sort_by_key(|t| !is_bridge_topic(t));
    out
}

/// Topics that speak for a whole bridge rather than one device.
fn is_bridge_topic(topic: &str) -> bool {
    topic.ends_with("/bridge/state") || topic.contains("/_CLIENTS/")
}

/// Whether a device is reachable, from two signals that arrive on separate
/// topics in no guaranteed order: the bridge's own status (Zigbee2MQTT
/// `bridge/state`, Z-Wave JS UI's gateway client status) and the device's
/// (Zigbee2MQTT `<topic>/availability`, the Z-Wave node `status`). The
/// device is reachable only while neither says otherwise, so a retained
/// "bridge online" delivered after a retained "device offline" cannot undo
/// it. Atomics keep `parse(&self)` usable from anywhere; the shell feeds
/// messages one at a time anyway.
#[derive(Debug, Default)]
pub(crate) struct Reachability {
    bridge: AtomicU8,
    device: AtomicU8,
}

const SIGNAL_UNKNOWN: u8 = 0;
const SIGNAL_UP: u8 = 1;
const SIGNAL_DOWN: u8 = 2;

impl Clone for Reachability {
    fn clone(&self) -> Self {
        Reachability {
            bridge: AtomicU8::new(self.bridge.load(Ordering::Relaxed)),
            device: AtomicU8::new(self.device.load(Ordering::Relaxed)),
        }
    }
}

impl Reachability {
    fn signal(up: bool) -> u8 {
        if up { SIGNAL_UP } else { SIGNAL_DOWN }
    }

    /// Record the bridge's status; the device's reachability if known.
    /// A bridge coming up says nothing about a device not heard from yet
    /// when `device_required` (Z-Wave, whose node status always follows).
    pub(crate) fn bridge(&self, up: bool, device_required: bool) -> Option<bool> {
        self.bridge.store(Self::signal(up), Ordering::Relaxed);
        let device = self.device.load(Ordering::Relaxed);
        if up && device_required && device == SIGNAL_UNKNOWN {
            return None;
        }
        Some(self.effective())
    }

    /// Record the device's own status; its reachability.
    pub(crate) fn device(&self, up: bool) -> bool {
        self.device.store(Self::signal(up), Ordering::Relaxed);
        self.effective()
    }

    fn effective(&self) -> bool {
        self.bridge.load(Ordering::Relaxed) != SIGNAL_DOWN
            && self.device.load(Ordering::Relaxed) != SIGNAL_DOWN
    }
}

/// The bytes of a payload as text, if they are UTF-8 (MQTT payloads from
/// both bridges always are; anything else is malformed).
pub(crate) fn payload_text(payload: &[u8]) -> Option<&str> {
    std::str::from_utf8(payload).ok().map(str::trim)
}
