//! A **simulated** Zigbee2MQTT lock and contact sensor: no radio, no
//! Zigbee, just the MQTT side of Zigbee2MQTT for one device, answering the
//! way the bridge does (see `doorwarden::devices::zigbee2mqtt` for the formats).
//!
//! - Commands on `<topic>/set` (`{"state":"LOCK"}`, `auto_relock_time`,
//!   `pin_code`) and refreshes on `<topic>/get` are answered after the
//!   configured delay with what a real lock makes Zigbee2MQTT publish: the
//!   operation event merged into the *old* cached state, then the new state.
//! - Device state is not retained (Zigbee2MQTT's default); availability and
//!   `bridge/state` are.
//! - Knobs: [`SimZigbeeLock::set_silent`] (never answers),
//!   [`SimZigbeeLock::jam_next_command`], [`SimZigbeeLock::set_bolt_blocked`],
//!   [`SimZigbeeLock::manual_unlock`] /
//!   [`SimZigbeeLock::manual_lock`] (thumb-turn), [`SimZigbeeLock::set_online`],
//!   [`SimZigbeeLock::set_response_delay`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, Publish, QoS, SubscribeFilter,
};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Why a simulator could not start or publish.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(
        "simulated device {device}: no connection to the MQTT broker at {host}:{port} within {limit:?}"
    )]
    Connect {
        device: String,
        host: String,
        port: u16,
        limit: Duration,
    },
    #[error("simulated device {device}: cannot publish on {topic}: {reason}")]
    Publish {
        device: String,
        topic: String,
        reason: String,
    },
}

/// How long [`SimLink::connect`] waits for the broker.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);

/// An MQTT connection driven by its own task, shared by the simulators.
pub(crate) struct SimLink {
    pub(crate) client: AsyncClient,
    pub(crate) name: String,
    task: JoinHandle<()>,
}

impl SimLink {
    /// Connect, subscribe to `filters`, call `on_connect` after every
    /// (re)connection and `on_message` for every publish received. Returns
    /// once the broker acknowledged the subscriptions. `will` is the retained
    /// (topic, payload) the broker publishes if the simulator vanishes, as
    /// the real bridges set one.
    pub(crate) async fn connect(
        name: &str,
        host: &str,
        port: u16,
        will: Option<(String, Vec<u8>)>,
        filters: Vec<String>,
        on_connect: impl Fn(&AsyncClient) + Send + 'static,
        on_message: impl Fn(&AsyncClient, Publish) + Send + 'static,
    ) -> Result<SimLink, SimError> {
        let client_id: String = format!("sim-{name}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(60)
            .collect();
        let mut options = MqttOptions::new(client_id, host, port);
        options.set_keep_alive(Duration::from_secs(5));
        if let Some((topic, payload)) = will {
            options.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, true));
        }
        let (client, eventloop) = AsyncClient::new(options, 64);
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(drive(
            eventloop,
            client.clone(),
            filters,
            ready_tx,
            on_connect,
            on_message,
        ));
        let err = || SimError::Connect {
            device: name.to_string(),
            host: host.to_string(),
            port,
            limit: CONNECT_LIMIT,
        };
        match tokio::time::timeout(CONNECT_LIMIT, ready_rx).await {
            Ok(Ok(())) => Ok(SimLink {
                client,
                name: name.to_string(),
                task,
            }),
            _ => {
                task.abort();
                Err(err())
            }
        }
    }

    pub(crate) async fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), SimError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .map_err(|e| SimError::Publish {
                device: self.name.clone(),
                topic: topic.to_string(),
                reason: e.to_string(),
            })
    }
}

