//! The deterministic core: every decision doorwarden makes, and nothing else.
//!
//! This module does **no I/O and reads no clock**. It never opens a socket,
//! touches a file, spawns a task or calls `Instant::now()`. The shell
//! (`crate::io`, `crate::runtime`) stamps each [`Event`] with the time it
//! happened and hands it to [`Core::handle`], which returns the
//! [`Action`]s to carry out, in order. The core asks to be woken again at
//! [`Core::next_deadline`]. The same core is driven by the real bridge, by
//! the demo, by the scenario tests (with a fake clock that jumps from
//! deadline to deadline) and by the property tests.
//!
//! # Contract for the driver
//!
//! 1. Build the core with [`Core::new`] from the validated config and
//!    whatever the store recovered from a previous run, then call
//!    [`Core::start`] once and carry out its actions (an unfinished delivery
//!    from before a crash is relocked there).
//! 2. For every input, stamp it and call [`Core::handle`]. Carry out the
//!    returned actions **in order**. If a [`Action::Persist`] fails, do not
//!    carry out any later [`Action::Lock`] with [`LockCommand::Unlock`] from
//!    the same batch; report the failure with [`EventKind::StorageFailed`].
//! 3. After every call, read [`Core::next_deadline`] and arrange for an
//!    [`EventKind::Tick`] at that instant. Spurious or early ticks are
//!    harmless.
//!
//! Denials are data (an action with a reason), never `Err`. A panic here is a
//! bug; `crate::runtime` catches it, relocks every door and starts again from
//! the store.
//!
//! # Layout
//!
//! - `liveness`: one state machine per camera (Connecting, Live, Stalled,
//!   Frozen, Offline) fed with frame summaries.
//! - `schedule`: weekly delivery windows in the door's time zone, plus
//!   windows granted now.
//! - `lock`: what each lock is known to be doing, and whether the command
//!   sent to it was confirmed in time.
//! - `door`: one delivery session per door: grant, watch, trip, relock.
//! - `timer`: the deadline table that doors, cameras and locks each keep,
//!   indexed by their own small timer enum.

pub mod camera_band;
pub mod door;
pub mod liveness;
pub mod lock;
mod machine;
pub mod picture;
pub mod refinement;
pub mod schedule;
pub mod streams;
pub(crate) mod text;
pub mod timer;

pub use machine::{Core, CoreError, RATE_INTERVAL, STORAGE_RETRY, Wake, soonest};

use std::time::{Duration, Instant};

use crate::config::Secret;

/// When something happened, on both clocks. The monotonic clock measures
/// intervals (frame gaps, timeouts); the wall clock places events in the
/// owner's calendar (delivery windows) and in the audit log. Both are set by
/// the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub mono: Instant,
    pub wall: jiff::Timestamp,
}

impl Stamp {
    /// The same moment moved forward by `d` on both clocks (for tests and
    /// for turning a wall-clock deadline into a monotonic one).
    pub fn after(self, d: Duration) -> Stamp {
        let wall = jiff::SignedDuration::try_from(d)
            .ok()
            .and_then(|sd| self.wall.checked_add(sd).ok())
            .unwrap_or(jiff::Timestamp::MAX);
        Stamp {
            mono: self.mono + d,
            wall,
        }
    }
}

/// One input to the core.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: Stamp,
    pub kind: EventKind,
}

/// What the camera task reports of a camera's picture substream.
#[derive(Debug, Clone)]
pub enum SubstreamEvent {
    /// Its RTSP session is playing.
    Up,
    /// A complete video frame of it arrived.
    Frame(FrameSummary),
    /// Its session failed or ended; `reason` is for the owner, redacted.
    Down { reason: String },
}

