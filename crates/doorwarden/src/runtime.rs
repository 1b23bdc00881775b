//! The one task that owns the core and drives it from the real world.
//!
//! str0m's loop shape: wait for the core's next deadline, an MQTT message,
//! a camera event or shutdown; stamp what happened; hand it to
//! [`Core::handle`]; carry out every action in order; read the next deadline
//! again. Nothing else holds delivery state, so there is no lock around it.
//!
//! What the shell adds to the core's decisions, all of it on the side of
//! failing closed:
//!
//! - **Persist before unlock.** A failed [`Action::Persist`] cancels every
//!   later unlock of the same batch and tells the core
//!   ([`EventKind::StorageFailed`]), which then refuses deliveries.
//! - **Relocks survive a broker outage; unlocks do not.** A lock command the
//!   link refuses while disconnected is remembered and sent after the
//!   reconnect if it was a *lock*; an *unlock* is dropped, because the
//!   conditions that allowed it may no longer hold.
//! - **A panic in the core** (a bug) is caught here: every door is sent a
//!   lock command, the fault is audited, and a fresh core is built from the
//!   store, which relocks any delivery that was in progress.
//! - **Shutdown** relocks the doors with a delivery in progress before
//!   leaving; the persisted session makes the next start relock them too.
//!
//! Disk writes (the persisted sessions, the audit log) run synchronously on
//! this task, on purpose: an unlock must not leave before the write that
//! guards it has reached the disk. They happen on decisions only, never per
//! camera frame, and cost one fsync each.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::core::{
    Action, AuditRecord, ClipInfo, Core, CoreError, DeliveryEvent, DeliveryEventKind, Event,
    EventKind, Evidence, LockCommand, PersistedState, Stamp,
};
use crate::devices::zwave_server::Role;
use crate::devices::{DoorDevices, Parsed};
use crate::ha::{CommandParse, CommandTopics, Mirror};
use crate::intake::{Intake, Why};
use crate::io::mqtt::{BrokerLink, Incoming, LinkError, LinkHandle};
use crate::io::outbox::Lane;
use crate::io::picture::CloseLook;
use crate::io::record::{ClipReport, Recorders};
use crate::io::rtsp::CameraTask;
use crate::io::snapshot::{Candidate, Gallery, SnapshotRequest, SnapshotTap};
use crate::io::store::Store;
use crate::io::zwave_server::{ServerDevice, ServerHandle};
use crate::redact;

