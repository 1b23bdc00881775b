//! Bridge benchmark: prints figures, asserts nothing.
//!
//! ```text
//! cargo bench --bench bridge
//! DOORWARDEN_BENCH_COMMANDS=200 DOORWARDEN_BENCH_IDLE_SECS=20 cargo bench --bench bridge   # quick
//! DOORWARDEN_BENCH_PARTS=latency,relock cargo bench --bench bridge                         # some parts
//! ```
//!
//! Every part runs the real `doorwarden run --config` binary as a child
//! process against a real Mosquitto on a free 127.0.0.1 port; the bench
//! process plays Home Assistant, the Zigbee2MQTT locks and contact sensors
//! (`doorwarden_sim`) and the RTSP cameras (`SimCamera`, 640x360, 15 fps).
//!
//! - **latency**: Home Assistant publishes `UNLOCK`/`LOCK` (alternately) on
//!   `doorwarden/<door>/lock/set`; timed until the lock's client receives
//!   `{"state":"UNLOCK"}`/`LOCK` on `zigbee2mqtt/<lock>/set`. After each
//!   command the bench waits for the lock to report its new state, then
//!   times one plain broker round trip (publish on the HA client, receive on
//!   the lock's client) as the floor. `DOORWARDEN_BENCH_COMMANDS` (1000).
//! - **startup**: 50 doors / 100 cameras (`DOORWARDEN_BENCH_DOORS`,
//!   `DOORWARDEN_BENCH_CAMERAS`) whose URLs are closed loopback ports; from
//!   spawning the bridge to the last expected discovery config on
//!   `homeassistant/#` (the expected set is what `ha::Mirror` builds from
//!   the same config). `DOORWARDEN_BENCH_STARTUPS` runs (5), a fresh broker
//!   each; a run missing configs after `DOORWARDEN_BENCH_DISCOVERY_WAIT_SECS`
//!   (20) says how many never came and is left out of the median.
//! - **idle**: the same home, first with every camera unreachable, then with
//!   one `SimCamera` per camera in the bench process and a simulated lock and
//!   contact per door. After the cameras settle, CPU over
//!   `DOORWARDEN_BENCH_IDLE_SECS` (60) and RSS / peak RSS of the bridge
//!   process alone.
//! - **relock** (issue 6): a door with one camera; a delivery is granted and
//!   unlocked with the door shut, the camera freezes, and the time from the
//!   freeze to `{"state":"LOCK"}` on the lock's set topic is taken.
//!   `DOORWARDEN_BENCH_RELOCKS` runs (20).
//! - **flood** (issue 12): the same door; during each delivery an attacker
//!   on the broker publishes 150,000 courier requests at QoS 0, or 20,000
//!   at QoS 1, with `mosquitto_pub -l`, and the camera freezes one second
//!   into the flood. The time from the freeze to `LOCK` on the lock's set
//!   topic, with no flood and under each flood in the same run, and how many
//!   doors were left unlocked. `DOORWARDEN_BENCH_FLOOD_RUNS` runs (5) each.
//! - **core_frames** (issue 15, not in the default set): the core alone, no
//!   I/O: 32 cameras on 16 doors (8 with a window open) at 15 fps, each
//!   frame a distinct picture. CPU time per frame inside `Core::handle` over
//!   `DOORWARDEN_BENCH_FRAME_SECS` (300) simulated seconds, median of 5 runs,
//!   and what that is as a share of one core for the 32 cameras.

#![allow(clippy::print_stdout)]

#[allow(dead_code)]
#[path = "../tests/common/mosquitto.rs"]
mod mosquitto;
#[allow(dead_code)]
#[path = "common/rig.rs"]
mod rig;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use doorwarden_sim::camera::{SimCamera, SimCameraOptions};
use doorwarden_sim::zigbee2mqtt_lock::{SimZigbeeContact, SimZigbeeLock};
use mosquitto::Mosquitto;
use rig::{BridgeProcess, HomeSpec, Observer, env_or, ms, summarize};

const LONG: Duration = Duration::from_secs(30);

