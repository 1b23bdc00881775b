//! Delivery evidence on real parts: `doorwarden run` as a child process,
//! GStreamer's RTSP server (tests/rtsp_server.py) as the camera, a real
//! Mosquitto, the simulated Zigbee2MQTT lock and contact sensor, and
//! `ffprobe` reading the clips the way any player would.
//!
//! What the owner would check: a clip per delivery that plays and lasts as
//! long as the delivery plus its pre- and post-roll, a sidecar that shows
//! when the camera was not live and why, the clip's hash in the audit
//! chain, `doorwarden audit verify` naming a clip that was altered, and a
//! clip that still plays after the bridge was killed mid-delivery.

mod common;
#[path = "common/gst.rs"]
mod gst;
#[path = "common/process_home.rs"]
mod process_home;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mosquitto::{Mosquitto, TestClient};
use doorwarden_sim::zigbee2mqtt_lock::{SimZigbeeContact, SimZigbeeLock};
use gst::RtspTestServer;
use process_home::{
    Bridge, LONG, LogFormat, Rules, audit_records, audited, camera_state_topic, config_text,
    contact_topic, door_topic, is_event, lock_topic, ready, request, wait_until,
};
use serde_json::Value;

const DOOR: &str = "front_door";
const PRE_ROLL: f64 = 2.0;
const POST_ROLL: f64 = 2.0;
/// The test clip's keyframe interval: a clip starts at a keyframe, up to
/// this much before the pre-roll.
const GOP: f64 = 1.0;

/// A home whose camera is the GStreamer server and whose clips go to
/// `recordings/` beside the storage.
struct Home {
    server: RtspTestServer,
    lock: SimZigbeeLock,
    contact: SimZigbeeContact,
    bridge: Bridge,
    storage: PathBuf,
    recordings: PathBuf,
    _dir: tempfile::TempDir,
}

impl Home {
    async fn start(broker: &Mosquitto) -> Home {
        Home::start_with(broker, |_| {}, "").await
    }

    /// Like [`Home::start`], letting `prepare` break the recordings path
    /// before the bridge starts.
    /// `retention` is added to the `recordings:` section as it is.
    async fn start_with(broker: &Mosquitto, prepare: impl FnOnce(&Path), retention: &str) -> Home {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = dir.path().join("storage");
        let recordings = dir.path().join("recordings");
        std::fs::create_dir_all(&storage).expect("storage dir");
        prepare(&recordings);
        let server = RtspTestServer::start();
        let lock = SimZigbeeLock::start("127.0.0.1", broker.port(), &lock_topic(DOOR))
            .await
            .expect("simulated lock");
        let contact = SimZigbeeContact::start("127.0.0.1", broker.port(), &contact_topic(DOOR))
            .await
            .expect("simulated contact sensor");
        // The camera's freeze must not end the delivery: the owner chose
        // to be alerted only, so the clip spans the whole freeze.
        let rules = Rules::default();
        let warmup = format!("    warmup: {}\n", rules.warmup);
        let mut text = config_text(&rules, broker, &server.url("/live"), &storage)
            .replace("on_camera_loss: relock", "on_camera_loss: alert_only")
            // About the clip on disk, which the picture check does not
            // touch; /live loops a pre-encoded clip, a replay to that check.
            .replacen(&warmup, &format!("{warmup}    picture_check: off\n"), 1);
        text.push_str(&format!(
            "recordings:\n  path: {:?}\n  pre_roll: {PRE_ROLL}s\n  post_roll: {POST_ROLL}s\n",
            recordings.display().to_string()
        ));
        text.push_str(retention);
        let config = dir.path().join("doorwarden.yaml");
        std::fs::write(&config, text).expect("write config");
        let bridge = Bridge::start(&config, &dir.path().join("logs"), LogFormat::Text, "info");
        Home {
            server,
            lock,
            contact,
            bridge,
            storage,
            recordings,
            _dir: dir,
        }
    }

    /// The door's clip and sidecar once the recorder put them in the
    /// audit chain.
    async fn evidence(&self) -> Value {
        self.nth_evidence(0).await
    }

    /// The `n`th delivery's `evidence_clip` record (from 0).
    async fn nth_evidence(&self, n: usize) -> Value {
        let mut found = None;
        wait_until("the clip's audit record", || {
            found = audited(&audit_records(&self.storage), DOOR, "evidence_clip")
                .get(n)
                .map(|r| (*r).clone());
            found.is_some()
        })
        .await;
        found.expect("evidence record")
    }
}

