//! A real camera task (`doorwarden::io::rtsp`) feeding a real liveness
//! machine (`doorwarden::core::streams`, which is `core::liveness` for a
//! camera without a picture substream), the way the bridge's runtime
//! does, with every event and every state change recorded for a test or a
//! benchmark to look at.
//!
//! Include it with `#[path = "common/camera_watch.rs"] mod camera_watch;`.

#![allow(dead_code)] // each test file uses its own subset

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use doorwarden::config;
use doorwarden::core::liveness::{CameraSettings, LivenessKind, Transition};
use doorwarden::core::picture::PictureSample;
use doorwarden::core::streams::CameraStreams;
use doorwarden::core::{Event, EventKind, Stamp, SubstreamEvent};
use doorwarden::io::picture::{CloseLook, FfmpegProgram};
use doorwarden::io::rtsp::{CameraTask, CameraTiming};
use tokio::sync::{mpsc, watch};

/// What happened, in arrival order.
#[derive(Debug, Clone)]
pub enum Seen {
    /// An event from the camera task, recorded when the driver got it.
    Event(Instant, EventKind),
    /// A state change of the liveness machine.
    Change(Transition),
}

#[derive(Default)]
struct Record {
    seen: Vec<Seen>,
    state: Option<(LivenessKind, Option<String>)>,
}

/// One camera being watched.
pub struct CameraWatch {
    record: Arc<Mutex<Record>>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    driver: Option<tokio::task::JoinHandle<()>>,
}

pub fn camera(yaml: &str) -> config::Camera {
    serde_yaml::from_str(yaml).expect("camera yaml")
}

/// Short reconnect delays so a test sees several attempts.
pub fn quick(cfg: &config::Camera) -> CameraTiming {
    CameraTiming {
        backoff_min: Duration::from_millis(300),
        backoff_max: Duration::from_secs(1),
        ..CameraTiming::for_camera(cfg)
    }
}

fn stamp_now() -> Stamp {
    Stamp {
        mono: Instant::now(),
        wall: jiff::Timestamp::now(),
    }
}

impl CameraWatch {
    /// Starts the camera task for `cfg` (named "porch") with `timing`, and
    /// a driver that feeds its events to a `CameraStreams`, waking it at
    /// its `poll_timeout`.
    pub fn start(cfg: &config::Camera, timing: CameraTiming) -> CameraWatch {
        CameraWatch::start_looking(cfg, timing, CloseLook::default())
    }

    /// [`CameraWatch::start`], with the flag by which the runtime asks the
    /// camera task for a close look at the picture.
    pub fn start_looking(
        cfg: &config::Camera,
        timing: CameraTiming,
        close_look: CloseLook,
    ) -> CameraWatch {
        CameraWatch::start_with_ffmpeg(cfg, timing, close_look, FfmpegProgram::from_env())
    }

    /// [`CameraWatch::start_looking`], with ffmpeg where `ffmpeg` says (a
    /// test hides it with a path where there is none).
    pub fn start_with_ffmpeg(
        cfg: &config::Camera,
        timing: CameraTiming,
        close_look: CloseLook,
        ffmpeg: FfmpegProgram,
    ) -> CameraWatch {
        let (tx, mut rx) = mpsc::channel::<Event>(1024);
        let (stop, mut stopped) = watch::channel(false);
        let task = CameraTask::new("porch".into(), cfg)
            .timing(timing)
            .close_look(close_look)
            .ffmpeg(ffmpeg)
            .spawn(tx, async move {
                let _ = stopped.wait_for(|s| *s).await;
            });
        let record = Arc::new(Mutex::new(Record::default()));
        let sink = record.clone();
        let mut machine = CameraStreams::new(
            CameraSettings::from(cfg),
            cfg.picture_url.is_some(),
            stamp_now(),
        );
        let driver = tokio::spawn(async move {
            let keep = |sink: &Arc<Mutex<Record>>, seen: Seen, machine: &CameraStreams| {
                let mut r = sink.lock().expect("record lock");
                r.seen.push(seen);
                let state = machine.state();
                r.state = Some((state.kind(), state.reason()));
            };
            keep(
                &sink,
                Seen::Event(Instant::now(), EventKind::Tick),
                &machine,
            );
            loop {
                let deadline = machine.poll_timeout();
                let wake = async {
                    match deadline {
                        Some(t) => tokio::time::sleep_until(t.into()).await,
                        None => std::future::pending().await,
                    }
                };
                let change = tokio::select! {
                    event = rx.recv() => {
                        let Some(event) = event else { break };
                        let change = match &event.kind {
                            EventKind::CameraUp { .. } => machine.handle_up(event.at),
                            EventKind::CameraFrame { frame, .. } => machine.handle_frame(event.at, frame),
                            EventKind::CameraDown { reason, .. } => machine.handle_down(event.at, reason),
                            EventKind::CameraPicture { sample, .. } => machine.handle_picture(event.at, sample),
                            EventKind::Substream { event: sub, .. } => match sub {
                                SubstreamEvent::Up => machine.handle_sub_up(event.at),
                                SubstreamEvent::Frame(frame) => machine.handle_sub_frame(event.at, frame),
                                SubstreamEvent::Down { reason } => machine.handle_sub_down(event.at, reason),
                            },
                            _ => None,
                        };
                        keep(&sink, Seen::Event(Instant::now(), event.kind), &machine);
                        change
                    }
                    () = wake => machine.handle_timeout(stamp_now()),
                };
                if let Some(t) = change {
                    keep(&sink, Seen::Change(t), &machine);
                }
            }
        });
        CameraWatch {
            record,
            stop,
            task: Some(task),
            driver: Some(driver),
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.record.lock().expect("record lock").seen.clone()
    }

    /// Decoded pictures received so far.
    pub fn pictures(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| {
                matches!(
                    s,
                    Seen::Event(
                        _,
                        EventKind::CameraPicture {
                            sample: PictureSample::Picture { .. },
                            ..
                        }
                    )
                )
            })
            .count()
    }

