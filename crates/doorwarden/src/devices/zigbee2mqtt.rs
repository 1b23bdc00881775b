//! Zigbee2MQTT locks and contact sensors.
//!
//! A device is addressed by its full state topic, `<base>/<friendly_name>`
//! (the friendly name may itself contain `/`). The bridge's base topic is
//! taken to be the first segment of that topic (`zigbee2mqtt` by default).
//!
//! # Format
//!
//! State, on `<topic>` (not retained by default; the full cached state is
//! sent every time, so a field may be older than the message):
//!
//! ```json
//! {"state":"LOCK","lock_state":"locked","battery":87,"linkquality":112,
//!  "action":"unlock","action_source_name":"keypad","action_user":3,
//!  "auto_relock_time":30}
//! ```
//!
//! Availability, on `<topic>/availability` (retained; only when the owner
//! enabled availability in Zigbee2MQTT) and `<base>/bridge/state`:
//! `{"state":"online"}` / `{"state":"offline"}`, or a bare `online` /
//! `offline` from Zigbee2MQTT 1.x.
//!
//! A contact sensor, on its own `<topic>`: `{"contact":true,"battery":91}`,
//! where `contact: true` means the magnet is near: the door is **closed**.

use serde_json::{Map, Value, json};

use super::{Outgoing, Parsed, Reachability, payload_text};
use crate::core::{DoorReport, LockCommand, LockState, MoveSource};

/// The topics Zigbee2MQTT uses for one device.
#[derive(Debug, Clone)]
struct Topics {
    state: String,
    availability: String,
    bridge_state: String,
    reach: Reachability,
}

impl Topics {
    fn new(topic: &str) -> Topics {
        let state = topic.trim_end_matches('/').to_string();
        let base = state.split('/').next().unwrap_or("zigbee2mqtt");
        Topics {
            availability: format!("{state}/availability"),
            bridge_state: format!("{base}/bridge/state"),
            state,
            reach: Reachability::default(),
        }
    }

    fn subscriptions(&self) -> Vec<String> {
        vec![
            self.bridge_state.clone(),
            self.state.clone(),
            self.availability.clone(),
        ]
    }

    /// The device's reachability after a message on its availability topic
    /// or the bridge's, `None` for other topics.
    fn availability(&self, topic: &str, payload: &[u8]) -> Option<Result<bool, String>> {
        if topic == self.availability {
            Some(parse_availability(payload).map(|up| self.reach.device(up)))
        } else if topic == self.bridge_state {
            // Zigbee2MQTT's device availability is optional (off by
            // default), so a bridge coming up is enough on its own.
            Some(parse_availability(payload).map(|up| self.reach.bridge(up, false).unwrap_or(up)))
        } else {
            None
        }
    }
}

/// A lock exposed by Zigbee2MQTT.
#[derive(Debug, Clone)]
pub struct ZigbeeLock {
    topics: Topics,
    /// Report the lock's own `door_state` as the door's contact.
    door_sensor: bool,
}

impl ZigbeeLock {
    pub fn new(topic: &str, door_sensor: bool) -> ZigbeeLock {
        ZigbeeLock {
            topics: Topics::new(topic),
            door_sensor,
        }
    }

    pub fn subscriptions(&self) -> Vec<String> {
        self.topics.subscriptions()
    }

    pub fn parse(&self, topic: &str, payload: &[u8]) -> Parsed {
        let name = &self.topics.state;
        if topic == self.topics.state {
            match parse_lock_state(payload, self.door_sensor) {
                Ok(reports) => Parsed::Reports(reports),
                Err(why) => Parsed::Malformed(format!("zigbee2mqtt lock {name}: {why}")),
            }
        } else if let Some(result) = self.topics.availability(topic, payload) {
            match result {
                Ok(online) => Parsed::Reports(vec![DoorReport::LockAvailable(online)]),
                Err(why) => {
                    Parsed::Malformed(format!("zigbee2mqtt lock {name} availability: {why}"))
                }
            }
        } else {
            Parsed::NotMine
        }
    }

