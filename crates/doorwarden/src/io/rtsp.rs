//! RTSP camera tasks: one tokio task per camera, turning its video into
//! frame summaries for the core.
//!
//! A task connects with `retina` (DESCRIBE, SETUP of the first H.264/H.265
//! video track, PLAY), then reduces every complete video frame to a
//! [`FrameSummary`] (arrival time, extended RTP timestamp, size, keyframe
//! flag, a fast hash of the bytes) and sends it as an
//! [`EventKind::CameraFrame`]. It never decodes video. Around that it sends
//! [`EventKind::CameraUp`] once PLAY succeeded and [`EventKind::CameraDown`]
//! with a short reason for the owner whenever the session fails, then
//! reconnects with a capped backoff.
//!
//! A camera with a picture substream (`picture_url`) gets a second session
//! of the same kind beside the first: it reports as
//! [`EventKind::Substream`] and carries the picture sampler, while the main
//! session sends frame summaries only (its keyframes still feed the replay
//! check, by their hash). Each session reconnects on its own.
//!
//! The task does not judge liveness; `crate::core::liveness` does, from the
//! events. The task's own timers exist only because retina has none where a
//! dead camera can hang it: no timeout on DESCRIBE/SETUP/PLAY, and none on a
//! session whose socket goes silent (or keeps delivering RTCP and keepalive
//! answers but no video). Only video frames reset the silence timer.
//!
//! # Using it
//!
//! ```no_run
//! # async fn demo(cfg: doorwarden::config::Camera) {
//! use doorwarden::io::rtsp::CameraTask;
//! let (events, mut rx) = tokio::sync::mpsc::channel(1024);
//! let (stop, mut stopped) = tokio::sync::watch::channel(false);
//! let task = CameraTask::new("porch".into(), &cfg).spawn(events, async move {
//!     let _ = stopped.wait_for(|s| *s).await;
//! });
//! // ... feed `rx` into the core ...
//! let _ = stop.send(true);
//! let _ = task.await; // returns after the camera's TEARDOWN was attempted
//! # }
//! ```
//!
//! # Secrets
//!
//! retina refuses URLs that carry credentials, so `user:password@` is taken
//! out of the configured URL (see [`crate::redact::split_credentials`]) and
//! handed to retina separately. Every reason sent to the core and every log
//! line passes through [`crate::redact::text`]; retina's `Credentials` type
//! prints its password in `Debug`, so it is never logged here.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use retina::client::{
    Credentials, Demuxed, InitialSequenceNumberPolicy, PlayOptions, Session, SessionGroup,
    SessionOptions, SetupOptions, TeardownPolicy,
};
use retina::codec::{CodecItem, ParametersRef, VideoFrame, VideoParameters};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{self, Secret};
use crate::core::picture::PicturePolicy;
use crate::core::{Event, EventKind, FrameSummary, Stamp, SubstreamEvent};
use crate::io::picture::{CloseLook, FfmpegProgram, PictureCodec, Sampler};
use crate::io::record::FrameTap;
use crate::io::snapshot::{SnapshotRequest, SnapshotTap};
use crate::redact;

/// How long the task waits for things a dead or hostile camera may never
/// deliver. Derived from the camera's config by [`CameraTiming::for_camera`];
/// tests shorten the backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraTiming {
    /// Longest wait for each of DESCRIBE, SETUP and PLAY (connect included
    /// in DESCRIBE).
    pub request_timeout: Duration,
    /// Longest wait for the first video frame after PLAY. Cameras may wait
    /// for the next keyframe, and "smart" codecs stretch the GOP to ~10 s.
    pub first_frame_timeout: Duration,
    /// Longest gap between two video frames before the session is given up
    /// and reconnected. Longer than `stall_after`: the core reports the
    /// stall first; this only frees a hung session.
    pub silence_timeout: Duration,
    /// First reconnect delay; doubles after each failure up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A session that delivered video this long resets the backoff.
    pub good_session: Duration,
    /// Longest wait for the previous session's TEARDOWN before reconnecting
    /// or exiting.
    pub teardown_timeout: Duration,
}

