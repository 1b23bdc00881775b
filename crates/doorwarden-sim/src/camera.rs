//! A simulated RTSP camera: a fake, for tests and `doorwarden demo`.
//!
//! It is an in-process RTSP/1.0 server on 127.0.0.1 that streams H.264 in
//! real time (15 fps, RTP over interleaved TCP or UDP). By default it is a
//! live camera: it encodes a moving scene as it goes (320x180, faint sensor
//! noise, a burnt-in clock and frame counter; see [`SimClip::Live`]), so
//! doorwarden's picture checks judge it live. [`SimClip::Recording`] loops a
//! bundled pre-encoded clip instead: a replayed recording, which the
//! picture checks catch.
//!
//! It can be told to misbehave on cue in the ways a broken or tampered
//! camera does: repeat a frame byte for byte, code one unchanging picture
//! with the encoder still running, hang its sensor behind a ticking
//! on-screen clock, show a covered lens, replay the last seconds it sent,
//! stop sending while keeping the session up, drop or refuse connections,
//! run its RTP clock slow or not at all, or send garbage. A real RTSP
//! server cannot produce most of these on demand, which is the only reason
//! this exists; it is not a general RTSP server.
//!
//! # Wire behaviour
//!
//! - Methods: OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER (keepalive),
//!   TEARDOWN. Others get `501 Not Implemented`.
//! - One H.264 video stream, packetization-mode 1 (single NAL units and
//!   FU-A), 90 kHz clock, random initial sequence number, timestamp and
//!   SSRC per client, marker bit on each frame's last packet.
//! - Transport: TCP interleaved, or UDP unicast to the client's ports
//!   (RTP on an even server port, RTCP on the next). Multicast gets
//!   `461 Unsupported Transport`.
//! - RTCP sender reports every 2 s on the odd channel, also while stalled
//!   (a stalled real camera keeps its RTCP going too).
//! - Optional authentication, Digest (MD5, no `qop`, as most cameras) or
//!   Basic: `401` with `WWW-Authenticate` until the right `Authorization`
//!   arrives. The password is never logged.
//! - A DESCRIBE for any path other than the configured one gets `404`.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), doorwarden_sim::camera::SimCameraError> {
//! use doorwarden_sim::camera::{SimCamera, SimCameraOptions};
//! let camera = SimCamera::start(SimCameraOptions::default()).await?;
//! let url = camera.url(); // rtsp://127.0.0.1:<port>/sim/camera
//! camera.freeze(); // every client now gets the same frame, byte for byte
//! camera.restore();
//! camera.replay(); // the last three seconds sent, looped byte for byte
//! camera.restore();
//! # Ok(()) }
//! ```

mod auth;
mod clip;
mod live;
mod playback;
mod rtp;
mod rtsp;
mod scene;
mod transport;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};

use auth::Auth;
pub use auth::SimAuthScheme;
use clip::{Clip, ParameterSets};
use doorwarden::config::Secret;
use live::{LiveFeed, LiveFrame, LiveSource};
use playback::Playback;
use rtsp::{Parsed, Request, Response};
use transport::{Delivery, Requested};

/// How a [`SimCamera`] starts.
#[derive(Debug, Clone)]
pub struct SimCameraOptions {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Path of the stream, without the leading slash (`sim/camera`).
    pub path: String,
    /// When set, clients must authenticate.
    pub credentials: Option<SimCredentials>,
    /// The picture the camera shows when started and after
    /// [`SimCamera::restore`].
    pub clip: SimClip,
}

impl Default for SimCameraOptions {
    fn default() -> Self {
        SimCameraOptions {
            port: 0,
            path: "sim/camera".to_owned(),
            credentials: None,
            clip: SimClip::Live,
        }
    }
}

/// User name and password the simulated camera demands.
#[derive(Debug, Clone)]
pub struct SimCredentials {
    pub username: String,
    pub password: Secret,
    pub scheme: SimAuthScheme,
}