impl Drop for SimLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    filters: Vec<String>,
    ready: oneshot::Sender<()>,
    on_connect: impl Fn(&AsyncClient),
    on_message: impl Fn(&AsyncClient, Publish),
) {
    let mut ready = Some(ready);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                // One SUBSCRIBE, so one SUBACK means all filters are live.
                // Queued for the event loop; it only fails once the loop is
                // gone, and then this task is ending anyway.
                let all = filters
                    .iter()
                    .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                let _ = client.try_subscribe_many(all);
                on_connect(&client);
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => on_message(&client, p),
            Ok(_) => {}
            // rumqttc reconnects on the next poll; don't spin meanwhile.
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Publish from inside the event loop's callbacks (which must not wait on
/// the loop they run in). Answers without a delay are queued at once, in the
/// order the commands arrived, as a real bridge answers them: a spawned task
/// per answer could let an older state overtake a newer one.
pub(crate) fn spawn_publishes(
    client: &AsyncClient,
    delay: Duration,
    messages: Vec<(String, Vec<u8>, bool)>,
) {
    if delay.is_zero() {
        for (topic, payload, retain) in messages {
            // Only fails when the request queue is full or the loop is gone;
            // a simulator that drops an answer then looks like a silent lock.
            let _ = client.try_publish(topic, QoS::AtLeastOnce, retain, payload);
        }
        return;
    }
    let client = client.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        for (topic, payload, retain) in messages {
            if client
                .publish(topic, QoS::AtLeastOnce, retain, payload)
                .await
                .is_err()
            {
                return;
            }
        }
    });
}

pub(crate) fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn to_bytes(v: &Value) -> Vec<u8> {
    // A `Value` always serializes.
    serde_json::to_vec(v).unwrap_or_default()
}

/// What the simulated lock is and has been told.
#[derive(Debug, Clone)]
struct ZigbeeLockState {
    locked: bool,
    /// The last move ended half-thrown (`not_fully_locked`).
    jammed: bool,
    jam_next: bool,
    /// The bolt cannot move (a door frame out of line): every lock/unlock
    /// ends where it started.
    blocked: bool,
    silent: bool,
    online: bool,
    delay: Duration,
    battery: u8,
    auto_relock: u32,
    pins: BTreeMap<u16, String>,
    received: Vec<Value>,
}

impl ZigbeeLockState {
    /// The device's cached state, as Zigbee2MQTT publishes it.
    fn state_json(&self) -> Map<String, Value> {
        let (state, lock_state) = match (self.locked, self.jammed) {
            (_, true) => ("UNLOCK", "not_fully_locked"),
            (true, false) => ("LOCK", "locked"),
            (false, false) => ("UNLOCK", "unlocked"),
        };
        let mut m = Map::new();
        m.insert("state".into(), json!(state));
        m.insert("lock_state".into(), json!(lock_state));
        m.insert("battery".into(), json!(self.battery));
        m.insert("linkquality".into(), json!(120));
        m.insert("auto_relock_time".into(), json!(self.auto_relock));
        m
    }
}

/// A simulated Zigbee2MQTT lock (modelled on a Yale YRD226HA2619).
pub struct SimZigbeeLock {
    link: SimLink,
    topic: String,
    state: Arc<Mutex<ZigbeeLockState>>,
}

impl SimZigbeeLock {
    /// Start answering as the device on `topic` (`zigbee2mqtt/Front door`),
    /// locked, online, answering at once.
    pub async fn start(host: &str, port: u16, topic: &str) -> Result<SimZigbeeLock, SimError> {
        let state = Arc::new(Mutex::new(ZigbeeLockState {
            locked: true,
            jammed: false,
            jam_next: false,
            blocked: false,
            silent: false,
            online: true,
            delay: Duration::ZERO,
            battery: 87,
            auto_relock: 0,
            pins: BTreeMap::new(),
            received: Vec::new(),
        }));
        let topic = topic.trim_end_matches('/').to_string();
        let base = topic.split('/').next().unwrap_or("zigbee2mqtt").to_string();
        let filters = vec![format!("{topic}/set"), format!("{topic}/get")];
        // Zigbee2MQTT's own last will: the whole bridge is gone.
        let will = (
            format!("{base}/bridge/state"),
            to_bytes(&json!({"state": "offline"})),
        );
        let (t1, s1) = (topic.clone(), state.clone());
        let on_connect = move |client: &AsyncClient| {
            let online = locked(&s1).online;
            spawn_publishes(
                client,
                Duration::ZERO,
                vec![
                    (
                        format!("{base}/bridge/state"),
                        to_bytes(&json!({"state": "online"})),
                        true,
                    ),
                    (format!("{t1}/availability"), availability(online), true),
                ],
            );
        };
        let (t2, s2) = (topic.clone(), state.clone());
        let on_message = move |client: &AsyncClient, p: Publish| answer(client, &t2, &s2, p);
        let link = SimLink::connect(
            &topic,
            host,
            port,
            Some(will),
            filters,
            on_connect,
            on_message,
        )
        .await?;
        Ok(SimZigbeeLock { link, topic, state })
    }

