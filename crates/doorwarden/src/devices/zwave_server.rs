//! The Z-Wave JS server's WebSocket API, as doorwarden speaks it: the
//! messages and what they mean for one node, and nothing of the connection
//! (that is `io::zwave_server`'s).
//!
//! # Conversation
//!
//! ```text
//! server: {"type":"version","minSchemaVersion":0,"maxSchemaVersion":50,...}
//! client: {"messageId":"1","command":"set_api_schema","schemaVersion":44}
//! client: {"messageId":"2","command":"start_listening"}
//! server: {"type":"result","messageId":"2","success":true,"result":{"state":{"nodes":[...]}}}
//! server: {"type":"event","event":{"source":"node","event":"value updated","nodeId":5,"args":{...}}}
//! ```
//!
//! A node's values (in the dump and in `value updated` events) are zwave-js
//! value ids, `{commandClass, endpoint, property, propertyKey}` with the
//! value in `value` / `newValue`. Access Control events (manual, keypad,
//! RF…) arrive as `notification` events with the event number and its
//! parameters; the Access Control *states* (Lock state 11 = jammed, Door
//! state) arrive as value updates.
//!
//! # Confirmation
//!
//! zwave-js updates `currentMode` to the target the moment a Door Lock
//! set leaves, before the bolt has moved. So while doorwarden waits for its
//! own command, `currentMode` updates are not the lock's word; the lock's
//! word is its Door Lock Operation Report, asked for with the Door Lock
//! CC's `get` ([`lock_status`]), which also says when the bolt is still on
//! its way (target mode and a remaining duration).

use serde_json::{Value, json};

use super::zwave_meaning::{
    self, MODE_SECURED, MODE_UNSECURED, current_mode, door_state, uint, user_id_status,
};
use crate::core::{DoorReport, LockState};

/// The oldest API schema doorwarden speaks: schema 32 made notification
/// events carry their endpoint and errors their message (zwave-server 1.24,
/// 2022). Every Z-Wave JS add-on and Z-Wave JS UI release since offers it.
pub const SCHEMA_MIN: u32 = 32;
/// The newest schema doorwarden was tested against (zwave-server 3.10).
pub const SCHEMA_MAX: u32 = 50;

const CC_DOOR_LOCK: u64 = 98;
const CC_NOTIFICATION: u64 = 113;
const CC_USER_CODE: u64 = 99;
const CC_BATTERY: u64 = 128;
const CC_BINARY_SENSOR: u64 = 48;
/// Z-Wave node status "dead" in the server's node dump.
const STATUS_DEAD: u64 = 3;

/// The schema to ask for, given the range the server announced.
///
/// # Errors
/// The server and doorwarden share no schema; the text says which ranges.
pub fn choose_schema(server_min: u32, server_max: u32) -> Result<u32, String> {
    let chosen = server_max.min(SCHEMA_MAX);
    if chosen < SCHEMA_MIN || chosen < server_min {
        return Err(format!(
            "the Z-Wave JS server speaks API schemas {server_min}-{server_max}, doorwarden speaks {SCHEMA_MIN}-{SCHEMA_MAX}: update {}",
            if server_max < SCHEMA_MIN {
                "the Z-Wave JS server (add-on)"
            } else {
                "doorwarden"
            }
        ));
    }
    Ok(chosen)
}

/// One message from the server, as far as doorwarden cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Version {
        min: u32,
        max: u32,
    },
    /// The answer to one of doorwarden's requests; `Err` holds the
    /// server's error text.
    Result {
        id: String,
        outcome: Result<Value, String>,
    },
    /// An event about some node.
    NodeEvent {
        node: u64,
        event: String,
        body: Value,
    },
    /// Controller and driver events, statistics: nothing for doorwarden.
    Other,
}