fn main() {
    let parts = std::env::var("DOORWARDEN_BENCH_PARTS")
        .unwrap_or_else(|_| "latency,startup,idle,relock,flood".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "doorwarden bridge bench, {} ({} CPUs seen)",
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if parts.contains("latency") {
        runtime.block_on(latency());
    }
    if parts.contains("startup") {
        runtime.block_on(startup());
    }
    if parts.contains("idle") {
        runtime.block_on(idle());
    }
    if parts.contains("relock") {
        runtime.block_on(relock());
    }
    if parts.contains("flood") {
        runtime.block_on(flood());
    }
    if parts.contains("core_frames") {
        core_frames();
    }
}

fn door_state_topic(d: usize) -> String {
    format!("doorwarden/{}/state", rig::door_name(d))
}

fn is_lock_set(m: &rig::Seen, d: usize, word: &str) -> bool {
    m.topic == format!("{}/set", rig::lock_topic(d)) && m.json()["state"] == word
}

// --- (a) command latency -----------------------------------------------------

async fn latency() {
    let n: usize = env_or("DOORWARDEN_BENCH_COMMANDS", 1000);
    println!("\n== (a) command latency: {n} commands, alternating UNLOCK/LOCK, one door");
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let _lock = SimZigbeeLock::start("127.0.0.1", broker.port(), &rig::lock_topic(0))
        .await
        .expect("simulated lock");
    let _contact = SimZigbeeContact::start("127.0.0.1", broker.port(), &rig::contact_topic(0))
        .await
        .expect("simulated contact");
    let mut ha = Observer::connect(broker.port(), "bench-ha").await;
    ha.subscribe(&door_state_topic(0)).await;
    let mut radio = Observer::connect(broker.port(), "bench-lock-side").await;
    radio
        .subscribe(&format!("{}/set", rig::lock_topic(0)))
        .await;
    radio.subscribe("bench/floor").await;

    let config = rig::config_text(&HomeSpec {
        broker_port: broker.port(),
        camera_urls: &[],
        door_cameras: &[vec![]],
        camera_extra: "",
        deliveries: None,
        storage: &dir.path().join("storage"),
    });
    let _bridge = BridgeProcess::spawn(dir.path(), &config);
    let state = door_state_topic(0);
    if ha
        .wait_for(|m| m.topic == state && m.json()["lock"] == "LOCKED", LONG)
        .await
        .is_none()
    {
        println!("   the bridge never reported the lock LOCKED; skipped");
        return;
    }

    let set = "doorwarden/door000/lock/set";
    let mut bridge_ms = Vec::with_capacity(n);
    let mut floor_ms = Vec::with_capacity(n);
    let mut lost = 0usize;
    for i in 0..n {
        let (word, reported) = if i % 2 == 0 {
            ("UNLOCK", "UNLOCKED")
        } else {
            ("LOCK", "LOCKED")
        };
        ha.drain();
        radio.drain();
        let t0 = Instant::now();
        ha.publish(set, word).await;
        match radio.wait_for(|m| is_lock_set(m, 0, word), LONG).await {
            Some(m) => bridge_ms.push(ms(m.at - t0)),
            None => lost += 1,
        }
        // The lock answers and the bridge publishes the new state: only
        // then is the next command a fresh press.
        let _ = ha
            .wait_for(|m| m.topic == state && m.json()["lock"] == reported, LONG)
            .await;
        let payload = format!("{i}");
        let t0 = Instant::now();
        ha.publish("bench/floor", payload.clone()).await;
        if let Some(m) = radio
            .wait_for(
                |m| m.topic == "bench/floor" && m.payload == payload.as_bytes(),
                LONG,
            )
            .await
        {
            floor_ms.push(ms(m.at - t0));
        }
    }
    let b = summarize(bridge_ms);
    let f = summarize(floor_ms);
    println!(
        "   HA press -> lock set topic: median {:6.2} ms  p99 {:6.2} ms  min {:6.2}  max {:7.2}  n={} (lost {lost})",
        b.median, b.p99, b.min, b.max, b.n
    );
    println!(
        "   plain broker round trip:    median {:6.2} ms  p99 {:6.2} ms  min {:6.2}  max {:7.2}  n={}",
        f.median, f.p99, f.min, f.max, f.n
    );
    println!(
        "   ratio (bridge / floor): median {:.2}x  p99 {:.2}x   (the bridge path crosses the broker twice)",
        b.median / f.median,
        b.p99 / f.p99
    );
}

// --- (b) startup to discovery -------------------------------------------------

/// Door `d` watches cameras 2d and 2d+1 (when there are that many).
fn pairs(doors: usize, cameras: usize) -> Vec<Vec<usize>> {
    (0..doors)
        .map(|d| {
            [2 * d, 2 * d + 1]
                .into_iter()
                .filter(|&c| c < cameras)
                .collect()
        })
        .collect()
}

const BENCH_DELIVERIES: &str = "    time_zone: UTC\n    max_unlocked: 2m\n    relock_after_close: 2s\n    grant_duration: 10m\n";

fn expected_configs(config: &str) -> BTreeSet<String> {
    let cfg = doorwarden::config::load_str(config, "<bench>").expect("the bench config is valid");
    doorwarden::ha::Mirror::new(&cfg)
        .discovery()
        .into_iter()
        .map(|m| m.topic)
        .filter(|t| t.ends_with("/config"))
        .collect()
}

async fn startup() {
    let doors: usize = env_or("DOORWARDEN_BENCH_DOORS", 50);
    let cameras: usize = env_or("DOORWARDEN_BENCH_CAMERAS", 100);
    let runs: usize = env_or("DOORWARDEN_BENCH_STARTUPS", 5);
    let wait: u64 = env_or("DOORWARDEN_BENCH_DISCOVERY_WAIT_SECS", 20);
    println!(
        "\n== (b) startup to all discovery: {doors} doors, {cameras} cameras (closed ports), {runs} runs"
    );
    let mut last_ms = Vec::new();
    let mut first_ms = Vec::new();
    for run in 0..runs {
        let broker = Mosquitto::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let urls: Vec<String> = (0..cameras).map(|_| rig::closed_port_url()).collect();
        let config = rig::config_text(&HomeSpec {
            broker_port: broker.port(),
            camera_urls: &urls,
            door_cameras: &pairs(doors, cameras),
            camera_extra: "",
            deliveries: Some(BENCH_DELIVERIES),
            storage: &dir.path().join("storage"),
        });
        let mut missing = expected_configs(&config);
        let expected = missing.len();
        let mut ha = Observer::connect(broker.port(), "bench-ha").await;
        ha.subscribe("homeassistant/#").await;
        let bridge = BridgeProcess::spawn(dir.path(), &config);
        let mut first = None;
        let mut last = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
        while !missing.is_empty() {
            match tokio::time::timeout_at(deadline, ha.rx.recv()).await {
                Ok(Some(m)) => {
                    if missing.remove(&m.topic) {
                        first.get_or_insert(m.at);
                        last = Some(m.at);
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        let seen = expected - missing.len();
        let since = |t: Option<Instant>| t.map_or(f64::NAN, |t| ms(t - bridge.started));
        println!(
            "   run {}: {seen}/{expected} configs; first after {:7.1} ms, last after {:7.1} ms{}",
            run + 1,
            since(first),
            since(last),
            if missing.is_empty() {
                String::new()
            } else {
                format!(
                    "  ({} never came within {wait} s; bridge log: {} 'queue' lines, e.g. {})",
                    missing.len(),
                    bridge.log_lines_with("queue"),
                    bridge
                        .log_lines_matching(&["queue"])
                        .first()
                        .map(|l| l.chars().skip(28).take(160).collect::<String>())
                        .unwrap_or_default()
                )
            }
        );
        if missing.is_empty() {
            last_ms.push(since(last));
            first_ms.push(since(first));
        }
    }
    if last_ms.is_empty() {
        println!("   no run saw every discovery config");
        return;
    }
    let l = summarize(last_ms);
    let f = summarize(first_ms);
    println!(
        "   spawn -> last discovery config: median {:7.1} ms  max {:7.1} ms  (first config: median {:6.1} ms)  complete runs {}/{runs}",
        l.median, l.max, f.median, l.n
    );
}

// --- (c) idle CPU and memory ----------------------------------------------------

async fn idle() {
    let doors: usize = env_or("DOORWARDEN_BENCH_DOORS", 50);
    let cameras: usize = env_or("DOORWARDEN_BENCH_CAMERAS", 100);
    let secs: u64 = env_or("DOORWARDEN_BENCH_IDLE_SECS", 60);
    let settle: u64 = env_or("DOORWARDEN_BENCH_SETTLE_SECS", 15);
    println!(
        "\n== (c) idle: {doors} doors, {cameras} cameras; {settle} s to settle, then {secs} s measured"
    );
    println!(
        "   {:<38} | {:>14} {:>9} | {:>9} {:>9} | {:>8} | {:>14}",
        "cameras", "bridge CPU s/min", "% core", "RSS", "peak RSS", "live", "bench proc CPU"
    );
    for live in [false, true] {
        idle_run(doors, cameras, live, settle, secs).await;
    }
}

async fn idle_run(doors: usize, cameras: usize, live: bool, settle: u64, secs: u64) {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sims = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..cameras {
        if live {
            match SimCamera::start(SimCameraOptions::default()).await {
                Ok(c) => {
                    urls.push(c.url());
                    sims.push(c);
                }
                Err(e) => {
                    println!("   simulated camera failed to start: {e}");
                    return;
                }
            }
        } else {
            urls.push(rig::closed_port_url());
        }
    }
    let mut devices = Vec::new();
    for d in 0..doors {
        let lock = SimZigbeeLock::start("127.0.0.1", broker.port(), &rig::lock_topic(d)).await;
        let contact =
            SimZigbeeContact::start("127.0.0.1", broker.port(), &rig::contact_topic(d)).await;
        match (lock, contact) {
            (Ok(l), Ok(c)) => devices.push((l, c)),
            _ => {
                println!("   simulated lock or contact failed to start");
                return;
            }
        }
    }
    let config = rig::config_text(&HomeSpec {
        broker_port: broker.port(),
        camera_urls: &urls,
        door_cameras: &pairs(doors, cameras),
        camera_extra: "",
        deliveries: Some(BENCH_DELIVERIES),
        storage: &dir.path().join("storage"),
    });
    let mut states = Observer::connect(broker.port(), "bench-ha").await;
    states.subscribe("doorwarden/camera/+/state").await;
    let bridge = BridgeProcess::spawn(dir.path(), &config);

    // Follow the retained camera states to know how many are live at the end.
    let mut live_now = std::collections::BTreeMap::new();
    let mut pump = |states: &mut Observer| {
        while let Ok(m) = states.rx.try_recv() {
            live_now.insert(m.topic.clone(), m.json()["live"] == true);
        }
    };
    tokio::time::sleep(Duration::from_secs(settle)).await;
    pump(&mut states);
    let cpu0 = bridge.cpu_secs();
    let own0 = rig::cpu_secs("self");
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu = bridge.cpu_secs() - cpu0;
    let own = rig::cpu_secs("self") - own0;
    let wall = t0.elapsed().as_secs_f64();
    let (rss, hwm) = bridge.memory_kib();
    pump(&mut states);
    let live_count = live_now.values().filter(|l| **l).count();
    let label = if live {
        format!("{cameras} live SimCameras (640x360 15 fps)")
    } else {
        format!("{cameras} unreachable (closed ports)")
    };
    println!(
        "   {label:<38} | {:>14.2} {:>8.2}% | {:>5.1} MiB {:>5.1} MiB | {:>4}/{cameras:<3} | {:>6.2} s/min",
        cpu / wall * 60.0,
        cpu / wall * 100.0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        live_count,
        own / wall * 60.0,
    );
    drop(bridge);
    drop(sims);
}

// --- (d) camera fault to relock (issue 6) ----------------------------------------

/// One door with one camera, its simulated lock and contact, Home
/// Assistant's side (`ha`, the door's state, events and answers only) and
/// the lock's radio side (`radio`), over the real bridge and Mosquitto.
struct OneDoor {
    broker: Mosquitto,
    camera: SimCamera,
    contact: SimZigbeeContact,
    ha: Observer,
    radio: Observer,
    _lock: SimZigbeeLock,
    bridge: BridgeProcess,
    _dir: tempfile::TempDir,
}

/// Starts a [`OneDoor`] home, waits until the bridge shows the lock LOCKED
/// and says the door is shut. `None` (with the reason printed) if not.
async fn one_door_home() -> Option<OneDoor> {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let camera = SimCamera::start(SimCameraOptions::default())
        .await
        .expect("simulated camera");
    let lock = SimZigbeeLock::start("127.0.0.1", broker.port(), &rig::lock_topic(0))
        .await
        .expect("simulated lock");
    let contact = SimZigbeeContact::start("127.0.0.1", broker.port(), &rig::contact_topic(0))
        .await
        .expect("simulated contact");
    let mut ha = Observer::connect(broker.port(), "bench-ha").await;
    // Not `door000/#`: a flooded request topic would swamp the bench itself.
    for topic in ["state", "delivery/event", "delivery/response"] {
        ha.subscribe(&format!("doorwarden/door000/{topic}")).await;
    }
    let mut radio = Observer::connect(broker.port(), "bench-lock-side").await;
    radio
        .subscribe(&format!("{}/set", rig::lock_topic(0)))
        .await;
    let config = rig::config_text(&HomeSpec {
        broker_port: broker.port(),
        camera_urls: &[camera.url()],
        door_cameras: &[vec![0]],
        camera_extra: "",
        deliveries: Some(
            "    time_zone: UTC\n    max_unlocked: 5m\n    relock_after_close: 2s\n    entries_per_window: 1\n    grant_duration: 10m\n",
        ),
        storage: &dir.path().join("storage"),
    });
    let bridge = BridgeProcess::spawn(dir.path(), &config);
    let state = door_state_topic(0);
    // The bridge is up once it has published the lock's state; commands
    // sent before it subscribed would be lost (they are not retained).
    if ha
        .wait_for(|m| m.topic == state && m.json()["lock"] == "LOCKED", LONG)
        .await
        .is_none()
    {
        println!("   the bridge never reported the lock LOCKED; skipped");
        return None;
    }
    // The sensor reports only on change: say the door is shut.
    if let Err(e) = contact.close().await {
        println!("   simulated contact: {e}");
        return None;
    }
    Some(OneDoor {
        broker,
        camera,
        contact,
        ha,
        radio,
        _lock: lock,
        bridge,
        _dir: dir,
    })
}

impl OneDoor {
    /// A window granted and a courier let in: true once the lock confirmed
    /// the unlock. Prints why not otherwise.
    async fn let_courier_in(&mut self, run: usize) -> bool {
        let state = door_state_topic(0);
        let ha = &mut self.ha;
        // Ready: a window open, the lock confirmed locked and the interlock
        // clear (the camera has been live for its warmup). Without a window
        // the interlock reports blocking on purpose.
        ha.publish("doorwarden/door000/delivery/grant/set", "PRESS")
            .await;
        let mut last_state = String::new();
        if ha
            .wait_for(
                |m| {
                    if m.topic == state {
                        last_state = m.text();
                    }
                    m.topic == state
                        && m.json()["lock"] == "LOCKED"
                        && m.json()["interlock"] == "clear"
                },
                Duration::from_secs(60),
            )
            .await
            .is_none()
        {
            println!(
                "   run {}: the door never became ready; stopping. Last state: {last_state}",
                run + 1
            );
            return false;
        }
        ha.publish(
            "doorwarden/door000/delivery/request",
            r#"{"carrier":"Bench"}"#,
        )
        .await;
        let answer = ha
            .wait_for(|m| m.topic == "doorwarden/door000/delivery/response", LONG)
            .await;
        if answer.as_ref().map(|a| a.json()["granted"] == true) != Some(true) {
            println!(
                "   run {}: delivery not granted: {}",
                run + 1,
                answer.map(|a| a.text()).unwrap_or_default()
            );
            return false;
        }
        if self
            .radio
            .wait_for(|m| is_lock_set(m, 0, "UNLOCK"), LONG)
            .await
            .is_none()
            || ha
                .wait_for(|m| m.topic == state && m.json()["lock"] == "UNLOCKED", LONG)
                .await
                .is_none()
        {
            println!("   run {}: the lock never unlocked", run + 1);
            return false;
        }
        true
    }

    /// The delivery ended from Home Assistant and the camera back to live.
    async fn reset(&mut self) {
        self.camera.restore();
        self.ha
            .publish("doorwarden/door000/delivery/end/set", "PRESS")
            .await;
    }
}

fn is_trip(m: &rig::Seen) -> bool {
    m.topic == "doorwarden/door000/delivery/event" && m.json()["event_type"] == "interlock_tripped"
}

async fn relock() {
    let runs: usize = env_or("DOORWARDEN_BENCH_RELOCKS", 20);
    println!(
        "\n== (d) camera freeze -> relock command on the lock's set topic: {runs} runs, door shut"
    );
    println!("   camera timers: defaults (freeze_after 200ms, stall_after 2s, warmup 3s)");
    let Some(mut home) = one_door_home().await else {
        return;
    };
    let mut relock_ms = Vec::new();
    let mut trip_ms = Vec::new();
    let mut reasons = std::collections::BTreeMap::new();
    for run in 0..runs {
        if !home.let_courier_in(run).await {
            break;
        }
        // Spread the fault over the 67 ms frame interval.
        tokio::time::sleep(Duration::from_millis(300 + (run as u64 * 23) % 67)).await;
        home.ha.drain();
        home.radio.drain();
        let t0 = Instant::now();
        home.camera.freeze();
        let relocked = home
            .radio
            .wait_for(|m| is_lock_set(m, 0, "LOCK"), LONG)
            .await;
        let tripped = home.ha.wait_for(is_trip, Duration::from_secs(2)).await;
        match relocked {
            Some(m) => relock_ms.push(ms(m.at - t0)),
            None => println!("   run {}: no relock within 30 s", run + 1),
        }
        if let Some(m) = tripped {
            trip_ms.push(ms(m.at - t0));
            let reason = m.json()["reason"].as_str().unwrap_or("").to_string();
            // Keep the reason's words, not its clock times, so runs group.
            let words: String = reason
                .split_whitespace()
                .filter(|w| !w.contains(':'))
                .collect::<Vec<_>>()
                .join(" ");
            *reasons.entry(words).or_insert(0usize) += 1;
            if ms(m.at - t0) < 150.0 {
                println!(
                    "   run {}: tripped {:.1} ms after the freeze: {reason}",
                    run + 1,
                    ms(m.at - t0)
                );
            }
        }
        home.reset().await;
    }
    let r = summarize(relock_ms);
    let t = summarize(trip_ms);
    println!(
        "   freeze -> LOCK on {}/set: median {:6.1} ms  p99 {:6.1} ms  min {:6.1}  max {:6.1}  n={}",
        rig::lock_topic(0),
        r.median,
        r.p99,
        r.min,
        r.max,
        r.n
    );
    println!(
        "   freeze -> interlock_tripped event: median {:6.1} ms  n={}",
        t.median, t.n
    );
    for (reason, n) in reasons {
        println!("   {n:>3} x {reason}");
    }
}

// --- (e) relock under a flood (issue 12) ------------------------------------------

/// A flood an attacker on the broker could send during a delivery.
#[derive(Debug, Clone, Copy)]
struct Flood {
    messages: usize,
    qos: u8,
    /// Spoofed lock reports on the lock's own Zigbee2MQTT topic, alternating
    /// locked and unlocked, instead of courier requests.
    lock_reports: bool,
}

/// Starts `mosquitto_pub -l` publishing `flood.messages` courier requests
/// on the door's request topic (or lock reports on the lock's topic);
/// returns at once.
fn start_flood(port: u16, flood: Flood) -> Option<std::process::Child> {
    use std::io::Write;
    let topic = if flood.lock_reports {
        rig::lock_topic(0)
    } else {
        "doorwarden/door000/delivery/request".to_string()
    };
    let mut child = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", &topic])
        .args(["-q", &flood.qos.to_string(), "-l"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| println!("   mosquitto_pub: {e}"))
        .ok()?;
    let mut stdin = child.stdin.take()?;
    std::thread::spawn(move || {
        let mut text = String::with_capacity(flood.messages * 24);
        for n in 0..flood.messages {
            if flood.lock_reports {
                let (state, word) = if n % 2 == 0 {
                    ("LOCK", "locked")
                } else {
                    ("UNLOCK", "unlocked")
                };
                text.push_str(&format!(
                    "{{\"state\":\"{state}\",\"lock_state\":\"{word}\"}}\n"
                ));
            } else {
                text.push_str(&format!("{{\"carrier\":\"flood{n}\"}}\n"));
            }
        }
        let _ = stdin.write_all(text.as_bytes());
    });
    Some(child)
}

async fn flood() {
    let runs: usize = env_or("DOORWARDEN_BENCH_FLOOD_RUNS", 5);
    let floods = [
        ("no flood", None),
        (
            "150,000 requests at QoS 0",
            Some(Flood {
                messages: 150_000,
                qos: 0,
                lock_reports: false,
            }),
        ),
        (
            "20,000 requests at QoS 1",
            Some(Flood {
                messages: 20_000,
                qos: 1,
                lock_reports: false,
            }),
        ),
        (
            "20,000 spoofed lock reports",
            Some(Flood {
                messages: 20_000,
                qos: 0,
                lock_reports: true,
            }),
        ),
    ];
    let only: String = env_or("DOORWARDEN_BENCH_FLOODS", String::new());
    let floods: Vec<_> = floods
        .into_iter()
        .filter(|(name, _)| only.is_empty() || name.contains(only.as_str()))
        .collect();
    println!(
        "\n== (e) relock during a delivery under a request flood: {runs} runs each, door shut, \
         camera frozen 1 s into the flood"
    );
    let Some(mut home) = one_door_home().await else {
        return;
    };
    let port = home.broker.port();
    for (name, flood) in floods {
        let mut relock_ms = Vec::new();
        let mut trip_to_lock_ms = Vec::new();
        let mut left_unlocked = 0;
        // CPU seconds of the bridge and of the broker over the flood windows.
        let (mut bridge_cpu, mut broker_cpu) = (0.0, 0.0);
        let broker_pid = home.broker.pid().map(|p| p.to_string());
        let broker_secs = || broker_pid.as_deref().map_or(0.0, rig::cpu_secs);
        for run in 0..runs {
            if !home.let_courier_in(run).await {
                break;
            }
            home.ha.drain();
            home.radio.drain();
            let (bridge_before, broker_before) = (home.bridge.cpu_secs(), broker_secs());
            let mut attacker = flood.and_then(|f| start_flood(port, f));
            tokio::time::sleep(Duration::from_secs(1)).await;
            let t0 = Instant::now();
            home.camera.freeze();
            let mut tripped_at = None;
            let relocked = home
                .radio
                .wait_for(|m| is_lock_set(m, 0, "LOCK"), LONG)
                .await;
            if let Some(m) = home.ha.wait_for(is_trip, Duration::from_secs(5)).await {
                tripped_at = Some(m.at);
            }
            match relocked {
                Some(m) => {
                    relock_ms.push(ms(m.at - t0));
                    if let Some(trip) = tripped_at {
                        trip_to_lock_ms.push(ms(m.at.saturating_duration_since(trip)));
                    }
                }
                None => {
                    left_unlocked += 1;
                    println!("   {name}, run {}: no relock within 30 s", run + 1);
                }
            }
            if let Some(child) = attacker.as_mut() {
                let _ = child.wait();
            }
            // Let the rate limit refill before the next real courier (and
            // the bridge read the rest of the flood).
            tokio::time::sleep(Duration::from_secs(5)).await;
            bridge_cpu += home.bridge.cpu_secs() - bridge_before;
            broker_cpu += broker_secs() - broker_before;
            home.reset().await;
        }
        let r = summarize(relock_ms);
        println!(
            "   {name:<26} freeze -> LOCK: median {:7.1} ms  max {:7.1} ms  n={}   doors left unlocked: {left_unlocked}",
            r.median, r.max, r.n
        );
        let t = summarize(trip_to_lock_ms);
        if t.n > 0 {
            println!(
                "   {:<26} trip event seen -> LOCK seen: median {:7.1} ms  max {:7.1} ms",
                "", t.median, t.max
            );
        }
        let (rss, peak) = home.bridge.memory_kib();
        let per_run = |cpu: f64| 1000.0 * cpu / r.n.max(1) as f64;
        let messages = flood.map_or(0, |f| f.messages);
        print!(
            "   {:<26} CPU per run (flood + 6 s): bridge {:7.1} ms, Mosquitto {:7.1} ms; bridge RSS {rss} KiB (peak {peak})",
            "",
            per_run(bridge_cpu),
            per_run(broker_cpu),
        );
        if messages > 0 {
            print!(
                "; {:.2} us of bridge CPU per flood message",
                1e6 * bridge_cpu / (r.n.max(1) * messages) as f64
            );
        }
        println!();
    }
    let _ = home.contact.close().await;
}

// --- (f) the core's frame path (issue 15) ----------------------------------------

fn core_frames() {
    use doorwarden::core::{Core, Event, EventKind, FrameSummary, PersistedState, Stamp};
    const CAMERAS: usize = 32;
    const DOORS: usize = 16;
    const FPS: u64 = 15;
    let secs: u64 = env_or("DOORWARDEN_BENCH_FRAME_SECS", 300);
    let mut yaml = String::from("mqtt: { url: \"mqtt://127.0.0.1:1883\" }\ncameras:\n");
    // Frame summaries only, no decoded picture (which a door camera's
    // default, `required`, would wait for): the stream path is measured.
    for c in 0..CAMERAS {
        yaml.push_str(&format!(
            "  c{c}: {{ url: \"rtsp://127.0.0.1/c{c}\", picture_check: off }}\n"
        ));
    }
    yaml.push_str("locks:\n");
    for d in 0..DOORS {
        yaml.push_str(&format!(
            "  d{d}: {{ zigbee2mqtt: {{ topic: zigbee2mqtt/d{d} }}, cameras: [c{}, c{}] }}\n",
            2 * d,
            2 * d + 1
        ));
    }
    yaml.push_str("deliveries:\n");
    for d in 0..DOORS / 2 {
        yaml.push_str(&format!(
            "  d{d}:\n    time_zone: Europe/Berlin\n    windows: [{{ days: [mon, tue, wed, thu, fri, sat, sun], from: \"00:00\", to: \"23:59\" }}]\n"
        ));
    }
    let config: doorwarden::config::Config = match serde_yaml::from_str(&yaml) {
        Ok(c) => c,
        Err(e) => {
            println!("   bench config: {e}");
            return;
        }
    };
    println!(
        "\n== (f) core frame path: {CAMERAS} cameras, {DOORS} doors, {FPS} fps, {secs} simulated s per run"
    );
    let mut per_frame = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let wall =
            jiff::Timestamp::from_second(1_790_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let mut now = Stamp { mono: t0, wall };
        let Ok(mut core) = Core::new(&config, PersistedState::default(), [7; 32], now) else {
            println!("   core failed to start");
            return;
        };
        let _ = core.start(now);
        for c in 0..CAMERAS {
            let kind = EventKind::CameraUp {
                camera: format!("c{c}"),
            };
            let _ = core.handle(Event { at: now, kind });
        }
        let mut busy = Duration::ZERO;
        let mut frames = 0u64;
        for seq in 1..=secs * FPS {
            now = now.after(Duration::from_micros(1_000_000 / FPS));
            if let Some((t, _)) = core.next_deadline()
                && t <= now.mono
            {
                let _ = core.handle(Event {
                    at: now,
                    kind: EventKind::Tick,
                });
            }
            let rtp = i64::try_from(seq * 6000).unwrap_or(0);
            for c in 0..CAMERAS {
                let keyframe = seq % 30 == 1;
                let kind = EventKind::CameraFrame {
                    camera: format!("c{c}"),
                    frame: FrameSummary {
                        rtp_ts: rtp,
                        clock_rate: 90_000,
                        size: if keyframe {
                            40_000
                        } else {
                            6_000 + (seq % 11) as u32 * 97
                        },
                        keyframe,
                        hash: seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ c as u64,
                        lost: 0,
                    },
                };
                let event = Event { at: now, kind };
                let started = Instant::now();
                let actions = core.handle(event);
                busy += started.elapsed();
                drop(actions);
                frames += 1;
            }
        }
        per_frame.push(busy.as_secs_f64() * 1e9 / frames as f64);
    }
    per_frame.sort_by(f64::total_cmp);
    let median = per_frame[per_frame.len() / 2];
    let share = median * 1e-9 * (CAMERAS as f64) * (FPS as f64) * 100.0;
    println!(
        "   per frame: median {median:.0} ns (runs {:.0}..{:.0} ns); {CAMERAS} cameras at {FPS} fps = {share:.3} % of a core",
        per_frame[0],
        per_frame[per_frame.len() - 1]
    );
}
