//! A **simulated** Z-Wave lock behind Z-Wave JS UI's MQTT gateway: no
//! controller, no radio, just the gateway's MQTT side for one lock node in
//! ValueId topic mode (see `doorwarden::devices::zwave_js` for the formats).
//!
//! - Values (`98/0/currentMode`, `128/0/level`, `99/0/userIdStatus/<n>`,
//!   Access Control state variables, node `status`, the gateway's own
//!   `status`) are retained, as the gateway does by default; Access Control
//!   events (`RF_unlock_operation`, `Manual_unlock_operation`…) are not.
//! - Accepts writes on `98/0/targetMode/set`, `98/0/autoRelockTime/set`,
//!   `99/0/userCode/<n>/set`, `99/0/userIdStatus/<n>/set`, and the API calls
//!   `sendCommand` (User Code CC `set` / `clear`) and `refreshCCValues`.
//! - Knobs: silent, jam on next command, manual thumb-turn, node dead/alive,
//!   door open/shut (the lock's own door sensor), response delay, and the
//!   payload style (JSON time-value or raw).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Publish};
use serde_json::{Value, json};

use super::zigbee2mqtt_lock::{SimError, SimLink, locked, spawn_publishes};

/// The gateway's `payloadType` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadStyle {
    /// `{"time":1764347718000,"value":255}` (the gateway's default).
    #[default]
    TimeValue,
    /// `255`.
    Raw,
}

/// Where the simulated node lives.
#[derive(Debug, Clone)]
pub struct ZwaveSimConfig {
    /// The gateway's MQTT prefix (`zwave`).
    pub prefix: String,
    /// The gateway's name (`zwave-js-ui`), used in its `_CLIENTS` topics.
    pub gateway: String,
    /// The node's base topic (`zwave/Entry/front_door`).
    pub node_topic: String,
    pub node_id: u32,
    pub style: PayloadStyle,
}

impl ZwaveSimConfig {
    /// A node named by `node_topic` under the default prefix and gateway.
    pub fn new(node_topic: &str, node_id: u32) -> ZwaveSimConfig {
        ZwaveSimConfig {
            prefix: "zwave".into(),
            gateway: "zwave-js-ui".into(),
            node_topic: node_topic.trim_end_matches('/').to_string(),
            node_id,
            style: PayloadStyle::TimeValue,
        }
    }
}

#[derive(Debug)]
struct ZwaveLockState {
    /// Door Lock mode: 255 secured, 0 unsecured.
    mode: u8,
    jam_next: bool,
    silent: bool,
    alive: bool,
    door_open: bool,
    delay: Duration,
    battery: u8,
    auto_relock: u32,
    pins: BTreeMap<u16, String>,
    received: Vec<(String, Value)>,
}

/// A simulated Z-Wave JS UI lock node (modelled on a Yale YRD256).
pub struct SimZwaveLock {
    link: SimLink,
    cfg: ZwaveSimConfig,
    state: Arc<Mutex<ZwaveLockState>>,
}

/// Slots whose `userIdStatus` the node publishes at start.
const SLOTS: std::ops::RangeInclusive<u16> = 1..=5;

