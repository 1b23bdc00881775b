//! Delivery evidence: a local video clip of every delivery, per camera.
//!
//! Owns: the frame tap the camera task hands frames to ([`FrameTap`]), one
//! recorder thread per camera (its pre-roll ring, its clips, their sidecar
//! JSON and hashes), and the [`ClipReport`]s it sends back to the shell.
//! May not: delay a camera task or the core. The tap only ever `try_send`s
//! into a bounded queue; a full queue drops the frame and the clip marks a
//! gap and waits for the next keyframe. The core says when to record
//! ([`Evidence`]); it never hears of files.
//!
//! Frames are copied out of the camera task only while a door of the
//! camera has a delivery window open or a delivery's clip is being written;
//! the rest of the time the tap costs one atomic load per frame.
//!
//! A recorder runs on its own thread because every fragment it writes is
//! flushed to the disk, and a slow or full disk must stall nothing else.

pub mod mp4;
pub mod retention;
pub mod verify;

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc as tokio_mpsc;

use self::mp4::{Mp4Writer, Sample, TrackParams, VideoCodec};
use crate::config;
use crate::core::{CameraStatus, DeliveryEvent, Evidence};
use crate::redact;

/// Frames waiting for a recorder: about four seconds at 15 fps.
const FRAME_QUEUE: usize = 64;
/// Most bytes of pre-roll kept per camera, whatever the pre-roll's length.
const RING_MAX_BYTES: usize = 8 * 1024 * 1024;
/// How often a recorder looks at its clocks when no frame comes (post-roll
/// of a dead camera, fragments of a stalled one).
const IDLE_WAKE: Duration = Duration::from_millis(200);
/// Track ticks per second of every clip (RTP video's clock).
const TICKS: u64 = 90_000;

/// One video frame as the camera task hands it over.
#[derive(Debug, Clone)]
pub struct TapFrame {
    /// Which RTSP session (of this camera task) it came from.
    pub session: u64,
    pub received: Instant,
    pub wall: Timestamp,
    /// Extended RTP timestamp and its clock rate.
    pub rtp: i64,
    pub clock_rate: u32,
    pub keyframe: bool,
    /// Length-prefixed NAL units, as retina gives them.
    pub data: Arc<[u8]>,
    /// Frames the tap dropped (queue full) since the last one it sent.
    pub dropped_before: u64,
}

enum TapItem {
    Params { session: u64, track: TrackParams },
    Frame(TapFrame),
}

/// The camera task's end: cheap when nobody records.
#[derive(Clone)]
pub struct FrameTap {
    wanted: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    sessions: Arc<AtomicU64>,
    tx: SyncSender<TapItem>,
}

impl std::fmt::Debug for FrameTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameTap")
            .field("wanted", &self.wanted.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl FrameTap {
    /// A tap for one RTSP session of the camera.
    pub fn session(&self) -> TapSession {
        TapSession {
            tap: self.clone(),
            id: self.sessions.fetch_add(1, Ordering::Relaxed) + 1,
            sent: None,
        }
    }
}

/// The tap during one RTSP session: sends the stream's parameters before
/// the first frame and again whenever they change.
pub struct TapSession {
    tap: FrameTap,
    id: u64,
    /// The decoder configuration last handed over.
    sent: Option<Vec<u8>>,
}

impl TapSession {
    /// Whether frames are wanted right now (a window is open or a clip is
    /// being written); the camera task copies nothing otherwise.
    pub fn wanted(&self) -> bool {
        self.tap.wanted.load(Ordering::Relaxed)
    }

    /// Hands over one frame, never waiting. `params` are the stream's
    /// current parameters, `received` when its last packet arrived.
    pub fn offer(
        &mut self,
        params: Option<&retina::codec::VideoParameters>,
        frame: &retina::codec::VideoFrame,
        keyframe: bool,
        received: Instant,
        wall: Timestamp,
    ) {
        if !self.wanted() {
            self.sent = None;
            return;
        }
        let Some(params) = params else { return };
        if self.sent.as_deref() != Some(params.extra_data()) {
            let Some(track) = track_params(params) else {
                return;
            };
            let item = TapItem::Params {
                session: self.id,
                track,
            };
            if !self.send(item) {
                return;
            }
            self.sent = Some(params.extra_data().to_vec());
        }
        let ts = frame.timestamp();
        let item = TapItem::Frame(TapFrame {
            session: self.id,
            received,
            wall,
            rtp: ts.timestamp(),
            clock_rate: ts.clock_rate().get(),
            keyframe,
            data: Arc::from(frame.data()),
            dropped_before: 0,
        });
        self.send(item);
    }

    /// Hands over an item already built (also what tests and benches use).
    pub fn offer_frame(&mut self, track: &TrackParams, mut frame: TapFrame) {
        if !self.wanted() {
            self.sent = None;
            return;
        }
        if self.sent.as_deref() != Some(track.config.as_slice()) {
            let item = TapItem::Params {
                session: self.id,
                track: track.clone(),
            };
            if !self.send(item) {
                return;
            }
            self.sent = Some(track.config.clone());
        }
        frame.session = self.id;
        self.send(TapItem::Frame(frame));
    }

    fn send(&mut self, mut item: TapItem) -> bool {
        if let TapItem::Frame(f) = &mut item {
            f.dropped_before = self.tap.dropped.swap(0, Ordering::Relaxed);
        }
        match self.tap.tx.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(item)) | Err(TrySendError::Disconnected(item)) => {
                let lost = match item {
                    TapItem::Frame(f) => f.dropped_before + 1,
                    TapItem::Params { .. } => {
                        // The parameters go out again with the next frame.
                        self.sent = None;
                        1
                    }
                };
                self.tap.dropped.fetch_add(lost, Ordering::Relaxed);
                false
            }
        }
    }
}