/// What happened.
#[derive(Debug, Clone)]
pub enum EventKind {
    /// The time of the last `next_deadline()` (or any time) has come.
    Tick,
    /// The camera's RTSP session is playing (DESCRIBE/SETUP/PLAY succeeded).
    CameraUp { camera: String },
    /// A complete video frame arrived.
    CameraFrame { camera: String, frame: FrameSummary },
    /// The camera's session failed or ended; `reason` is for the owner and
    /// already redacted ("RTSP 401 Unauthorized", "connection refused").
    CameraDown { camera: String, reason: String },
    /// A decoded picture of the camera, reduced to a thumbnail, or word that
    /// its pictures cannot be decoded (`crate::io::picture`).
    CameraPicture {
        camera: String,
        sample: picture::PictureSample,
    },
    /// The camera's picture substream (`picture_url:`): its session and
    /// frames, judged like the main stream's, with the camera live only
    /// while both are. Its decoded pictures come as `CameraPicture`.
    Substream {
        camera: String,
        event: SubstreamEvent,
    },
    /// Something the door's lock or contact sensor reported, already
    /// translated from Zigbee2MQTT / Z-Wave JS UI by `crate::devices`.
    Door { door: String, report: DoorReport },
    /// A request from the owner, Home Assistant or a courier.
    Command { door: String, command: Command },
    /// Writing the delivery state to disk failed; deliveries must be refused
    /// until a later write succeeds.
    StorageFailed { reason: String },
    /// The shell could not hand a lock command from the core to the broker
    /// link, so it certainly did not reach the lock. `reason` is for the
    /// owner ("broker unreachable"). A relock is then held by the shell and
    /// sent after the reconnect ([`EventKind::LockCommandSent`]); any other
    /// command is dropped.
    LockCommandUnsent {
        door: String,
        command: LockCommand,
        reason: String,
    },
    /// A lock command the shell held back (see
    /// [`EventKind::LockCommandUnsent`]) has now gone out: the lock's
    /// confirmation deadline starts now.
    LockCommandSent { door: String, command: LockCommand },
    /// The broker link is up (after every connect, once subscribed).
    /// Commands that must reach the locks whatever happened while it was
    /// down (clearing a keypad slot) are issued again.
    LinkUp,
}

/// A summary of one complete video frame; the core never sees video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSummary {
    /// RTP timestamp extended past 32-bit wrap-around (retina's
    /// `Timestamp::timestamp()`), in units of `clock_rate`.
    pub rtp_ts: i64,
    /// RTP clock rate in Hz (90 000 for video).
    pub clock_rate: u32,
    /// Size of the encoded frame in bytes.
    pub size: u32,
    /// An IDR / IRAP frame (a picture that decodes on its own).
    pub keyframe: bool,
    /// Fast hash of the frame's bytes (identical bytes, identical hash).
    pub hash: u64,
    /// RTP packets lost just before this frame.
    pub lost: u16,
}

/// A report from a door's devices, in doorwarden's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoorReport {
    /// The lock's bolt, as the lock itself reports it.
    Lock {
        state: LockState,
        source: Option<MoveSource>,
    },
    /// The lock says it is jammed (or was not fully thrown).
    Jammed,
    /// The lock backend says whether the lock is reachable.
    LockAvailable(bool),
    /// Battery percentage.
    Battery(u8),
    /// The contact sensor: true when the door is open.
    Contact { open: bool },
    /// The contact sensor's backend says whether it is reachable.
    ContactAvailable(bool),
    /// The lock confirmed that a keypad PIN was stored or cleared.
    CodeSlot { slot: u16, set: bool },
    /// The lock's own auto-relock setting (seconds, 0 = off), as read back.
    AutoRelock(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    Locked,
    Unlocked,
    /// Neither: the backend reported a value that means "unknown".
    Unknown,
}

/// Who or what moved the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveSource {
    /// The keypad, with the user slot when the lock says which.
    Keypad {
        slot: Option<u16>,
    },
    /// Thumb-turn or key.
    Manual,
    /// A radio command (Zigbee / Z-Wave), i.e. doorwarden or another controller.
    Rf,
    /// The lock's own auto-relock.
    Auto,
    Other,
    /// doorwarden's own lock / unlock command, confirmed by the lock.
    Doorwarden,
}