impl SimZwaveLock {
    /// Start as the node in `cfg`: secured, alive, door shut, answering at
    /// once.
    pub async fn start(
        host: &str,
        port: u16,
        cfg: ZwaveSimConfig,
    ) -> Result<SimZwaveLock, SimError> {
        let state = Arc::new(Mutex::new(ZwaveLockState {
            mode: 255,
            jam_next: false,
            silent: false,
            alive: true,
            door_open: false,
            delay: Duration::ZERO,
            battery: 78,
            auto_relock: 0,
            pins: BTreeMap::new(),
            received: Vec::new(),
        }));
        let b = &cfg.node_topic;
        let api = format!("{}/_CLIENTS/ZWAVE_GATEWAY-{}/api", cfg.prefix, cfg.gateway);
        let filters = vec![
            format!("{b}/98/0/targetMode/set"),
            format!("{b}/98/0/autoRelockTime/set"),
            format!("{b}/99/0/userCode/+/set"),
            format!("{b}/99/0/userIdStatus/+/set"),
            format!("{api}/sendCommand/set"),
            format!("{api}/refreshCCValues/set"),
        ];
        // The gateway's last will, as Z-Wave JS UI sets it.
        let will = (gateway_status(&cfg), to_bytes(&json!({"value": false})));
        let (c1, s1) = (cfg.clone(), state.clone());
        let on_connect = move |client: &AsyncClient| {
            let s = locked(&s1);
            let mut out = vec![
                (
                    gateway_status(&c1),
                    to_bytes(&json!({"value": true, "time": now_ms()})),
                    true,
                ),
                node_status(&c1, s.alive),
                value(&c1, "98/0/currentMode", json!(s.mode)),
                value(&c1, "98/0/targetMode", json!(s.mode)),
                value(&c1, "98/0/autoRelockTime", json!(s.auto_relock)),
                value(&c1, "128/0/level", json!(s.battery)),
                value(&c1, "113/0/Access_Control/Lock_state", json!(0)),
                value(
                    &c1,
                    "113/0/Access_Control/Door_state",
                    json!(if s.door_open { 22 } else { 23 }),
                ),
            ];
            for slot in SLOTS {
                out.push(value(
                    &c1,
                    &format!("99/0/userIdStatus/{slot}"),
                    json!(u8::from(s.pins.contains_key(&slot))),
                ));
            }
            spawn_publishes(client, Duration::ZERO, out);
        };
        let (c2, s2) = (cfg.clone(), state.clone());
        let on_message = move |client: &AsyncClient, p: Publish| answer(client, &c2, &s2, p);
        let link = SimLink::connect(
            &cfg.node_topic,
            host,
            port,
            Some(will),
            filters,
            on_connect,
            on_message,
        )
        .await?;
        Ok(SimZwaveLock { link, cfg, state })
    }

    /// Never answer (the gateway still thinks the node is alive).
    pub fn set_silent(&self, silent: bool) {
        locked(&self.state).silent = silent;
    }

    /// The next lock/unlock ends with the bolt stuck: "Lock jammed".
    pub fn jam_next_command(&self) {
        locked(&self.state).jam_next = true;
    }

    pub fn set_response_delay(&self, delay: Duration) {
        locked(&self.state).delay = delay;
    }

    /// Someone turns the thumb-turn to open.
    pub async fn manual_unlock(&self) -> Result<(), SimError> {
        self.move_by_hand(0, "Manual_unlock_operation").await
    }

    /// Someone turns the thumb-turn to lock.
    pub async fn manual_lock(&self) -> Result<(), SimError> {
        self.move_by_hand(255, "Manual_lock_operation").await
    }

    async fn move_by_hand(&self, mode: u8, event_label: &str) -> Result<(), SimError> {
        locked(&self.state).mode = mode;
        self.send(vec![
            event(&self.cfg, event_label, None),
            value(&self.cfg, "98/0/currentMode", json!(mode)),
        ])
        .await
    }

    /// zwave-js marks the node dead (or alive again); a dead node answers
    /// nothing.
    pub async fn set_alive(&self, alive: bool) -> Result<(), SimError> {
        locked(&self.state).alive = alive;
        self.send(vec![node_status(&self.cfg, alive)]).await
    }

    /// The lock's door sensor sees the door open or shut.
    pub async fn set_door_open(&self, open: bool) -> Result<(), SimError> {
        locked(&self.state).door_open = open;
        self.send(vec![
            value(
                &self.cfg,
                "113/0/Access_Control/Door_state",
                json!(if open { 22 } else { 23 }),
            ),
            value(
                &self.cfg,
                "98/0/doorStatus",
                json!(if open { "open" } else { "closed" }),
            ),
        ])
        .await
    }

    async fn send(&self, messages: Vec<(String, Vec<u8>, bool)>) -> Result<(), SimError> {
        for (topic, payload, retain) in messages {
            self.link.publish(&topic, payload, retain).await?;
        }
        Ok(())
    }