/// What the MP4 needs from retina's description of the stream; `None` for
/// a codec that cannot go into the clip.
pub fn track_params(p: &retina::codec::VideoParameters) -> Option<TrackParams> {
    let codec = match p.codec_params() {
        retina::codec::VideoParametersCodec::H264 { .. } => VideoCodec::H264,
        retina::codec::VideoParametersCodec::H265 { .. } => VideoCodec::H265,
        _ => return None,
    };
    let (w, h) = p.pixel_dimensions();
    Some(TrackParams {
        codec,
        width: u16::try_from(w).unwrap_or(u16::MAX),
        height: u16::try_from(h).unwrap_or(u16::MAX),
        config: p.extra_data().to_vec(),
        timescale: TICKS as u32,
    })
}

/// A finished clip as the shell audits it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipFile {
    /// File name inside the recordings directory.
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
    pub duration_s: f64,
}

/// What a recorder tells the shell.
#[derive(Debug, Clone, PartialEq)]
pub enum ClipReport {
    /// A delivery's recording of one camera is complete: its clips (more
    /// than one if the stream's format changed midway, none if the camera
    /// sent nothing) and the sidecar describing them.
    Done {
        door: String,
        delivery: Timestamp,
        camera: String,
        clips: Vec<ClipFile>,
        sidecar: ClipFile,
        compromised: bool,
    },
    /// Evidence of this delivery is not being kept (disk full, directory
    /// not writable). Said once per clip.
    Failed {
        door: String,
        delivery: Timestamp,
        camera: String,
        reason: String,
    },
    /// Retention chose these files: audit, then [`Recorders::delete`].
    Expired(retention::Expired),
    /// The owner acknowledged the compromised deliveries of `door`; these
    /// sidecars' groups may now be deleted by retention.
    Acknowledged { door: String, sidecars: Vec<String> },
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot use the recordings directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the recorder of camera {camera}: {source}")]
    Thread {
        camera: String,
        #[source]
        source: std::io::Error,
    },
}

/// How the recorders are told what to do.
enum Command {
    Evidence(Evidence),
    Camera(CameraStatus),
    Delivery(DeliveryEvent),
    Stop,
}

struct Handle {
    commands: std_mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

/// What the retention thread is asked.
enum Chore {
    Sweep,
    Delete(Vec<String>),
    Acknowledge(String),
    Stop,
}

/// How often retention looks at the directory when nothing asks it to.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Every camera's recorder, as the shell holds them, and retention.
pub struct Recorders {
    cameras: Vec<(String, Handle)>,
    dir: PathBuf,
    chores: std_mpsc::Sender<Chore>,
    retention: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Recorders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorders")
            .field("dir", &self.dir)
            .field("cameras", &self.cameras.len())
            .finish()
    }
}

/// What [`Recorders::start`] gives: the recorders for the shell, a tap
/// per camera for its camera task, and the recorders' reports.
pub type Started = (
    Recorders,
    Vec<(String, FrameTap)>,
    tokio_mpsc::UnboundedReceiver<ClipReport>,
);

/// Settings one recorder works with.
#[derive(Debug, Clone)]
struct Settings {
    dir: PathBuf,
    pre_roll: Duration,
    post_roll: Duration,
}

impl Recorders {
    /// Starts a recorder per camera. The taps go to the camera tasks, the
    /// reports to the shell. The directory is created if missing; a
    /// directory that cannot be made is an error for the caller to report
    /// (deliveries go on without evidence).
    pub fn start(
        cfg: &config::Recordings,
        cameras: impl IntoIterator<Item = String>,
    ) -> Result<Started, RecordError> {
        std::fs::create_dir_all(&cfg.path).map_err(|source| RecordError::Dir {
            path: cfg.path.clone(),
            source,
        })?;
        let settings = Settings {
            dir: cfg.path.clone(),
            pre_roll: cfg.pre_roll,
            post_roll: cfg.post_roll,
        };
        let (report_tx, report_rx) = tokio_mpsc::unbounded_channel();
        // Before any recorder writes: what a killed bridge left unfinished.
        for report in adopt_cut_clips(&cfg.path) {
            let _ = report_tx.send(report);
        }
        let mut handles = Vec::new();
        let mut taps = Vec::new();
        for camera in cameras {
            let (tx, frames) = std_mpsc::sync_channel(FRAME_QUEUE);
            let (commands, command_rx) = std_mpsc::channel();
            let wanted = Arc::new(AtomicBool::new(false));
            let tap = FrameTap {
                wanted: wanted.clone(),
                dropped: Arc::new(AtomicU64::new(0)),
                sessions: Arc::new(AtomicU64::new(0)),
                tx,
            };
            let recorder =
                Recorder::new(camera.clone(), settings.clone(), wanted, report_tx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("rec-{camera}"))
                .spawn(move || recorder.run(frames, command_rx))
                .map_err(|source| RecordError::Thread {
                    camera: camera.clone(),
                    source,
                })?;
            taps.push((camera.clone(), tap));
            handles.push((
                camera,
                Handle {
                    commands,
                    thread: Some(thread),
                },
            ));
        }
        let (chores, chore_rx) = std_mpsc::channel();
        let retention = {
            let dir = cfg.path.clone();
            let rules = cfg.retention.clone();
            let reports = report_tx.clone();
            std::thread::Builder::new()
                .name("rec-retention".into())
                .spawn(move || retain(&dir, &rules, &chore_rx, &reports))
                .map_err(|source| RecordError::Thread {
                    camera: "(retention)".into(),
                    source,
                })?
        };
        Ok((
            Recorders {
                cameras: handles,
                dir: cfg.path.clone(),
                chores,
                retention: Some(retention),
            },
            taps,
            report_rx,
        ))
    }