impl SimCredentials {
    /// Digest credentials, the scheme most IP cameras use.
    pub fn new(username: impl Into<String>, password: Secret) -> Self {
        SimCredentials {
            username: username.into(),
            password,
            scheme: SimAuthScheme::Digest,
        }
    }
}

/// What the camera streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimClip {
    /// A live camera: a scene encoded in real time by OpenH264 (320x180,
    /// 15 fps, Constrained Baseline, an IDR a second), a ball moving over a
    /// static view, faint sensor noise in every frame, and a clock and
    /// frame counter burnt in at the top left. What a working camera looks
    /// like, to the stream rules and to the picture checks alike.
    #[default]
    Live,
    /// Live as well, but a quiet scene: the static view with sensor noise
    /// and the ticking clock, nothing moving (a porch at night).
    Quiet,
    /// A replayed recording: a bundled pre-encoded 4 s clip (640x360,
    /// 15 fps, one IDR a second) looped byte for byte. It passes every
    /// stream rule; doorwarden's picture checks catch its repeating
    /// keyframes ("the picture repeats every 4.0 s: a replayed recording").
    /// The sensor faults ([`SimCamera::hang_sensor`], [`SimCamera::cover`],
    /// [`SimCamera::replay`]) do nothing to it; [`SimCamera::still`]
    /// switches to a bundled still clip.
    Recording,
}

#[derive(Debug, thiserror::Error)]
pub enum SimCameraError {
    #[error("simulated camera cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("simulated camera's bundled clip is unusable: {0}")]
    Clip(String),
    #[error("simulated camera cannot encode live: {0}")]
    Encoder(String),
}

/// What the picture does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Picture {
    #[default]
    Moving,
    /// The encoder codes one unchanging picture (a recording: the still
    /// clip).
    Still,
    /// The last frame sent, repeated byte for byte.
    Frozen,
    /// The sensor's picture stops; the on-screen clock goes on.
    HungSensor,
    /// A dark, even picture.
    Covered,
    /// The last seconds sent, looped byte for byte.
    Replay,
}

/// How the RTP timestamps advance per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Clock {
    #[default]
    Normal,
    HalfSpeed,
    Frozen,
}

/// The faults switched on, shared with every connection through a watch
/// channel: each connection reads it once per frame, so a change reaches
/// every client within one frame interval.
#[derive(Debug, Clone, Default)]
struct Faults {
    picture: Picture,
    clock: Clock,
    /// No RTP at all; requests are still answered.
    stalled: bool,
    /// Random bytes instead of RTP, and instead of RTSP responses.
    garbage: bool,
    /// The listening socket is closed: connects are refused.
    refusing: bool,
    /// Bumped by `drop_all`: connections opened before the bump close.
    drop_generation: u64,
}

/// Handle to a running simulated camera. Clones control the same camera;
/// the server shuts down when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct SimCamera {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    // Dropping the sender (with the last handle) is the shutdown signal:
    // every task's `changed()` then fails and the task returns.
    faults: watch::Sender<Faults>,
    addr: SocketAddr,
    path: String,
    frames_sent: Arc<AtomicU64>,
}

/// What every connection needs to know about the camera; fixed at start.
#[derive(Debug)]
struct Setup {
    path: String,
    /// Credentials clients must present, if any.
    auth: Option<Auth>,
    moving: &'static Clip,
    still: &'static Clip,
    /// The encoder every client of a live camera shares; `None` for a
    /// recording, whose clients each loop the clip from its start.
    live: Option<LiveSource>,
    /// What the SDP announces: the live encoder's or the clip's.
    params: ParameterSets,
    frames_sent: Arc<AtomicU64>,
}