    /// Every write and API call received, as (topic, payload), oldest first.
    pub fn received(&self) -> Vec<(String, Value)> {
        locked(&self.state).received.clone()
    }

    /// The user codes stored in the simulated lock, by slot.
    pub fn pin_slots(&self) -> BTreeMap<u16, String> {
        locked(&self.state).pins.clone()
    }

    pub fn is_locked(&self) -> bool {
        locked(&self.state).mode == 255
    }

    pub fn auto_relock(&self) -> u32 {
        locked(&self.state).auto_relock
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn to_bytes(v: &Value) -> Vec<u8> {
    // A `Value` always serializes.
    serde_json::to_vec(v).unwrap_or_default()
}

fn gateway_status(cfg: &ZwaveSimConfig) -> String {
    format!(
        "{}/_CLIENTS/ZWAVE_GATEWAY-{}/status",
        cfg.prefix, cfg.gateway
    )
}

/// A retained value in the configured payload style.
fn value(cfg: &ZwaveSimConfig, rel: &str, v: Value) -> (String, Vec<u8>, bool) {
    let body = match cfg.style {
        PayloadStyle::TimeValue => json!({"time": now_ms(), "value": v}),
        PayloadStyle::Raw => v,
    };
    (format!("{}/{rel}", cfg.node_topic), to_bytes(&body), true)
}

/// A stateless Access Control event, not retained.
fn event(cfg: &ZwaveSimConfig, label: &str, params: Option<Value>) -> (String, Vec<u8>, bool) {
    let payload = match (cfg.style, params) {
        (PayloadStyle::TimeValue, Some(p)) => to_bytes(&json!({"time": now_ms(), "value": p})),
        (PayloadStyle::TimeValue, None) => to_bytes(&json!({"time": now_ms()})),
        (PayloadStyle::Raw, Some(p)) => to_bytes(&p),
        (PayloadStyle::Raw, None) => Vec::new(),
    };
    (
        format!("{}/113/0/Access_Control/{label}", cfg.node_topic),
        payload,
        false,
    )
}

fn node_status(cfg: &ZwaveSimConfig, alive: bool) -> (String, Vec<u8>, bool) {
    let body = match cfg.style {
        PayloadStyle::TimeValue => json!({
            "time": now_ms(),
            "value": alive,
            "status": if alive { "Alive" } else { "Dead" },
            "nodeId": cfg.node_id,
        }),
        PayloadStyle::Raw => json!(alive),
    };
    (format!("{}/status", cfg.node_topic), to_bytes(&body), true)
}

/// A value write's payload as the gateway reads it: `{"value":v}` or a bare
/// value; `true`/`"LOCK"` style words become 255 / 0 for the mode.
fn written_value(payload: &[u8]) -> Value {
    let text = std::str::from_utf8(payload).unwrap_or("").trim();
    let v = serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_string()));
    match v {
        Value::Object(mut m) if m.contains_key("value") => m.remove("value").unwrap_or(Value::Null),
        other => other,
    }
}

fn mode_of(v: &Value) -> Option<u8> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
        Value::Bool(true) => Some(255),
        Value::Bool(false) => Some(0),
        Value::String(s) if s.eq_ignore_ascii_case("unlock") || s == "false" => Some(0),
        Value::String(s) if s.eq_ignore_ascii_case("lock") || s == "true" => Some(255),
        _ => None,
    }
}