    /// # Format
    ///
    /// All to `<topic>/set` except the refresh, which goes to `<topic>/get`:
    ///
    /// ```text
    /// {"state":"LOCK"}            {"state":"UNLOCK"}         {"auto_relock_time":30}
    /// {"pin_code":{"user":3,"user_type":"unrestricted","user_enabled":true,"pin_code":"0042"}}
    /// {"pin_code":{"user":3,"pin_code":null}}               <topic>/get {"state":""}
    /// ```
    ///
    /// The PIN goes as a string: the converter passes it through unchanged,
    /// and a number would lose its leading zeros.
    pub fn commands(&self, cmd: &LockCommand) -> Vec<Outgoing> {
        let set = format!("{}/set", self.topics.state);
        let body = match cmd {
            LockCommand::Lock => json!({"state": "LOCK"}),
            LockCommand::Unlock => json!({"state": "UNLOCK"}),
            LockCommand::Refresh => {
                let get = format!("{}/get", self.topics.state);
                return vec![Outgoing::command(get, json_bytes(&json!({"state": ""})))];
            }
            LockCommand::SetAutoRelock(seconds) => json!({"auto_relock_time": seconds}),
            LockCommand::SetCode { slot, code } => json!({"pin_code": {
                "user": slot,
                "user_type": "unrestricted",
                "user_enabled": true,
                "pin_code": code.expose(),
            }}),
            LockCommand::ClearCode { slot } => {
                json!({"pin_code": {"user": slot, "pin_code": null}})
            }
        };
        vec![Outgoing::command(set, json_bytes(&body))]
    }
}

/// A door contact sensor exposed by Zigbee2MQTT.
#[derive(Debug, Clone)]
pub struct ZigbeeContact {
    topics: Topics,
}

impl ZigbeeContact {
    pub fn new(topic: &str) -> ZigbeeContact {
        ZigbeeContact {
            topics: Topics::new(topic),
        }
    }

    pub fn subscriptions(&self) -> Vec<String> {
        self.topics.subscriptions()
    }

    pub fn parse(&self, topic: &str, payload: &[u8]) -> Parsed {
        let name = &self.topics.state;
        if topic == self.topics.state {
            match parse_contact_state(payload) {
                Ok(reports) => Parsed::Reports(reports),
                Err(why) => Parsed::Malformed(format!("zigbee2mqtt contact sensor {name}: {why}")),
            }
        } else if let Some(result) = self.topics.availability(topic, payload) {
            match result {
                Ok(online) => Parsed::Reports(vec![DoorReport::ContactAvailable(online)]),
                Err(why) => Parsed::Malformed(format!(
                    "zigbee2mqtt contact sensor {name} availability: {why}"
                )),
            }
        } else {
            Parsed::NotMine
        }
    }
}

fn json_bytes(v: &Value) -> Vec<u8> {
    // Serializing a `Value` built in this file cannot fail (string keys only).
    serde_json::to_vec(v).unwrap_or_default()
}

fn object(payload: &[u8]) -> Result<Map<String, Value>, String> {
    let text = payload_text(payload).ok_or("payload is not UTF-8")?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("payload is not a JSON object".into()),
        Err(e) => Err(format!("payload is not JSON ({})", json_error_kind(&e))),
    }
}

/// Only the kind of a JSON error: serde_json's message can quote the
/// payload, and the payload can hold a PIN.
fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "truncated",
    }
}

/// A field that may be absent or `null` (both mean "not reported").
fn field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn str_field<'a>(map: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match field(map, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{key}` is not a string")),
    }
}

/// A non-negative whole number (Zigbee2MQTT sometimes sends `87.0`).
fn uint_field(map: &Map<String, Value>, key: &str, max: u64) -> Result<Option<u64>, String> {
    match field(map, key) {
        None => Ok(None),
        Some(v) => match whole_number(v) {
            Some(n) if n <= max => Ok(Some(n)),
            Some(_) => Err(format!("`{key}` is out of range")),
            None => Err(format!("`{key}` is not a whole number")),
        },
    }
}

pub(crate) fn whole_number(v: &Value) -> Option<u64> {
    match v.as_u64() {
        Some(n) => Some(n),
        None => v
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e15)
            .map(|f| f as u64),
    }
}

/// `{"state":"online"}` or, from Zigbee2MQTT 1.x, a bare `online`.
fn parse_availability(payload: &[u8]) -> Result<bool, String> {
    let text = payload_text(payload).ok_or("payload is not UTF-8")?;
    let word = match text {
        "online" | "offline" => text.to_string(),
        _ => {
            let map = object(payload)?;
            str_field(&map, "state")?
                .ok_or("`state` is missing")?
                .to_string()
        }
    };
    match word.as_str() {
        "online" => Ok(true),
        "offline" => Ok(false),
        _ => Err("`state` is neither online nor offline".into()),
    }
}

/// Lock movements announced by `action`, with the source the action's name
/// implies (if it implies one).
fn movement(action: &str) -> Option<(LockState, Option<MoveSource>)> {
    use LockState::{Locked, Unlocked};
    Some(match action {
        "lock" => (Locked, None),
        "unlock" => (Unlocked, None),
        "manual_lock" | "key_lock" | "one_touch_lock" => (Locked, Some(MoveSource::Manual)),
        "manual_unlock" | "key_unlock" => (Unlocked, Some(MoveSource::Manual)),
        "auto_lock" => (Locked, Some(MoveSource::Auto)),
        "schedule_lock" => (Locked, Some(MoveSource::Other)),
        "schedule_unlock" => (Unlocked, Some(MoveSource::Other)),
        _ => return None,
    })
}