impl CameraTiming {
    pub fn for_camera(cfg: &config::Camera) -> CameraTiming {
        let silence = (cfg.stall_after * 2).max(Duration::from_secs(4));
        CameraTiming {
            request_timeout: Duration::from_secs(10),
            first_frame_timeout: silence.max(Duration::from_secs(10)),
            silence_timeout: silence,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            good_session: Duration::from_secs(10),
            teardown_timeout: Duration::from_secs(5),
        }
    }
}

/// Where the camera's credentials come from, resolved at every connect so a
/// rotated password file is picked up without a restart.
#[derive(Clone)]
enum CredentialSource {
    None,
    Given { username: String, password: Secret },
    File { username: String, path: PathBuf },
}

/// Which of the camera's streams a session watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The camera's `url`: the stream rules, and the pictures unless a
    /// substream carries them.
    Main,
    /// The camera's `picture_url`: its stream rules and its pictures.
    Substream,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Main => "main",
            Role::Substream => "substream",
        }
    }
}

/// One camera's RTSP watcher. Build it with [`CameraTask::new`], optionally
/// adjust [`CameraTask::timing`], then [`CameraTask::spawn`] it.
#[derive(Clone)]
pub struct CameraTask {
    name: String,
    /// The URL without userinfo, safe to log.
    url: String,
    credentials: CredentialSource,
    transport: config::Transport,
    timing: CameraTiming,
    /// Where frames go for delivery evidence, if clips are recorded.
    tap: Option<FrameTap>,
    /// Whether frames are decoded for the picture checks.
    picture: PicturePolicy,
    close_look: CloseLook,
    /// Where decoded pictures go as snapshot candidates, if anywhere.
    snapshots: Option<(SnapshotTap, SnapshotRequest)>,
    role: Role,
    /// The picture substream (`picture_url`), without userinfo, and its
    /// credentials: watched by a second session beside this one.
    substream: Option<(String, CredentialSource)>,
    /// Where ffmpeg is, for pictures OpenH264 cannot decode.
    ffmpeg: FfmpegProgram,
}

impl std::fmt::Debug for CameraTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraTask")
            .field("name", &self.name)
            .field("url", &redact::text(&self.url))
            .field("transport", &self.transport)
            .field("role", &self.role)
            .field(
                "substream",
                &self.substream.as_ref().map(|(u, _)| redact::text(u)),
            )
            .finish_non_exhaustive()
    }
}

/// Spawns the watcher of camera `name` on the current tokio runtime with the
/// timing derived from its config. Same as
/// `CameraTask::new(name, cfg).spawn(events, shutdown)`.
pub fn spawn_camera(
    name: String,
    cfg: &config::Camera,
    events: mpsc::Sender<Event>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    CameraTask::new(name, cfg).spawn(events, shutdown)
}

impl CameraTask {
    /// Credentials in the URL's userinfo win over `username` / `password` /
    /// `password_file` in the config.
    /// The same holds for `picture_url` and its own userinfo.
    pub fn new(name: String, cfg: &config::Camera) -> CameraTask {
        let (url, credentials) = credentials_for(&cfg.url, cfg);
        let substream = (cfg.picture_policy() != PicturePolicy::Off)
            .then_some(cfg.picture_url.as_deref())
            .flatten()
            .map(|sub| credentials_for(sub, cfg));
        CameraTask {
            name,
            url,
            credentials,
            transport: cfg.transport,
            timing: CameraTiming::for_camera(cfg),
            tap: None,
            picture: cfg.picture_policy(),
            close_look: CloseLook::default(),
            snapshots: None,
            role: Role::Main,
            substream,
            ffmpeg: FfmpegProgram::from_env(),
        }
    }

    /// Also makes snapshot candidates from decoded pictures (only where
    /// pictures are decoded: `picture_check` not `off`, H.264), and one at
    /// once when `request` asks.
    pub fn snapshots(mut self, tap: SnapshotTap, request: SnapshotRequest) -> CameraTask {
        self.snapshots = Some((tap, request));
        self
    }

    /// Where ffmpeg is (default: [`FfmpegProgram::from_env`]).
    pub fn ffmpeg(mut self, program: FfmpegProgram) -> CameraTask {
        self.ffmpeg = program;
        self
    }

    /// Shares the flag by which the runtime asks for a close look at the
    /// picture (a window open or a delivery running).
    pub fn close_look(mut self, flag: CloseLook) -> CameraTask {
        self.close_look = flag;
        self
    }

