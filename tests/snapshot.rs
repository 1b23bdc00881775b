//! The owner's snapshot end to end: `doorwarden run`'s own code
//! ([`doorwarden::runtime::run`]) watching a real GStreamer camera
//! (tests/rtsp_server.py, encoded live by x264) with `picture_check` on,
//! publishing to a real Mosquitto. What is checked is what Home Assistant
//! would get: the image entity's config, the retained JPEG on its image
//! topic (decoded by ffprobe, as a viewer would) and the time beside it;
//! a delivery event's own picture (taken at or after the event, shown a few
//! seconds later); and, for a camera that is never live, no picture at all.
//!
//! Timing margins are generous (shared, noisy machines).

mod common;
#[path = "common/gst.rs"]
mod gst;

use std::process::Command;
use std::time::Duration;

use common::mosquitto::{Mosquitto, TestClient};
use gst::RtspTestServer;

/// Connect, warmup, picture checks and the snapshot's hold on a busy
/// machine.
const LONG: Duration = Duration::from_secs(45);

const IMAGE: &str = "doorwarden/camera/porch/snapshot";
const META: &str = "doorwarden/camera/porch/snapshot/meta";

struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }
}

fn start(broker: &Mosquitto, camera_url: &str) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("storage");
    std::fs::create_dir_all(&storage).expect("storage dir");
    let text = format!(
        "mqtt:\n  url: {}\n  keep_alive: 5s\n\
         locks:\n  front:\n    zigbee2mqtt:\n      topic: zigbee2mqtt/front_lock\n    cameras: [porch]\n\
         cameras:\n  porch:\n    url: {camera_url}\n    picture_check: required\n\
         storage:\n  dir: {:?}\n",
        broker.url(),
        storage.display().to_string()
    );
    let config = match doorwarden::config::load_str(&text, "snapshot.yaml") {
        Ok(c) => c,
        Err(e) => panic!("test config: {e}"),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = doorwarden::runtime::run(config, shutdown).await {
            panic!("bridge stopped: {e}");
        }
    });
    Running {
        stop,
        task,
        _dir: dir,
    }
}