/// A request to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Open a delivery window now, for `duration` (the door's
    /// `grant_duration` when `None`), optionally with a one-time code.
    Grant {
        duration: Option<Duration>,
        code: Option<Secret>,
    },
    /// Close the window and end any delivery now (relocks).
    EndDelivery,
    /// A courier asks to be let in.
    CourierUnlock {
        code: Option<Secret>,
        carrier: Option<String>,
        via: RequestChannel,
    },
    /// The owner's own lock / unlock from the Home Assistant lock entity.
    OwnerLock,
    OwnerUnlock,
    /// The grant duration (number entity) changed.
    SetGrantDuration(Duration),
    /// The one-time delivery code for the next/current window.
    SetCode(Secret),
}

/// Where a courier's request came from, so the answer goes back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestChannel {
    /// `<base>/<door>/delivery/request` (answered on `.../response`).
    Mqtt,
    /// The Home Assistant "Courier unlock" button.
    Button,
    /// The lock's keypad, with the delivery code slot.
    Keypad,
}

/// An output of the core, to be carried out by the shell in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write the active delivery sessions to disk (atomically) **before**
    /// carrying out any later action of the same batch.
    Persist(PersistedState),
    /// Send a command to a door's lock.
    Lock { door: String, command: LockCommand },
    /// Publish a door's current state for Home Assistant.
    DoorState(DoorStatus),
    /// Publish whether a door's lock backend is reachable.
    DoorAvailability { door: String, online: bool },
    /// Publish a camera's current liveness.
    CameraState(CameraStatus),
    /// Publish a delivery event (Home Assistant `event` entity).
    DeliveryEvent(DeliveryEvent),
    /// Answer a courier's request made on MQTT.
    DeliveryResponse {
        door: String,
        granted: bool,
        reason: String,
        carrier: Option<String>,
    },
    /// Append a record to the audit log.
    Audit(AuditRecord),
    /// Keep (or stop keeping) video of a door's cameras as evidence; the
    /// shell records, the core only says when.
    Evidence(Evidence),
}

/// When a door's cameras must be recorded. A delivery is named by its door
/// and the moment it began (`SessionRecord::unlocked_at`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// A delivery window opened: keep the last seconds of these cameras in
    /// memory, so that a delivery's clip can start before its unlock.
    Watch { door: String, cameras: Vec<String> },
    /// The window closed: the pre-roll is no longer needed for this door.
    Unwatch { door: String },
    /// A delivery began: record these cameras from their pre-roll on.
    Start {
        door: String,
        delivery: jiff::Timestamp,
        cameras: Vec<String>,
    },
    /// The delivery ended (relocked, or given up on): record the post-roll
    /// and close its clips. `compromised`: it ended tripped, so its clips
    /// are kept until the owner acknowledges them.
    Stop {
        door: String,
        delivery: jiff::Timestamp,
        compromised: bool,
    },
}

/// Commands the core sends to a lock; `crate::devices` turns them into the
/// backend's MQTT messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockCommand {
    Lock,
    Unlock,
    /// Ask the lock to report its state again.
    Refresh,
    /// Set the lock's own auto-relock timer (seconds, 0 = off).
    SetAutoRelock(u32),
    /// Store a keypad PIN in a user slot.
    SetCode {
        slot: u16,
        code: Secret,
    },
    /// Clear a keypad user slot.
    ClearCode {
        slot: u16,
    },
}

/// Everything Home Assistant shows about a door (`<base>/<door>/state`).
#[derive(Debug, Clone, PartialEq)]
pub struct DoorStatus {
    pub door: String,
    /// `None` while unknown.
    pub lock: Option<LockDisplay>,
    pub lock_source: Option<MoveSource>,
    /// `None` without a contact sensor or before its first report.
    pub door_open: Option<bool>,
    /// `Some(reason)` while a delivery request would be refused.
    pub interlock_blocking: Option<String>,
    pub delivery: DeliveryState,
    pub window_ends: Option<jiff::Timestamp>,
    pub entries_left: u32,
    pub compromised: bool,
    pub backstop_armed: bool,
    pub grant_minutes: u32,
    /// The next weekly window (within a year) that a clock change skips
    /// or repeats, and what will happen to it; `None` when there is none.
    pub schedule_warning: Option<String>,
}