    /// Replaces the timing derived from the config.
    pub fn timing(mut self, timing: CameraTiming) -> CameraTask {
        self.timing = timing;
        self
    }

    /// Also hands every frame (while wanted) to a delivery-evidence
    /// recorder.
    pub fn recorder(mut self, tap: FrameTap) -> CameraTask {
        self.tap = Some(tap);
        self
    }

    /// Starts watching. The task runs until `shutdown` completes or `events`
    /// is closed; then it drops the session and waits (at most
    /// `teardown_timeout`) for its TEARDOWN, so the camera's session slot is
    /// free when the handle resolves.
    pub fn spawn(
        self,
        events: mpsc::Sender<Event>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        let Some((url, credentials)) = self.substream.clone() else {
            return tokio::spawn(self.run(events, shutdown));
        };
        // The substream is a second session of its own, with its own
        // reconnects: a fault of either stream never stops the other.
        let sub = CameraTask {
            url,
            credentials,
            tap: None,
            role: Role::Substream,
            substream: None,
            ..self.clone()
        };
        let main = CameraTask {
            snapshots: None,
            ..self
        };
        let shutdown = futures::FutureExt::shared(shutdown);
        let sub_events = events.clone();
        let sub_shutdown = shutdown.clone();
        tokio::spawn(async move {
            futures::join!(
                main.run(events, shutdown),
                sub.run(sub_events, sub_shutdown)
            );
        })
    }

    /// Whether this session decodes the camera's pictures: the substream's
    /// if there is one, else the main stream's.
    fn decodes_pictures(&self) -> bool {
        self.picture != PicturePolicy::Off
            && (self.role == Role::Substream || self.substream.is_none())
    }

    fn up_event(&self) -> EventKind {
        match self.role {
            Role::Main => EventKind::CameraUp {
                camera: self.name.clone(),
            },
            Role::Substream => EventKind::Substream {
                camera: self.name.clone(),
                event: SubstreamEvent::Up,
            },
        }
    }

    fn frame_event(&self, frame: FrameSummary) -> EventKind {
        match self.role {
            Role::Main => EventKind::CameraFrame {
                camera: self.name.clone(),
                frame,
            },
            Role::Substream => EventKind::Substream {
                camera: self.name.clone(),
                event: SubstreamEvent::Frame(frame),
            },
        }
    }

    fn down_event(&self, reason: String) -> EventKind {
        match self.role {
            Role::Main => EventKind::CameraDown {
                camera: self.name.clone(),
                reason,
            },
            Role::Substream => EventKind::Substream {
                camera: self.name.clone(),
                event: SubstreamEvent::Down { reason },
            },
        }
    }

    async fn run(self, events: mpsc::Sender<Event>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let group_name = match self.role {
            Role::Main => self.name.clone(),
            Role::Substream => format!("{}-substream", self.name),
        };
        let group = Arc::new(SessionGroup::default().named(group_name));
        let mut backoff = Backoff::new(self.timing.backoff_min, self.timing.backoff_max);
        let mut last_reason: Option<String> = None;
        loop {
            let end = tokio::select! {
                biased;
                () = &mut shutdown => break,
                end = self.session(&events, &group) => end,
            };
            let (reason, good) = match end {
                SessionEnd::EventsClosed => break,
                SessionEnd::Failed {
                    reason,
                    detail,
                    good,
                } => {
                    let reason = redact::text(&reason);
                    let detail = redact::text(&detail);
                    // A camera failing the same way on every retry is
                    // logged once; a new failure after good video, again.
                    if good || last_reason.as_deref() != Some(reason.as_str()) {
                        tracing::warn!(camera = %self.name, stream = self.role.as_str(), url = %redact::text(&self.url), %reason, "camera session ended: {detail}");
                    } else {
                        tracing::debug!(camera = %self.name, stream = self.role.as_str(), %reason, "camera session ended again: {detail}");
                    }
                    (reason, good)
                }
            };
            let down = self.down_event(reason.clone());
            if events
                .send(Event {
                    at: stamp_now(),
                    kind: down,
                })
                .await
                .is_err()
            {
                break;
            }
            last_reason = Some(reason);
            if good {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            let wait = async {
                self.await_teardown(&group).await;
                tokio::time::sleep(delay).await;
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = wait => {}
            }
        }
        // The session (if any) was dropped with the select above; retina
        // sends its TEARDOWN in the background.
        self.await_teardown(&group).await;
        tracing::debug!(camera = %self.name, "camera task stopped");
    }

    async fn await_teardown(&self, group: &SessionGroup) {
        match tokio::time::timeout(self.timing.teardown_timeout, group.await_teardown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(camera = %self.name, "TEARDOWN failed: {}", redact::text(&e.to_string()))
            }
            Err(_) => tracing::debug!(camera = %self.name, "TEARDOWN still pending, going on"),
        }
    }