impl SimCamera {
    /// Starts listening on 127.0.0.1 and serving clients. Needs a tokio
    /// runtime; the server's tasks run on it until the last handle drops.
    ///
    /// # Errors
    ///
    /// [`SimCameraError::Bind`] when the port cannot be bound;
    /// [`SimCameraError::Clip`] if a bundled clip does not parse, and
    /// [`SimCameraError::Encoder`] if OpenH264 will not start (build
    /// problems, not runtime ones).
    pub async fn start(options: SimCameraOptions) -> Result<SimCamera, SimCameraError> {
        let moving = Clip::moving().map_err(SimCameraError::Clip)?;
        let still = Clip::still().map_err(SimCameraError::Clip)?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, options.port))
            .await
            .map_err(|source| SimCameraError::Bind {
                port: options.port,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimCameraError::Bind {
                port: options.port,
                source,
            })?;
        let path = options.path.trim_matches('/').to_owned();
        let frames_sent = Arc::new(AtomicU64::new(0));
        let (faults, faults_rx) = watch::channel(Faults::default());
        let live = match options.clip {
            SimClip::Live | SimClip::Quiet => {
                let rx = faults_rx.clone();
                let quiet = options.clip == SimClip::Quiet;
                // Making the encoder and coding a first picture is blocking
                // work, kept off the async threads.
                let started = tokio::task::spawn_blocking(move || LiveSource::start(rx, quiet))
                    .await
                    .map_err(|e| SimCameraError::Encoder(e.to_string()))?
                    .map_err(SimCameraError::Encoder)?;
                Some(started)
            }
            SimClip::Recording => None,
        };
        let params = match &live {
            Some(live) => live.params().clone(),
            None => moving.params(),
        };
        let setup = Arc::new(Setup {
            path: path.clone(),
            auth: options
                .credentials
                .as_ref()
                .map(|c| Auth::new(c.scheme, &c.username, c.password.expose(), random_u64())),
            moving,
            still,
            live,
            params,
            frames_sent: frames_sent.clone(),
        });
        tokio::spawn(accept_loop(listener, addr, faults_rx, setup));
        tracing::debug!(%addr, "simulated camera listening");
        Ok(SimCamera {
            shared: Arc::new(Shared {
                faults,
                addr,
                path,
                frames_sent,
            }),
        })
    }

    /// `rtsp://127.0.0.1:PORT/<path>` (without credentials).
    pub fn url(&self) -> String {
        format!("rtsp://{}/{}", self.shared.addr, self.shared.path)
    }

    /// The address the camera listens on (also while refusing).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Frames sent so far, summed over every client (counted when handed to
    /// the connection; a client too slow to take them may lose some).
    pub fn frames_sent(&self) -> u64 {
        self.shared.frames_sent.load(Ordering::Relaxed)
    }

    /// Keep sending, but repeat the last frame's bytes exactly, with
    /// advancing timestamps: a replayed frame.
    pub fn freeze(&self) {
        self.modify(|f| f.picture = Picture::Frozen);
    }

    /// A hung camera whose encoder keeps running: a live camera codes one
    /// unchanging picture, clock and all, without even sensor noise, so
    /// its P-frames decode to exactly the same picture; doorwarden's
    /// picture checks say "picture frozen: not even sensor noise changes".
    /// (A [`SimClip::Recording`] switches to the bundled still clip.)
    pub fn still(&self) {
        self.modify(|f| f.picture = Picture::Still);
    }

    /// A hung sensor behind a ticking on-screen clock: the live camera's
    /// picture stops, noise included, while its clock and frame counter
    /// keep changing ("picture frozen; only the on-screen clock changes").
    pub fn hang_sensor(&self) {
        self.modify(|f| f.picture = Picture::HungSensor);
    }

    /// Something over the lens: the live camera codes a dark, even picture
    /// ("no picture: the lens may be covered").
    pub fn cover(&self) {
        self.modify(|f| f.picture = Picture::Covered);
    }

    /// A replay attack from inside the camera: it loops the last three
    /// seconds it sent (three whole GOPs), byte for byte, with timestamps
    /// still advancing ("the picture repeats every 3.0 s: a replayed
    /// recording"). The loop starts where the next IDR would have come
    /// (within a second), and not before three seconds were sent.
    pub fn replay(&self) {
        self.modify(|f| f.picture = Picture::Replay);
    }

    /// Stop sending RTP, keep the TCP session, keep answering keepalives
    /// (and keep sending RTCP sender reports).
    pub fn stall(&self) {
        self.modify(|f| f.stalled = true);
    }

    /// Close every open connection; new connections are still accepted.
    pub fn drop_all(&self) {
        self.modify(|f| f.drop_generation += 1);
    }

    /// Close the listening socket: new connections are refused. Open
    /// sessions are not touched (combine with [`SimCamera::drop_all`]).
    pub fn refuse(&self) {
        self.modify(|f| f.refusing = true);
    }

    /// Listen again on the same port after [`SimCamera::refuse`].
    pub fn accept(&self) {
        self.modify(|f| f.refusing = false);
    }

    /// RTP timestamps advance at half the real rate while frames keep
    /// arriving on time: the signature of a replayed or buffered stream.
    pub fn half_speed_clock(&self) {
        self.modify(|f| f.clock = Clock::HalfSpeed);
    }

    /// RTP timestamps stop advancing; frames keep coming.
    pub fn freeze_timestamps(&self) {
        self.modify(|f| f.clock = Clock::Frozen);
    }

    /// Random bytes instead of RTP on the interleaved channel, and instead
    /// of a response to any request.
    pub fn garbage(&self) {
        self.modify(|f| f.garbage = true);
    }

    /// Back to normal: the starting picture, a true clock, sending,
    /// accepting. A live camera starts a fresh IDR after a replay.
    pub fn restore(&self) {
        self.modify(|f| {
            *f = Faults {
                drop_generation: f.drop_generation,
                ..Faults::default()
            }
        });
    }

    fn modify(&self, change: impl FnOnce(&mut Faults)) {
        self.shared.faults.send_modify(change);
        tracing::debug!(faults = ?*self.shared.faults.borrow(), "simulated camera faults");
    }
}

