//! Z-Wave JS UI's MQTT gateway: locks and door sensors.
//!
//! Only the gateway's default "ValueId topics" mode is understood: a value
//! lives on `<node>/<commandClass>/<endpoint>/<property>[/<propertyKey>]`,
//! where `<node>` is the node's base topic from the config
//! ([`crate::config::ZwaveJs::node_topic`], e.g. `zwave/Hall/front_door` with
//! node names and a location, or `zwave/5`).
//!
//! # Format
//!
//! Every value topic comes in one of the gateway's three payload styles,
//! all accepted:
//!
//! ```text
//! zwave/front_door/98/0/currentMode   {"time":1764347718000,"value":255}   JSON time-value (default)
//! zwave/front_door/98/0/currentMode   255                                  raw value
//! zwave/front_door/98/0/currentMode   {"id":"5-98-0-currentMode",...,"value":255}  whole ValueId
//! ```
//!
//! Values read (retained by the gateway unless noted):
//!
//! - `98/0/currentMode`: Door Lock mode; 255 secured, 254 unknown, anything
//!   else is some kind of unsecured.
//! - `98/0/autoRelockTime`: seconds (Door Lock CC v4 configuration).
//! - `98/0/doorStatus`: `"open"` / `"closed"`, on locks with a door sensor.
//! - `113/0/Access_Control/Lock_state`: 11 = jammed, 0 = idle.
//! - `113/0/Access_Control/Door_state`: 23 closed; 22 (or 22 with a
//!   position parameter, 5632/5633) open.
//! - `113/0/Access_Control/<event>`: stateless events, **not retained**,
//!   `{"time":..,"value":{"userId":3}}` for keypad events, `{"time":..}`
//!   when the event has no parameters, e.g. `Keypad_unlock_operation`,
//!   `Manual_lock_operation`, `RF_unlock_operation`,
//!   `Manual_not_fully_locked_operation`.
//! - `99/0/userIdStatus/<slot>`: 0 available, 1 enabled, 2 disabled.
//! - `128/0/level`: battery percentage.
//! - `<node>/status`: `{"time":..,"value":true,"status":"Alive","nodeId":5}`
//!   (raw style: `true`); `value` is false only when the node is Dead.
//! - `<prefix>/_CLIENTS/ZWAVE_GATEWAY-<name>/status`: the gateway itself,
//!   `{"value":false}` as its last will.
//!
//! The `99/0/userCode/<slot>` values hold PINs; they are never subscribed to.

use serde_json::{Map, Value, json};

use super::zigbee2mqtt::whole_number;
use super::zwave_meaning::{self, current_mode, door_state, event, uint, user_id_status};
use super::{Outgoing, Parsed, Reachability, payload_text};
use crate::config;
use crate::core::{DoorReport, LockCommand};

/// Access Control state variables (retained values); every other
/// `Access_Control/<x>` topic is a stateless event.
const STATE_VARIABLES: [&str; 4] = [
    "Lock_state",
    "Keypad_state",
    "Door_state",
    "Door_handle_state",
];

/// Topics of one node and of the gateway it hangs off.
#[derive(Debug, Clone)]
struct Node {
    base: String,
    /// The node id, when the config gives it: needed for the gateway API.
    id: Option<u32>,
    /// `<prefix>/_CLIENTS/ZWAVE_GATEWAY-<name>`.
    gateway: String,
    /// Gateway status and node status, combined.
    reach: Reachability,
}

impl Node {
    fn new(cfg: &config::ZwaveJs) -> Node {
        let prefix = cfg.prefix.trim_end_matches('/');
        Node {
            base: cfg.node_topic(),
            id: cfg.node,
            gateway: format!("{prefix}/_CLIENTS/ZWAVE_GATEWAY-{}", cfg.gateway),
            reach: Reachability::default(),
        }
    }