    /// One connection, from DESCRIBE until it fails. Never returns success:
    /// a camera session only ends by failing (or by being dropped).
    async fn session(&self, events: &mpsc::Sender<Event>, group: &Arc<SessionGroup>) -> SessionEnd {
        let creds = match self.resolve_credentials().await {
            Ok(c) => c,
            Err(reason) => return SessionEnd::failed(reason.clone(), reason),
        };
        let url = match url::Url::parse(&self.url) {
            Ok(u) => u,
            Err(e) => return SessionEnd::failed("invalid camera URL".into(), e.to_string()),
        };
        let options = SessionOptions::default()
            .creds(creds)
            .user_agent(concat!("doorwarden/", env!("CARGO_PKG_VERSION")).into())
            .session_group(group.clone())
            .teardown(TeardownPolicy::Auto);
        let limit = self.timing.request_timeout;

        let mut described = match tokio::time::timeout(limit, Session::describe(url, options)).await
        {
            Err(_) => return SessionEnd::timed_out("DESCRIBE", limit),
            Ok(Err(e)) => return SessionEnd::retina(&e),
            Ok(Ok(s)) => s,
        };
        let video = described.streams().iter().enumerate().find_map(|(i, s)| {
            let codec = match (s.media(), s.encoding_name()) {
                ("video", "h264") => Codec::H264,
                ("video", "h265") => Codec::H265,
                _ => return None,
            };
            Some((i, codec))
        });
        let Some((stream_i, codec)) = video else {
            let offered: Vec<String> = described
                .streams()
                .iter()
                .map(|s| format!("{} {}", s.media(), s.encoding_name()))
                .collect();
            let reason = "no H.264 or H.265 video in the stream".to_string();
            return SessionEnd::failed(reason, format!("offered: {}", offered.join(", ")));
        };
        let transport = match self.transport {
            config::Transport::Tcp => retina::client::Transport::default(),
            config::Transport::Udp => {
                retina::client::Transport::Udp(retina::client::UdpTransportOptions::default())
            }
        };
        let setup = described.setup(stream_i, SetupOptions::default().transport(transport));
        match tokio::time::timeout(limit, setup).await {
            Err(_) => return SessionEnd::timed_out("SETUP", limit),
            Ok(Err(e)) => return SessionEnd::retina(&e),
            Ok(Ok(())) => {}
        }
        // Two clients joining one camera at once can see RTP sequence numbers
        // that disagree with RTP-Info; start from the packets instead.
        let play_options = PlayOptions::default().initial_seq(InitialSequenceNumberPolicy::Ignore);
        let playing = match tokio::time::timeout(limit, described.play(play_options)).await {
            Err(_) => return SessionEnd::timed_out("PLAY", limit),
            Ok(Err(e)) => return SessionEnd::retina(&e),
            Ok(Ok(p)) => p,
        };
        let mut frames = match playing.demuxed() {
            Ok(d) => d,
            Err(e) => return SessionEnd::retina(&e),
        };
        tracing::info!(camera = %self.name, stream = self.role.as_str(), url = %redact::text(&self.url), "camera playing");
        let up = self.up_event();
        if events
            .send(Event {
                at: stamp_now(),
                kind: up,
            })
            .await
            .is_err()
        {
            return SessionEnd::EventsClosed;
        }
        let mut sampler = self.sampler(codec, events).await;
        if matches!(sampler, Err(())) {
            return SessionEnd::EventsClosed;
        }
        if let Ok(Some(s)) = &mut sampler {
            // From the SDP: a camera may send them nowhere else.
            s.parameters(video_parameters(&frames, stream_i));
        }

        // The silence timer is data: the time of the last video frame. The
        // sleep is only re-armed when it fires early, not on every frame.
        let mut tap = self.tap.as_ref().map(FrameTap::session);
        let playing_since = Instant::now();
        let mut first_video: Option<Instant> = None;
        let mut last_video: Option<Instant> = None;
        let deadline = |last: Option<Instant>| match last {
            Some(t) => t + self.timing.silence_timeout,
            None => playing_since + self.timing.first_frame_timeout,
        };
        let sleep = tokio::time::sleep_until(deadline(None).into());
        tokio::pin!(sleep);
        let good = |first: Option<Instant>, last: Option<Instant>| match (first, last) {
            (Some(f), Some(l)) => l.saturating_duration_since(f) >= self.timing.good_session,
            _ => false,
        };
        loop {
            tokio::select! {
                item = frames.next() => match item {
                    None => {
                        return SessionEnd::Failed {
                            reason: "stream ended".into(),
                            detail: "the camera closed the session".into(),
                            good: good(first_video, last_video),
                        }
                    }
                    Some(Err(e)) => {
                        let mut end = SessionEnd::retina(&e);
                        end.set_good(good(first_video, last_video));
                        return end;
                    }
                    Some(Ok(CodecItem::VideoFrame(frame))) if frame.stream_id() == stream_i => {
                        let received = frame.end_ctx().received();
                        first_video.get_or_insert(received);
                        last_video = Some(received);
                        let summary = summarize(&frame, codec);
                        let at = stamp_at(received);
                        // Never waits: a recorder that falls behind loses
                        // frames, the camera's watch loses nothing.
                        if let Some(tap) = tap.as_mut() {
                            let params = match frames.streams().get(stream_i).and_then(|s| s.parameters()) {
                                Some(ParametersRef::Video(v)) => Some(v),
                                _ => None,
                            };
                            tap.offer(params, &frame, summary.keyframe, received, at.wall);
                        }
                        if let Ok(Some(s)) = &mut sampler {
                            if frame.has_new_parameters() {
                                s.parameters(video_parameters(&frames, stream_i));
                            }
                            s.offer(frame.data(), summary.keyframe, received);
                        }
                        let kind = self.frame_event(summary);
                        if events.send(Event { at, kind }).await.is_err() {
                            return SessionEnd::EventsClosed;
                        }
                    }
                    // RTCP, audio, metadata: none of it proves the video is
                    // flowing, so none of it touches the silence timer.
                    Some(Ok(_)) => {}
                },
                () = &mut sleep => {
                    let due = deadline(last_video);
                    let now = Instant::now();
                    if now >= due {
                        let waited = now.saturating_duration_since(last_video.unwrap_or(playing_since));
                        return SessionEnd::Failed {
                            reason: format!("no video frame for {:.1} s", waited.as_secs_f64()),
                            detail: format!("no complete video frame within {waited:?}; reconnecting"),
                            good: good(first_video, last_video),
                        };
                    }
                    sleep.as_mut().reset(due.into());
                }
            }
        }
    }