    /// The directory the clips go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Carries out the core's word on evidence.
    pub fn evidence(&self, e: &Evidence) {
        let cameras: Option<&Vec<String>> = match e {
            Evidence::Watch { cameras, .. } | Evidence::Start { cameras, .. } => Some(cameras),
            // Every recorder knows whether it has the door.
            Evidence::Unwatch { .. } | Evidence::Stop { .. } => None,
        };
        for (name, h) in &self.cameras {
            if cameras.is_none_or(|c| c.contains(name)) {
                let _ = h.commands.send(Command::Evidence(e.clone()));
            }
        }
    }

    /// A camera's liveness changed (for the sidecars' timelines).
    pub fn camera(&self, status: &CameraStatus) {
        for (name, h) in &self.cameras {
            if *name == status.camera {
                let _ = h.commands.send(Command::Camera(status.clone()));
            }
        }
    }

    /// A delivery event (for the sidecars of the door's clips).
    pub fn delivery(&self, event: &DeliveryEvent) {
        for (_, h) in &self.cameras {
            let _ = h.commands.send(Command::Delivery(event.clone()));
        }
    }

    /// Asks retention to look at the directory now (a clip was added).
    pub fn sweep(&self) {
        let _ = self.chores.send(Chore::Sweep);
    }

    /// Deletes files retention chose, once their deletion is audited.
    pub fn delete(&self, files: Vec<String>) {
        let _ = self.chores.send(Chore::Delete(files));
    }

    /// The owner acknowledged `door`'s compromised deliveries.
    pub fn acknowledge(&self, door: &str) {
        let _ = self.chores.send(Chore::Acknowledge(door.to_string()));
    }