    /// The node-relative part of `topic` (`98/0/currentMode`, `status`).
    fn relative<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic.strip_prefix(self.base.as_str())?.strip_prefix('/')
    }

    fn gateway_status(&self) -> String {
        format!("{}/status", self.gateway)
    }

    fn api(&self, name: &str) -> String {
        format!("{}/api/{name}", self.gateway)
    }

    /// The node's reachability after a gateway status message: down with the
    /// gateway, and when it returns, whatever the node was (unknown until its
    /// status, which the gateway republishes, arrives).
    fn gateway_message(&self, payload: &[u8]) -> Result<Option<bool>, String> {
        let up = value_of(payload)
            .and_then(|v| as_bool(&v))?
            .ok_or("status without a value")?;
        Ok(self.reach.bridge(up, true))
    }

    fn status_message(&self, value: &Value) -> Result<bool, String> {
        node_status(value).map(|up| self.reach.device(up))
    }
}

/// A lock node (Door Lock CC, with Notification and User Code CCs).
#[derive(Debug, Clone)]
pub struct ZwaveLock {
    node: Node,
    door_sensor: bool,
}

impl ZwaveLock {
    pub fn new(cfg: &config::ZwaveJs, door_sensor: bool) -> ZwaveLock {
        ZwaveLock {
            node: Node::new(cfg),
            door_sensor,
        }
    }

    pub fn subscriptions(&self) -> Vec<String> {
        let b = &self.node.base;
        let mut out = vec![
            self.node.gateway_status(),
            format!("{b}/status"),
            format!("{b}/98/0/currentMode"),
            format!("{b}/98/0/autoRelockTime"),
            format!("{b}/113/0/Access_Control/+"),
            format!("{b}/99/0/userIdStatus/+"),
            format!("{b}/128/0/level"),
        ];
        if self.door_sensor {
            out.push(format!("{b}/98/0/doorStatus"));
        }
        if self.node.id.is_some() {
            out.push(self.node.api("sendCommand"));
        }
        out
    }

    pub fn parse(&self, topic: &str, payload: &[u8]) -> Parsed {
        let base = &self.node.base;
        if topic == self.node.gateway_status() {
            return match self.node.gateway_message(payload) {
                Ok(up) => Parsed::Reports(up.map(DoorReport::LockAvailable).into_iter().collect()),
                Err(why) => Parsed::Malformed(format!("z-wave js gateway status: {why}")),
            };
        }
        if topic == self.node.api("sendCommand") {
            return self.parse_api_answer(payload);
        }
        let Some(rel) = self.node.relative(topic) else {
            return Parsed::NotMine;
        };
        if rel.ends_with("/set") {
            return Parsed::NotMine;
        }
        match self.parse_value(rel, payload) {
            Some(Ok(reports)) => Parsed::Reports(reports),
            Some(Err(why)) => Parsed::Malformed(format!("z-wave js lock {base} {rel}: {why}")),
            None => Parsed::NotMine,
        }
    }