    /// The machine's state right now, with its reason.
    pub fn state(&self) -> (LivenessKind, Option<String>) {
        self.record
            .lock()
            .expect("record lock")
            .state
            .clone()
            .unwrap_or((LivenessKind::Connecting, None))
    }

    pub fn events(&self) -> Vec<(Instant, EventKind)> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Event(_, EventKind::Tick) => None,
                Seen::Event(t, k) => Some((t, k)),
                Seen::Change(_) => None,
            })
            .collect()
    }

    pub fn changes(&self) -> Vec<Transition> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Change(t) => Some(t),
                Seen::Event(..) => None,
            })
            .collect()
    }

    /// Reasons of the `CameraDown` events so far.
    pub fn downs(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|(_, k)| match k {
                EventKind::CameraDown { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }

    pub fn frames_since(&self, since: Instant) -> usize {
        self.events()
            .iter()
            .filter(|(t, k)| *t >= since && matches!(k, EventKind::CameraFrame { .. }))
            .count()
    }

    /// The first state change at or after `since` that left `Live`.
    pub fn first_loss_since(&self, since: Instant) -> Option<Transition> {
        self.changes().into_iter().find(|t| {
            t.at.mono >= since && t.from == LivenessKind::Live && t.to != LivenessKind::Live
        })
    }

    /// Waits until `done` holds, or fails with `what` (and what was seen)
    /// after `limit`.
    pub async fn until(&self, what: &str, limit: Duration, done: impl Fn(&CameraWatch) -> bool) {
        let start = Instant::now();
        loop {
            if done(self) {
                return;
            }
            if start.elapsed() > limit {
                panic!(
                    "{what}: not within {limit:?}; now {:?}; seen: {:#?}",
                    self.state(),
                    self.summary()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn until_state(&self, kind: LivenessKind, limit: Duration) {
        self.until(&format!("state {kind:?}"), limit, |w| w.state().0 == kind)
            .await;
    }

    /// Events and changes, with runs of frames folded into a count.
    pub fn summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut frames = 0;
        let mut sub_frames = 0;
        for s in self.seen() {
            match s {
                Seen::Event(_, EventKind::CameraFrame { .. }) => frames += 1,
                Seen::Event(
                    _,
                    EventKind::Substream {
                        event: SubstreamEvent::Frame(_),
                        ..
                    },
                ) => sub_frames += 1,
                // Thumbnails are thousands of numbers: left out.
                Seen::Event(
                    _,
                    EventKind::CameraPicture {
                        sample: PictureSample::Picture { .. },
                        ..
                    },
                ) => {}
                Seen::Event(_, EventKind::Tick) => {}
                other => {
                    if frames > 0 {
                        out.push(format!("{frames} frames"));
                        frames = 0;
                    }
                    if sub_frames > 0 {
                        out.push(format!("{sub_frames} substream frames"));
                        sub_frames = 0;
                    }
                    out.push(match other {
                        Seen::Event(_, k) => format!("{k:?}"),
                        Seen::Change(t) => format!("{:?} -> {:?}: {:?}", t.from, t.to, t.reason),
                    });
                }
            }
        }
        if frames > 0 {
            out.push(format!("{frames} frames"));
        }
        if sub_frames > 0 {
            out.push(format!("{sub_frames} substream frames"));
        }
        out
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("camera task stops on shutdown")
                .expect("camera task did not panic");
        }
        if let Some(driver) = self.driver.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
        }
    }
}