    /// The session's picture sampler, if pictures are checked; tells the
    /// core at once when they cannot be decoded. `Err` when the core is gone.
    async fn sampler(
        &self,
        codec: Codec,
        events: &mpsc::Sender<Event>,
    ) -> Result<Option<Sampler>, ()> {
        if !self.decodes_pictures() {
            return Ok(None);
        }
        let codec = match codec {
            Codec::H264 => PictureCodec::H264,
            Codec::H265 => PictureCodec::H265,
        };
        let sampler = Sampler::start(
            self.name.clone(),
            codec,
            events.clone(),
            self.close_look.clone(),
            self.snapshots.clone(),
            &self.ffmpeg,
        );
        if let Some(sample) = sampler.unavailable() {
            let kind = EventKind::CameraPicture {
                camera: self.name.clone(),
                sample,
            };
            events
                .send(Event {
                    at: stamp_now(),
                    kind,
                })
                .await
                .map_err(|_| ())?;
        }
        Ok(Some(sampler))
    }

    async fn resolve_credentials(&self) -> Result<Option<Credentials>, String> {
        match &self.credentials {
            CredentialSource::None => Ok(None),
            CredentialSource::Given { username, password } => Ok(Some(Credentials {
                username: username.clone(),
                password: password.expose().to_string(),
            })),
            CredentialSource::File { username, path } => {
                match tokio::fs::read_to_string(path).await {
                    Ok(text) => Ok(Some(Credentials {
                        username: username.clone(),
                        // A trailing newline is an editor's, not the password's.
                        password: text.trim_end_matches(['\r', '\n']).to_string(),
                    })),
                    Err(e) => Err(format!("cannot read password file {}: {e}", path.display())),
                }
            }
        }
    }
}