/// What the live source costs per frame: drawing the scene and encoding
/// it, each measured on its own (see [`measure_live_encoding`]).
#[derive(Debug, Clone)]
pub struct EncodingCost {
    pub draw: Vec<Duration>,
    pub encode: Vec<Duration>,
}

/// Draws and encodes `frames` pictures of a [`SimClip`]'s live scene (or,
/// with `sensor_hung`, of a hung sensor behind the ticking clock) with the
/// same scene and encoder settings a [`SimCamera`] uses, as fast as they
/// go, on the calling thread. For the encoding-cost example; a recording
/// costs nothing to encode, so it is refused.
///
/// # Errors
///
/// [`SimCameraError::Encoder`] if OpenH264 will not start or encode, or
/// for [`SimClip::Recording`].
pub fn measure_live_encoding(
    clip: SimClip,
    sensor_hung: bool,
    frames: usize,
) -> Result<EncodingCost, SimCameraError> {
    let sensor = match (clip, sensor_hung) {
        (SimClip::Recording, _) => {
            return Err(SimCameraError::Encoder(
                "a recording is not encoded".to_owned(),
            ));
        }
        (_, true) => scene::Sensor::Hung,
        (clip, false) => scene::Sensor::Live {
            quiet: clip == SimClip::Quiet,
        },
    };
    let (draw, encode) = live::measure(frames, sensor).map_err(SimCameraError::Encoder)?;
    Ok(EncodingCost { draw, encode })
}

/// A random 64-bit value. The std hasher is seeded randomly per process
/// and per `RandomState`, which is all a fake camera's SSRCs need.
fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