/// Read one text frame.
///
/// # Errors
/// Not JSON, or a message without the fields its type needs. The text names
/// the field, never the message (which may hold a PIN).
pub fn parse(text: &str) -> Result<Message, String> {
    let v: Value = serde_json::from_str(text).map_err(|_| "not JSON".to_string())?;
    match v.get("type").and_then(Value::as_str) {
        Some("version") => {
            let n = |k: &str| {
                v.get(k)
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| format!("version without `{k}`"))
            };
            Ok(Message::Version {
                min: n("minSchemaVersion")?,
                max: n("maxSchemaVersion")?,
            })
        }
        Some("result") => {
            let id = v
                .get("messageId")
                .and_then(Value::as_str)
                .ok_or("result without `messageId`")?
                .to_string();
            let outcome = if v.get("success").and_then(Value::as_bool) == Some(true) {
                Ok(v.get("result").cloned().unwrap_or(Value::Null))
            } else {
                Err(error_text(&v))
            };
            Ok(Message::Result { id, outcome })
        }
        Some("event") => {
            let ev = v.get("event").ok_or("event without `event`")?;
            if ev.get("source").and_then(Value::as_str) != Some("node") {
                return Ok(Message::Other);
            }
            let node = ev
                .get("nodeId")
                .and_then(Value::as_u64)
                .ok_or("node event without `nodeId`")?;
            let event = ev
                .get("event")
                .and_then(Value::as_str)
                .ok_or("node event without a name")?
                .to_string();
            Ok(Message::NodeEvent {
                node,
                event,
                body: ev.clone(),
            })
        }
        _ => Ok(Message::Other),
    }
}