fn answer(client: &AsyncClient, cfg: &ZwaveSimConfig, state: &Mutex<ZwaveLockState>, p: Publish) {
    if p.retain {
        return;
    }
    let body = written_value(&p.payload);
    let mut s = locked(state);
    let rel = p
        .topic
        .strip_prefix(cfg.node_topic.as_str())
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or("");
    // Record what arrived, with an API call's full request (tests look at
    // the PIN a courier would type).
    let request = std::str::from_utf8(&p.payload)
        .ok()
        .and_then(|t| serde_json::from_str(t).ok());
    s.received.push((
        p.topic.clone(),
        request.clone().unwrap_or_else(|| body.clone()),
    ));
    if s.silent || !s.alive {
        return;
    }
    let delay = s.delay;
    let mut out = Vec::new();
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        ["98", "0", "targetMode", "set"] => {
            let Some(target) = mode_of(&body) else { return };
            let secure = target == 255;
            if std::mem::take(&mut s.jam_next) {
                let label = "RF_not_fully_locked_operation";
                out.push(event(cfg, label, None));
                out.push(value(cfg, "113/0/Access_Control/Lock_state", json!(11)));
                out.push(value(cfg, "98/0/currentMode", json!(s.mode)));
            } else {
                s.mode = target;
                let label = if secure {
                    "RF_lock_operation"
                } else {
                    "RF_unlock_operation"
                };
                out.push(event(cfg, label, None));
                out.push(value(cfg, "113/0/Access_Control/Lock_state", json!(0)));
                out.push(value(cfg, "98/0/targetMode", json!(target)));
                out.push(value(cfg, "98/0/currentMode", json!(target)));
            }
        }
        ["98", "0", "autoRelockTime", "set"] => {
            let Some(t) = body.as_u64().and_then(|t| u32::try_from(t).ok()) else {
                return;
            };
            s.auto_relock = t;
            out.push(value(cfg, "98/0/autoRelockTime", json!(t)));
        }
        ["99", "0", "userCode", slot, "set"] => {
            let (Ok(slot), Some(code)) = (slot.parse::<u16>(), body.as_str()) else {
                return;
            };
            s.pins.insert(slot, code.to_string());
            out.push(value(cfg, &format!("99/0/userIdStatus/{slot}"), json!(1)));
        }
        ["99", "0", "userIdStatus", slot, "set"] => {
            let (Ok(slot), Some(0)) = (slot.parse::<u16>(), body.as_u64()) else {
                return;
            };
            s.pins.remove(&slot);
            out.push(value(cfg, &format!("99/0/userIdStatus/{slot}"), json!(0)));
        }
        _ if p.topic.ends_with("/api/sendCommand/set") => {
            let Some(request) = request else { return };
            if let Some(reply) = user_code_call(cfg, &mut s, &request, &mut out) {
                let topic = p.topic.trim_end_matches("/set").to_string();
                out.push((topic, to_bytes(&reply), false));
            }
        }
        _ if p.topic.ends_with("/api/refreshCCValues/set") => {
            let args = request
                .as_ref()
                .and_then(|r| r.get("args"))
                .and_then(Value::as_array);
            if args.and_then(|a| a.first()).and_then(Value::as_u64) == Some(u64::from(cfg.node_id))
            {
                out.push(value(cfg, "98/0/currentMode", json!(s.mode)));
            }
        }
        _ => return,
    }
    drop(s);
    spawn_publishes(client, delay, out);
}

/// A User Code CC `set` / `clear` through `sendCommand`, for this node only.
/// Returns the gateway's answer, with the request echoed as `origin`.
fn user_code_call(
    cfg: &ZwaveSimConfig,
    s: &mut ZwaveLockState,
    request: &Value,
    out: &mut Vec<(String, Vec<u8>, bool)>,
) -> Option<Value> {
    let args = request.get("args")?.as_array()?;
    let target = args.first()?;
    if target.get("nodeId")?.as_u64()? != u64::from(cfg.node_id)
        || target.get("commandClass")?.as_u64()? != 99
    {
        return None;
    }
    let params = args.get(2)?.as_array()?;
    let slot = u16::try_from(params.first()?.as_u64()?).ok()?;
    match args.get(1)?.as_str()? {
        "set" => {
            let code = params.get(2)?.as_str()?;
            s.pins.insert(slot, code.to_string());
            out.push(value(cfg, &format!("99/0/userIdStatus/{slot}"), json!(1)));
        }
        "clear" => {
            s.pins.remove(&slot);
            out.push(value(cfg, &format!("99/0/userIdStatus/{slot}"), json!(0)));
        }
        _ => {
            return Some(json!({"success": false, "message": "Unknown method", "origin": request}));
        }
    }
    Some(
        json!({"success": true, "message": "Success zwave api call", "result": null, "origin": request}),
    )
}