async fn observer(broker: &Mosquitto) -> TestClient {
    let mut obs = TestClient::connect(broker).await;
    obs.subscribe("doorwarden/#").await;
    obs
}

/// The delivery window opens, the pre-roll fills, and a courier is let
/// in. Returns when the unlock was seen.
async fn deliver(obs: &mut TestClient) -> Instant {
    obs.publish(&door_topic(DOOR, "delivery/grant/set"), "PRESS", false)
        .await;
    tokio::time::sleep(Duration::from_secs_f64(PRE_ROLL + GOP + 0.5)).await;
    let answer = request(obs, DOOR, r#"{"carrier":"Test Parcel"}"#).await;
    assert_eq!(answer["granted"], true, "{answer}");
    obs.wait_for(|m| is_event(m, DOOR, "unlocked"), LONG, "the unlock")
        .await;
    Instant::now()
}

/// `ffprobe`'s view of a file: the container's duration and the first
/// video stream's codec, or its complaint.
fn ffprobe(path: &Path) -> Result<(f64, String), String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-of",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(path)
        .output()
        .map_err(|e| format!("run ffprobe: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let info: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let duration = info["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse::<f64>().ok())
        .ok_or_else(|| format!("no duration: {info}"))?;
    let codec = info["streams"][0]["codec_name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok((duration, codec))
}

/// The chapter titles `ffprobe` finds in a clip, in order.
fn chapter_titles(path: &Path) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json", "-show_chapters"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    let info: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    info["chapters"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["tags"]["title"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Decodes every frame; what ffmpeg says about damage comes back.
fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn seconds_between(from: &str, to: &str) -> f64 {
    let from: jiff::Timestamp = from.parse().expect("timestamp");
    let to: jiff::Timestamp = to.parse().expect("timestamp");
    (to - from).as_secs_f64()
}

fn sha256_hex(path: &Path) -> String {
    doorwarden::io::record::file_facts(path)
        .expect("read clip")
        .0
}

fn audit_verify(storage: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_doorwarden"))
        .args(["audit", "verify"])
        .arg(storage)
        .output()
        .expect("run doorwarden audit verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_with_a_frozen_camera_leaves_a_playable_clip_its_sidecar_and_its_hash_in_the_chain()
 {
    let broker = Mosquitto::start();
    let mut obs = observer(&broker).await;
    let mut home = Home::start(&broker).await;
    ready(&mut obs, DOOR).await;

    let unlocked = deliver(&mut obs).await;
    home.contact.open().await.expect("open the door");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The picture freezes while the courier is inside, then comes back.
    home.server.command("still");
    let camera = camera_state_topic();
    obs.wait_for(
        |m| m.topic == camera && m.json()["state"] == "frozen",
        LONG,
        "the camera to be shown frozen",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    home.server.command("moving");
    obs.wait_for(
        |m| m.topic == camera && m.json()["live"] == true,
        LONG,
        "the camera to be live again",
    )
    .await;
    home.contact.close().await.expect("close the door");
    obs.wait_for(
        |m| is_event(m, DOOR, "completed"),
        LONG,
        "the delivery's end",
    )
    .await;
    let completed = Instant::now();
    wait_until("the relock", || home.lock.is_locked()).await;
    // Home Assistant hears of the clip once it is on disk.
    let saved = obs
        .wait_for(
            |m| is_event(m, DOOR, "evidence_saved"),
            LONG,
            "the clip to be announced",
        )
        .await
        .json();

    let record = home.evidence().await;
    let details = &record["details"];
    assert_eq!(details["camera"], "porch", "{record}");
    let clip_name = details["clips"][0]["file"].as_str().expect("a clip");
    let clip = home.recordings.join(clip_name);
    let (duration, codec) = ffprobe(&clip).expect("ffprobe reads the clip");
    assert_eq!(codec, "h264");
    assert_eq!(saved["clip"], clip_name, "{saved}");
    assert_eq!(saved["camera"], "porch", "{saved}");
    let announced = saved["clip_duration_s"].as_f64().unwrap_or_default();
    assert!(
        (announced - duration).abs() < 0.2,
        "{saved} vs ffprobe {duration}"
    );
    let errors = decode_errors(&clip);
    assert!(errors.is_empty(), "ffmpeg found damage: {errors}");

    // As long as the delivery plus the rolls: from the unlock event (the
    // delivery's start as the owner sees it) to the completed event.
    let delivery_s = completed.duration_since(unlocked).as_secs_f64();
    let expected = PRE_ROLL + delivery_s + POST_ROLL;
    assert!(
        duration > expected - 1.0 && duration < expected + GOP + 1.0,
        "clip lasts {duration:.2} s, delivery with rolls {expected:.2} s"
    );

    // The sidecar marks the frozen span, with its reason.
    let sidecar_path = home
        .recordings
        .join(details["sidecar"]["file"].as_str().expect("a sidecar"));
    let sidecar: Value =
        serde_json::from_slice(&std::fs::read(&sidecar_path).expect("read sidecar"))
            .expect("sidecar is JSON");
    let spans = sidecar["not_live"].as_array().expect("not_live spans");
    let frozen: Vec<&Value> = spans.iter().filter(|s| s["state"] == "frozen").collect();
    assert_eq!(frozen.len(), 1, "{sidecar:#}");
    let frozen_s = seconds_between(
        frozen[0]["from"].as_str().unwrap_or_default(),
        frozen[0]["to"].as_str().unwrap_or_default(),
    );
    assert!(frozen_s > 1.0 && frozen_s < 10.0, "{sidecar:#}");
    assert!(
        frozen[0]["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{sidecar:#}"
    );
    // A player shows the frozen span too: chapter marks in the MP4.
    let titles = chapter_titles(&clip);
    let reason = frozen[0]["reason"].as_str().unwrap_or_default();
    assert!(
        titles.contains(&format!("camera frozen: {reason}")),
        "{titles:?}"
    );
    assert!(
        titles.iter().any(|t| t == "camera live again"),
        "{titles:?}"
    );
    let events: Vec<&str> = sidecar["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    for kind in ["unlocked", "door_opened", "door_closed", "completed"] {
        assert!(events.contains(&kind), "{kind} missing from {events:?}");
    }

    // The chain holds both files' hashes.
    assert_eq!(details["clips"][0]["sha256"], sha256_hex(&clip));
    assert_eq!(details["sidecar"]["sha256"], sha256_hex(&sidecar_path));

    // One byte changed in the clip: verify names it.
    home.bridge.kill();
    let (ok, text) = audit_verify(&home.storage);
    assert!(ok, "an intact chain and clip verify: {text}");
    let mut bytes = std::fs::read(&clip).expect("read clip");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&clip, bytes).expect("alter clip");
    let (ok, text) = audit_verify(&home.storage);
    assert!(!ok, "an altered clip must fail verification: {text}");
    assert!(
        text.contains(clip_name) && text.contains("altered"),
        "verify must name the altered clip: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_killed_mid_delivery_leaves_a_clip_that_plays_up_to_the_kill() {
    let broker = Mosquitto::start();
    let mut obs = observer(&broker).await;
    let mut home = Home::start(&broker).await;
    ready(&mut obs, DOOR).await;
    deliver(&mut obs).await;
    home.contact.open().await.expect("open the door");
    tokio::time::sleep(Duration::from_secs(4)).await;
    home.bridge.kill();

    let clips: Vec<PathBuf> = std::fs::read_dir(&home.recordings)
        .expect("recordings directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mp4"))
        .collect();
    assert_eq!(clips.len(), 1, "{clips:?}");
    let (duration, codec) = ffprobe(&clips[0]).expect("ffprobe reads the cut clip");
    assert_eq!(codec, "h264");
    // Pre-roll and four seconds of delivery, less at most the fragment
    // that was being written.
    assert!(
        duration > PRE_ROLL + 4.0 - 2.0,
        "the killed clip plays {duration:.2} s"
    );
    let errors = decode_errors(&clips[0]);
    assert!(errors.is_empty(), "ffmpeg found damage: {errors}");

    // Started again, the bridge relocks the interrupted delivery, keeps
    // the cut clip as it is and puts it in the chain, kept until the owner
    // acknowledges it; the clip of the restarted session has a name of its
    // own.
    let cut = clips[0].clone();
    let cut_name = cut.file_name().map(|n| n.to_string_lossy().into_owned());
    let before = sha256_hex(&cut);
    home.bridge.restart();
    let mut records = Vec::new();
    wait_until("both clips in the chain", || {
        records = audited(&audit_records(&home.storage), DOOR, "evidence_clip")
            .into_iter()
            .cloned()
            .collect();
        records.len() >= 2
    })
    .await;
    let adopted = records
        .iter()
        .find(|r| r["details"]["clips"][0]["file"].as_str() == cut_name.as_deref())
        .expect("the cut clip's record");
    assert_eq!(adopted["details"]["clips"][0]["sha256"], before.as_str());
    assert_eq!(adopted["details"]["compromised"], true, "{adopted}");
    let cut_seconds = adopted["details"]["clips"][0]["duration_s"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(
        (cut_seconds - duration).abs() < 0.5,
        "{adopted} vs ffprobe {duration}"
    );
    assert_eq!(sha256_hex(&cut), before, "the cut clip was not touched");
    let sidecar = home.recordings.join(
        adopted["details"]["sidecar"]["file"]
            .as_str()
            .expect("sidecar"),
    );
    let side: Value =
        serde_json::from_slice(&std::fs::read(sidecar).expect("sidecar")).expect("sidecar JSON");
    assert!(side["cut_short"].as_str().is_some(), "{side:#}");
    let files: Vec<&str> = records
        .iter()
        .filter_map(|r| r["details"]["clips"][0]["file"].as_str())
        .collect();
    assert!(
        files
            .iter()
            .filter(|f| Some(**f) == cut_name.as_deref())
            .count()
            == 1,
        "{files:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_that_cannot_be_written_never_stop_a_delivery_and_the_owner_is_told() {
    let broker = Mosquitto::start();
    let mut obs = observer(&broker).await;
    // A file where the recordings folder should be: nothing can go in it.
    let home = Home::start_with(
        &broker,
        |path| std::fs::write(path, b"not a directory").expect("block the recordings path"),
        "",
    )
    .await;
    let health = obs
        .wait_for(
            |m| m.topic == "doorwarden/bridge/health" && m.json()["problem"] == true,
            LONG,
            "the problem entity to turn on",
        )
        .await
        .json();
    let reason = health["reason"].as_str().unwrap_or_default();
    assert!(
        reason
            .starts_with("no delivery evidence is being kept: cannot use the recordings directory"),
        "{health}"
    );
    ready(&mut obs, DOOR).await;
    deliver(&mut obs).await;
    home.contact.open().await.expect("open the door");
    home.contact.close().await.expect("close the door");
    obs.wait_for(
        |m| is_event(m, DOOR, "completed"),
        LONG,
        "the delivery's end",
    )
    .await;
    wait_until("the relock", || home.lock.is_locked()).await;
    assert!(audited(&audit_records(&home.storage), DOOR, "evidence_clip").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h265_camera_is_recorded_as_h265_without_re_encoding() {
    use doorwarden::core::Evidence;
    use doorwarden::io::record::{ClipReport, Recorders};
    use doorwarden::io::rtsp::CameraTask;

    // No H.265 clip is bundled: encode one (open GOP, CRA keyframes after
    // the first, as x265 makes by default).
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("moving.h265");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=640x360:rate=15:duration=4", "-an"])
        .args(["-c:v", "libx265", "-preset", "ultrafast", "-x265-params"])
        .arg("keyint=15:min-keyint=15:bframes=0:repeat-headers=1:log-level=error")
        .args(["-f", "hevc"])
        .arg(&source)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg could not encode the H.265 clip");
    let server = RtspTestServer::start_with(&["--mount", &format!("hevc={}", source.display())]);

    let recordings = dir.path().join("recordings");
    let cfg: doorwarden::config::Recordings = serde_yaml::from_str(&format!(
        "path: {:?}\npre_roll: 1s\npost_roll: 1s\n",
        recordings.display().to_string()
    ))
    .expect("recordings yaml");
    let (recorders, taps, mut reports) =
        Recorders::start(&cfg, ["porch".to_string()]).expect("recorders start");
    let camera: doorwarden::config::Camera =
        serde_yaml::from_str(&format!("url: {:?}", server.url("/hevc"))).expect("camera yaml");
    let (events, mut rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let tap = taps.into_iter().next().expect("a tap").1;
    let task = CameraTask::new("porch".into(), &camera)
        .recorder(tap)
        .spawn(events, async move {
            let _ = stopped.wait_for(|s| *s).await;
        });

    let delivery = jiff::Timestamp::now();
    let cameras = vec!["porch".to_string()];
    recorders.evidence(&Evidence::Watch {
        door: DOOR.into(),
        cameras: cameras.clone(),
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    recorders.evidence(&Evidence::Start {
        door: DOOR.into(),
        delivery,
        cameras,
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    recorders.evidence(&Evidence::Stop {
        door: DOOR.into(),
        delivery,
        compromised: false,
    });
    let report = tokio::time::timeout(LONG, reports.recv())
        .await
        .expect("a report in time")
        .expect("a report");
    let _ = stop.send(true);
    let _ = task.await;
    tokio::task::spawn_blocking(move || recorders.stop())
        .await
        .expect("recorders stop");

    let ClipReport::Done { clips, .. } = report else {
        panic!("expected a finished clip, got {report:?}");
    };
    assert_eq!(clips.len(), 1, "{clips:?}");
    let clip = recordings.join(&clips[0].name);
    let (duration, codec) = ffprobe(&clip).expect("ffprobe reads the clip");
    assert_eq!(codec, "hevc");
    // One second of pre-roll (from a keyframe up to a second earlier),
    // three of delivery, one of post-roll.
    assert!(duration > 4.0 && duration < 6.5, "{duration:.2} s");
    let errors = decode_errors(&clip);
    assert!(errors.is_empty(), "ffmpeg found damage: {errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_oldest_first_keeps_a_tripped_delivery_until_acknowledged_and_verify_explains_it()
 {
    let broker = Mosquitto::start();
    let mut obs = observer(&broker).await;
    // Room for no clip at all: every clip goes as soon as it is saved,
    // unless retention must keep it.
    let mut home = Home::start_with(&broker, |_| {}, "  retention:\n    max_size: 1B\n").await;
    ready(&mut obs, DOOR).await;
    let camera = camera_state_topic();

    // First delivery: the picture freezes, the interlock trips.
    deliver(&mut obs).await;
    home.contact.open().await.expect("open the door");
    home.server.command("still");
    obs.wait_for(
        |m| is_event(m, DOOR, "interlock_tripped"),
        LONG,
        "the interlock to trip",
    )
    .await;
    home.server.command("moving");
    obs.wait_for(
        |m| m.topic == camera && m.json()["live"] == true,
        LONG,
        "the camera to be live again",
    )
    .await;
    home.contact.close().await.expect("close the door");
    let tripped = home.nth_evidence(0).await;
    assert_eq!(tripped["details"]["compromised"], true, "{tripped}");
    let tripped_clip = tripped["details"]["clips"][0]["file"]
        .as_str()
        .expect("clip")
        .to_string();

    // Second delivery, uneventful: deleted as soon as it is saved.
    deliver(&mut obs).await;
    home.contact.open().await.expect("open the door");
    home.contact.close().await.expect("close the door");
    let plain = home.nth_evidence(1).await;
    assert_eq!(plain["details"]["compromised"], false, "{plain}");
    let plain_clip = plain["details"]["clips"][0]["file"]
        .as_str()
        .expect("clip")
        .to_string();
    wait_until("retention to delete the plain clip", || {
        !home.recordings.join(&plain_clip).exists()
    })
    .await;
    // The tripped delivery's clip is older and over the limit, and stays.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(home.recordings.join(&tripped_clip).exists());
    let records = audit_records(&home.storage);
    let deletions: Vec<&Value> = records
        .iter()
        .filter(|r| r["decision"] == "evidence_deleted")
        .collect();
    assert_eq!(deletions.len(), 1, "{deletions:#?}");
    assert!(
        deletions[0]["details"]["files"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == plain_clip.as_str())),
        "{deletions:#?}"
    );

    // The owner looks at it and presses the button: now it may go.
    obs.publish(
        &door_topic(DOOR, "delivery/evidence_ack/set"),
        "PRESS",
        false,
    )
    .await;
    wait_until("retention to delete the acknowledged clip", || {
        !home.recordings.join(&tripped_clip).exists()
    })
    .await;
    assert_eq!(
        audited(&audit_records(&home.storage), DOOR, "evidence_acknowledged").len(),
        1
    );

    home.bridge.kill();
    let (ok, text) = audit_verify(&home.storage);
    assert!(ok, "clips deleted by retention verify: {text}");
    for clip in [&tripped_clip, &plain_clip] {
        assert!(
            text.contains(&format!("deleted by retention: {clip}")),
            "{text}"
        );
    }
}