/// The lock as Home Assistant's lock entity shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockDisplay {
    Locked,
    Unlocked,
    Locking,
    Unlocking,
    Jammed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Idle,
    WindowOpen,
    Unlocked,
    Watching,
    Completed,
    Tripped,
    Denied,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Idle => "idle",
            DeliveryState::WindowOpen => "window_open",
            DeliveryState::Unlocked => "unlocked",
            DeliveryState::Watching => "watching",
            DeliveryState::Completed => "completed",
            DeliveryState::Tripped => "tripped",
            DeliveryState::Denied => "denied",
        }
    }
}

/// A camera's liveness as Home Assistant shows it (`<base>/camera/<c>/state`).
#[derive(Debug, Clone, PartialEq)]
pub struct CameraStatus {
    pub camera: String,
    pub state: liveness::LivenessKind,
    /// Why the camera is not live (`None` when live).
    pub reason: Option<String>,
    /// When the camera entered this state.
    pub since: jiff::Timestamp,
    pub fps: f64,
    pub bitrate_kbps: f64,
    pub last_frame: Option<jiff::Timestamp>,
}

/// One delivery event for Home Assistant's `event` entity.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryEvent {
    pub door: String,
    pub kind: DeliveryEventKind,
    /// A sentence for the owner.
    pub reason: String,
    pub camera: Option<String>,
    pub source: Option<MoveSource>,
    pub duration_s: Option<u64>,
    pub entries: Option<u32>,
    pub compromised: Option<bool>,
    /// The delivery's clip (`evidence_saved`): file name and length.
    pub clip: Option<ClipInfo>,
}

/// A delivery clip as Home Assistant is told of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipInfo {
    /// File name in the recordings folder (Home Assistant's media folder).
    pub file: String,
    pub duration_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryEventKind {
    WindowOpened,
    WindowClosed,
    Granted,
    Denied,
    Unlocked,
    DoorOpened,
    DoorClosed,
    Relocked,
    Completed,
    InterlockTripped,
    LockUnresponsive,
    LockJammed,
    DoorHeldOpen,
    DoorForced,
    ManualUnlock,
    RestartedDuringDelivery,
    /// A relock could not be sent yet (broker unreachable); it goes out as
    /// soon as it can. Not a lock fault.
    RelockPending,
    /// A delivery ended without the lock confirming its relock (lock
    /// unresponsive, jammed): the door may be unlocked. The reason says why.
    RelockFailed,
    /// A delivery's clip of one camera is on disk (sent by the shell's
    /// recorder, not the core), with its file name and length.
    EvidenceSaved,
    /// Video of a delivery is not being kept (storage full or unwritable;
    /// sent by the shell). The delivery itself goes on.
    EvidenceFailed,
}

impl DeliveryEventKind {
    pub const ALL: [DeliveryEventKind; 20] = [
        DeliveryEventKind::WindowOpened,
        DeliveryEventKind::WindowClosed,
        DeliveryEventKind::Granted,
        DeliveryEventKind::Denied,
        DeliveryEventKind::Unlocked,
        DeliveryEventKind::DoorOpened,
        DeliveryEventKind::DoorClosed,
        DeliveryEventKind::Relocked,
        DeliveryEventKind::Completed,
        DeliveryEventKind::InterlockTripped,
        DeliveryEventKind::LockUnresponsive,
        DeliveryEventKind::LockJammed,
        DeliveryEventKind::DoorHeldOpen,
        DeliveryEventKind::DoorForced,
        DeliveryEventKind::ManualUnlock,
        DeliveryEventKind::RestartedDuringDelivery,
        DeliveryEventKind::RelockPending,
        DeliveryEventKind::RelockFailed,
        DeliveryEventKind::EvidenceSaved,
        DeliveryEventKind::EvidenceFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryEventKind::WindowOpened => "window_opened",
            DeliveryEventKind::WindowClosed => "window_closed",
            DeliveryEventKind::Granted => "granted",
            DeliveryEventKind::Denied => "denied",
            DeliveryEventKind::Unlocked => "unlocked",
            DeliveryEventKind::DoorOpened => "door_opened",
            DeliveryEventKind::DoorClosed => "door_closed",
            DeliveryEventKind::Relocked => "relocked",
            DeliveryEventKind::Completed => "completed",
            DeliveryEventKind::InterlockTripped => "interlock_tripped",
            DeliveryEventKind::LockUnresponsive => "lock_unresponsive",
            DeliveryEventKind::LockJammed => "lock_jammed",
            DeliveryEventKind::DoorHeldOpen => "door_held_open",
            DeliveryEventKind::DoorForced => "door_forced",
            DeliveryEventKind::ManualUnlock => "manual_unlock",
            DeliveryEventKind::RestartedDuringDelivery => "restarted_during_delivery",
            DeliveryEventKind::RelockPending => "relock_pending",
            DeliveryEventKind::RelockFailed => "relock_failed",
            DeliveryEventKind::EvidenceSaved => "evidence_saved",
            DeliveryEventKind::EvidenceFailed => "evidence_failed",
        }
    }
}