/// Accepts clients until the camera is dropped, closing and reopening the
/// listening socket as `refuse`/`accept` ask.
async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    mut faults: watch::Receiver<Faults>,
    setup: Arc<Setup>,
) {
    let mut listener = Some(listener);
    loop {
        let refusing = faults.borrow_and_update().refusing;
        if refusing && listener.is_some() {
            // Closing the socket, not just not calling accept(): the kernel
            // would otherwise complete handshakes into the backlog.
            listener = None;
        } else if !refusing && listener.is_none() {
            match TcpListener::bind(addr).await {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "simulated camera cannot listen again; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let accepted = async {
            match &listener {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = faults.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            accepted = accepted => match accepted {
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "simulated camera: client connected");
                    let faults = faults.clone();
                    tokio::spawn(Connection::new(setup.clone(), faults, peer.ip()).run(stream));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "simulated camera: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

/// Frames queued for a client that is not reading are dropped beyond this,
/// as a camera drops frames on a congested link, so a stuck client can
/// never block the camera's control of its connection.
const WRITE_QUEUE_FRAMES: usize = 30;

const RTCP_INTERVAL: Duration = Duration::from_secs(2);

/// One client's TCP connection and its (single) RTSP session.
struct Connection {
    setup: Arc<Setup>,
    faults: watch::Receiver<Faults>,
    generation: u64,
    session_id: String,
    /// Set by SETUP: where the stream goes, and its RTP sender state.
    stream: Option<(Delivery, rtp::Packetizer)>,
    /// The client's address, where UDP streams are sent.
    peer: IpAddr,
    feed: Feed,
    playing: bool,
    garbage_state: u64,
}

/// Where a connection's frames come from.
enum Feed {
    /// Its own loop over the bundled clips, paced by its own timer.
    Recording(Playback),
    /// The camera's live encoder, shared with every client.
    Live(LiveFeed),
}

impl Feed {
    /// The RTP timestamp the next frame will carry (for `RTP-Info` and
    /// sender reports).
    fn timestamp(&self) -> u32 {
        match self {
            Feed::Recording(playback) => playback.timestamp(),
            Feed::Live(feed) => feed.timestamp(),
        }
    }
}

/// The next frame from the live source; `None` once the source is gone.
/// Pending without a subscription, so it can sit in a `select!`.
async fn next_live(frames: &mut Option<broadcast::Receiver<LiveFrame>>) -> Option<LiveFrame> {
    let Some(frames) = frames else {
        return std::future::pending().await;
    };
    loop {
        match frames.recv().await {
            Ok(frame) => return Some(frame),
            // Frames lost to a slow client: the feed sees the gap in the
            // frame numbers and waits for an IDR (`LiveFeed::take`).
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// What the connection loop should do after a request.
enum After {
    Continue,
    Play,
    Close,
}

impl Connection {
    fn new(setup: Arc<Setup>, faults: watch::Receiver<Faults>, peer: IpAddr) -> Self {
        let current = faults.borrow().clone();
        // Truncation intended: the low half is the random timestamp.
        let first_timestamp = random_u64() as u32;
        let feed = if setup.live.is_some() {
            Feed::Live(LiveFeed::new(first_timestamp))
        } else {
            Feed::Recording(Playback::new(
                setup.moving,
                setup.still,
                current.picture == Picture::Still,
                first_timestamp,
            ))
        };
        Connection {
            setup,
            generation: current.drop_generation,
            faults,
            session_id: format!("{:016X}", random_u64()),
            stream: None,
            peer,
            feed,
            playing: false,
            garbage_state: random_u64() | 1,
        }
    }

    /// Serves the client until it hangs up, errs, sends a request that does
    /// not parse, tears down, or the camera drops it or shuts down.
    async fn run(mut self, stream: TcpStream) {
        let (mut reader, mut writer) = stream.into_split();
        let (out, mut queue) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE_FRAMES);
        let mut writer_task = tokio::spawn(async move {
            while let Some(bytes) = queue.recv().await {
                if writer.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        // The default missed-tick behaviour (burst) catches up after a late
        // tick, so over time frames match the RTP clock and the wall clock,
        // as a real camera's do; only the fault knobs break that.
        let mut frames = tokio::time::interval(Duration::from_micros(
            1_000_000 * u64::from(playback::TICKS_PER_FRAME) / 90_000,
        ));
        let mut rtcp = tokio::time::interval(RTCP_INTERVAL);
        // A live camera's frames, from PLAY on.
        let mut live: Option<broadcast::Receiver<LiveFrame>> = None;
        let recording = self.setup.live.is_none();
        // Whether queued bytes still go out before the socket closes: yes
        // after a last response, no when the camera cuts the connection.
        let mut flush = true;
        'serve: loop {
            tokio::select! {
                changed = self.faults.changed() => {
                    if changed.is_err() || self.faults.borrow().drop_generation != self.generation {
                        flush = false;
                        break 'serve;
                    }
                }
                read = reader.read_buf(&mut buf) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        break 'serve;
                    }
                    loop {
                        let (request, used) = match rtsp::next_request(&buf) {
                            Ok(Parsed::Incomplete) => break,
                            Ok(Parsed::Interleaved(used)) => {
                                buf.drain(..used);
                                continue;
                            }
                            Ok(Parsed::Request(request, used)) => (request, used),
                            Err(e) => {
                                tracing::debug!(error = %e, "simulated camera: bad request");
                                let bad = Response::to(None, 400, "Bad Request");
                                let _ = out.try_send(bad.to_bytes());
                                break 'serve;
                            }
                        };
                        buf.drain(..used);
                        let (reply, after) = self.answer(&request);
                        if out.try_send(reply).is_err() {
                            break 'serve;
                        }
                        match after {
                            After::Continue => {}
                            After::Play => {
                                self.playing = true;
                                frames.reset_immediately();
                                if let Some(source) = &self.setup.live {
                                    live = Some(source.subscribe());
                                }
                                rtcp.reset();
                            }
                            After::Close => break 'serve,
                        }
                    }
                }
                _ = frames.tick(), if self.playing && recording => {
                    let faults = self.faults.borrow().clone();
                    let next = match &mut self.feed {
                        Feed::Recording(playback) => playback.tick(&faults).map(|(f, t)| (FrameRef::Clip(f), t)),
                        Feed::Live(_) => None,
                    };
                    if let Some(bytes) = next.and_then(|(frame, t)| self.frame_bytes(&frame, t, &faults)) {
                        // A full queue means the client is not reading:
                        // drop the frame, as a congested camera would.
                        let _ = out.try_send(bytes);
                    }
                }
                coded = next_live(&mut live), if self.playing => {
                    let Some(coded) = coded else {
                        break 'serve;
                    };
                    let faults = self.faults.borrow().clone();
                    let next = match &mut self.feed {
                        Feed::Live(feed) => {
                            let next = feed.take(&coded, &faults);
                            if feed.needs_keyframe()
                                && let Some(source) = &self.setup.live
                            {
                                source.request_keyframe();
                            }
                            next.map(|(f, t)| (FrameRef::Live(f), t))
                        }
                        Feed::Recording(_) => None,
                    };
                    if let Some(bytes) = next.and_then(|(frame, t)| self.frame_bytes(&frame, t, &faults)) {
                        let _ = out.try_send(bytes);
                    }
                }
                _ = rtcp.tick(), if self.playing => {
                    if !self.faults.borrow().garbage
                        && let Some((delivery, packetizer)) = &self.stream
                    {
                        let report = packetizer
                            .sender_report(std::time::SystemTime::now(), self.feed.timestamp());
                        let mut bytes = Vec::new();
                        delivery.send(true, &[report], &mut bytes);
                        if !bytes.is_empty() {
                            let _ = out.try_send(bytes);
                        }
                    }
                }
            }
        }
        // A client that does not read cannot hold the socket open: the
        // flush is bounded, then the writer is aborted, which drops the
        // socket.
        drop(out);
        let flush_for = Duration::from_millis(if flush { 200 } else { 0 });
        if tokio::time::timeout(flush_for, &mut writer_task)
            .await
            .is_err()
        {
            writer_task.abort();
        }
        tracing::debug!("simulated camera: connection closed");
    }

    /// Sends a frame. Returns what must go out on the RTSP connection:
    /// interleaved packets or garbage; nothing when the frame went out over
    /// UDP.
    fn frame_bytes(
        &mut self,
        frame: &FrameRef,
        timestamp: u32,
        faults: &Faults,
    ) -> Option<Vec<u8>> {
        let frame: &clip::Frame = match frame {
            FrameRef::Clip(f) => f,
            FrameRef::Live(f) => f,
        };
        let (delivery, packetizer) = self.stream.as_mut()?;
        if faults.garbage {
            let channel = match delivery {
                Delivery::Interleaved { channel } => *channel,
                Delivery::Udp { .. } => 0,
            };
            return Some(self.garbage_bytes(channel));
        }
        let packets = packetizer.packetize(frame, timestamp);
        let mut bytes = Vec::new();
        delivery.send(false, &packets, &mut bytes);
        self.setup.frames_sent.fetch_add(1, Ordering::Relaxed);
        (!bytes.is_empty()).then_some(bytes)
    }

    /// An "RTP" packet that is not (version 0), then bytes that are neither
    /// RTSP nor interleaved data. A client must fail on either.
    fn garbage_bytes(&mut self, channel: u8) -> Vec<u8> {
        let mut noise = vec![0u8; 200];
        for b in &mut noise {
            // xorshift64: noise, not security.
            self.garbage_state ^= self.garbage_state << 13;
            self.garbage_state ^= self.garbage_state >> 7;
            self.garbage_state ^= self.garbage_state << 17;
            *b = self.garbage_state as u8;
        }
        noise[0] = 0; // RTP version 0
        let mut bytes = Vec::with_capacity(2 * noise.len() + 8);
        rtp::interleave(channel, &noise, &mut bytes);
        bytes.extend_from_slice(&noise); // starts with 0x00: not '$', not "RTSP/"
        bytes
    }

    /// The response to one request, and what the connection does next.
    fn answer(&mut self, request: &Request) -> (Vec<u8>, After) {
        if self.faults.borrow().garbage {
            return (self.garbage_bytes(0)[4..].to_vec(), After::Continue);
        }
        let (response, after) = self.respond(request);
        (response.to_bytes(), after)
    }

    fn respond(&mut self, request: &Request) -> (Response, After) {
        let ok = || Response::to(Some(request), 200, "OK");
        if request.method != "OPTIONS"
            && let Some(auth) = &self.setup.auth
            && !auth.accepts(&request.method, request.header("Authorization"))
        {
            let challenge = Response::to(Some(request), 401, "Unauthorized")
                .header("WWW-Authenticate", auth.challenge());
            return (challenge, After::Continue);
        }
        match request.method.as_str() {
            "OPTIONS" => (
                ok().header(
                    "Public",
                    "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER",
                ),
                After::Continue,
            ),
            "DESCRIBE" => {
                if request_path(&request.uri) != Some(self.setup.path.as_str()) {
                    return (
                        Response::to(Some(request), 404, "Not Found"),
                        After::Continue,
                    );
                }
                let base = content_base(&request.uri);
                let response = ok()
                    .header("Content-Base", base)
                    .body("application/sdp", self.sdp().into_bytes());
                (response, After::Continue)
            }
            "SETUP" => self.setup_stream(request),
            "PLAY" => {
                let Some((_, packetizer)) = &self.stream else {
                    return (
                        Response::to(Some(request), 455, "Method Not Valid in This State"),
                        After::Continue,
                    );
                };
                let track = format!("{}trackID=0", content_base(&request.uri));
                let rtp_info = format!(
                    "url={track};seq={};rtptime={}",
                    packetizer.next_seq,
                    self.feed.timestamp()
                );
                let response = ok()
                    .header("Session", self.session_id.clone())
                    .header("Range", "npt=0.000-")
                    .header("RTP-Info", rtp_info);
                (response, After::Play)
            }
            "GET_PARAMETER" => (
                ok().header("Session", self.session_id.clone()),
                After::Continue,
            ),
            "TEARDOWN" => (
                ok().header("Session", self.session_id.clone()),
                After::Close,
            ),
            _ => (
                Response::to(Some(request), 501, "Not Implemented"),
                After::Continue,
            ),
        }
    }

    fn setup_stream(&mut self, request: &Request) -> (Response, After) {
        if self.stream.is_some() {
            // One stream per session; a second SETUP is a client bug.
            return (
                Response::to(Some(request), 455, "Method Not Valid in This State"),
                After::Continue,
            );
        }
        let transport = request.header("Transport").unwrap_or_default();
        let delivery = match transport::requested(transport) {
            Requested::Tcp { channel } => Delivery::Interleaved { channel },
            Requested::Udp { client_port } => match Delivery::udp(self.peer, client_port) {
                Ok(delivery) => delivery,
                Err(e) => {
                    tracing::warn!(error = %e, "simulated camera: no UDP ports");
                    return (
                        Response::to(Some(request), 500, "Internal Server Error"),
                        After::Continue,
                    );
                }
            },
            Requested::Unsupported => {
                return (
                    Response::to(Some(request), 461, "Unsupported Transport"),
                    After::Continue,
                );
            }
        };
        let random = random_u64();
        // Truncations intended: slices of one random value.
        let ssrc = random as u32;
        let packetizer = rtp::Packetizer::new(ssrc, (random >> 32) as u16);
        let response = Response::to(Some(request), 200, "OK")
            .header("Session", format!("{};timeout=60", self.session_id))
            .header("Transport", delivery.describe(ssrc));
        self.stream = Some((delivery, packetizer));
        (response, After::Continue)
    }

    fn sdp(&self) -> String {
        let params = &self.setup.params;
        format!(
            "v=0\r\n\
             o=- {session} 1 IN IP4 127.0.0.1\r\n\
             s=doorwarden simulated camera\r\n\
             c=IN IP4 0.0.0.0\r\n\
             t=0 0\r\n\
             a=tool:doorwarden-sim-camera\r\n\
             a=control:*\r\n\
             a=range:npt=now-\r\n\
             m=video 0 RTP/AVP 96\r\n\
             a=rtpmap:96 H264/90000\r\n\
             a=fmtp:96 packetization-mode=1;profile-level-id={profile};sprop-parameter-sets={sprop}\r\n\
             a=framerate:15\r\n\
             a=control:trackID=0\r\n",
            session = random_u64() >> 1,
            profile = params.profile_level_id(),
            sprop = params.sprop_parameter_sets(),
        )
    }
}

/// A frame to send: a bundled clip's, or one the live encoder shares.
enum FrameRef {
    Clip(&'static clip::Frame),
    Live(Arc<clip::Frame>),
}

/// The path of an `rtsp://host:port/path` URI without slashes at either
/// end, or `None` for a URI that is not absolute.
fn request_path(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("rtsp://")?;
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    Some(path.trim_matches('/'))
}

/// The request URI with exactly one trailing slash: the base for the
/// stream's control URL.
fn content_base(uri: &str) -> String {
    format!("{}/", uri.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths() {
        assert_eq!(request_path("rtsp://127.0.0.1:5/a/b"), Some("a/b"));
        assert_eq!(request_path("rtsp://127.0.0.1:5/a/b/"), Some("a/b"));
        assert_eq!(request_path("rtsp://u:p@127.0.0.1:5/a?x=1"), Some("a"));
        assert_eq!(request_path("rtsp://127.0.0.1:5"), Some(""));
        assert_eq!(request_path("*"), None);
        assert_eq!(content_base("rtsp://h/a/"), "rtsp://h/a/");
        assert_eq!(content_base("rtsp://h/a"), "rtsp://h/a/");
    }
}