/// A URL without its userinfo, and the credentials for it: the URL's own,
/// else the camera's `username` with `password` or `password_file`.
fn credentials_for(url: &str, cfg: &config::Camera) -> (String, CredentialSource) {
    let (url, from_url) = redact::split_credentials(url);
    let credentials = match (from_url, &cfg.username) {
        (Some((username, password)), _) => CredentialSource::Given {
            username,
            password: Secret::new(password),
        },
        (None, Some(username)) => match (&cfg.password, &cfg.password_file) {
            (Some(password), _) => CredentialSource::Given {
                username: username.clone(),
                password: password.clone(),
            },
            (None, Some(path)) => CredentialSource::File {
                username: username.clone(),
                path: path.clone(),
            },
            (None, None) => CredentialSource::Given {
                username: username.clone(),
                password: Secret::new(""),
            },
        },
        (None, None) => CredentialSource::None,
    };
    (url, credentials)
}

/// Why a session ended, as the task tells the owner and the log.
enum SessionEnd {
    Failed {
        /// Short, for the owner (becomes `CameraDown.reason`).
        reason: String,
        /// Everything known, for the log.
        detail: String,
        /// The session delivered video long enough to reset the backoff.
        good: bool,
    },
    /// The core's side of the channel is gone: the bridge is stopping.
    EventsClosed,
}

impl SessionEnd {
    fn failed(reason: String, detail: String) -> SessionEnd {
        SessionEnd::Failed {
            reason,
            detail,
            good: false,
        }
    }

    fn timed_out(request: &str, limit: Duration) -> SessionEnd {
        SessionEnd::failed(
            format!("no answer to {request} within {} s", limit.as_secs_f64()),
            format!("{request} timed out after {limit:?}"),
        )
    }

    fn retina(e: &retina::Error) -> SessionEnd {
        SessionEnd::failed(owner_reason(e), e.to_string())
    }

    fn set_good(&mut self, value: bool) {
        if let SessionEnd::Failed { good, .. } = self {
            *good = value;
        }
    }
}

/// A short reason the owner can read, from retina's long error. retina's
/// error is opaque except for `status_code()`, so the rest is read from its
/// message, whose first line names the kind of failure.
pub fn owner_reason(e: &retina::Error) -> String {
    if let Some(code) = e.status_code() {
        return match status_phrase(code) {
            Some(phrase) => format!("RTSP {code} {phrase}"),
            None => format!("RTSP status {code}"),
        };
    }
    reason_from_message(&e.to_string())
}

fn reason_from_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or("");
    let has = |needle: &str| {
        first
            .to_ascii_lowercase()
            .contains(&needle.to_ascii_lowercase())
    };
    let reason = if has("invalid argument") {
        // retina checks the URL before connecting (scheme, credentials).
        "invalid camera URL (only rtsp:// is supported)".to_string()
    } else if has("connection refused") {
        "connection refused".to_string()
    } else if has("failed to respond to keepalive") || has("unable to write keepalive") {
        "camera stopped answering keepalives".to_string()
    } else if has("failed to lookup address") || has("name or service not known") {
        "camera host name not found".to_string()
    } else if has("connection reset") || has("broken pipe") {
        "connection reset by camera".to_string()
    } else if has("unexpected eof") {
        "stream ended".to_string()
    } else if has("unable to connect to rtsp server") {
        let cause = first.split_once(": ").map(|(_, c)| c).unwrap_or("");
        format!(
            "cannot connect: {}",
            strip_os_error(cause).to_ascii_lowercase()
        )
    } else if has("error reading from rtsp peer") || has("error writing to rtsp peer") {
        "connection lost".to_string()
    } else if has("internal error") {
        "camera session failed".to_string()
    } else if has("rtsp framing error")
        || has("unassigned channel")
        || has("rtp")
        || has("depacketiz")
        || has("corrupt")
        || has("nal unit")
        || has("invalid")
    {
        "camera sent invalid data".to_string()
    } else if has("unsupported") {
        "camera stream not supported".to_string()
    } else {
        "camera session failed".to_string()
    };
    redact::text(&reason)
}