fn parse_lock_state(payload: &[u8], door_sensor: bool) -> Result<Vec<DoorReport>, String> {
    let map = object(payload)?;

    let state = match str_field(&map, "state")? {
        None => None,
        Some("LOCK") => Some(LockState::Locked),
        Some("UNLOCK") => Some(LockState::Unlocked),
        Some(_) => return Err("`state` is neither LOCK nor UNLOCK".into()),
    };
    let mut jammed = false;
    let lock_state = match str_field(&map, "lock_state")? {
        None => None,
        Some("locked") => Some(LockState::Locked),
        Some("unlocked") => Some(LockState::Unlocked),
        Some("not_fully_locked") => {
            jammed = true;
            None
        }
        Some(_) => return Err("unknown `lock_state` value".into()),
    };
    let door_open = match str_field(&map, "door_state")? {
        None | Some("undefined") | Some("error_unspecified") => None,
        Some("open") | Some("error_forced_open") => Some(true),
        Some("closed") => Some(false),
        Some("error_jammed") => {
            jammed = true;
            None
        }
        Some(_) => return Err("unknown `door_state` value".into()),
    };
    let battery = uint_field(&map, "battery", 100)?;
    let auto_relock = uint_field(&map, "auto_relock_time", u64::from(u32::MAX))?;
    let action = str_field(&map, "action")?.filter(|a| !a.is_empty());
    let source_name = str_field(&map, "action_source_name")?;
    let user = uint_field(&map, "action_user", u64::from(u16::MAX))?.map(|u| u as u16);
    if action == Some("error_jammed") {
        jammed = true;
    }
    let codes = match field(&map, "users") {
        None => Vec::new(),
        Some(users) => code_slots(users)?,
    };

    let mut out = Vec::new();
    // An action is the newest news in the message: the operation event is
    // published merged into the cached state, whose `state` still holds the
    // bolt's position from before the move.
    if let Some((moved, implied)) = action.and_then(movement) {
        let source = implied.unwrap_or(match source_name {
            Some("keypad") => MoveSource::Keypad { slot: user },
            Some("rf") => MoveSource::Rf,
            Some("manual") => MoveSource::Manual,
            _ => MoveSource::Other,
        });
        out.push(DoorReport::Lock {
            state: moved,
            source: Some(source),
        });
    } else if jammed {
        out.push(DoorReport::Jammed);
    } else if let Some(s) = lock_state.or(state) {
        out.push(DoorReport::Lock {
            state: s,
            source: None,
        });
    }
    if door_sensor && let Some(open) = door_open {
        out.push(DoorReport::Contact { open });
    }
    if let Some(b) = battery {
        out.push(DoorReport::Battery(b as u8));
    }
    if let Some(t) = auto_relock {
        out.push(DoorReport::AutoRelock(t as u32));
    }
    match (action, user) {
        (Some("pin_code_added") | Some("pin_code_changed"), Some(slot)) => {
            out.push(DoorReport::CodeSlot { slot, set: true })
        }
        (Some("pin_code_deleted"), Some(slot)) => {
            out.push(DoorReport::CodeSlot { slot, set: false })
        }
        _ => {}
    }
    out.extend(codes);
    Ok(out)
}

/// `"users":{"3":{"status":"enabled","pin_code":"1234"}}` (the answer to a
/// PIN read). Only the status is looked at; the PIN is never copied.
fn code_slots(users: &Value) -> Result<Vec<DoorReport>, String> {
    let Value::Object(users) = users else {
        return Err("`users` is not an object".into());
    };
    let mut out = Vec::new();
    for (slot, entry) in users {
        let slot: u16 = slot
            .parse()
            .map_err(|_| "`users` has a key that is not a slot number".to_string())?;
        let status = entry.get("status").and_then(Value::as_str);
        match status {
            Some("enabled") => out.push(DoorReport::CodeSlot { slot, set: true }),
            Some("available") | Some("disabled") => {
                out.push(DoorReport::CodeSlot { slot, set: false })
            }
            Some(s) if s.starts_with("not_supported") => {}
            _ => return Err("`users` entry without a known status".into()),
        }
    }
    Ok(out)
}

fn parse_contact_state(payload: &[u8]) -> Result<Vec<DoorReport>, String> {
    let map = object(payload)?;
    match field(&map, "contact") {
        None => Ok(Vec::new()),
        Some(Value::Bool(closed)) => Ok(vec![DoorReport::Contact { open: !closed }]),
        Some(_) => Err("`contact` is not true or false".into()),
    }
}
