//! One door device (its lock or its contact sensor) on a Z-Wave JS server:
//! the WebSocket connection, kept up with backoff, turning what the server
//! says into the core's [`EventKind::Door`] events and the core's lock
//! commands into requests. What the messages mean is
//! [`crate::devices::zwave_server`]'s; this module owns the socket, the
//! request ids, the wait for the lock's own word after a command, and the
//! relock that must survive a server outage.
//!
//! The server is hostile input like every MQTT topic: a message larger than
//! [`MAX_MESSAGE`] ends the connection (and a reconnect follows), a frame
//! that is not JSON is logged and skipped, and nothing the server sends is
//! ever logged verbatim (User Code answers hold PINs).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, info, warn};

use crate::config;
use crate::core::{DoorReport, Event, EventKind, LockCommand, LockState};
use crate::devices::zwave_server::{
    self, LockStatus, Message, Role, ServerNode, choose_schema, code_slot, lock_status,
};
use crate::redact;
use crate::runtime::now;

/// The largest message taken from the server. The `start_listening` dump
/// holds every node's values and metadata: a few hundred kilobytes for a
/// house, a few megabytes for a large network.
pub const MAX_MESSAGE: usize = 16 << 20;
/// Commands waiting for the connection task.
const COMMAND_QUEUE: usize = 32;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server may take to answer the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Short: a relock that fell due while the server was away waits for the
/// reconnect, and a connection attempt to a LAN server costs nothing.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A connection that lasted this long starts the next backoff afresh.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Silence after which a ping is sent, and after which (twice that) the
/// connection is taken for dead: a server behind a vanished LAN link does
/// not close its socket.
const IDLE_PING: Duration = Duration::from_secs(20);
/// When the lock is first asked where its bolt is after a command: most
/// motors take a few hundred milliseconds.
const FIRST_CHECK: Duration = Duration::from_millis(300);
/// Between later asks; a battery lock should not be polled harder.
const CHECK_EVERY: Duration = Duration::from_millis(700);
/// How long after a command the lock keeps being asked. The core gives up
/// on its own clock (confirm_timeout, a retry, then unresponsive); this
/// only bounds the polling.
const CHECK_FOR: Duration = Duration::from_secs(45);

/// How long a bare `currentMode` update waits for the Access Control
/// notification that may explain it. zwave-js updates `currentMode` from a
/// lock's (manual, keypad, RF) notification *before* it passes the
/// notification on, so taken at once the bolt would count as moved by
/// nobody knows whom, and the source that follows a moment later would be
/// lost. The two leave the server back to back.
const EXPLAIN_WITHIN: Duration = Duration::from_millis(150);

/// The owner's words for a command that could not reach the server.
pub const UNREACHABLE: &str = "Z-Wave JS server unreachable";

/// A command on its way to the connection task, and whether the runtime was
/// told it left (`accepted`) or that it did not.
#[derive(Debug, Clone)]
struct Queued {
    cmd: LockCommand,
    accepted: bool,
}

/// The runtime's side of one connection task.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    tx: mpsc::Sender<Queued>,
    ready: Arc<AtomicBool>,
}

impl ServerHandle {
    /// Hand a command to the connection.
    ///
    /// # Errors
    /// The server is not connected or the node not ready ([`UNREACHABLE`]):
    /// the command did not leave. A *lock* is still kept by the task and
    /// sent once the node is ready again (the task then reports
    /// [`EventKind::LockCommandSent`]); anything else is dropped, because
    /// what allowed it may not hold by then.
    pub fn send(&self, cmd: &LockCommand) -> Result<(), String> {
        let ready = self.ready.load(Ordering::Relaxed);
        if !ready && *cmd != LockCommand::Lock {
            return Err(UNREACHABLE.into());
        }
        self.tx
            .try_send(Queued {
                cmd: cmd.clone(),
                accepted: ready,
            })
            .map_err(|_| "Z-Wave JS server command queue full".to_string())?;
        if ready {
            Ok(())
        } else {
            Err(UNREACHABLE.into())
        }
    }
}