fn strip_os_error(text: &str) -> &str {
    match text.find(" (os error") {
        Some(i) => &text[..i],
        None => text,
    }
}

fn status_phrase(code: u16) -> Option<&'static str> {
    Some(match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        453 => "Not Enough Bandwidth",
        454 => "Session Not Found",
        455 => "Method Not Valid in This State",
        457 => "Invalid Range",
        459 => "Aggregate Operation Not Allowed",
        461 => "Unsupported Transport",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "RTSP Version Not Supported",
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    H264,
    H265,
}

/// The parameters retina holds for video stream `i`, if any yet.
fn video_parameters(frames: &Demuxed, i: usize) -> Option<&VideoParameters> {
    match frames.streams().get(i).and_then(|s| s.parameters()) {
        Some(ParametersRef::Video(v)) => Some(v),
        _ => None,
    }
}

fn summarize(frame: &VideoFrame, codec: Codec) -> FrameSummary {
    let ts = frame.timestamp();
    let data = frame.data();
    FrameSummary {
        rtp_ts: ts.timestamp(),
        clock_rate: ts.clock_rate().get(),
        size: u32::try_from(data.len()).unwrap_or(u32::MAX),
        // retina 0.4.21 counts only IDR pictures as random access points in
        // H.265; a CRA or BLA picture decodes on its own too, and cameras
        // with open GOPs send nothing else after the first.
        keyframe: frame.is_random_access_point() || (codec == Codec::H265 && has_h265_irap(data)),
        hash: frame_hash(data),
        lost: frame.loss(),
    }
}

/// Whether a frame in retina's default framing (each NAL unit preceded by
/// its length as a 4-byte big-endian number) holds an H.265 IRAP picture
/// (NAL unit types 16 to 23: BLA, IDR, CRA).
fn has_h265_irap(data: &[u8]) -> bool {
    let mut rest = data;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        let Some(nal) = tail.get(..len) else {
            return false;
        };
        if nal
            .first()
            .is_some_and(|b| (16..=23).contains(&((b >> 1) & 0x3f)))
        {
            return true;
        }
        rest = &tail[len..];
    }
    false
}

/// The stamp of something that happened at `when` (a past `Instant`): the
/// wall clock is read now and moved back by the time elapsed since.
pub(crate) fn stamp_at(when: Instant) -> Stamp {
    let (now, wall_now) = (Instant::now(), jiff::Timestamp::now());
    let ago = now.saturating_duration_since(when);
    let wall = jiff::SignedDuration::try_from(ago)
        .ok()
        .and_then(|d| wall_now.checked_sub(d).ok())
        .unwrap_or(wall_now);
    Stamp { mono: when, wall }
}

fn stamp_now() -> Stamp {
    Stamp {
        mono: Instant::now(),
        wall: jiff::Timestamp::now(),
    }
}