    fn parse_value(&self, rel: &str, payload: &[u8]) -> Option<Result<Vec<DoorReport>, String>> {
        let parts: Vec<&str> = rel.split('/').collect();
        let value = if payload.is_empty() {
            match parts.as_slice() {
                // An event is never retained, so an empty one is the event
                // itself, without parameters (raw payload style).
                ["113", "0", "Access_Control", event] if !STATE_VARIABLES.contains(event) => {
                    Value::Null
                }
                // Anything else empty is the gateway clearing a retained
                // value: no news.
                _ => return Some(Ok(Vec::new())),
            }
        } else {
            match value_of(payload) {
                Ok(v) => v,
                Err(why) => return Some(Err(why)),
            }
        };
        Some(match parts.as_slice() {
            ["status"] => self
                .node
                .status_message(&value)
                .map(|up| vec![DoorReport::LockAvailable(up)]),
            ["98", "0", "currentMode"] => current_mode(&value).map(|state| {
                vec![DoorReport::Lock {
                    state,
                    source: None,
                }]
            }),
            ["98", "0", "autoRelockTime"] => {
                uint(&value, u64::from(u32::MAX)).map(|t| vec![DoorReport::AutoRelock(t as u32)])
            }
            ["98", "0", "doorStatus"] if self.door_sensor => match value.as_str() {
                Some("open") => Ok(vec![DoorReport::Contact { open: true }]),
                Some("closed") => Ok(vec![DoorReport::Contact { open: false }]),
                _ => Err("not \"open\" or \"closed\"".into()),
            },
            ["113", "0", "Access_Control", "Lock_state"] => zwave_meaning::lock_state(&value),
            ["113", "0", "Access_Control", "Door_state"] => {
                door_state(&value).map(|open| match open {
                    Some(open) if self.door_sensor => vec![DoorReport::Contact { open }],
                    _ => Vec::new(),
                })
            }
            ["113", "0", "Access_Control", event] => access_event(event, &value),
            ["99", "0", "userIdStatus", slot] => match slot.parse::<u16>() {
                Ok(slot) => user_id_status(slot, &value),
                Err(_) => Err("slot is not a number".into()),
            },
            ["128", "0", "level"] => uint(&value, 100).map(|b| vec![DoorReport::Battery(b as u8)]),
            _ => return None,
        })
    }

    /// The gateway's answer to a `sendCommand` call:
    /// `{"success":true,"message":"..","result":..,"origin":{"args":[{"nodeId":5,"commandClass":99,"endpoint":0},"set",[3,1,"1234"]]}}`.
    /// The echoed arguments hold the PIN; only the slot is read.
    fn parse_api_answer(&self, payload: &[u8]) -> Parsed {
        let Some(answer) =
            payload_text(payload).and_then(|t| serde_json::from_str::<Value>(t).ok())
        else {
            return Parsed::NotMine;
        };
        let args = answer.pointer("/origin/args").and_then(Value::as_array);
        let Some([target, method, params, ..]) = args.map(Vec::as_slice) else {
            return Parsed::NotMine;
        };
        let node = target.get("nodeId").and_then(Value::as_u64);
        let cc = target.get("commandClass").and_then(Value::as_u64);
        if node != self.node.id.map(u64::from) || cc != Some(99) {
            return Parsed::NotMine;
        }
        let slot = params
            .get(0)
            .and_then(whole_number)
            .and_then(|s| u16::try_from(s).ok());
        let ok = answer.get("success").and_then(Value::as_bool) == Some(true);
        match (method.as_str(), slot, ok) {
            (Some("set"), Some(slot), true) => {
                Parsed::Reports(vec![DoorReport::CodeSlot { slot, set: true }])
            }
            (Some("clear"), Some(slot), true) => {
                Parsed::Reports(vec![DoorReport::CodeSlot { slot, set: false }])
            }
            _ => Parsed::Reports(Vec::new()),
        }
    }