/// Width and height of a JPEG as ffprobe decodes it.
fn probe(jpeg: &[u8]) -> (u32, u32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("snapshot.jpg");
    std::fs::write(&file, jpeg).expect("write jpeg");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height,pix_fmt",
            "-of",
            "csv=p=0",
        ])
        .arg(&file)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fields: Vec<&str> = text.trim().split(',').collect();
    // A colour picture: 4:2:0 or 4:4:4 YCbCr, never gray.
    assert!(
        fields.get(2).is_some_and(|f| f.starts_with("yuv")),
        "pixel format: {text}"
    );
    let number = |i: usize| -> u32 {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("ffprobe said {text}"))
    };
    (number(0), number(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_camera_shows_its_verified_picture_with_its_time() {
    let broker = Mosquitto::start();
    let server = RtspTestServer::start();
    let mut ha = TestClient::connect(&broker).await;
    ha.subscribe("homeassistant/image/#").await;
    ha.subscribe("doorwarden/camera/porch/#").await;
    let bridge = start(&broker, &server.url("/cam-live"));

    let config = ha
        .wait_topic(
            "homeassistant/image/doorwarden_camera_porch_snapshot/config",
            LONG,
        )
        .await
        .json();
    assert_eq!(config["image_topic"], IMAGE);
    assert_eq!(config["content_type"], "image/jpeg");
    assert_eq!(config["json_attributes_topic"], META);

    let image = ha.wait_topic(IMAGE, LONG).await;
    let published = jiff::Timestamp::now();
    assert_eq!(&image.payload[..2], &[0xFF, 0xD8], "JPEG start of image");
    assert_eq!(probe(&image.payload), (320, 180));
    let meta = ha.wait_topic(META, LONG).await;
    let taken: jiff::Timestamp = meta.json()["taken_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("taken_at in {}", meta.text()));
    // Held a few seconds before it is shown, never older than a minute,
    // never from the future.
    let age = published.duration_since(taken);
    assert!(
        age >= jiff::SignedDuration::ZERO && age < jiff::SignedDuration::from_secs(60),
        "taken {taken}, published {published}"
    );

    // A subscriber that comes later (Home Assistant after a restart) gets
    // the picture and its time from the broker: both are retained.
    let mut late = TestClient::connect(&broker).await;
    late.subscribe(IMAGE).await;
    let again = late.wait_topic(IMAGE, LONG).await;
    assert!(again.retain, "the snapshot is retained");
    assert_eq!(&again.payload[..2], &[0xFF, 0xD8]);
    late.subscribe(META).await;
    let meta_again = late.wait_topic(META, LONG).await;
    assert!(meta_again.retain, "its time is retained");
    assert!(meta_again.json()["taken_at"].is_string());

    // A delivery event of the camera's door: the owner wants the picture
    // of that moment, not one from before it. The event says from when
    // (`snapshot_due`), at once; a verified picture taken at or after that
    // time follows on the image entity, its JPEG before its time.
    ha.subscribe("doorwarden/front/delivery/event").await;
    ha.drain();
    let pressed = jiff::Timestamp::now();
    ha.publish("doorwarden/front/delivery/grant/set", "PRESS", false)
        .await;
    let event = ha
        .wait_for(
            |m| m.topic == "doorwarden/front/delivery/event",
            LONG,
            "a delivery event",
        )
        .await
        .json();
    let due: jiff::Timestamp = event["snapshot_due"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("snapshot_due in {event}"));
    assert!(due >= pressed, "due {due}, before the press at {pressed}");
    // The newest picture already shown is named too, for a notification
    // that cannot wait: it is older than the event.
    let before: jiff::Timestamp = event["snapshot_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("snapshot_at in {event}"));
    assert!(before >= taken && before < due, "{event}");
    let mut jpeg_seen = false;
    let fresh = ha
        .wait_for(
            |m| {
                if m.topic == IMAGE {
                    jpeg_seen = m.payload.starts_with(&[0xFF, 0xD8]);
                }
                m.topic == META
                    && m.json()["taken_at"]
                        .as_str()
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                        .is_some_and(|t| t >= due)
            },
            LONG,
            "a verified picture taken at or after the event",
        )
        .await;
    assert!(jpeg_seen, "the picture came before its time");
    let fresh_at: jiff::Timestamp = fresh.json()["taken_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("taken_at in {}", fresh.text()));
    // The frame that follows the event, not one a while later.
    assert!(
        fresh_at.duration_since(due) < jiff::SignedDuration::from_secs(5),
        "asked at {due}, taken at {fresh_at}"
    );
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_that_is_never_live_never_shows_a_picture() {
    let broker = Mosquitto::start();
    let server = RtspTestServer::start();
    let mut ha = TestClient::connect(&broker).await;
    ha.subscribe("doorwarden/camera/porch/#").await;
    let bridge = start(&broker, &server.url("/cam-still"));
    let mut shown = Vec::new();
    // Judged frozen (its pictures are decoded, so candidates are made) ...
    ha.wait_for(
        |m| {
            if m.topic.starts_with(IMAGE) {
                shown.push(m.topic.clone());
            }
            m.topic == "doorwarden/camera/porch/state" && m.json()["state"] == "frozen"
        },
        LONG,
        "the still camera judged frozen",
    )
    .await;
    // ... and for well past the snapshot pacing and hold, nothing was
    // shown.
    ha.try_wait_for(
        |m| {
            if m.topic.starts_with(IMAGE) {
                shown.push(m.topic.clone());
            }
            false
        },
        Duration::from_secs(15),
    )
    .await;
    assert!(shown.is_empty(), "published: {shown:?}");

    // A delivery event says, at once, that no picture of the moment will
    // follow (no camera of the door is live) and that none was ever shown,
    // so a notification neither waits for one nor attaches one.
    ha.subscribe("doorwarden/front/delivery/event").await;
    ha.publish("doorwarden/front/delivery/grant/set", "PRESS", false)
        .await;
    let event = ha
        .wait_for(
            |m| m.topic == "doorwarden/front/delivery/event",
            LONG,
            "a delivery event",
        )
        .await
        .json();
    assert_eq!(
        event.get("snapshot_due"),
        Some(&serde_json::Value::Null),
        "{event}"
    );
    assert_eq!(
        event.get("snapshot_at"),
        Some(&serde_json::Value::Null),
        "{event}"
    );
    bridge.stop().await;
}

/// Outside a close look (no window open, no delivery) only one keyframe in
/// 10 s is decoded. A delivery event's picture must not wait for that one:
/// the camera task decodes the next keyframe for it (the test camera sends
/// one a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_a_close_look_an_events_picture_is_the_next_keyframe() {
    use doorwarden::io::picture::CloseLook;
    use doorwarden::io::rtsp::CameraTask;
    use doorwarden::io::snapshot::{SnapshotRequest, SnapshotTap};

    let server = RtspTestServer::start();
    let cam: doorwarden::config::Camera = serde_yaml::from_str(&format!(
        "url: {}\npicture_check: required\n",
        server.url("/cam-live")
    ))
    .expect("camera yaml");
    let (tap, mut pictures) = SnapshotTap::channel();
    let request = SnapshotRequest::default();
    let (events, mut sink) = tokio::sync::mpsc::channel(1024);
    let drain = tokio::spawn(async move { while sink.recv().await.is_some() {} });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = CameraTask::new("porch".into(), &cam)
        .close_look(CloseLook::default())
        .snapshots(tap, request.clone())
        .spawn(events, async move {
            let _ = stopped.await;
        });
    // The session's first seconds are a close look; the candidates after
    // it come from the one keyframe decoded every 10 s. Right after one of
    // those, the next idle keyframe is 10 s away.
    let started = std::time::Instant::now();
    let mut idle = next(&mut pictures).await;
    while started.elapsed() < Duration::from_secs(8) {
        idle = next(&mut pictures).await;
    }
    let asked_at = jiff::Timestamp::now();
    request.ask(std::time::Instant::now());
    let asked = next(&mut pictures).await;
    assert!(
        asked.taken_at >= asked_at,
        "taken {} before the ask at {asked_at}",
        asked.taken_at
    );
    // The picture of the moment: the next keyframe, not the idle one
    // (whose turn comes 10 s after the last idle picture).
    assert!(
        asked.taken_at.duration_since(asked_at) < jiff::SignedDuration::from_secs(3),
        "asked at {asked_at}, taken at {} (last idle picture {})",
        asked.taken_at,
        idle.taken_at
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    drain.abort();
}

async fn next(
    pictures: &mut tokio::sync::mpsc::Receiver<doorwarden::io::snapshot::Candidate>,
) -> doorwarden::io::snapshot::Candidate {
    match tokio::time::timeout(LONG, pictures.recv()).await {
        Ok(Some(p)) => p,
        Ok(None) => panic!("the camera task stopped making snapshot candidates"),
        Err(_) => panic!("no snapshot candidate within {LONG:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h265_camera_shows_its_verified_picture_decoded_by_ffmpeg() {
    let broker = Mosquitto::start();
    let server = RtspTestServer::start();
    let mut ha = TestClient::connect(&broker).await;
    ha.subscribe("doorwarden/camera/porch/#").await;
    let bridge = start(&broker, &server.url("/cam-live265"));
    let image = ha.wait_topic(IMAGE, LONG).await;
    assert_eq!(&image.payload[..2], &[0xFF, 0xD8], "JPEG start of image");
    // ffmpeg hands over every picture at 640x360, the snapshot's width.
    assert_eq!(probe(&image.payload), (640, 360));
    let meta = ha.wait_topic(META, LONG).await;
    assert!(meta.json()["taken_at"].is_string(), "{}", meta.text());
    bridge.stop().await;
}