/// Doubling reconnect delays, capped.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// A fast 64-bit hash of a frame's bytes: equal bytes give equal hashes, and
/// any change gives a different one with overwhelming odds. Not keyed and not
/// collision resistant against a crafted input — a camera under an
/// attacker's control can fake any summary anyway; this only has to tell a
/// replayed frame from a fresh one, at about 0.3 MB/s per camera.
///
/// Each 16-byte block is folded into the state with one 64x64->128-bit
/// multiply (high and low halves xored), which mixes every input bit into
/// the state; the length and a final avalanche finish it.
pub fn frame_hash(data: &[u8]) -> u64 {
    const P0: u64 = 0xa076_1d64_78bd_642f;
    const P1: u64 = 0xe703_7ed1_a0b4_28db;
    const P2: u64 = 0x8ebc_6af0_9c88_c6e3;

    fn fold(a: u64, b: u64) -> u64 {
        let r = u128::from(a) * u128::from(b);
        (r as u64) ^ ((r >> 64) as u64)
    }
    fn word(bytes: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        w[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(w)
    }

    let mut h = P2 ^ (data.len() as u64);
    let (blocks, tail) = data.as_chunks::<16>();
    for block in blocks {
        let (lo, hi) = block.split_at(8);
        h = fold(word(lo) ^ P0 ^ h, word(hi) ^ P1);
    }
    let (lo, hi) = tail.split_at(tail.len().min(8));
    h = fold(word(lo) ^ P0 ^ h, word(hi) ^ P1 ^ (tail.len() as u64));
    // murmur3's 64-bit finalizer: every output bit depends on every state bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_frames_hash_equal_and_any_changed_byte_changes_the_hash() {
        let frame: Vec<u8> = (0..1500u32)
            .map(|i| (i.wrapping_mul(31) % 251) as u8)
            .collect();
        let base = frame_hash(&frame);
        assert_eq!(base, frame_hash(&frame.clone()));
        let mut seen = std::collections::HashSet::new();
        seen.insert(base);
        for i in 0..frame.len() {
            for bit in [0x01u8, 0x80] {
                let mut changed = frame.clone();
                changed[i] ^= bit;
                assert!(
                    seen.insert(frame_hash(&changed)),
                    "collision flipping bit {bit:#x} of byte {i}"
                );
            }
        }
        // Length counts: a frame and its zero-padded twin differ.
        let mut padded = frame.clone();
        padded.push(0);
        assert_ne!(base, frame_hash(&padded));
        assert_ne!(frame_hash(&[]), frame_hash(&[0]));
    }

    #[test]
    fn h265_irap_pictures_are_found_in_length_prefixed_frames() {
        // (NAL unit type, payload length) -> a frame in retina's framing.
        let frame = |nals: &[(u8, usize)]| -> Vec<u8> {
            let mut out = Vec::new();
            for &(kind, len) in nals {
                out.extend_from_slice(&(len as u32 + 2).to_be_bytes());
                out.extend_from_slice(&[kind << 1, 1]);
                out.extend(std::iter::repeat_n(0xAB, len));
            }
            out
        };
        assert!(has_h265_irap(&frame(&[
            (32, 20),
            (33, 40),
            (34, 8),
            (39, 10),
            (21, 900)
        ]))); // CRA
        assert!(has_h265_irap(&frame(&[(19, 900)]))); // IDR_W_RADL
        assert!(!has_h265_irap(&frame(&[(1, 300)]))); // TRAIL_R
        assert!(!has_h265_irap(&frame(&[(35, 2), (0, 300)]))); // AUD + TRAIL_N
        // A length running past the end is not trusted.
        let mut cut = frame(&[(1, 10), (21, 900)]);
        cut.truncate(30);
        assert!(!has_h265_irap(&cut));
        assert!(!has_h265_irap(&[]));
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let delays: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn owner_reasons_from_retina_messages() {
        let cases = [
            (
                "Unable to connect to RTSP server: Connection refused (os error 111)",
                "connection refused",
            ),
            (
                "Unable to connect to RTSP server: No route to host (os error 113)",
                "cannot connect: no route to host",
            ),
            (
                "Error reading from RTSP peer: Server failed to respond to keepalive 5 within 30s\n\nconn: x",
                "camera stopped answering keepalives",
            ),
            (
                "Error reading from RTSP peer: Connection reset by peer (os error 104)\n\nconn: x",
                "connection reset by camera",
            ),
            (
                "RTSP framing error: Invalid RTSP message; next 128 of 300 buffered bytes are:\n...",
                "camera sent invalid data",
            ),
            (
                "Something new from rtsp://admin:pw@cam/x",
                "camera session failed",
            ),
        ];
        for (message, want) in cases {
            assert_eq!(reason_from_message(message), want, "{message}");
        }
    }

    #[test]
    fn credentials_in_the_url_never_reach_the_loggable_url() {
        let cfg: config::Camera =
            serde_yaml::from_str("url: rtsp://admin:s3cret@127.0.0.1:8554/live")
                .expect("valid camera yaml");
        let task = CameraTask::new("porch".into(), &cfg);
        assert_eq!(task.url, "rtsp://127.0.0.1:8554/live");
        assert!(!format!("{task:?}").contains("s3cret"));
        assert!(
            matches!(&task.credentials, CredentialSource::Given { username, password }
            if username == "admin" && password.expose() == "s3cret")
        );
    }
}