/// The server's error, in its own words, bounded: the error code and the
/// zwave-js message, never the arguments it echoes.
fn error_text(v: &Value) -> String {
    let code = v
        .get("errorCode")
        .and_then(Value::as_str)
        .unwrap_or("error");
    let detail = v
        .get("zwaveErrorMessage")
        .or_else(|| v.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut text = format!("{code}: {detail}");
    if text.len() > 200 {
        let mut cut = 200;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// One request, ready to send.
pub fn request(id: &str, command: &str, mut fields: Value) -> String {
    if let Value::Object(map) = &mut fields {
        map.insert("messageId".into(), json!(id));
        map.insert("command".into(), json!(command));
    }
    fields.to_string()
}

/// What a door uses the node for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The door's lock; its own door sensor speaks for the door only when
    /// the door has no separate contact sensor.
    Lock { door_sensor: bool },
    /// The door's contact sensor.
    Contact,
}

/// What the server's dump says about the node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// Interviewed: its values are known. Before that the server accepts
    /// clients but the node's values are missing or stale.
    pub ready: bool,
    /// Not dead.
    pub alive: bool,
    pub reports: Vec<DoorReport>,
}

/// One node of the server, as one door uses it.
#[derive(Debug, Clone)]
pub struct ServerNode {
    pub node: u64,
    pub role: Role,
}

impl ServerNode {
    /// The node in a `start_listening` state dump (`result.state.nodes`)
    /// or a `ready` event's `nodeState`; `None` when it is not there.
    pub fn view_in_state(&self, state: &Value) -> Option<NodeView> {
        let node = state
            .pointer("/state/nodes")
            .and_then(Value::as_array)?
            .iter()
            .find(|n| n.get("nodeId").and_then(Value::as_u64) == Some(self.node))?;
        Some(self.view(node))
    }

    /// A node dump's view.
    pub fn view(&self, node: &Value) -> NodeView {
        let ready = node.get("ready").and_then(Value::as_bool) == Some(true);
        let alive = node.get("status").and_then(Value::as_u64) != Some(STATUS_DEAD);
        let mut reports = Vec::new();
        if ready {
            for v in node
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(value) = v.get("value") else {
                    continue;
                };
                // A malformed stored value is skipped: the next report
                // replaces it, and the rest of the dump still counts.
                if let Ok(r) = self.value(v, value, true) {
                    reports.extend(r);
                }
            }
        }
        NodeView {
            ready,
            alive,
            reports,
        }
    }

    /// A `value updated` / `value notification` event's `args`.
    /// `trust_mode` is false while doorwarden's own Door Lock command is
    /// in flight: `currentMode` updates then are zwave-js's optimism, not
    /// the lock (see the module doc).
    ///
    /// # Errors
    /// A value doorwarden reads that holds something it cannot mean.
    pub fn value_event(&self, args: &Value, trust_mode: bool) -> Result<Vec<DoorReport>, String> {
        match args.get("newValue").or_else(|| args.get("value")) {
            Some(v) => self.value(args, v, trust_mode),
            None => Ok(Vec::new()),
        }
    }

    fn value(&self, id: &Value, v: &Value, trust_mode: bool) -> Result<Vec<DoorReport>, String> {
        if id.get("endpoint").and_then(Value::as_u64).unwrap_or(0) != 0 {
            return Ok(Vec::new());
        }
        let cc = id.get("commandClass").and_then(Value::as_u64);
        let property = id.get("property");
        let prop = property.and_then(Value::as_str).unwrap_or("");
        let key = id.get("propertyKey");
        let key_str = key.and_then(Value::as_str).unwrap_or("");
        if v.is_null() {
            return Ok(Vec::new());
        }
        match (self.role, cc) {
            (Role::Lock { .. }, Some(CC_DOOR_LOCK)) if prop == "currentMode" => {
                if !trust_mode {
                    return Ok(Vec::new());
                }
                current_mode(v).map(|state| {
                    vec![DoorReport::Lock {
                        state,
                        source: None,
                    }]
                })
            }
            (Role::Lock { .. }, Some(CC_DOOR_LOCK)) if prop == "autoRelockTime" => {
                uint(v, u64::from(u32::MAX)).map(|t| vec![DoorReport::AutoRelock(t as u32)])
            }
            (Role::Lock { door_sensor: true }, Some(CC_DOOR_LOCK)) if prop == "doorStatus" => {
                match v.as_str() {
                    Some("open") => Ok(vec![DoorReport::Contact { open: true }]),
                    Some("closed") => Ok(vec![DoorReport::Contact { open: false }]),
                    _ => Err("doorStatus is not \"open\" or \"closed\"".into()),
                }
            }
            (Role::Lock { .. }, Some(CC_NOTIFICATION))
                if prop == "Access Control" && key_str == "Lock state" =>
            {
                zwave_meaning::lock_state(v)
            }
            (role, Some(CC_NOTIFICATION))
                if prop == "Access Control" && key_str == "Door state" =>
            {
                let speaks = matches!(role, Role::Contact | Role::Lock { door_sensor: true });
                door_state(v).map(|open| match open {
                    Some(open) if speaks => vec![DoorReport::Contact { open }],
                    _ => Vec::new(),
                })
            }
            (Role::Lock { .. }, Some(CC_USER_CODE)) if prop == "userIdStatus" => {
                let slot = key
                    .and_then(Value::as_u64)
                    .and_then(|k| u16::try_from(k).ok())
                    .ok_or("userIdStatus without a slot")?;
                user_id_status(slot, v)
            }
            (Role::Lock { .. }, Some(CC_BATTERY)) if prop == "level" => {
                uint(v, 100).map(|b| vec![DoorReport::Battery(b as u8)])
            }
            (Role::Contact, Some(CC_BINARY_SENSOR)) if prop == "Door-Window" => match v {
                Value::Bool(open) => Ok(vec![DoorReport::Contact { open: *open }]),
                _ => Err("Door-Window is not true or false".into()),
            },
            _ => Ok(Vec::new()),
        }
    }

    /// A `notification` event: Access Control events (type 6) only.
    pub fn notification(&self, body: &Value) -> Vec<DoorReport> {
        if self.role == Role::Contact
            || body.get("ccId").and_then(Value::as_u64) != Some(CC_NOTIFICATION)
            || body
                .get("endpointIndex")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                != 0
        {
            return Vec::new();
        }
        let Some(args) = body.get("args") else {
            return Vec::new();
        };
        if args.get("type").and_then(Value::as_u64) != Some(6) {
            return Vec::new();
        }
        match args.get("event").and_then(Value::as_u64) {
            Some(n) => {
                zwave_meaning::access_event(n, args.get("parameters").unwrap_or(&Value::Null))
            }
            None => Vec::new(),
        }
    }

    // ---- requests ----------------------------------------------------

    /// Move the bolt: Door Lock `targetMode`.
    pub fn set_mode(&self, id: &str, locked: bool) -> String {
        let mode = if locked { MODE_SECURED } else { MODE_UNSECURED };
        request(
            id,
            "node.set_value",
            json!({
                "nodeId": self.node,
                "valueId": {"commandClass": CC_DOOR_LOCK, "endpoint": 0, "property": "targetMode"},
                "value": mode,
            }),
        )
    }

    /// Ask the lock itself where its bolt is (Door Lock Operation Get).
    pub fn get_lock_status(&self, id: &str) -> String {
        self.invoke(id, CC_DOOR_LOCK, "get", json!([]))
    }

    /// Store a PIN in a slot (User Code Set, status "enabled"). The message
    /// holds the PIN: it must never be logged.
    pub fn set_code(&self, id: &str, slot: u16, code: &str) -> String {
        self.invoke(id, CC_USER_CODE, "set", json!([slot, 1, code]))
    }

    pub fn clear_code(&self, id: &str, slot: u16) -> String {
        self.invoke(id, CC_USER_CODE, "clear", json!([slot]))
    }

    /// Ask the lock what a slot holds (User Code Get).
    pub fn get_code_slot(&self, id: &str, slot: u16) -> String {
        self.invoke(id, CC_USER_CODE, "get", json!([slot]))
    }

    fn invoke(&self, id: &str, cc: u64, method: &str, args: Value) -> String {
        request(
            id,
            "endpoint.invoke_cc_api",
            json!({
                "nodeId": self.node,
                "endpoint": 0,
                "commandClass": cc,
                "methodName": method,
                "args": args,
            }),
        )
    }
}