/// One door device on one server.
#[derive(Debug, Clone)]
pub struct ServerDevice {
    door: String,
    url: String,
    node: ServerNode,
}

impl ServerDevice {
    pub fn new(door: &str, cfg: &config::ZwaveJsServer, role: Role) -> ServerDevice {
        ServerDevice {
            door: door.to_string(),
            url: cfg.url.clone(),
            node: ServerNode {
                node: u64::from(cfg.node),
                role,
            },
        }
    }

    /// Start the connection task. It runs until `stop` completes.
    pub fn spawn(
        self,
        events: mpsc::Sender<Event>,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> (ServerHandle, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let ready = Arc::new(AtomicBool::new(false));
        let handle = ServerHandle {
            tx,
            ready: ready.clone(),
        };
        let task = tokio::spawn(async move {
            tokio::select! {
                _ = stop => {}
                _ = self.run(rx, ready, events) => {}
            }
        });
        (handle, task)
    }

    fn report(&self, report: DoorReport) -> Event {
        Event {
            at: now(),
            kind: EventKind::Door {
                door: self.door.clone(),
                report,
            },
        }
    }

    /// A command the connection cannot carry now. A lock is kept for the
    /// next time the node is ready. The core is told only of a lock or
    /// unlock it believes left (the handle accepted it while the node was
    /// ready, and the connection fell before it went out): for the core
    /// exactly a command the link refused.
    fn not_carried(&self, q: Queued, relock: &mut bool) -> Option<Event> {
        if q.cmd == LockCommand::Lock {
            *relock = true;
        }
        let tell = q.accepted && matches!(q.cmd, LockCommand::Lock | LockCommand::Unlock);
        tell.then(|| Event {
            at: now(),
            kind: EventKind::LockCommandUnsent {
                door: self.door.clone(),
                command: q.cmd,
                reason: UNREACHABLE.into(),
            },
        })
    }

    fn availability(&self, up: bool) -> DoorReport {
        match self.node.role {
            Role::Lock { .. } => DoorReport::LockAvailable(up),
            Role::Contact => DoorReport::ContactAvailable(up),
        }
    }

    async fn run(
        self,
        mut rx: mpsc::Receiver<Queued>,
        ready: Arc<AtomicBool>,
        events: mpsc::Sender<Event>,
    ) {
        let mut backoff = BACKOFF_MIN;
        let mut relock = false;
        let mut failures: u32 = 0;
        let url = redact::text(&self.url);
        loop {
            let started = Instant::now();
            let mut session = Session {
                dev: &self,
                events: &events,
                ready: &ready,
                relock: &mut relock,
                next_id: 0,
                requests: HashMap::new(),
                node_ready: false,
                check: None,
                held: None,
            };
            let why = session.run(&mut rx).await;
            let was_ready = ready.swap(false, Ordering::Relaxed);
            // Every attempt of a long outage would be a warning every few
            // seconds: the first says it, then one a minute or so.
            failures = if was_ready {
                1
            } else {
                failures.wrapping_add(1)
            };
            if failures % 12 == 1 {
                warn!(door = %self.door, server = %url, node = self.node.node, "Z-Wave JS server: {why}");
            } else {
                debug!(door = %self.door, server = %url, node = self.node.node, "Z-Wave JS server: {why}");
            }
            let _ = events.send(self.report(self.availability(false))).await;
            if started.elapsed() >= STABLE_AFTER {
                backoff = BACKOFF_MIN;
            }
            // Wait, but keep taking commands: a relock asked for meanwhile
            // goes out first thing after the reconnect.
            let until = Instant::now() + backoff;
            loop {
                tokio::select! {
                    _ = sleep_until(until) => break,
                    queued = rx.recv() => match queued {
                        Some(q) => {
                            if let Some(ev) = self.not_carried(q, &mut relock) {
                                let _ = events.send(ev).await;
                            }
                        }
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// What a request was for, to read its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Req {
    Schema,
    Listen,
    SetMode,
    LockStatus,
    SetCode(u16),
    ClearCode(u16),
    CodeSlot(u16),
    Other,
}

/// Waiting for the lock's own word after a Door Lock command.
#[derive(Debug, Clone, Copy)]
struct Check {
    want: LockState,
    next: Instant,
    until: Instant,
    in_flight: bool,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One connection, from connect to the first failure.
struct Session<'a> {
    dev: &'a ServerDevice,
    events: &'a mpsc::Sender<Event>,
    ready: &'a AtomicBool,
    relock: &'a mut bool,
    next_id: u64,
    requests: HashMap<String, Req>,
    node_ready: bool,
    check: Option<Check>,
    /// A bolt position from a bare `currentMode` update, waiting
    /// [`EXPLAIN_WITHIN`] for its notification.
    held: Option<(LockState, Instant)>,
}

impl Session<'_> {
    /// Runs the connection; returns why it ended.
    async fn run(&mut self, rx: &mut mpsc::Receiver<Queued>) -> String {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let connect =
            tokio_tungstenite::connect_async_with_config(self.dev.url.as_str(), Some(config), true);
        let mut ws = match timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => return format!("cannot connect: {}", redact::text(&e.to_string())),
            Err(_) => return "cannot connect: timed out".into(),
        };
        if let Err(why) = self.handshake(&mut ws).await {
            let _ = ws.close(None).await;
            return why;
        }
        let mut last_heard = Instant::now();
        let mut pinged = false;
        loop {
            let check_at = self
                .check
                .filter(|c| !c.in_flight)
                .map(|c| c.next)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let idle_at = last_heard + if pinged { 2 * IDLE_PING } else { IDLE_PING };
            let held_at = self
                .held
                .map(|(_, at)| at)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                frame = ws.next() => {
                    last_heard = Instant::now();
                    pinged = false;
                    match frame {
                        Some(Ok(Ws::Text(text))) => {
                            if let Err(why) = self.incoming(&mut ws, text.as_str()).await {
                                return why;
                            }
                        }
                        Some(Ok(Ws::Close(_))) | None => return "connection closed".into(),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return format!("connection failed: {}", redact::text(&e.to_string())),
                    }
                }
                queued = rx.recv() => {
                    let Some(q) = queued else { return "shutting down".into() };
                    if !self.node_ready {
                        // Connected, the node still in its interview.
                        if let Some(ev) = self.dev.not_carried(q, self.relock) {
                            let _ = self.events.send(ev).await;
                        }
                        continue;
                    }
                    if let Err(why) = self.command(&mut ws, &q.cmd).await {
                        if let Some(ev) = self.dev.not_carried(q, self.relock) {
                            let _ = self.events.send(ev).await;
                        }
                        return why;
                    }
                    if !q.accepted && q.cmd == LockCommand::Lock {
                        // The core was told this relock did not leave; it
                        // has now, and its deadline starts.
                        *self.relock = false;
                        self.sent_relock().await;
                    }
                }
                _ = sleep_until(check_at) => {
                    if let Err(why) = self.ask_lock(&mut ws).await {
                        return why;
                    }
                }
                _ = sleep_until(held_at) => {
                    if let Some((state, _)) = self.held.take() {
                        self.emit(vec![DoorReport::Lock { state, source: None }]).await;
                    }
                }
                _ = sleep_until(idle_at) => {
                    if pinged {
                        return "no answer to a ping".into();
                    }
                    pinged = true;
                    if ws.send(Ws::Ping(Vec::new().into())).await.is_err() {
                        return "connection lost".into();
                    }
                }
            }
        }
    }

    async fn handshake(&mut self, ws: &mut Socket) -> Result<(), String> {
        let (min, max) = match self.next_message(ws).await? {
            Message::Version { min, max } => (min, max),
            _ => return Err("the server did not say its version first".into()),
        };
        let schema = choose_schema(min, max)?;
        let id = self.id(Req::Schema);
        self.send(
            ws,
            zwave_server::request(&id, "set_api_schema", json!({"schemaVersion": schema})),
        )
        .await?;
        let id = self.id(Req::Listen);
        self.send(ws, zwave_server::request(&id, "start_listening", json!({})))
            .await?;
        loop {
            if let Message::Result { id, outcome } = self.next_message(ws).await? {
                match (self.requests.remove(&id), outcome) {
                    (Some(Req::Schema), Ok(_)) => {}
                    (Some(Req::Schema), Err(e)) => {
                        return Err(format!("the server refused API schema {schema}: {e}"));
                    }
                    (Some(Req::Listen), Ok(state)) => {
                        let Some(view) = self.dev.node.view_in_state(&state) else {
                            return Err(format!(
                                "node {} is not on this Z-Wave network",
                                self.dev.node.node
                            ));
                        };
                        info!(
                            door = %self.dev.door,
                            node = self.dev.node.node,
                            schema,
                            ready = view.ready,
                            "connected to the Z-Wave JS server"
                        );
                        if view.ready {
                            self.node_ready(ws, view.alive, view.reports).await?;
                        } else {
                            info!(door = %self.dev.door, node = self.dev.node.node, "waiting for the node's interview to finish");
                        }
                        return Ok(());
                    }
                    (Some(Req::Listen), Err(e)) => {
                        return Err(format!("start_listening failed: {e}"));
                    }
                    _ => {}
                }
            }
        }
    }

    /// The next message during the handshake, skipping what cannot be read.
    async fn next_message(&mut self, ws: &mut Socket) -> Result<Message, String> {
        loop {
            let frame = timeout(HANDSHAKE_TIMEOUT, ws.next())
                .await
                .map_err(|_| "the server did not answer in time".to_string())?;
            match frame {
                Some(Ok(Ws::Text(text))) => match zwave_server::parse(text.as_str()) {
                    Ok(m) => return Ok(m),
                    Err(why) => {
                        debug!(door = %self.dev.door, "skipping a malformed server message: {why}")
                    }
                },
                Some(Ok(Ws::Close(_))) | None => return Err("connection closed".into()),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    return Err(format!(
                        "connection failed: {}",
                        redact::text(&e.to_string())
                    ));
                }
            }
        }
    }

    fn id(&mut self, req: Req) -> String {
        self.next_id += 1;
        let id = format!("dw{}", self.next_id);
        // Answers that never came must not pile up.
        if self.requests.len() >= 256 {
            self.requests.clear();
        }
        self.requests.insert(id.clone(), req);
        id
    }

    async fn send(&mut self, ws: &mut Socket, text: String) -> Result<(), String> {
        ws.send(Ws::Text(text.into()))
            .await
            .map_err(|e| format!("cannot send: {}", redact::text(&e.to_string())))
    }

    async fn emit(&self, reports: Vec<DoorReport>) {
        for r in reports {
            // The runtime gone means shutdown; nothing left to tell.
            let _ = self.events.send(self.dev.report(r)).await;
        }
    }

    /// The node is interviewed: its values count, commands can go.
    async fn node_ready(
        &mut self,
        ws: &mut Socket,
        alive: bool,
        reports: Vec<DoorReport>,
    ) -> Result<(), String> {
        self.node_ready = true;
        // The dump is the driver's cache, not the lock: after a server
        // restart it can hold the bolt and the keypad slots as they were
        // before the last unflushed change. Where the bolt is comes from
        // the lock itself (asked below); the slots from the core's own
        // retry on link-up, confirmed by the lock.
        let cached = reports
            .into_iter()
            .filter(|r| !matches!(r, DoorReport::Lock { .. } | DoorReport::CodeSlot { .. }))
            .collect();
        self.emit(cached).await;
        self.emit(vec![self.dev.availability(alive)]).await;
        self.ready.store(true, Ordering::Relaxed);
        if self.dev.node.role != Role::Contact {
            let id = self.id(Req::LockStatus);
            let text = self.dev.node.get_lock_status(&id);
            self.send(ws, text).await?;
        }
        if std::mem::take(self.relock) {
            info!(door = %self.dev.door, "sending the relock held while the Z-Wave JS server was away");
            self.command(ws, &LockCommand::Lock).await?;
            self.sent_relock().await;
        }
        // Keypad slots and the like: the core decides what must reach the
        // lock again now that it can be reached.
        let _ = self
            .events
            .send(Event {
                at: now(),
                kind: EventKind::LinkUp,
            })
            .await;
        Ok(())
    }

    /// A relock the core was told had not left has now gone out.
    async fn sent_relock(&mut self) {
        let _ = self
            .events
            .send(Event {
                at: now(),
                kind: EventKind::LockCommandSent {
                    door: self.dev.door.clone(),
                    command: LockCommand::Lock,
                },
            })
            .await;
    }

    async fn command(&mut self, ws: &mut Socket, cmd: &LockCommand) -> Result<(), String> {
        if self.dev.node.role == Role::Contact {
            return Ok(());
        }
        let node = self.dev.node.clone();
        match cmd {
            LockCommand::Lock | LockCommand::Unlock => {
                let locked = *cmd == LockCommand::Lock;
                let id = self.id(Req::SetMode);
                self.send(ws, node.set_mode(&id, locked)).await?;
                let now = Instant::now();
                self.check = Some(Check {
                    want: if locked {
                        LockState::Locked
                    } else {
                        LockState::Unlocked
                    },
                    next: now + FIRST_CHECK,
                    until: now + CHECK_FOR,
                    in_flight: false,
                });
            }
            LockCommand::Refresh => {
                let id = self.id(Req::LockStatus);
                self.send(ws, node.get_lock_status(&id)).await?;
            }
            LockCommand::SetAutoRelock(seconds) => {
                let id = self.id(Req::Other);
                let text = zwave_server::request(
                    &id,
                    "node.set_value",
                    json!({
                        "nodeId": node.node,
                        "valueId": {"commandClass": 98, "endpoint": 0, "property": "autoRelockTime"},
                        "value": seconds,
                    }),
                );
                self.send(ws, text).await?;
            }
            LockCommand::SetCode { slot, code } => {
                let id = self.id(Req::SetCode(*slot));
                self.send(ws, node.set_code(&id, *slot, code.expose()))
                    .await?;
            }
            LockCommand::ClearCode { slot } => {
                let id = self.id(Req::ClearCode(*slot));
                self.send(ws, node.clear_code(&id, *slot)).await?;
            }
        }
        Ok(())
    }

    /// Ask the lock where its bolt is, while waiting for a command.
    async fn ask_lock(&mut self, ws: &mut Socket) -> Result<(), String> {
        let Some(check) = self.check.as_mut() else {
            return Ok(());
        };
        check.in_flight = true;
        let id = self.id(Req::LockStatus);
        let text = self.dev.node.get_lock_status(&id);
        self.send(ws, text).await
    }

    async fn incoming(&mut self, ws: &mut Socket, text: &str) -> Result<(), String> {
        let msg = match zwave_server::parse(text) {
            Ok(m) => m,
            Err(why) => {
                debug!(door = %self.dev.door, "skipping a malformed server message: {why}");
                return Ok(());
            }
        };
        match msg {
            Message::Result { id, outcome } => {
                let Some(req) = self.requests.remove(&id) else {
                    return Ok(());
                };
                self.answer(ws, req, outcome).await
            }
            Message::NodeEvent { node, event, body } if node == self.dev.node.node => {
                self.node_event(ws, &event, &body).await
            }
            _ => Ok(()),
        }
    }

    async fn answer(
        &mut self,
        ws: &mut Socket,
        req: Req,
        outcome: Result<Value, String>,
    ) -> Result<(), String> {
        let door = self.dev.door.clone();
        match (req, outcome) {
            (Req::SetMode, Err(e)) => {
                // The lock's word still decides (the checks go on); the
                // core's deadline catches a command that went nowhere.
                warn!(door, "the Z-Wave JS server refused the lock command: {e}");
            }
            (Req::LockStatus, outcome) => {
                let status = outcome.and_then(|r| lock_status(&r));
                let now = Instant::now();
                if let Ok(LockStatus::At(state)) = status {
                    self.emit(vec![DoorReport::Lock {
                        state,
                        source: None,
                    }])
                    .await;
                }
                if let Err(e) = &status {
                    debug!(door, "the lock did not answer: {e}");
                }
                if let Some(check) = self.check.as_mut() {
                    let arrived = status == Ok(LockStatus::At(check.want));
                    if arrived || now >= check.until {
                        self.check = None;
                    } else {
                        check.in_flight = false;
                        // A bolt still on its way is asked again soon;
                        // one that stopped elsewhere, less often.
                        let moving = matches!(status, Ok(LockStatus::Moving(_)));
                        check.next = now + if moving { FIRST_CHECK } else { CHECK_EVERY };
                    }
                }
            }
            (Req::SetCode(slot) | Req::ClearCode(slot), Ok(_)) => {
                // Confirmed by what the lock then says the slot holds.
                let id = self.id(Req::CodeSlot(slot));
                let text = self.dev.node.get_code_slot(&id, slot);
                self.send(ws, text).await?;
            }
            (Req::SetCode(slot) | Req::ClearCode(slot), Err(e)) => {
                warn!(
                    door,
                    slot, "the Z-Wave JS server refused the keypad code change: {e}"
                );
            }
            (Req::CodeSlot(slot), Ok(result)) => self.emit(code_slot(slot, &result)).await,
            (_, Err(e)) => debug!(door, "request failed: {e}"),
            _ => {}
        }
        Ok(())
    }

    async fn node_event(
        &mut self,
        ws: &mut Socket,
        event: &str,
        body: &Value,
    ) -> Result<(), String> {
        let node = &self.dev.node;
        match event {
            "value updated" | "value notification" | "value added" => {
                if !self.node_ready {
                    return Ok(());
                }
                let args = body.get("args").unwrap_or(&Value::Null);
                if zwave_server::is_operation_report_value(args)
                    && let Some(check) = self.check.as_mut()
                {
                    // The lock just sent an Operation Report (the values
                    // only a report carries changed): ask it now rather
                    // than at the next scheduled check.
                    check.next = Instant::now();
                }
                match node.value_event(args, self.check.is_none()) {
                    Ok(reports) => {
                        let mut now = Vec::new();
                        for r in reports {
                            match r {
                                DoorReport::Lock {
                                    state,
                                    source: None,
                                } => self.held = Some((state, Instant::now() + EXPLAIN_WITHIN)),
                                other => now.push(other),
                            }
                        }
                        self.emit(now).await;
                    }
                    Err(why) => debug!(door = %self.dev.door, "skipping a value: {why}"),
                }
            }
            "notification" if self.node_ready => {
                let reports = node.notification(body);
                let explained = reports.iter().any(|r| {
                    matches!(r, DoorReport::Lock { state, source: Some(_) }
                        if self.held.is_some_and(|(held, _)| held == *state))
                });
                if explained {
                    self.held = None;
                }
                self.emit(reports).await;
            }
            "ready" => {
                let view = node.view(body.get("nodeState").unwrap_or(&Value::Null));
                info!(door = %self.dev.door, node = node.node, "the node is ready");
                self.node_ready(ws, view.alive, view.reports).await?;
            }
            "dead" => self.emit(vec![self.dev.availability(false)]).await,
            "alive" if self.node_ready => self.emit(vec![self.dev.availability(true)]).await,
            _ => {}
        }
        Ok(())
    }
}