/// Why the bridge could not run.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot start the MQTT link: {0}")]
    Link(#[from] LinkError),
    #[error("cannot build the delivery rules: {0}")]
    Core(#[from] CoreError),
    /// The link's watchdog gave up; a restart (by systemd, the add-on's
    /// supervisor) builds everything afresh and relocks open deliveries.
    #[error("the MQTT link failed: {0}")]
    LinkFailed(String),
}

/// Camera events waiting for the core; at 32 cameras and 15 fps this is
/// several seconds of frames.
const CAMERA_QUEUE: usize = 4096;
/// Reports from Z-Wave JS server connections waiting for the core (a
/// node's whole state arrives at once on every connect).
const ZWAVE_SERVER_QUEUE: usize = 512;
/// How long a clean shutdown waits for camera teardowns and the MQTT link.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Messages from the broker handled in one turn of the loop, at most.
const MQTT_BATCH: usize = 64;
/// How often the bridge's problem entity and the counts of dropped messages
/// are brought up to date when nothing else happens.
const HEALTH_EVERY: Duration = Duration::from_secs(5);
/// How often the cameras' close-look flags follow the core.
const CLOSE_LOOK_EVERY: Duration = Duration::from_millis(250);

/// Both clocks, now.
pub fn now() -> Stamp {
    Stamp {
        mono: Instant::now(),
        wall: jiff::Timestamp::now(),
    }
}

/// Fresh randomness for the core (it salts delivery-code hashes), from the
/// standard library's per-process random hasher keys.
fn seed() -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

/// Run the bridge until `shutdown` completes.
///
/// # Errors
/// Settings the MQTT link cannot use (an unreadable password or CA file),
/// or delivery rules the core cannot build. Everything that can go wrong
/// later (broker down, camera gone, disk full) is handled while running.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), RuntimeError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let (mut store, store_problem) = match Store::open(&cfg.storage) {
        Ok(s) => (Some(s), String::new()),
        Err(e) => {
            error!("storage unavailable, deliveries will be refused: {e}");
            (None, redact::text(&e.to_string()))
        }
    };
    let restored = restore(&cfg, store.as_ref());

    let devices: BTreeMap<String, DoorDevices> = cfg
        .locks
        .iter()
        .map(|(name, door)| (name.clone(), DoorDevices::from_config(name, door)))
        .collect();
    let commands = CommandTopics::new(&cfg);
    let mut mirror = Mirror::new(&cfg);
    let mut subscriptions = commands.subscriptions();
    subscriptions.push(mirror.config_filter());
    for d in devices.values() {
        subscriptions.extend(d.subscriptions());
    }
    subscriptions.sort();
    subscriptions.dedup();

    let started = now();
    let mut core = Core::new(&cfg, restored, seed(), started)?;
    // Said once at start, as check-config says it; the door's state then
    // keeps the next one in front of the owner in Home Assistant.
    for line in crate::summary::schedule_warnings(&cfg, started.wall) {
        warn!("{line}");
    }
    // Every reconnect republishes all discovery configs and states at once:
    // twice that fits in the queue with room to spare.
    let burst = 2 * (mirror.discovery().len() + 2 * cfg.locks.len() + cfg.cameras.len());
    let BrokerLink {
        handle: link,
        incoming: mut mqtt_rx,
        task: link_task,
    } = BrokerLink::start_sized(&cfg.mqtt, subscriptions, burst, stopped(stop_rx.clone()))?;

    // Evidence is kept beside the decisions, never in their way: a
    // recordings directory that cannot be used is reported and deliveries
    // go on without clips.
    let mut evidence_problem = None;
    let (recorders, mut taps, mut clip_reports) = match &cfg.recordings {
        None => (None, BTreeMap::new(), None),
        Some(rec) => match Recorders::start(rec, cfg.cameras.keys().cloned()) {
            Ok((r, taps, reports)) => (Some(r), taps.into_iter().collect(), Some(reports)),
            Err(e) => {
                let reason = redact::text(&e.to_string());
                error!("no delivery evidence will be kept: {reason}");
                evidence_problem = Some(reason);
                (None, BTreeMap::new(), None)
            }
        },
    };
    let (cam_tx, mut cam_rx) = mpsc::channel::<Event>(CAMERA_QUEUE);
    // The core says which cameras to look at closely (a window open or a
    // delivery running at their door); each camera task reads its flag.
    let close_look: BTreeMap<String, CloseLook> = cfg
        .cameras
        .keys()
        .map(|name| (name.clone(), CloseLook::default()))
        .collect();
    // Snapshot candidates from the decoder threads; a full queue drops them.
    let (snapshot_tap, mut snapshot_rx) = SnapshotTap::channel();
    let mut gallery = Gallery::default();
    let requests: BTreeMap<String, SnapshotRequest> = cfg
        .cameras
        .iter()
        .filter(|(_, cam)| crate::ha::discovery::has_snapshot(cam))
        .map(|(name, _)| (name.clone(), SnapshotRequest::default()))
        .collect();
    let snapshot_requests: BTreeMap<String, Vec<SnapshotRequest>> = cfg
        .locks
        .iter()
        .map(|(door, d)| {
            let asks = d
                .cameras
                .iter()
                .filter_map(|c| requests.get(c).cloned())
                .collect();
            (door.clone(), asks)
        })
        .collect();
    let camera_tasks: Vec<_> = cfg
        .cameras
        .iter()
        .map(|(name, cam)| {
            let flag = close_look.get(name).cloned().unwrap_or_default();
            let mut task = CameraTask::new(name.clone(), cam).close_look(flag);
            if let Some(request) = requests.get(name) {
                task = task.snapshots(snapshot_tap.clone(), request.clone());
            }
            if let Some(tap) = taps.remove(name) {
                task = task.recorder(tap);
            }
            task.spawn(cam_tx.clone(), stopped(stop_rx.clone()))
        })
        .collect();
    let mut close_look_at: Option<Instant> = None;
    drop(cam_tx);
    drop(snapshot_tap);

    // Locks and contact sensors on a Z-Wave JS server: one connection each.
    let (zw_tx, mut zw_rx) = mpsc::channel::<Event>(ZWAVE_SERVER_QUEUE);
    let mut server_locks: BTreeMap<String, ServerHandle> = BTreeMap::new();
    let mut server_tasks = Vec::new();
    for (name, door) in &cfg.locks {
        let contact = door.contact.as_ref();
        let has_contact = contact.is_some_and(|c| {
            c.zigbee2mqtt.is_some() || c.zwave_js.is_some() || c.zwave_js_server.is_some()
        });
        if door.zigbee2mqtt.is_none()
            && door.zwave_js.is_none()
            && let Some(server) = &door.zwave_js_server
        {
            let role = Role::Lock {
                door_sensor: !has_contact,
            };
            let (handle, task) = ServerDevice::new(name, server, role)
                .spawn(zw_tx.clone(), stopped(stop_rx.clone()));
            server_locks.insert(name.clone(), handle);
            server_tasks.push(task);
        }
        if let Some(c) = contact.filter(|c| c.zigbee2mqtt.is_none() && c.zwave_js.is_none())
            && let Some(server) = &c.zwave_js_server
        {
            let (_, task) = ServerDevice::new(name, server, Role::Contact)
                .spawn(zw_tx.clone(), stopped(stop_rx.clone()));
            server_tasks.push(task);
        }
    }
    drop(zw_tx);

    info!(
        doors = cfg.locks.len(),
        cameras = cfg.cameras.len(),
        broker = %redact::text(&cfg.mqtt.url),
        "doorwarden {} starting",
        env!("CARGO_PKG_VERSION")
    );

    let mut shell = Shell {
        cfg: &cfg,
        link,
        devices,
        server_locks,
        commands,
        mirror: &mut mirror,
        store: store.as_mut(),
        store_problem,
        relock_later: BTreeSet::new(),
        intake: Intake::new(),
        link_failed: None,
        problem_shown: false,
        recorders,
        evidence_problem,
        snapshot_requests,
    };
    // The problem entity starts off, so Home Assistant has a state for it.
    shell.publish_health(Instant::now());
    let first = core.start(now());
    for event in shell.carry_out(first) {
        shell.handle(&mut core, event);
    }

    tokio::pin!(shutdown);
    let mut health = tokio::time::interval(HEALTH_EVERY);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = core.next_deadline().map(|(at, _)| at);
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        let events = tokio::select! {
            _ = &mut shutdown => break,
            Some(ev) = cam_rx.recv() => vec![ev],
            Some(ev) = zw_rx.recv() => vec![ev],
            Some(msg) = mqtt_rx.recv() => {
                // Under a flood, take what is already waiting in one turn
                // of the loop rather than pay for a deadline and a timer per
                // message; the batch is small, so a camera event or a due
                // deadline waits at most that long.
                let mut events = shell.incoming(msg);
                for _ in 1..MQTT_BATCH {
                    match mqtt_rx.try_recv() {
                        Ok(msg) => events.extend(shell.incoming(msg)),
                        Err(_) => break,
                    }
                }
                events
            }
            Some(candidate) = snapshot_rx.recv() => {
                gallery.offer(candidate);
                Vec::new()
            }
            Some(report) = next_report(&mut clip_reports) => {
                shell.clip_report(report);
                Vec::new()
            }
            _ = sleep => vec![Event { at: now(), kind: EventKind::Tick }],
            _ = health.tick() => {
                shell.tick_health(Instant::now());
                Vec::new()
            }
        };
        for event in events {
            shell.handle(&mut core, event);
        }
        // Judged after the core has seen this turn's events: a candidate
        // whose hold is over is shown only if its camera is still live and
        // was live before it was taken. A live camera's frames turn this
        // loop many times a second, so no timer of its own is needed.
        for candidate in gallery.due(now().wall, |camera| core.camera_status(camera)) {
            shell.publish_snapshot(candidate);
        }
        // A few times a second is soon enough: a window opens minutes before
        // a courier, and the first keyframe after it starts the close look.
        if close_look_at.is_none_or(|t| t.elapsed() >= CLOSE_LOOK_EVERY) {
            close_look_at = Some(Instant::now());
            let wanted = core.close_look();
            for (name, flag) in &close_look {
                flag.set(wanted.contains(name.as_str()));
            }
        }
        if shell.link_failed.is_some() {
            break;
        }
    }

    info!("shutting down");
    for door in core
        .sessions()
        .sessions
        .iter()
        .map(|s| s.door.clone())
        .collect::<Vec<_>>()
    {
        warn!(door, "delivery still open at shutdown: relocking");
        // Not sent is logged; the persisted session relocks at the next start.
        let _ = shell.send_lock(&door, &LockCommand::Lock);
    }
    if !shell.server_locks.is_empty() {
        // The Z-Wave JS server connections take their relocks from a
        // queue: give them a moment to send before they are stopped.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = stop_tx.send(true);
    if let Some(r) = shell.recorders.take() {
        // Closing the clips flushes files to disk: not on the runtime's
        // threads.
        let _ = tokio::task::spawn_blocking(move || r.stop()).await;
    }
    if let Some(reports) = &mut clip_reports {
        while let Ok(report) = reports.try_recv() {
            shell.clip_report(report);
        }
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        for t in camera_tasks {
            let _ = t.await;
        }
        for t in server_tasks {
            let _ = t.await;
        }
        let _ = link_task.await;
    })
    .await;
    match shell.link_failed {
        Some(reason) => Err(RuntimeError::LinkFailed(reason)),
        None => Ok(()),
    }
}

