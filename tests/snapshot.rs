//! The owner's snapshot end to end: `doorwarden run`'s own code
//! ([`doorwarden::runtime::run`]) watching a real GStreamer camera
//! (tests/rtsp_server.py, encoded live by x264) with `picture_check` on,
//! publishing to a real Mosquitto. What is checked is what Home Assistant
//! would get: the image entity's config, the retained JPEG on its image
//! topic (decoded by ffprobe, as a viewer would) and the time beside it;
//! and, for a camera that is never live, no picture at all.
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

    // A delivery event of the camera's door names the newest verified
    // snapshot, which a notification attaches.
    ha.subscribe("doorwarden/front/delivery/event").await;
    ha.drain();
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
    let at: jiff::Timestamp = event["snapshot_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("snapshot_at in {event}"));
    assert!(
        at >= taken,
        "event names {at}, an older picture than {taken}"
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
    bridge.stop().await;
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