impl MoveSource {
    pub fn as_str(self) -> &'static str {
        match self {
            MoveSource::Keypad { .. } => "keypad",
            MoveSource::Manual => "manual",
            MoveSource::Rf => "rf",
            MoveSource::Auto => "auto",
            MoveSource::Other => "other",
            MoveSource::Doorwarden => "doorwarden",
        }
    }
}

/// What an audit record says was decided: the word in its `decision`
/// field. Each variant renders its own word; the words are the log's
/// format and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The one-time code was removed.
    CodeCleared,
    /// A stored code's window ended while doorwarden was stopped.
    CodeDropped,
    /// A one-time code was set.
    CodeSet,
    /// The lock reported its keypad slot.
    CodeSlot,
    /// The keypad slot was cleared.
    CodeSlotCleared,
    /// The keypad slot is asked again after a connect.
    CodeSlotRetry,
    /// The delivery PIN was put in the keypad slot.
    CodeSlotSet,
    /// The contact sensor became unreachable.
    ContactUnavailable,
    /// A delivery ended; the details hold its summary.
    DeliverySummary,
    /// A delivery request was refused.
    Denied,
    /// The door opened while the lock reported locked.
    DoorForced,
    /// The door stayed open past the time allowed.
    DoorHeldOpen,
    /// The grant duration changed.
    GrantDuration,
    /// A granted window came back after a restart.
    GrantRestored,
    /// A delivery was granted.
    Granted,
    /// The lock became reachable or unreachable.
    LockAvailability,
    /// The lock jammed.
    LockJammed,
    /// The lock was moved by someone else.
    LockMoved,
    /// The lock's reports said it moved more often than a bolt can: they
    /// were summed up, not taken one by one.
    LockReportsFlapping,
    /// A lock command was sent again.
    LockRetry,
    /// The lock did not confirm even after a retry.
    LockUnresponsive,
    /// The lock was unlocked outside doorwarden.
    ManualUnlock,
    /// The owner locked from Home Assistant.
    OwnerLock,
    /// The owner unlocked from Home Assistant.
    OwnerUnlock,
    /// The owner's unlock was refused (cameras not live).
    OwnerUnlockRefused,
    /// A relock waits for the door to shut.
    RelockOnShut,
    /// A relock could not be sent yet.
    RelockPending,
    /// A relock held back was sent.
    RelockSent,
    /// The lock confirmed a relock a delivery was owed.
    Relocked,
    /// A relock was sent.
    Relocking,
    /// doorwarden restarted during a delivery.
    RestartedDuringDelivery,
    /// A camera left Live during a delivery.
    Tripped,
    /// An unconfirmed unlock is not sent again.
    UnlockAbandoned,
    /// A delivery unlock could not be sent.
    UnlockNotSent,
    /// A delivery window closed.
    WindowClosed,
    /// The owner ended the window from Home Assistant.
    WindowEnded,
    /// The owner granted a window now.
    WindowGranted,
    /// A delivery window opened.
    WindowOpened,
    /// A request carried a wrong code.
    WrongCode,
    /// A wrong-code lockout came back after a restart.
    WrongCodesRestored,
    /// A stored code is in force again.
    CodeRestored,
    /// A stored code cannot be read back.
    CodeUnreadable,
    /// Writing the delivery state failed.
    StorageFailed,
    /// Writing the delivery state is tried again.
    StorageRetry,
}