/// The next report of a recorder, or never without recorders.
async fn next_report(
    reports: &mut Option<mpsc::UnboundedReceiver<ClipReport>>,
) -> Option<ClipReport> {
    match reports {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// What the store recovered. A state file that cannot be read is treated as
/// a delivery in progress at every door with delivery rules: relocking a door
/// that was locked costs nothing, missing one that was open costs a home.
fn restore(cfg: &Config, store: Option<&Store>) -> PersistedState {
    let Some(store) = store else {
        return every_delivery_door(cfg);
    };
    match store.load() {
        Ok(state) => {
            if !state.sessions.is_empty() {
                warn!(
                    count = state.sessions.len(),
                    "deliveries were in progress when doorwarden stopped: relocking"
                );
            }
            state
        }
        Err(e) => {
            error!("cannot read the persisted delivery state ({e}); relocking every delivery door");
            every_delivery_door(cfg)
        }
    }
}

/// Also a code that cannot be checked at every delivery door: one may have
/// been set, and forgetting it would let a request without a code through.
fn every_delivery_door(cfg: &Config) -> PersistedState {
    let at = jiff::Timestamp::now();
    PersistedState {
        sessions: cfg
            .deliveries
            .keys()
            .map(|door| crate::core::SessionRecord {
                door: door.clone(),
                unlocked_at: at,
                carrier: None,
                restore_auto_relock: None,
            })
            .collect(),
        codes: cfg
            .deliveries
            .keys()
            .map(|door| crate::core::CodeRecord::unreadable(door, at))
            .collect(),
        ..Default::default()
    }
}

/// A refused lock command's reason, in the owner's words.
fn unsent_reason(e: &LinkError) -> String {
    match e {
        LinkError::NotConnected { .. } | LinkError::Closed { .. } => "broker unreachable".into(),
        LinkError::QueueFull { .. } => "MQTT outgoing queue full".into(),
        other => redact::text(&other.to_string()),
    }
}

/// The shell's side of the loop: turning messages into events and actions
/// into messages, disk writes and lock commands.
struct Shell<'a> {
    cfg: &'a Config,
    link: LinkHandle,
    devices: BTreeMap<String, DoorDevices>,
    /// Doors whose lock is a node of a Z-Wave JS server: commands go to its
    /// connection task, which also keeps a relock the server was not
    /// there for.
    server_locks: BTreeMap<String, ServerHandle>,
    commands: CommandTopics,
    mirror: &'a mut Mirror,
    store: Option<&'a mut Store>,
    /// Why the store could not be opened (shown to the owner as the reason
    /// deliveries are refused).
    store_problem: String,
    /// Doors whose relock could not be sent (broker down): sent again on the
    /// next connect.
    relock_later: BTreeSet<String>,
    /// Rate limits on what comes from the broker, and what was turned away.
    intake: Intake,
    /// Set when the link has stopped for good: the loop ends with an error.
    link_failed: Option<String>,
    /// Whether the problem entity last published was on.
    problem_shown: bool,
    /// The delivery clip recorders, when clips are kept.
    recorders: Option<Recorders>,
    /// Why delivery evidence is not being kept, shown on the problem entity.
    evidence_problem: Option<String>,
    /// Per door, how to ask its snapshot cameras for a picture now.
    snapshot_requests: BTreeMap<String, Vec<SnapshotRequest>>,
}

impl Shell<'_> {
    /// Hand one event to the core, carry out what it says, and repeat for the
    /// events that carrying it out produced (a failed persist).
    fn handle(&mut self, core: &mut Core, event: Event) {
        // One storage failure per input is all the core needs to refuse
        // deliveries. The core audits each failure it is told of, and on a
        // dead disk that audit fails too: reporting it again would never end.
        let mut storage_reported = matches!(event.kind, EventKind::StorageFailed { .. });
        let mut queue = vec![event];
        while let Some(event) = queue.pop() {
            let actions = match catch_unwind(AssertUnwindSafe(|| core.handle(event))) {
                Ok(actions) => actions,
                Err(_) => {
                    self.recover_from_panic(core);
                    continue;
                }
            };
            for follow_up in self.carry_out(actions) {
                if matches!(follow_up.kind, EventKind::StorageFailed { .. }) {
                    if storage_reported {
                        continue;
                    }
                    storage_reported = true;
                }
                queue.push(follow_up);
            }
        }
    }

    /// Carry out actions in order. Returns follow-up events for the core.
    fn carry_out(&mut self, actions: Vec<Action>) -> Vec<Event> {
        let mut follow_up = Vec::new();
        let mut persist_failed = false;
        for action in actions {
            match &action {
                Action::Persist(state) => {
                    let result = match self.store.as_deref() {
                        Some(store) => store.save(state).map_err(|e| e.to_string()),
                        None => Err(self.store_problem.clone()),
                    };
                    if let Err(reason) = result {
                        error!("cannot persist delivery state, refusing deliveries: {reason}");
                        persist_failed = true;
                        follow_up.push(Event {
                            at: now(),
                            kind: EventKind::StorageFailed { reason },
                        });
                    }
                }
                Action::Lock { door, command } => {
                    if persist_failed && *command == LockCommand::Unlock {
                        warn!(
                            door,
                            "unlock cancelled: the delivery could not be persisted first"
                        );
                        continue;
                    }
                    info!(door, command = ?command, "lock command");
                    // The core must know a command that never left: a
                    // relock not sent is pending, not a silent lock.
                    if let Err(reason) = self.send_lock(door, command) {
                        follow_up.push(Event {
                            at: now(),
                            kind: EventKind::LockCommandUnsent {
                                door: door.clone(),
                                command: command.clone(),
                                reason,
                            },
                        });
                    }
                }
                Action::Audit(record) => {
                    if let Err(reason) = self.audit(record) {
                        error!("cannot write the audit log: {reason}");
                        follow_up.push(Event {
                            at: now(),
                            kind: EventKind::StorageFailed { reason },
                        });
                    }
                }
                Action::DeliveryEvent(e) => {
                    if let Some(r) = &self.recorders {
                        r.delivery(e);
                    }
                    info!(door = %e.door, event = e.kind.as_str(), reason = %redact::text(&e.reason), "delivery event");
                    // A trip or a forced door must not wait behind states
                    // and answers.
                    self.publish_ha_on(&action, Lane::Safety);
                }
                Action::DeliveryResponse {
                    door,
                    granted,
                    reason,
                    ..
                } => {
                    info!(door, granted, reason = %redact::text(reason), "delivery request answered");
                    self.publish_ha(&action);
                }
                Action::CameraState(status) => {
                    if let Some(r) = &self.recorders {
                        r.camera(status);
                    }
                    self.publish_ha(&action)
                }
                Action::DoorState(_) | Action::DoorAvailability { .. } => self.publish_ha(&action),
                Action::Evidence(e) => match &self.recorders {
                    Some(r) => r.evidence(e),
                    None => {
                        if self.cfg.recordings.is_some() && matches!(e, Evidence::Start { .. }) {
                            warn!("a delivery began and no evidence is being kept");
                        }
                    }
                },
            }
        }
        follow_up
    }

    /// A recorder finished a delivery's clip of one camera, or cannot keep
    /// it: into the audit chain, and in front of the owner if it failed.
    fn clip_report(&mut self, report: ClipReport) {
        let record = match report {
            ClipReport::Done {
                door,
                delivery,
                camera,
                clips,
                sidecar,
                compromised,
            } => {
                info!(door, camera, clips = clips.len(), "delivery evidence saved");
                // Evidence is being kept again.
                if self.evidence_problem.take().is_some() {
                    self.publish_health(Instant::now());
                }
                if let Some(first) = clips.first() {
                    let parts = if clips.len() > 1 {
                        format!(" in {} parts (the stream's format changed)", clips.len())
                    } else {
                        String::new()
                    };
                    let event = DeliveryEvent {
                        door: door.clone(),
                        kind: DeliveryEventKind::EvidenceSaved,
                        reason: format!("video of the delivery from camera {camera} saved{parts}"),
                        camera: Some(camera.clone()),
                        source: None,
                        duration_s: None,
                        entries: None,
                        compromised: Some(compromised),
                        clip: Some(ClipInfo {
                            file: first.name.clone(),
                            duration_s: clips.iter().map(|c| c.duration_s).sum(),
                        }),
                    };
                    self.publish_ha(&Action::DeliveryEvent(event));
                }
                if let Some(r) = &self.recorders {
                    r.sweep();
                }
                AuditRecord {
                    at: jiff::Timestamp::now(),
                    door: Some(door),
                    decision: crate::io::store::EVIDENCE_CLIP.into(),
                    reason: format!("video of camera {camera} kept"),
                    details: serde_json::json!({
                        "camera": camera,
                        "delivery": delivery.to_string(),
                        "clips": clips.iter().map(|c| serde_json::json!({
                            "file": c.name,
                            "sha256": c.sha256,
                            "bytes": c.bytes,
                            "duration_s": c.duration_s,
                        })).collect::<Vec<_>>(),
                        "sidecar": {"file": sidecar.name, "sha256": sidecar.sha256, "bytes": sidecar.bytes},
                        "compromised": compromised,
                        "dir": self.recorders.as_ref().map(|r| r.dir().display().to_string()),
                    }),
                }
            }
            ClipReport::Expired(expired) => {
                let record = AuditRecord {
                    at: jiff::Timestamp::now(),
                    door: None,
                    decision: crate::io::store::EVIDENCE_DELETED.into(),
                    reason: format!("retention: {}", expired.why),
                    details: serde_json::json!({ "files": expired.files }),
                };
                // Deleted only once the chain says so: a clip gone from the
                // disk is always explained.
                match self.audit(&record) {
                    Ok(()) => {
                        info!(files = ?expired.files, "retention deletes delivery evidence: {}", expired.why);
                        if let Some(r) = &self.recorders {
                            r.delete(expired.files);
                        }
                    }
                    Err(reason) => error!("cannot write the audit log, evidence kept: {reason}"),
                }
                return;
            }
            ClipReport::Acknowledged { door, sidecars } => {
                info!(
                    door,
                    count = sidecars.len(),
                    "the owner acknowledged the compromised deliveries' evidence"
                );
                if let Some(r) = &self.recorders {
                    r.sweep();
                }
                AuditRecord {
                    at: jiff::Timestamp::now(),
                    door: Some(door),
                    decision: "evidence_acknowledged".into(),
                    reason: "the owner acknowledged the evidence of compromised deliveries; retention may delete it".into(),
                    details: serde_json::json!({ "sidecars": sidecars }),
                }
            }
            ClipReport::Failed {
                door,
                delivery,
                camera,
                reason,
            } => {
                self.evidence_problem = Some(reason.clone());
                self.publish_health(Instant::now());
                let event = DeliveryEvent {
                    door: door.clone(),
                    kind: DeliveryEventKind::EvidenceFailed,
                    reason: format!(
                        "no video of the delivery from camera {camera} is being kept: {reason}"
                    ),
                    camera: Some(camera.clone()),
                    source: None,
                    duration_s: None,
                    entries: None,
                    compromised: None,
                    clip: None,
                };
                self.publish_ha(&Action::DeliveryEvent(event));
                AuditRecord {
                    at: jiff::Timestamp::now(),
                    door: Some(door),
                    decision: "evidence_failed".into(),
                    reason: format!("no video of camera {camera} is being kept: {reason}"),
                    details: serde_json::json!({
                        "camera": camera,
                        "delivery": delivery.to_string(),
                    }),
                }
            }
        };
        if let Err(reason) = self.audit(&record) {
            error!("cannot write the audit log: {reason}");
        }
    }

    fn audit(&mut self, record: &AuditRecord) -> Result<(), String> {
        match self.store.as_deref_mut() {
            Some(store) => store.append(record).map_err(|e| e.to_string()),
            None => Err(self.store_problem.clone()),
        }
    }

    /// A verified snapshot: the JPEG and its time, both retained, so Home
    /// Assistant shows the last one after its own restart.
    fn publish_snapshot(&mut self, candidate: Candidate) {
        if !crate::ha::is_topic_level(&candidate.camera) {
            return;
        }
        let topics = self.mirror.topics();
        let (image, meta) = (
            topics.camera_snapshot(&candidate.camera),
            topics.camera_snapshot_meta(&candidate.camera),
        );
        let meta_json = serde_json::json!({
            "taken_at": crate::ha::state::timestamp(candidate.taken_at),
        })
        .to_string();
        let sent = self
            .link
            .publish(&image, candidate.jpeg, true)
            .and_then(|()| self.link.publish(&meta, meta_json, true));
        match sent {
            Ok(()) => self
                .mirror
                .snapshot_published(&candidate.camera, candidate.taken_at),
            Err(e) => debug!(camera = %candidate.camera, "snapshot not sent: {e}"),
        }
    }

    fn publish_ha(&mut self, action: &Action) {
        self.publish_ha_on(action, Lane::Normal);
    }

    fn publish_ha_on(&mut self, action: &Action, lane: Lane) {
        if let Action::DeliveryEvent(event) = action
            && let Some(requests) = self.snapshot_requests.get(&event.door)
            && !requests.is_empty()
        {
            // A picture of the moment for every delivery event: the first
            // frame received from now on, shown once verified (after its
            // hold). The event goes out now, not then: it says from when
            // the picture will be, and a notification waits for it if it
            // can. The wall time is read before the ask, so that picture's
            // time is never before the one the event names.
            let due = jiff::Timestamp::now();
            let asked = Instant::now();
            for request in requests {
                request.ask(asked);
            }
            self.mirror.snapshot_asked(&event.door, due);
        }
        for m in self.mirror.from_action(action) {
            let queued = match lane {
                Lane::Safety => self.link.publish_safety(&m.topic, m.payload, m.retain),
                Lane::Normal => self.link.publish(&m.topic, m.payload, m.retain),
            };
            if let Err(e) = queued {
                warn!("{e}");
                // Not sent: the next identical state must not be skipped as
                // "unchanged".
                self.mirror.forget(&m.topic);
            }
        }
    }

    /// Send a lock command through the door's backend. A relock that cannot
    /// go out now is remembered for the next connect; an unlock is not.
    ///
    /// # Errors
    /// Why the command was not handed to the broker link (for the owner:
    /// "broker unreachable"); it then certainly did not reach the lock.
    fn send_lock(&mut self, door: &str, command: &LockCommand) -> Result<(), String> {
        if let Some(server) = self.server_locks.get(door) {
            let sent = server.send(command);
            if let Err(e) = &sent {
                match command {
                    LockCommand::Lock => warn!(
                        door,
                        "relock not sent yet ({e}); will send it when the Z-Wave JS server is back"
                    ),
                    LockCommand::Refresh => debug!(door, "refresh not sent: {e}"),
                    _ => warn!(door, "lock command not sent: {e}"),
                }
            }
            return sent;
        }
        let Some(devices) = self.devices.get(door) else {
            warn!(door, "lock command for a door that is not configured");
            return Err("door not configured".into());
        };
        let mut result = Ok(());
        for out in devices.commands(command) {
            // Asking a lock for its state is not safety: it waits behind
            // nothing urgent and nothing urgent waits behind it.
            let queued = match command {
                LockCommand::Refresh => self.link.publish_query(&out.topic, out.payload),
                _ => self.link.publish_command(&out.topic, out.payload),
            };
            if let Err(e) = queued {
                result = Err(unsent_reason(&e));
                match command {
                    LockCommand::Lock => {
                        warn!(
                            door,
                            "relock not sent yet ({e}); will send it when the broker is back"
                        );
                        self.relock_later.insert(door.to_string());
                    }
                    // Every connect asks each lock again.
                    LockCommand::Refresh => debug!(door, "refresh not sent yet: {e}"),
                    _ => warn!(door, "lock command {command:?} not sent: {e}"),
                }
            }
        }
        result
    }

    /// Turn what the broker delivered into an event for the core, or act on
    /// it here (Home Assistant restarts, stale discovery configs).
    fn incoming(&mut self, msg: Incoming) -> Vec<Event> {
        match msg {
            Incoming::Connected => {
                info!("connected to the MQTT broker");
                self.republish();
                let mut events = Vec::new();
                for door in std::mem::take(&mut self.relock_later) {
                    // Only now does the lock have the relock: its
                    // confirmation deadline starts now.
                    if self.send_lock(&door, &LockCommand::Lock).is_ok() {
                        events.push(Event {
                            at: now(),
                            kind: EventKind::LockCommandSent {
                                door,
                                command: LockCommand::Lock,
                            },
                        });
                    }
                }
                // After an outage the locks may have moved: ask them.
                for d in self.devices.values() {
                    for out in d.refresh() {
                        if let Err(e) = self.link.publish_query(&out.topic, out.payload) {
                            debug!("refresh not sent: {e}");
                        }
                    }
                }
                // What must reach the locks whatever happened while the
                // link was down (keypad slots) is the core's to decide.
                events.push(Event {
                    at: now(),
                    kind: EventKind::LinkUp,
                });
                events
            }
            Incoming::Disconnected { reason } => {
                warn!("MQTT broker connection lost: {}", redact::text(&reason));
                Vec::new()
            }
            Incoming::Message {
                topic,
                payload,
                retain,
            } => self.message(topic, payload, retain),
            Incoming::Oversized { topic, bytes } => {
                let source = self.commands.source(&topic).map_or(topic, |(s, _)| s);
                self.drop_message(&source, Why::TooLarge { bytes }, "");
                Vec::new()
            }
            Incoming::CommandsNotSent(unsent) => {
                // Accepted while connected, taken back when the connection
                // dropped: for the core, exactly a command the link refused.
                let mut events = Vec::new();
                for m in unsent {
                    let found = self.devices.iter().find_map(|(door, d)| {
                        [LockCommand::Lock, LockCommand::Unlock]
                            .into_iter()
                            .find(|c| {
                                d.commands(c)
                                    .iter()
                                    .any(|out| out.topic == m.topic && out.payload == m.payload)
                            })
                            .map(|c| (door.clone(), c))
                    });
                    let Some((door, command)) = found else {
                        warn!(
                            topic = m.topic,
                            "command not sent before the connection dropped"
                        );
                        continue;
                    };
                    if command == LockCommand::Lock {
                        warn!(
                            door,
                            "relock not sent before the connection dropped; will send it when the broker is back"
                        );
                        self.relock_later.insert(door.clone());
                    } else {
                        warn!(
                            door,
                            "unlock not sent before the connection dropped; dropped"
                        );
                    }
                    events.push(Event {
                        at: now(),
                        kind: EventKind::LockCommandUnsent {
                            door,
                            command,
                            reason: "broker unreachable".into(),
                        },
                    });
                }
                events
            }
            Incoming::Failed { reason } => {
                error!("{}", redact::text(&reason));
                self.link_failed = Some(redact::text(&reason));
                Vec::new()
            }
        }
    }

    /// Counts a message turned away, logs what is due, and updates the
    /// bridge's problem entity.
    fn drop_message(&mut self, source: &str, why: Why, detail: &str) {
        let at = Instant::now();
        self.intake.turned_away(at, source, why, detail);
        self.report_drops(at);
    }

    /// The log lines due for dropped messages; the problem entity at once
    /// when it turns on (its counts follow with the next tick, so a flood
    /// is not answered with a flood of states). Called for every drop.
    fn report_drops(&mut self, at: Instant) {
        for line in self.intake.take_warnings(at) {
            warn!("{line}");
        }
        if !self.problem_shown {
            self.publish_health(at);
        }
    }

    /// Log lines still due, and the problem entity when it changed: on the
    /// runtime's health tick.
    fn tick_health(&mut self, at: Instant) {
        for line in self.intake.take_warnings(at) {
            warn!("{line}");
        }
        self.publish_health(at);
    }

    fn publish_health(&mut self, at: Instant) {
        let mut health = self.intake.health(at);
        if let Some(reason) = &self.evidence_problem {
            health.problem = true;
            health.reason = format!("no delivery evidence is being kept: {reason}");
        }
        self.problem_shown = health.problem;
        for m in self.mirror.health(&health) {
            if let Err(e) = self.link.publish(&m.topic, m.payload, m.retain) {
                debug!("{e}");
                self.mirror.forget(&m.topic);
            }
        }
    }

    fn message(&mut self, topic: String, payload: Vec<u8>, retain: bool) -> Vec<Event> {
        let source = self.commands.source(&topic);
        let parsed = self.commands.parse(&topic, &payload, retain);
        // Only what would act is rate-limited: a command the core would
        // audit and answer, a birth message that republishes everything.
        // Garbage costs a parse and a count, and leaves a real courier's
        // request right after it untouched.
        if let (
            CommandParse::Command { .. }
            | CommandParse::EvidenceAck { .. }
            | CommandParse::HaStatus { online: true },
            Some((source, limit)),
        ) = (&parsed, &source)
        {
            let at = Instant::now();
            if !self.intake.admit(at, source, *limit) {
                self.report_drops(at);
                return Vec::new();
            }
        }
        let source = source.map_or_else(|| topic.clone(), |(s, _)| s);
        match parsed {
            CommandParse::Command { door, command } => {
                return vec![Event {
                    at: now(),
                    kind: EventKind::Command { door, command },
                }];
            }
            CommandParse::EvidenceAck { door } => {
                match &self.recorders {
                    Some(r) => r.acknowledge(&door),
                    None => warn!(door, "evidence acknowledged, but no clips are kept"),
                }
                return Vec::new();
            }
            CommandParse::HaStatus { online } => {
                if online {
                    info!("Home Assistant (re)started: republishing every entity");
                    self.republish();
                }
                return Vec::new();
            }
            CommandParse::RetainedIgnored { topic } => {
                // Retained copies arrive once per subscribe, so a configured
                // door's topics give a handful of lines per connect: each is
                // worth its own. Made-up doors are not bounded; they share
                // the once-a-minute count.
                if source == topic {
                    warn!(topic, "ignoring a retained message on a command topic");
                    self.intake.counted(Instant::now(), &source, Why::Retained);
                    self.report_drops(Instant::now());
                } else {
                    self.drop_message(&source, Why::Retained, "");
                }
                return Vec::new();
            }
            CommandParse::Malformed { topic, reason } => {
                debug!(topic, "ignoring a malformed command: {reason}");
                self.drop_message(&source, Why::Malformed, &reason);
                return Vec::new();
            }
            CommandParse::NotCommand => {}
        }
        for (door, devices) in &self.devices {
            match devices.parse(&topic, &payload) {
                Parsed::Reports(reports) => {
                    // Several reports from one message (state, battery…)
                    // reach the core one at a time, in order, same instant.
                    let at = now();
                    return reports
                        .into_iter()
                        .map(|report| Event {
                            at,
                            kind: EventKind::Door {
                                door: door.clone(),
                                report,
                            },
                        })
                        .collect();
                }
                Parsed::Malformed(reason) => {
                    debug!(door, topic, "ignoring a malformed device message: {reason}");
                    self.drop_message(&source, Why::Malformed, &reason);
                    return Vec::new();
                }
                Parsed::NotMine => {}
            }
        }
        for removal in self.mirror.stale(&topic, &payload, retain) {
            info!(
                topic = removal.topic,
                "removing what an entity that left the config left behind"
            );
            if let Err(e) = self.link.publish(&removal.topic, removal.payload, true) {
                warn!("{e}");
            }
        }
        Vec::new()
    }

    fn republish(&mut self) {
        for m in self.mirror.republish_all() {
            if let Err(e) = self.link.publish(&m.topic, m.payload, m.retain) {
                warn!("{e}");
            }
        }
    }

    /// The core panicked: a bug. Lock every door, say so, and start a fresh
    /// core from the store (which relocks any delivery in progress).
    fn recover_from_panic(&mut self, core: &mut Core) {
        error!("internal error in the delivery core: locking every door and restarting the core");
        let doors: Vec<String> = self.devices.keys().cloned().collect();
        for door in &doors {
            // Not sent: remembered for the next connect, and the fresh
            // core below relocks any delivery in progress anyway.
            let _ = self.send_lock(door, &LockCommand::Lock);
        }
        let at = now();
        let _ = self.audit(&AuditRecord {
            at: at.wall,
            door: None,
            decision: "core_restarted".into(),
            reason: "internal error in the delivery core; every door was sent a lock command"
                .into(),
            details: serde_json::Value::Null,
        });
        let restored = restore(self.cfg, self.store.as_deref());
        match Core::new(self.cfg, restored, seed(), at) {
            Ok(mut fresh) => {
                let actions = fresh.start(at);
                *core = fresh;
                let follow = self.carry_out(actions);
                for ev in follow {
                    self.handle(core, ev);
                }
            }
            Err(e) => error!("cannot rebuild the delivery core: {e}"),
        }
    }
}