    /// Never answer commands (a lock out of radio range that Zigbee2MQTT
    /// still believes online).
    pub fn set_silent(&self, silent: bool) {
        locked(&self.state).silent = silent;
    }

    /// The next lock/unlock leaves the bolt half-thrown: `not_fully_locked`.
    pub fn jam_next_command(&self) {
        locked(&self.state).jam_next = true;
    }

    /// Block the bolt, or free it: while blocked, the motor tries for a
    /// second on each lock/unlock, gives up, and the lock reports the
    /// position it never left.
    pub fn set_bolt_blocked(&self, blocked: bool) {
        locked(&self.state).blocked = blocked;
    }

    /// Wait this long before answering each command.
    pub fn set_response_delay(&self, delay: Duration) {
        locked(&self.state).delay = delay;
    }

    /// Someone turns the thumb-turn to open.
    pub async fn manual_unlock(&self) -> Result<(), SimError> {
        self.move_by_hand(false).await
    }

    /// Someone turns the thumb-turn to lock.
    pub async fn manual_lock(&self) -> Result<(), SimError> {
        self.move_by_hand(true).await
    }

    async fn move_by_hand(&self, lock: bool) -> Result<(), SimError> {
        let (event, after) = {
            let mut s = locked(&self.state);
            let mut event = s.state_json();
            event.insert(
                "action".into(),
                json!(if lock { "manual_lock" } else { "manual_unlock" }),
            );
            event.insert("action_source".into(), json!(2));
            event.insert("action_source_name".into(), json!("manual"));
            event.insert("action_user".into(), json!(0));
            s.locked = lock;
            s.jammed = false;
            (event, s.state_json())
        };
        self.link
            .publish(&self.topic, to_bytes(&Value::Object(event)), false)
            .await?;
        self.link
            .publish(&self.topic, to_bytes(&Value::Object(after)), false)
            .await
    }

    /// Zigbee2MQTT marks the device offline (or back online); an offline
    /// lock also stops answering.
    pub async fn set_online(&self, online: bool) -> Result<(), SimError> {
        locked(&self.state).online = online;
        self.link
            .publish(
                &format!("{}/availability", self.topic),
                availability(online),
                true,
            )
            .await
    }

    /// Every JSON message received on `/set` and `/get`, oldest first.
    pub fn received(&self) -> Vec<Value> {
        locked(&self.state).received.clone()
    }

    /// The PINs stored in the simulated keypad, by slot.
    pub fn pin_slots(&self) -> BTreeMap<u16, String> {
        locked(&self.state).pins.clone()
    }

    pub fn is_locked(&self) -> bool {
        locked(&self.state).locked
    }

    pub fn auto_relock(&self) -> u32 {
        locked(&self.state).auto_relock
    }
}

fn availability(online: bool) -> Vec<u8> {
    to_bytes(&json!({"state": if online { "online" } else { "offline" }}))
}