    /// Closes every clip as it stands (no post-roll) and waits for the
    /// recorders to finish.
    pub fn stop(mut self) {
        let _ = self.chores.send(Chore::Stop);
        if let Some(t) = self.retention.take() {
            let _ = t.join();
        }
        for (_, h) in &self.cameras {
            let _ = h.commands.send(Command::Stop);
        }
        for (_, h) in &mut self.cameras {
            if let Some(t) = h.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// The retention thread: sweeps when asked and every [`SWEEP_EVERY`],
/// never choosing the same files twice before the shell had them deleted.
fn retain(
    dir: &Path,
    rules: &config::Retention,
    chores: &std_mpsc::Receiver<Chore>,
    reports: &tokio_mpsc::UnboundedSender<ClipReport>,
) {
    let mut asked: BTreeSet<String> = BTreeSet::new();
    let mut chore = Some(Chore::Sweep);
    loop {
        match chore.take() {
            Some(Chore::Stop) => return,
            Some(Chore::Sweep) | None => match retention::scan(dir) {
                Ok(groups) => {
                    let expired =
                        retention::plan(&groups, Timestamp::now(), rules.max_age, rules.max_size);
                    for e in expired {
                        if e.files.iter().any(|f| asked.contains(f)) {
                            continue;
                        }
                        asked.extend(e.files.iter().cloned());
                        let _ = reports.send(ClipReport::Expired(e));
                    }
                }
                Err(e) => tracing::warn!(
                    "cannot look through the recordings directory {}: {e}",
                    dir.display()
                ),
            },
            Some(Chore::Delete(files)) => {
                for (path, e) in retention::delete(dir, &files) {
                    tracing::warn!("retention cannot delete {}: {e}", path.display());
                }
                for f in &files {
                    asked.remove(f);
                }
            }
            Some(Chore::Acknowledge(door)) => match retention::acknowledge(dir, &door) {
                Ok(sidecars) => {
                    let _ = reports.send(ClipReport::Acknowledged { door, sidecars });
                }
                Err(e) => tracing::warn!(door, "cannot mark the evidence acknowledged: {e}"),
            },
        }
        chore = match chores.recv_timeout(SWEEP_EVERY) {
            Ok(c) => Some(c),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
    }
}

/// A frame as the recorder keeps it: its time on the camera's own
/// continuous clock (90 kHz ticks since the recorder started, carried
/// across reconnects by arrival time).
#[derive(Debug, Clone)]
struct Frame {
    ticks: u64,
    received: Instant,
    wall: Timestamp,
    keyframe: bool,
    data: Arc<[u8]>,
}

/// Turns each session's RTP timestamps into one clock.
#[derive(Debug, Default)]
struct Clock {
    session: u64,
    rtp0: i64,
    rate: u32,
    ticks0: u64,
    last: Option<(u64, Instant)>,
}

impl Clock {
    /// The frame's ticks, and whether it starts a new session (a gap).
    fn place(&mut self, f: &TapFrame) -> (u64, bool) {
        let new_session = f.session != self.session || self.rate != f.clock_rate;
        let resumed = new_session && self.last.is_some();
        if new_session {
            self.session = f.session;
            self.rtp0 = f.rtp;
            self.rate = f.clock_rate.max(1);
            self.ticks0 = match self.last {
                Some((ticks, at)) => {
                    let gap = f.received.saturating_duration_since(at);
                    ticks + (gap.as_secs_f64() * TICKS as f64) as u64
                }
                None => 0,
            };
        }
        let delta = f.rtp.saturating_sub(self.rtp0).max(0) as u128;
        let ticks = self.ticks0 + (delta * u128::from(TICKS) / u128::from(self.rate)) as u64;
        let ticks = match self.last {
            Some((last, _)) => ticks.max(last + 1),
            None => ticks,
        };
        self.last = Some((ticks, f.received));
        (ticks, resumed)
    }
}

/// The last seconds of a camera, starting at a keyframe.
#[derive(Debug, Default)]
struct Ring {
    frames: VecDeque<Frame>,
    bytes: usize,
}

impl Ring {
    fn push(&mut self, f: Frame, keep: Duration) {
        if self.frames.is_empty() && !f.keyframe {
            return;
        }
        self.bytes += f.data.len();
        let newest = f.received;
        self.frames.push_back(f);
        // Drop whole groups of pictures from the front while the next one
        // still covers the pre-roll, or while the ring is over its size.
        while let Some(next_key) = self.frames.iter().skip(1).position(|f| f.keyframe) {
            let next_key = next_key + 1;
            let covered = newest.saturating_duration_since(self.frames[next_key].received) >= keep;
            if !(covered || self.bytes > RING_MAX_BYTES) {
                break;
            }
            for f in self.frames.drain(..next_key) {
                self.bytes -= f.data.len();
            }
        }
        if self.bytes > RING_MAX_BYTES {
            // One group of pictures larger than the cap: nothing decodable
            // can be kept.
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }
}

/// A gap in a clip: no video between `from` and `to` (the keyframe the
/// clip resumed at; `None` if it never did).
#[derive(Debug, Clone)]
struct Gap {
    from: Timestamp,
    to: Option<Timestamp>,
    why: &'static str,
}

/// One delivery's recording of this camera.
struct Clip {
    door: String,
    delivery: Timestamp,
    /// Set when the delivery ended: the post-roll ends here.
    stop_at: Option<Instant>,
    compromised: bool,
    writer: Option<Mp4Writer>,
    /// The current part's track (a new part starts if it changes).
    track: Option<Arc<TrackParams>>,
    /// Waiting for a keyframe before writing (start, after a gap).
    need_key: bool,
    /// The wall time of the last frame written, and when it arrived.
    last: Option<(Timestamp, Instant)>,
    first_wall: Option<Timestamp>,
    parts: Vec<ClipFile>,
    /// The part number to try next, and the first part's file name (the
    /// sidecar is named after it).
    next_part: usize,
    first_name: Option<String>,
    gaps: Vec<Gap>,
    timeline: Vec<Value>,
    events: Vec<Value>,
    failed: Option<String>,
}

struct Recorder {
    camera: String,
    settings: Settings,
    wanted: Arc<AtomicBool>,
    reports: tokio_mpsc::UnboundedSender<ClipReport>,
    watching: BTreeSet<String>,
    track: Option<Arc<TrackParams>>,
    clock: Clock,
    ring: Ring,
    clips: Vec<Clip>,
    /// The camera's liveness as last heard, for a new clip's timeline.
    liveness: Option<Value>,
    /// Frames the tap dropped, not yet marked in the clips.
    lost: u64,
}

impl Recorder {
    fn new(
        camera: String,
        settings: Settings,
        wanted: Arc<AtomicBool>,
        reports: tokio_mpsc::UnboundedSender<ClipReport>,
    ) -> Recorder {
        Recorder {
            camera,
            settings,
            wanted,
            reports,
            watching: BTreeSet::new(),
            track: None,
            clock: Clock::default(),
            ring: Ring::default(),
            clips: Vec::new(),
            liveness: None,
            lost: 0,
        }
    }

    fn run(mut self, frames: std_mpsc::Receiver<TapItem>, commands: std_mpsc::Receiver<Command>) {
        loop {
            loop {
                match commands.try_recv() {
                    Ok(Command::Stop) | Err(std_mpsc::TryRecvError::Disconnected) => {
                        self.finish_all(true);
                        return;
                    }
                    Ok(c) => self.command(c),
                    Err(std_mpsc::TryRecvError::Empty) => break,
                }
            }
            match frames.recv_timeout(IDLE_WAKE) {
                Ok(TapItem::Params { session, track }) => self.params(session, track),
                Ok(TapItem::Frame(f)) => self.frame(f),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // The camera task is gone: no more frames, but the
                    // clips still close on their own time.
                    std::thread::sleep(IDLE_WAKE);
                }
            }
            self.on_time(Instant::now());
        }
    }

    fn update_wanted(&self) {
        let wanted = !self.watching.is_empty() || !self.clips.is_empty();
        self.wanted.store(wanted, Ordering::Relaxed);
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Evidence(Evidence::Watch { door, .. }) => {
                self.watching.insert(door);
            }
            Command::Evidence(Evidence::Unwatch { door }) => {
                self.watching.remove(&door);
                if self.watching.is_empty() && self.clips.is_empty() {
                    self.ring.clear();
                }
            }
            Command::Evidence(Evidence::Start { door, delivery, .. }) => {
                self.start_clip(door, delivery);
            }
            Command::Evidence(Evidence::Stop {
                door,
                delivery,
                compromised,
            }) => {
                let at = Instant::now() + self.settings.post_roll;
                for c in &mut self.clips {
                    if c.door == door && c.delivery == delivery && c.stop_at.is_none() {
                        c.stop_at = Some(at);
                        c.compromised = compromised;
                        c.events.push(json!({
                            "at": Timestamp::now().to_string(),
                            "event": "evidence_stop",
                            "reason": format!("delivery ended; recording {} s more", self.settings.post_roll.as_secs()),
                        }));
                    }
                }
            }
            Command::Camera(s) => {
                let entry = json!({
                    "at": s.since.to_string(),
                    "state": s.state.as_str(),
                    "reason": s.reason,
                });
                for c in &mut self.clips {
                    if c.stop_at.is_none_or(|t| Instant::now() < t) {
                        c.timeline.push(entry.clone());
                    }
                }
                self.liveness = Some(entry);
            }
            Command::Delivery(e) => {
                let entry = json!({
                    "at": Timestamp::now().to_string(),
                    "event": e.kind.as_str(),
                    "reason": redact::text(&e.reason),
                    "camera": e.camera,
                });
                for c in &mut self.clips {
                    if c.door == e.door {
                        c.events.push(entry.clone());
                    }
                }
            }
            Command::Stop => {}
        }
        self.update_wanted();
    }

    fn start_clip(&mut self, door: String, delivery: Timestamp) {
        if self
            .clips
            .iter()
            .any(|c| c.door == door && c.delivery == delivery)
        {
            return;
        }
        let mut clip = Clip {
            door,
            delivery,
            stop_at: None,
            compromised: false,
            writer: None,
            track: None,
            need_key: true,
            last: None,
            first_wall: None,
            parts: Vec::new(),
            next_part: 1,
            first_name: None,
            gaps: Vec::new(),
            timeline: self.liveness.iter().cloned().collect(),
            events: vec![json!({
                "at": Timestamp::now().to_string(),
                "event": "evidence_start",
                "reason": format!("delivery began; clip starts up to {} s before", self.settings.pre_roll.as_secs()),
            })],
            failed: None,
        };
        // The pre-roll: what the ring holds, from its first keyframe.
        let pre: Vec<Frame> = self.ring.frames.iter().cloned().collect();
        for f in pre {
            self.write(&mut clip, &f);
        }
        self.clips.push(clip);
        self.update_wanted();
    }

    fn params(&mut self, _session: u64, track: TrackParams) {
        if self.track.as_deref() != Some(&track) {
            // Frames of another format cannot follow the ring's.
            self.ring.clear();
            self.track = Some(Arc::new(track));
        }
    }

    fn frame(&mut self, f: TapFrame) {
        self.lost += f.dropped_before;
        let (ticks, resumed) = self.clock.place(&f);
        let frame = Frame {
            ticks,
            received: f.received,
            wall: f.wall,
            keyframe: f.keyframe,
            data: f.data,
        };
        let lost = std::mem::take(&mut self.lost);
        let why = if lost > 0 {
            Some("frames dropped: the recorder fell behind")
        } else if resumed {
            Some("camera reconnected")
        } else {
            None
        };
        if why.is_some() {
            self.ring.clear();
        }
        if !self.watching.is_empty() || !self.clips.is_empty() {
            self.ring.push(frame.clone(), self.settings.pre_roll);
        }
        let mut clips = std::mem::take(&mut self.clips);
        for c in &mut clips {
            if c.stop_at.is_some_and(|t| frame.received >= t) {
                continue;
            }
            if let Some(why) = why
                && let Some((last, _)) = c.last
            {
                c.gaps.push(Gap {
                    from: last,
                    to: None,
                    why,
                });
                c.need_key = true;
            }
            self.write(c, &frame);
        }
        self.clips = clips;
    }

    /// Adds a frame to a clip: opens a part at a keyframe, a new part if
    /// the stream's format changed.
    fn write(&self, c: &mut Clip, f: &Frame) {
        if c.failed.is_some() {
            return;
        }
        let Some(track) = self.track.clone() else {
            return;
        };
        if c.track.as_ref().is_some_and(|t| *t != track) {
            self.close_part(c);
            c.need_key = true;
        }
        if c.need_key && !f.keyframe {
            return;
        }
        c.need_key = false;
        if let Some(gap) = c.gaps.last_mut().filter(|g| g.to.is_none()) {
            gap.to = Some(f.wall);
        }
        if c.writer.is_none() {
            let name = self.free_name(c, "mp4");
            match Mp4Writer::create(&self.settings.dir.join(&name), &track) {
                Ok(w) => {
                    c.writer = Some(w);
                    c.track = Some(track);
                }
                Err(e) => return self.fail(c, e.to_string()),
            }
        }
        if let Some(w) = &mut c.writer {
            let sample = Sample {
                time: f.ticks,
                keyframe: f.keyframe,
                data: f.data.clone(),
            };
            if let Err(e) = w.push(sample) {
                c.writer = None;
                return self.fail(c, e.to_string());
            }
        }
        c.first_wall.get_or_insert(f.wall);
        c.last = Some((f.wall, f.received));
    }

    /// The next part's file name (`mp4`), or the sidecar's of a clip with
    /// no video (`json`): never one already on disk, so that a delivery
    /// recorded again after a restart (same door, start and camera) cannot
    /// overwrite what was kept before the restart.
    fn free_name(&self, c: &mut Clip, ext: &str) -> String {
        loop {
            let part = c.next_part;
            c.next_part += 1;
            let clip = clip_name(&c.door, c.delivery, &self.camera, part);
            let stem = clip.trim_end_matches(".mp4");
            let taken = ["mp4", "json"]
                .iter()
                .any(|x| self.settings.dir.join(format!("{stem}.{x}")).exists());
            if !taken {
                let name = format!("{stem}.{ext}");
                if ext == "mp4" {
                    c.first_name.get_or_insert_with(|| name.clone());
                }
                return name;
            }
        }
    }

    fn fail(&self, c: &mut Clip, reason: String) {
        let reason = redact::text(&reason);
        tracing::error!(camera = %self.camera, door = %c.door, "no evidence is being kept: {reason}");
        let _ = self.reports.send(ClipReport::Failed {
            door: c.door.clone(),
            delivery: c.delivery,
            camera: self.camera.clone(),
            reason: reason.clone(),
        });
        c.failed = Some(reason);
        c.writer = None;
    }

    fn close_part(&self, c: &mut Clip) {
        let Some(w) = c.writer.take() else { return };
        let path = w.path().to_path_buf();
        // The marks are placed on the first part's clock; a later part
        // (the stream changed format) has its spans in the sidecar only.
        let marks = if c.parts.is_empty() {
            chapter_marks(c)
        } else {
            Vec::new()
        };
        match w.finish_marked(&marks) {
            Ok(ticks) => match file_facts(&path) {
                Ok((sha256, bytes)) => c.parts.push(ClipFile {
                    name: file_name(&path),
                    sha256,
                    bytes,
                    duration_s: ticks as f64 / TICKS as f64,
                }),
                Err(e) => self.fail(c, format!("cannot read back {}: {e}", path.display())),
            },
            Err(e) => self.fail(c, e.to_string()),
        }
    }

    /// Closes clips whose post-roll is over; puts what a quiet camera sent
    /// on disk.
    fn on_time(&mut self, now: Instant) {
        let (done, going): (Vec<Clip>, Vec<Clip>) = std::mem::take(&mut self.clips)
            .into_iter()
            .partition(|c| c.stop_at.is_some_and(|t| now >= t));
        let mut going = going;
        for c in &mut going {
            let quiet = c
                .last
                .is_some_and(|(_, at)| now.saturating_duration_since(at) > Duration::from_secs(1));
            if quiet
                && let Some(w) = &mut c.writer
                && let Err(e) = w.flush_known()
            {
                c.writer = None;
                let reason = e.to_string();
                self.fail(c, reason);
            }
        }
        self.clips = going;
        for c in done {
            self.finish(c);
        }
        self.update_wanted();
    }

    fn finish_all(&mut self, _stopping: bool) {
        for c in std::mem::take(&mut self.clips) {
            self.finish(c);
        }
        self.update_wanted();
    }

    /// The clip's last part, its sidecar, and the report.
    fn finish(&self, mut c: Clip) {
        self.close_part(&mut c);
        let sidecar_name = match &c.first_name {
            Some(clip) => format!("{}.json", clip.trim_end_matches(".mp4")),
            None => self.free_name(&mut c, "json"),
        };
        let path = self.settings.dir.join(&sidecar_name);
        let body = self.sidecar(&c);
        let written = serde_json::to_vec_pretty(&body)
            .map_err(|e| e.to_string())
            .and_then(|bytes| write_synced(&path, &bytes).map_err(|e| e.to_string()))
            .and_then(|()| file_facts(&path).map_err(|e| e.to_string()));
        match written {
            Ok((sha256, bytes)) => {
                let _ = self.reports.send(ClipReport::Done {
                    door: c.door.clone(),
                    delivery: c.delivery,
                    camera: self.camera.clone(),
                    clips: c.parts.clone(),
                    sidecar: ClipFile {
                        name: sidecar_name,
                        sha256,
                        bytes,
                        duration_s: 0.0,
                    },
                    compromised: c.compromised,
                });
            }
            Err(e) => {
                if c.failed.is_none() {
                    self.fail(&mut c, format!("cannot write {}: {e}", path.display()));
                }
            }
        }
    }

    /// The clip's sidecar: what the video cannot say by itself.
    fn sidecar(&self, c: &Clip) -> Value {
        json!({
            "camera": self.camera,
            "door": c.door,
            "delivery": c.delivery.to_string(),
            "clips": c.parts.iter().map(|p| json!({
                "file": p.name,
                "duration_s": p.duration_s,
                "bytes": p.bytes,
                "sha256": p.sha256,
            })).collect::<Vec<_>>(),
            "video_from": c.first_wall.map(|t| t.to_string()),
            "video_to": c.last.map(|(t, _)| t.to_string()),
            "compromised": c.compromised,
            "not_live": not_live_spans(&c.timeline, c.last.map(|(t, _)| t)),
            "liveness": c.timeline,
            "gaps": c.gaps.iter().map(|g| json!({
                "from": g.from.to_string(),
                "to": g.to.map(|t| t.to_string()),
                "why": g.why,
            })).collect::<Vec<_>>(),
            "events": c.events,
            "failed": c.failed,
        })
    }
}

/// Clips a stopped bridge left without a sidecar (killed, power cut): each
/// gets one saying it was cut short, and a report, so that it enters the
/// audit chain and retention like any other. It counts as compromised:
/// nobody watched the door while doorwarden was down, so it is kept until
/// the owner acknowledges it. Files whose names are not a clip's are left
/// alone.
pub fn adopt_cut_clips(dir: &Path) -> Vec<ClipReport> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut named: BTreeSet<String> = BTreeSet::new();
    for g in retention::scan(dir).unwrap_or_default() {
        named.extend(g.clips);
    }
    let mut out = Vec::new();
    for name in names.iter().filter(|n| n.ends_with(".mp4")) {
        if named.contains(name) {
            continue;
        }
        let stem = name.trim_end_matches(".mp4");
        let fields: Vec<&str> = stem.split('.').collect();
        let (Some(door), Some(when), Some(camera)) = (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        let Ok(delivery) = jiff::fmt::strtime::parse("%Y%m%dT%H%M%SZ", when)
            .and_then(|t| t.to_datetime())
            .and_then(|d| jiff::tz::TimeZone::UTC.to_timestamp(d))
        else {
            continue;
        };
        let sidecar = format!("{stem}.json");
        if names.contains(&sidecar) {
            continue;
        }
        let path = dir.join(name);
        let Ok((sha256, bytes)) = file_facts(&path) else {
            continue;
        };
        let duration_s = mp4::written_seconds(&path).unwrap_or(0.0);
        let clip = ClipFile {
            name: name.clone(),
            sha256,
            bytes,
            duration_s,
        };
        let body = json!({
            "camera": camera,
            "door": door,
            "delivery": delivery.to_string(),
            "clips": [{
                "file": clip.name,
                "duration_s": clip.duration_s,
                "bytes": clip.bytes,
                "sha256": clip.sha256,
            }],
            "compromised": true,
            "cut_short": "doorwarden stopped while recording (killed or power lost); \
                          the clip ends at its last whole fragment, and nothing \
                          about the delivery was recorded here",
            "found_at": Timestamp::now().to_string(),
        });
        let side_path = dir.join(&sidecar);
        let written = serde_json::to_vec_pretty(&body)
            .map_err(std::io::Error::other)
            .and_then(|b| write_synced(&side_path, &b))
            .and_then(|()| file_facts(&side_path));
        match written {
            Ok((sha256, bytes)) => {
                tracing::warn!(clip = %name, "a delivery clip was cut short when doorwarden stopped; keeping it");
                out.push(ClipReport::Done {
                    door: door.to_string(),
                    delivery,
                    camera: camera.to_string(),
                    clips: vec![clip],
                    sidecar: ClipFile {
                        name: sidecar,
                        sha256,
                        bytes,
                        duration_s: 0.0,
                    },
                    compromised: true,
                });
            }
            Err(e) => {
                tracing::warn!(clip = %name, "cannot write the sidecar of a clip cut short: {e}")
            }
        }
    }
    out
}

/// Where a player should show what the sidecar says: each span the camera
/// was not live (with its reason) and each gap in the video, where it
/// starts and where it ends, in seconds from the clip's first frame.
fn chapter_marks(c: &Clip) -> Vec<mp4::Mark> {
    let Some(start) = c.first_wall else {
        return Vec::new();
    };
    let at = |v: &Value| -> Option<f64> {
        let t: Timestamp = v.as_str()?.parse().ok()?;
        Some(t.duration_since(start).as_secs_f64().max(0.0))
    };
    let mut marks = Vec::new();
    for span in not_live_spans(&c.timeline, c.last.map(|(t, _)| t)) {
        let state = span["state"].as_str().unwrap_or("not live");
        let title = match span["reason"].as_str() {
            Some(reason) => format!("camera {state}: {reason}"),
            None => format!("camera {state}"),
        };
        if let Some(from) = at(&span["from"]) {
            marks.push(mp4::Mark { at_s: from, title });
        }
        if let Some(to) = at(&span["to"]) {
            marks.push(mp4::Mark {
                at_s: to,
                title: "camera live again".into(),
            });
        }
    }
    for g in &c.gaps {
        marks.push(mp4::Mark {
            at_s: g.from.duration_since(start).as_secs_f64().max(0.0),
            title: format!("gap in the video: {}", g.why),
        });
        if let Some(to) = g.to {
            marks.push(mp4::Mark {
                at_s: to.duration_since(start).as_secs_f64().max(0.0),
                title: "video resumes".into(),
            });
        }
    }
    marks.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    if marks.first().is_some_and(|m| m.at_s > 0.0) {
        marks.insert(
            0,
            mp4::Mark {
                at_s: 0.0,
                title: "delivery video".into(),
            },
        );
    }
    marks
}

/// Each span the camera was not live, with its reason, from a liveness
/// timeline (entries with `at`, `state`, `reason`). A span still open at
/// the end runs to `end`.
fn not_live_spans(timeline: &[Value], end: Option<Timestamp>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut open: Option<&Value> = None;
    for e in timeline {
        let live = e["state"] == "live";
        match (open, live) {
            (Some(start), true) => {
                out.push(json!({
                    "from": start["at"],
                    "to": e["at"],
                    "state": start["state"],
                    "reason": start["reason"],
                }));
                open = None;
            }
            (None, false) => open = Some(e),
            _ => {}
        }
    }
    if let Some(start) = open {
        out.push(json!({
            "from": start["at"],
            "to": end.map(|t| t.to_string()),
            "state": start["state"],
            "reason": start["reason"],
        }));
    }
    out
}

/// `<door>.<delivery UTC>.<camera>[.<part>].mp4`. The names keep letters,
/// digits, `-` and `_` (anything else becomes `-`), so the dots part them
/// unambiguously and [`adopt_cut_clips`] can read them back.
pub fn clip_name(door: &str, delivery: Timestamp, camera: &str, part: usize) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let when = delivery.strftime("%Y%m%dT%H%M%SZ").to_string();
    let part = if part > 1 {
        format!(".{part}")
    } else {
        String::new()
    };
    format!("{}.{when}.{}{part}.mp4", clean(door), clean(camera))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// A file's SHA-256 (hex) and size.
pub fn file_facts(path: &Path) -> std::io::Result<(String, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let digest = hasher.finalize();
    Ok((digest.iter().map(|b| format!("{b:02x}")).collect(), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track() -> TrackParams {
        TrackParams {
            codec: VideoCodec::H264,
            width: 640,
            height: 360,
            config: vec![1, 0x64, 0, 0x1f, 0xff, 0xe0, 0],
            timescale: TICKS as u32,
        }
    }

    fn frame(i: u64, keyframe: bool, at: Instant) -> TapFrame {
        TapFrame {
            session: 0,
            received: at + Duration::from_millis(i * 66),
            wall: Timestamp::now(),
            rtp: (i * 6000) as i64,
            clock_rate: 90_000,
            keyframe,
            data: Arc::from(vec![0u8, 0, 0, 1, i as u8].as_slice()),
            dropped_before: 0,
        }
    }

    #[test]
    fn a_full_queue_drops_frames_without_waiting_and_the_next_frame_says_how_many() {
        let (tx, rx) = std_mpsc::sync_channel(2);
        let tap = FrameTap {
            wanted: Arc::new(AtomicBool::new(true)),
            dropped: Arc::new(AtomicU64::new(0)),
            sessions: Arc::new(AtomicU64::new(0)),
            tx,
        };
        let mut session = tap.session();
        let t0 = Instant::now();
        // Parameters and one frame fit; three more are dropped at once.
        for i in 0..4 {
            session.offer_frame(&track(), frame(i, i == 0, t0));
        }
        assert!(matches!(rx.try_recv(), Ok(TapItem::Params { .. })));
        assert!(matches!(rx.try_recv(), Ok(TapItem::Frame(f)) if f.dropped_before == 0));
        session.offer_frame(&track(), frame(4, false, t0));
        match rx.try_recv() {
            Ok(TapItem::Frame(f)) => assert_eq!(f.dropped_before, 3),
            _ => panic!("the frame after the drops"),
        }
        // Not wanted: nothing is copied or sent.
        tap.wanted.store(false, Ordering::Relaxed);
        session.offer_frame(&track(), frame(5, false, t0));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn dropped_frames_leave_a_gap_in_the_sidecar_and_the_clip_resumes_at_a_keyframe() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (reports_tx, mut reports) = tokio_mpsc::unbounded_channel();
        let mut rec = Recorder::new(
            "porch".into(),
            Settings {
                dir: dir.path().to_path_buf(),
                pre_roll: Duration::from_secs(1),
                post_roll: Duration::ZERO,
            },
            Arc::new(AtomicBool::new(false)),
            reports_tx,
        );
        let delivery = Timestamp::now();
        rec.command(Command::Evidence(Evidence::Start {
            door: "front".into(),
            delivery,
            cameras: vec!["porch".into()],
        }));
        assert!(rec.wanted.load(Ordering::Relaxed), "a clip wants frames");
        rec.params(1, track());
        let t0 = Instant::now();
        for i in 0..30u64 {
            let mut f = frame(i, i % 15 == 0, t0);
            if i == 20 {
                f.dropped_before = 2;
            }
            rec.frame(f);
        }
        rec.command(Command::Evidence(Evidence::Stop {
            door: "front".into(),
            delivery,
            compromised: false,
        }));
        rec.on_time(Instant::now() + Duration::from_secs(1));
        assert!(
            !rec.wanted.load(Ordering::Relaxed),
            "nothing left to record"
        );
        let Ok(ClipReport::Done { clips, sidecar, .. }) = reports.try_recv() else {
            panic!("a finished clip");
        };
        let side: Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(&sidecar.name)).expect("sidecar"),
        )
        .expect("json");
        let gaps = side["gaps"].as_array().expect("gaps");
        assert_eq!(gaps.len(), 1, "{side:#}");
        assert_eq!(gaps[0]["why"], "frames dropped: the recorder fell behind");
        // Frames 20-29 come after the drop and before any keyframe: the
        // clip holds frames 0-19 (20 * 6000 ticks) and the gap never ends.
        assert!(gaps[0]["to"].is_null(), "{side:#}");
        assert_eq!(clips.len(), 1);
        assert!(
            (clips[0].duration_s - 20.0 * 6000.0 / 90_000.0).abs() < 1e-9,
            "{clips:?}"
        );
    }
}