impl Decision {
    pub const ALL: [Decision; 44] = [
        Decision::CodeCleared,
        Decision::CodeDropped,
        Decision::CodeSet,
        Decision::CodeSlot,
        Decision::CodeSlotCleared,
        Decision::CodeSlotRetry,
        Decision::CodeSlotSet,
        Decision::ContactUnavailable,
        Decision::DeliverySummary,
        Decision::Denied,
        Decision::DoorForced,
        Decision::DoorHeldOpen,
        Decision::GrantDuration,
        Decision::GrantRestored,
        Decision::Granted,
        Decision::LockAvailability,
        Decision::LockJammed,
        Decision::LockMoved,
        Decision::LockReportsFlapping,
        Decision::LockRetry,
        Decision::LockUnresponsive,
        Decision::ManualUnlock,
        Decision::OwnerLock,
        Decision::OwnerUnlock,
        Decision::OwnerUnlockRefused,
        Decision::RelockOnShut,
        Decision::RelockPending,
        Decision::RelockSent,
        Decision::Relocked,
        Decision::Relocking,
        Decision::RestartedDuringDelivery,
        Decision::Tripped,
        Decision::UnlockAbandoned,
        Decision::UnlockNotSent,
        Decision::WindowClosed,
        Decision::WindowEnded,
        Decision::WindowGranted,
        Decision::WindowOpened,
        Decision::WrongCode,
        Decision::WrongCodesRestored,
        Decision::CodeRestored,
        Decision::CodeUnreadable,
        Decision::StorageFailed,
        Decision::StorageRetry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::CodeCleared => "code_cleared",
            Decision::CodeDropped => "code_dropped",
            Decision::CodeSet => "code_set",
            Decision::CodeSlot => "code_slot",
            Decision::CodeSlotCleared => "code_slot_cleared",
            Decision::CodeSlotRetry => "code_slot_retry",
            Decision::CodeSlotSet => "code_slot_set",
            Decision::ContactUnavailable => "contact_unavailable",
            Decision::DeliverySummary => "delivery_summary",
            Decision::Denied => "denied",
            Decision::DoorForced => "door_forced",
            Decision::DoorHeldOpen => "door_held_open",
            Decision::GrantDuration => "grant_duration",
            Decision::GrantRestored => "grant_restored",
            Decision::Granted => "granted",
            Decision::LockAvailability => "lock_availability",
            Decision::LockJammed => "lock_jammed",
            Decision::LockMoved => "lock_moved",
            Decision::LockReportsFlapping => "lock_reports_flapping",
            Decision::LockRetry => "lock_retry",
            Decision::LockUnresponsive => "lock_unresponsive",
            Decision::ManualUnlock => "manual_unlock",
            Decision::OwnerLock => "owner_lock",
            Decision::OwnerUnlock => "owner_unlock",
            Decision::OwnerUnlockRefused => "owner_unlock_refused",
            Decision::RelockOnShut => "relock_on_shut",
            Decision::RelockPending => "relock_pending",
            Decision::RelockSent => "relock_sent",
            Decision::Relocked => "relocked",
            Decision::Relocking => "relocking",
            Decision::RestartedDuringDelivery => "restarted_during_delivery",
            Decision::Tripped => "tripped",
            Decision::UnlockAbandoned => "unlock_abandoned",
            Decision::UnlockNotSent => "unlock_not_sent",
            Decision::WindowClosed => "window_closed",
            Decision::WindowEnded => "window_ended",
            Decision::WindowGranted => "window_granted",
            Decision::WindowOpened => "window_opened",
            Decision::WrongCode => "wrong_code",
            Decision::WrongCodesRestored => "wrong_codes_restored",
            Decision::CodeRestored => "code_restored",
            Decision::CodeUnreadable => "code_unreadable",
            Decision::StorageFailed => "storage_failed",
            Decision::StorageRetry => "storage_retry",
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the audit log: a decision and why. Never holds a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub at: jiff::Timestamp,
    pub door: Option<String>,
    /// What was decided: a [`Decision`]'s word in the core's records
    /// (`granted`, `denied`, `delivery_summary`, …); the shell adds its own
    /// (`core_restarted`, `log_repaired`).
    pub decision: String,
    pub reason: String,
    /// Free-form details (camera states at the time, the delivery summary).
    pub details: serde_json::Value,
}

/// What survives a restart: the deliveries in progress, the one-time
/// codes still in force, and what each door's windows and limits have come
/// to. Written before every delivery unlock, whenever a session ends,
/// whenever a code is set, used, moves to another window, enters or leaves
/// a keypad slot, or is dropped, and whenever a window is granted or ended
/// or a wrong code is given.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct PersistedState {
    pub sessions: Vec<SessionRecord>,
    /// Absent from state files written before codes were persisted.
    #[serde(default)]
    pub codes: Vec<CodeRecord>,
    /// Absent from state files written before doors' limits were persisted.
    #[serde(default)]
    pub doors: Vec<DoorRecord>,
}