    /// # Format
    ///
    /// ```text
    /// <node>/98/0/targetMode/set       255  (lock) / 0 (unlock)
    /// <node>/98/0/autoRelockTime/set   30
    /// ```
    ///
    /// PINs go through the gateway API when the node id is known (the
    /// answer on `.../api/sendCommand` confirms them):
    ///
    /// ```text
    /// <prefix>/_CLIENTS/ZWAVE_GATEWAY-<name>/api/sendCommand/set
    ///     {"args":[{"nodeId":5,"commandClass":99,"endpoint":0},"set",[3,1,"0042"]]}
    ///     {"args":[{"nodeId":5,"commandClass":99,"endpoint":0},"clear",[3]]}
    /// ```
    ///
    /// and otherwise as value writes, which zwave-js turns into the same
    /// User Code Set (a JSON string, so the gateway keeps leading zeros):
    ///
    /// ```text
    /// <node>/99/0/userCode/3/set       {"value":"0042"}
    /// <node>/99/0/userIdStatus/3/set   0
    /// ```
    ///
    /// A refresh asks the gateway to re-read the Door Lock CC
    /// (`api/refreshCCValues/set {"args":[5,98]}`), again only with a node
    /// id; without one the gateway's retained values serve as the state.
    pub fn commands(&self, cmd: &LockCommand) -> Vec<Outgoing> {
        let b = &self.node.base;
        let target = |id: u32| json!({"nodeId": id, "commandClass": 99, "endpoint": 0});
        let api_call = |name: &str, body: Value| {
            Outgoing::command(format!("{}/set", self.node.api(name)), to_bytes(&body))
        };
        match cmd {
            LockCommand::Lock => vec![Outgoing::command(format!("{b}/98/0/targetMode/set"), "255")],
            LockCommand::Unlock => vec![Outgoing::command(format!("{b}/98/0/targetMode/set"), "0")],
            LockCommand::Refresh => match self.node.id {
                Some(id) => vec![api_call("refreshCCValues", json!({"args": [id, 98]}))],
                None => Vec::new(),
            },
            LockCommand::SetAutoRelock(seconds) => {
                vec![Outgoing::command(
                    format!("{b}/98/0/autoRelockTime/set"),
                    seconds.to_string(),
                )]
            }
            LockCommand::SetCode { slot, code } => match self.node.id {
                Some(id) => {
                    vec![api_call(
                        "sendCommand",
                        json!({"args": [target(id), "set", [slot, 1, code.expose()]]}),
                    )]
                }
                None => vec![Outgoing::command(
                    format!("{b}/99/0/userCode/{slot}/set"),
                    to_bytes(&json!({"value": code.expose()})),
                )],
            },
            LockCommand::ClearCode { slot } => match self.node.id {
                Some(id) => vec![api_call(
                    "sendCommand",
                    json!({"args": [target(id), "clear", [slot]]}),
                )],
                None => vec![Outgoing::command(
                    format!("{b}/99/0/userIdStatus/{slot}/set"),
                    "0",
                )],
            },
        }
    }
}

/// A door sensor node: Notification CC Access Control "Door state", or a
/// Binary Sensor CC `Door/Window` value.
#[derive(Debug, Clone)]
pub struct ZwaveContact {
    node: Node,
}

impl ZwaveContact {
    pub fn new(cfg: &config::ZwaveJs) -> ZwaveContact {
        ZwaveContact {
            node: Node::new(cfg),
        }
    }

    pub fn subscriptions(&self) -> Vec<String> {
        let b = &self.node.base;
        vec![
            self.node.gateway_status(),
            format!("{b}/status"),
            format!("{b}/113/0/Access_Control/Door_state"),
            format!("{b}/48/0/Door-Window"),
        ]
    }

    pub fn parse(&self, topic: &str, payload: &[u8]) -> Parsed {
        let base = &self.node.base;
        if topic == self.node.gateway_status() {
            return match self.node.gateway_message(payload) {
                Ok(up) => {
                    Parsed::Reports(up.map(DoorReport::ContactAvailable).into_iter().collect())
                }
                Err(why) => Parsed::Malformed(format!("z-wave js gateway status: {why}")),
            };
        }
        let Some(rel) = self.node.relative(topic) else {
            return Parsed::NotMine;
        };
        if payload.is_empty()
            && matches!(
                rel,
                "status" | "113/0/Access_Control/Door_state" | "48/0/Door-Window"
            )
        {
            return Parsed::Reports(Vec::new());
        }
        let result = match rel {
            "status" => value_of(payload)
                .and_then(|v| self.node.status_message(&v))
                .map(|up| vec![DoorReport::ContactAvailable(up)]),
            "113/0/Access_Control/Door_state" => {
                value_of(payload).and_then(|v| door_state(&v)).map(|open| {
                    open.map(|open| DoorReport::Contact { open })
                        .into_iter()
                        .collect()
                })
            }
            "48/0/Door-Window" => value_of(payload).and_then(|v| match as_bool(&v)? {
                Some(open) => Ok(vec![DoorReport::Contact { open }]),
                None => Err("not true or false".into()),
            }),
            _ => return Parsed::NotMine,
        };
        match result {
            Ok(reports) => Parsed::Reports(reports),
            Err(why) => Parsed::Malformed(format!("z-wave js door sensor {base} {rel}: {why}")),
        }
    }
}