/// Whether a value update is one only a Door Lock Operation Report from the
/// lock carries (handles, duration, bolt/latch/door status). zwave-js's own
/// optimistic update after a set touches `currentMode` and `targetMode`
/// alone, so these say the lock has spoken; what it said is still read
/// with [`ServerNode::get_lock_status`].
pub fn is_operation_report_value(args: &Value) -> bool {
    args.get("commandClass").and_then(Value::as_u64) == Some(CC_DOOR_LOCK)
        && matches!(
            args.get("property").and_then(Value::as_str),
            Some(
                "duration"
                    | "insideHandlesCanOpenDoor"
                    | "outsideHandlesCanOpenDoor"
                    | "boltStatus"
                    | "latchStatus"
                    | "doorStatus"
            )
        )
}

/// The lock's answer to [`ServerNode::get_lock_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockStatus {
    /// The bolt is where the lock says.
    At(LockState),
    /// The bolt is on its way to this position.
    Moving(LockState),
}

/// Read the `invoke_cc_api` result of a Door Lock `get`:
/// `{"response":{"currentMode":255,"targetMode":255,"duration":{"value":0,"unit":"seconds"},..}}`.
///
/// # Errors
/// No `currentMode` in the answer (the lock did not answer in time).
pub fn lock_status(result: &Value) -> Result<LockStatus, String> {
    let response = result.get("response").unwrap_or(&Value::Null);
    let current = response
        .get("currentMode")
        .ok_or("the lock did not say where its bolt is")?;
    let current = current_mode(current)?;
    let target = response
        .get("targetMode")
        .and_then(|t| current_mode(t).ok());
    let remaining = response
        .pointer("/duration/value")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok(match target {
        Some(t) if t != current && remaining > 0 => LockStatus::Moving(t),
        _ => LockStatus::At(current),
    })
}