/// React to one message on `<topic>/set` or `<topic>/get`.
fn answer(client: &AsyncClient, topic: &str, state: &Mutex<ZigbeeLockState>, p: Publish) {
    // Zigbee2MQTT acts on retained commands too, but a real broker only
    // delivers them on subscribe; the simulator ignores them so a test's
    // leftovers never move the lock.
    if p.retain {
        return;
    }
    let body: Value = match std::str::from_utf8(&p.payload).ok().map(str::trim) {
        // A bare `LOCK` is shorthand for `{"state":"LOCK"}`.
        Some(word @ ("LOCK" | "UNLOCK")) => json!({"state": word}),
        Some(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        None => Value::Null,
    };
    let is_get = p.topic.ends_with("/get");
    let mut s = locked(state);
    s.received.push(body.clone());
    if s.silent || !s.online {
        return;
    }
    let mut delay = s.delay;
    let mut out: Vec<(String, Vec<u8>, bool)> = Vec::new();
    let mut publish =
        |m: Map<String, Value>| out.push((topic.to_string(), to_bytes(&Value::Object(m)), false));

    if is_get {
        publish(s.state_json());
    } else if let Some(word) = body.get("state").and_then(Value::as_str) {
        let lock = match word {
            "LOCK" => true,
            "UNLOCK" => false,
            "TOGGLE" => !s.locked,
            _ => return,
        };
        if s.blocked {
            // The motor stalls for about a second, then the lock reports
            // where the bolt still is.
            delay = delay.max(Duration::from_secs(1));
            publish(s.state_json());
            drop(s);
            spawn_publishes(client, delay, out);
            return;
        }
        let mut event = s.state_json();
        event.insert("action".into(), json!(if lock { "lock" } else { "unlock" }));
        event.insert("action_source".into(), json!(1));
        event.insert("action_source_name".into(), json!("rf"));
        event.insert("action_user".into(), json!(0));
        if std::mem::take(&mut s.jam_next) {
            s.jammed = true;
        } else {
            s.locked = lock;
            s.jammed = false;
            publish(event);
        }
        publish(s.state_json());
    } else if let Some(t) = body.get("auto_relock_time").and_then(Value::as_u64) {
        s.auto_relock = u32::try_from(t).unwrap_or(u32::MAX);
        publish(s.state_json());
    } else if let Some(pin) = body.get("pin_code") {
        let slot = pin
            .get("user")
            .and_then(Value::as_u64)
            .and_then(|u| u16::try_from(u).ok());
        let Some(slot) = slot else { return };
        let code = match pin.get("pin_code") {
            Some(Value::String(c)) => Some(c.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let action = match code {
            Some(c) => {
                s.pins.insert(slot, c);
                "pin_code_added"
            }
            None => {
                s.pins.remove(&slot);
                "pin_code_deleted"
            }
        };
        let mut event = s.state_json();
        event.insert("action".into(), json!(action));
        event.insert("action_source".into(), json!(1));
        event.insert("action_source_name".into(), json!("rf"));
        event.insert("action_user".into(), json!(slot));
        publish(event);
    }
    drop(s);
    spawn_publishes(client, delay, out);
}

/// A simulated Zigbee2MQTT door contact sensor (modelled on an Aqara
/// MCCGQ11LM): `contact: true` while the door is shut.
pub struct SimZigbeeContact {
    link: SimLink,
    topic: String,
    open: Arc<Mutex<bool>>,
}

impl SimZigbeeContact {
    /// Start as the sensor on `topic`, door shut, online. Like the real
    /// bridge it publishes its state on `/get` too.
    pub async fn start(host: &str, port: u16, topic: &str) -> Result<SimZigbeeContact, SimError> {
        let topic = topic.trim_end_matches('/').to_string();
        let open = Arc::new(Mutex::new(false));
        let (t1, o1) = (topic.clone(), open.clone());
        let on_connect = move |client: &AsyncClient| {
            spawn_publishes(
                client,
                Duration::ZERO,
                vec![(format!("{t1}/availability"), availability(true), true)],
            );
        };
        let on_message = move |client: &AsyncClient, p: Publish| {
            if !p.retain {
                let msg = contact_json(*locked(&o1));
                spawn_publishes(
                    client,
                    Duration::ZERO,
                    vec![(p.topic.trim_end_matches("/get").to_string(), msg, false)],
                );
            }
        };
        let link = SimLink::connect(
            &topic,
            host,
            port,
            None,
            vec![format!("{topic}/get")],
            on_connect,
            on_message,
        )
        .await?;
        Ok(SimZigbeeContact { link, topic, open })
    }

    pub async fn open(&self) -> Result<(), SimError> {
        self.set(true).await
    }

    pub async fn close(&self) -> Result<(), SimError> {
        self.set(false).await
    }

    async fn set(&self, open: bool) -> Result<(), SimError> {
        *locked(&self.open) = open;
        self.link
            .publish(&self.topic, contact_json(open), false)
            .await
    }

    pub async fn set_online(&self, online: bool) -> Result<(), SimError> {
        self.link
            .publish(
                &format!("{}/availability", self.topic),
                availability(online),
                true,
            )
            .await
    }
}

fn contact_json(open: bool) -> Vec<u8> {
    to_bytes(&json!({"battery": 100, "contact": !open, "linkquality": 116, "voltage": 3035}))
}