fn to_bytes(v: &Value) -> Vec<u8> {
    // Serializing a `Value` built in this file cannot fail (string keys only).
    serde_json::to_vec(v).unwrap_or_default()
}

/// The value inside any of the three payload styles. A notification event
/// without parameters has no `value` at all and yields `null`.
fn value_of(payload: &[u8]) -> Result<Value, String> {
    let text = payload_text(payload).ok_or("payload is not UTF-8")?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => object_value(map),
        Ok(v) => Ok(v),
        // The raw style sends strings as JSON strings, but a hand-written or
        // older publisher may send a bare word; anything that starts like
        // JSON and fails to parse is broken, not a word.
        Err(_)
            if !text.is_empty()
                && !text.starts_with(['{', '[', '"'])
                && !text.contains(char::is_whitespace) =>
        {
            Ok(Value::String(text.to_string()))
        }
        Err(_) => Err("payload is not JSON".into()),
    }
}

/// `{"time":..,"value":v}` and the whole ValueId object both hold `value`;
/// an event without parameters is `{"time":..}` alone; in the raw style an
/// object is the value itself (an event's parameters, `{"userId":3}`).
fn object_value(mut map: Map<String, Value>) -> Result<Value, String> {
    match map.remove("value") {
        Some(v) => Ok(v),
        None if map.contains_key("time") => Ok(Value::Null),
        None => Ok(Value::Object(map)),
    }
}

/// `true`/`false`, also as the words the gateway's raw style may carry.
fn as_bool(v: &Value) -> Result<Option<bool>, String> {
    match v {
        Value::Bool(b) => Ok(Some(*b)),
        Value::String(s) if s == "true" => Ok(Some(true)),
        Value::String(s) if s == "false" => Ok(Some(false)),
        Value::Null => Ok(None),
        _ => Err("not true or false".into()),
    }
}

fn node_status(v: &Value) -> Result<bool, String> {
    as_bool(v)?.ok_or_else(|| "status without a value".to_string())
}

/// One Access Control event, named by its sanitized zwave-js label (the
/// gateway's topic segment); its meaning is shared with the server backend.
fn access_event(label: &str, v: &Value) -> Result<Vec<DoorReport>, String> {
    let number = match label {
        "Manual_lock_operation" => event::MANUAL_LOCK,
        "Manual_unlock_operation" => event::MANUAL_UNLOCK,
        "RF_lock_operation" => event::RF_LOCK,
        "RF_unlock_operation" => event::RF_UNLOCK,
        "Keypad_lock_operation" => event::KEYPAD_LOCK,
        "Keypad_unlock_operation" => event::KEYPAD_UNLOCK,
        "Lock_operation_with_User_Code" => event::LOCK_WITH_USER_CODE,
        "Unlock_operation_with_User_Code" => event::UNLOCK_WITH_USER_CODE,
        "Auto_lock_locked_operation" => event::AUTO_LOCKED,
        "Manual_not_fully_locked_operation" => event::MANUAL_NOT_FULLY_LOCKED,
        "RF_not_fully_locked_operation" => event::RF_NOT_FULLY_LOCKED,
        "Auto_lock_not_fully_locked_operation" => event::AUTO_NOT_FULLY_LOCKED,
        "New_user_code_added" => event::USER_CODE_ADDED,
        "Single_user_code_deleted" => event::USER_CODE_DELETED,
        // Keypad state, door handle state, invalid-code attempts…: nothing
        // the core acts on.
        _ => return Ok(Vec::new()),
    };
    Ok(zwave_meaning::access_event(number, v))
}