/// What one door's limits have come to, so that a restart cannot hand any
/// of them back: a window the owner ended, entries already made, wrong
/// codes already given, and a window the owner granted. Only doors with
/// something to remember have one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DoorRecord {
    pub door: String,
    /// The instant of the owner's last "End delivery": every window
    /// occurrence open then stays shut.
    #[serde(default)]
    pub cancelled_at: Option<jiff::Timestamp>,
    /// The window occurrence (its start) `entries_used` counts for.
    #[serde(default)]
    pub entries_window: Option<jiff::Timestamp>,
    #[serde(default)]
    pub entries_used: u32,
    /// Wall-clock times of the wrong codes in the current one-minute span,
    /// oldest first. Times only: a wrong code itself is never written down.
    #[serde(default)]
    pub wrong_codes: Vec<jiff::Timestamp>,
    /// The window granted from Home Assistant, as it was granted.
    #[serde(default)]
    pub grant: Option<GrantRecord>,
}

/// A granted window's edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GrantRecord {
    pub starts: jiff::Timestamp,
    pub ends: jiff::Timestamp,
}

/// An unlocked (or about to be unlocked) delivery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionRecord {
    pub door: String,
    /// Wall-clock time of the unlock, for the restart report.
    pub unlocked_at: jiff::Timestamp,
    pub carrier: Option<String>,
    /// The owner's own auto-relock value to restore after the delivery, if
    /// doorwarden changed it.
    pub restore_auto_relock: Option<u32>,
}

/// A door's one-time delivery code, as far as it may be written down: the
/// salted hash, never the code. Without it a restart would forget the code
/// and let a request without one through.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CodeRecord {
    pub door: String,
    /// The 32-byte salt, hex. Empty (or anything not 64 hex digits) marks a
    /// code that cannot be checked: the door then refuses requests over MQTT
    /// until the owner sets a new code or the window ends.
    pub salt: String,
    /// SHA-256 of salt and code, hex.
    pub hash: String,
    /// The window occurrence (its start) the code belongs to; `None` when it
    /// was set before a window opened: it is for the next one.
    pub window: Option<jiff::Timestamp>,
    /// When the code was set (to tell whether "the next window" has come and
    /// gone while doorwarden was stopped).
    pub set_at: jiff::Timestamp,
    /// Delivery entries already made in that window.
    pub entries_used: u32,
    /// The keypad user slot that may hold the PIN; it is cleared on a
    /// restart, since doorwarden keeps no copy of the PIN to put back.
    pub keypad_slot: Option<u16>,
}

impl CodeRecord {
    /// A code that may have been set but cannot be read back (the state
    /// file was unreadable): requests over MQTT are refused in the window
    /// open at `at`, or the next one, until the owner sets a new code.
    pub fn unreadable(door: &str, at: jiff::Timestamp) -> CodeRecord {
        CodeRecord {
            door: door.to_string(),
            salt: String::new(),
            hash: String::new(),
            window: None,
            set_at: at,
            entries_used: 0,
            keypad_slot: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_audit_decision_has_its_own_word() {
        let mut words: Vec<&str> = Decision::ALL.iter().map(|d| d.as_str()).collect();
        assert!(words.iter().all(|w| !w.is_empty()));
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), Decision::ALL.len());
        assert_eq!(Decision::DeliverySummary.to_string(), "delivery_summary");
    }
}