/// Read the `invoke_cc_api` result of a User Code `get`:
/// `{"response":{"userIdStatus":1,"userCode":"...."}}`. Only the status is
/// read; the PIN is never looked at.
pub fn code_slot(slot: u16, result: &Value) -> Vec<DoorReport> {
    result
        .pointer("/response/userIdStatus")
        .and_then(|s| user_id_status(slot, s).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::MoveSource;

    fn lock() -> ServerNode {
        ServerNode {
            node: 5,
            role: Role::Lock { door_sensor: false },
        }
    }

    #[test]
    fn schema_range_is_negotiated_and_refused_outside() {
        assert_eq!(choose_schema(0, 50), Ok(50));
        assert_eq!(choose_schema(0, 44), Ok(44));
        assert_eq!(choose_schema(0, 99), Ok(SCHEMA_MAX));
        let old = choose_schema(0, 20).unwrap_err();
        assert!(old.contains("speaks API schemas 0-20"), "{old}");
        assert!(old.contains("update the Z-Wave JS server"), "{old}");
        let new = choose_schema(60, 70).unwrap_err();
        assert!(new.contains("update doorwarden"), "{new}");
    }

    #[test]
    fn optimistic_current_mode_is_not_the_locks_word() {
        let args = json!({"commandClass":98,"endpoint":0,"property":"currentMode","newValue":255,"prevValue":0});
        assert_eq!(lock().value_event(&args, false), Ok(vec![]));
        assert_eq!(
            lock().value_event(&args, true),
            Ok(vec![DoorReport::Lock {
                state: LockState::Locked,
                source: None
            }])
        );
    }

    #[test]
    fn battery_and_code_slots_are_read_and_a_bad_level_is_an_error() {
        let level = json!({"commandClass":128,"endpoint":0,"property":"level","newValue":5});
        assert_eq!(
            lock().value_event(&level, true),
            Ok(vec![DoorReport::Battery(5)])
        );
        let bad = json!({"commandClass":128,"endpoint":0,"property":"level","newValue":"lots"});
        assert!(lock().value_event(&bad, true).is_err());
        let slot = json!({"commandClass":99,"endpoint":0,"property":"userIdStatus","propertyKey":3,"newValue":1});
        assert_eq!(
            lock().value_event(&slot, true),
            Ok(vec![DoorReport::CodeSlot { slot: 3, set: true }])
        );
        let answer = json!({"response":{"userIdStatus":0,"userCode":"1234"}});
        assert_eq!(
            code_slot(3, &answer),
            vec![DoorReport::CodeSlot {
                slot: 3,
                set: false
            }]
        );
    }

    #[test]
    fn jam_arrives_as_a_value_update() {
        let args = json!({"commandClass":113,"endpoint":0,"property":"Access Control","propertyKey":"Lock state","newValue":11,"prevValue":0});
        assert_eq!(
            lock().value_event(&args, false),
            Ok(vec![DoorReport::Jammed])
        );
    }

    #[test]
    fn keypad_notification_names_the_user() {
        let body = json!({"source":"node","event":"notification","nodeId":5,"endpointIndex":0,"ccId":113,
            "args":{"type":6,"event":6,"label":"Access Control","eventLabel":"Keypad unlock operation","parameters":{"userId":3}}});
        assert_eq!(
            lock().notification(&body),
            vec![DoorReport::Lock {
                state: LockState::Unlocked,
                source: Some(MoveSource::Keypad { slot: Some(3) })
            }]
        );
    }

    #[test]
    fn a_moving_bolt_is_not_a_contrary_answer() {
        let moving = json!({"response":{"currentMode":0,"targetMode":255,"duration":{"value":1,"unit":"seconds"}}});
        assert_eq!(
            lock_status(&moving),
            Ok(LockStatus::Moving(LockState::Locked))
        );
        let stuck = json!({"response":{"currentMode":0,"targetMode":0,"duration":{"value":0,"unit":"seconds"}}});
        assert_eq!(lock_status(&stuck), Ok(LockStatus::At(LockState::Unlocked)));
        assert!(lock_status(&json!({})).is_err());
    }

    #[test]
    fn a_contact_sensor_node_reports_the_door_and_nothing_of_a_lock() {
        let contact = ServerNode {
            node: 9,
            role: Role::Contact,
        };
        let door = json!({"commandClass":113,"endpoint":0,"property":"Access Control","propertyKey":"Door state","newValue":22});
        assert_eq!(
            contact.value_event(&door, true),
            Ok(vec![DoorReport::Contact { open: true }])
        );
        let binary =
            json!({"commandClass":48,"endpoint":0,"property":"Door-Window","newValue":false});
        assert_eq!(
            contact.value_event(&binary, true),
            Ok(vec![DoorReport::Contact { open: false }])
        );
        let mode = json!({"commandClass":98,"endpoint":0,"property":"currentMode","newValue":0});
        assert_eq!(contact.value_event(&mode, true), Ok(vec![]));
        // A lock's own door sensor is silent when the door has a separate
        // contact sensor.
        assert_eq!(lock().value_event(&door, true), Ok(vec![]));
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        assert!(parse("{").is_err());
        assert!(parse(r#"{"type":"result"}"#).is_err());
        assert_eq!(
            parse(r#"{"type":"event","event":{"source":"controller"}}"#),
            Ok(Message::Other)
        );
        assert_eq!(parse("[1,2]"), Ok(Message::Other));
    }

    #[test]
    fn server_errors_never_echo_the_request() {
        let text = r#"{"type":"result","success":false,"messageId":"7","errorCode":"zwave_error","zwaveErrorMessage":"Node 5 is dead","args":{"code":"1234"}}"#;
        match parse(text) {
            Ok(Message::Result {
                outcome: Err(e), ..
            }) => {
                assert_eq!(e, "zwave_error: Node 5 is dead");
            }
            other => panic!("{other:?}"),
        }
    }
}
