//! Soak run: a whole simulated home under random, seeded faults, counting
//! what doorwarden caught, what it missed and what it raised for nothing.
//! Prints figures; asserts nothing (the summary says whether the two counts
//! that must be zero are).
//!
//! ```text
//! cargo bench --bench soak                                    # 120 s, seed 1
//! DOORWARDEN_SOAK_SECS=600 DOORWARDEN_SOAK_SEED=7 cargo bench --bench soak
//! ```
//!
//! The real `doorwarden run --config` binary runs as a child process on a
//! real Mosquitto; the bench process plays everything else: 32 `SimCamera`s
//! (640x360, 15 fps, one RTSP session each; `DOORWARDEN_SOAK_CAMERAS`), 50
//! doors (`DOORWARDEN_SOAK_DOORS`) each with a simulated Zigbee2MQTT lock and
//! contact sensor and tied to one or two of the cameras, Home Assistant and
//! the couriers. Camera timers are the defaults (freeze_after 200 ms,
//! stall_after 2 s, warmup 3 s).
//!
//! Every 200 ms the bench may:
//! - inject a fault into a healthy camera (freeze: byte-identical frames;
//!   stall: no RTP, session kept; drop: every connection cut and new ones
//!   refused), held 4-8 s, then restored; half of the faults go to a camera
//!   watched by a door with a delivery in progress, so trips are exercised
//!   (about one fault every `DOORWARDEN_SOAK_FAULT_EVERY_MS`, 3000);
//! - grant a window on an idle door whose cameras are healthy and send a
//!   courier request (about one every `DOORWARDEN_SOAK_DELIVERY_EVERY_MS`,
//!   1000); an unlocked delivery ends 3-12 s later, by the courier opening
//!   and shutting the door or by the owner ending it.
//!
//! What is counted, from the MQTT traffic only:
//! - **detection**: after a fault, the camera's state leaves `live`;
//!   every delivery that was unlocked on a door watching that camera gets
//!   `interlock_tripped`.
//! - **missed detection**: a fault held its whole time with the camera still
//!   `live`. **Missed trip**: an unlocked delivery on a faulted camera's door
//!   with no `interlock_tripped` before the fault ends. Both must be 0.
//! - **false trip**: a camera leaving `live` with no fault injected into it
//!   (and not yet back from an earlier one), or `interlock_tripped` on a door
//!   none of whose cameras was faulted. Must be 0.
//! - **refused without a fault**: a courier request denied while every camera
//!   of the door was healthy (reported with its reasons).

#![allow(clippy::print_stdout)]

#[allow(dead_code)]
#[path = "../tests/common/mosquitto.rs"]
mod mosquitto;
#[allow(dead_code)]
#[path = "common/rig.rs"]
mod rig;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use doorwarden_sim::camera::{SimCamera, SimCameraOptions};
use doorwarden_sim::zigbee2mqtt_lock::{SimZigbeeContact, SimZigbeeLock};
use mosquitto::Mosquitto;
use rig::{BridgeProcess, HomeSpec, Observer, Seen, env_or, ms, summarize};

const TICK: Duration = Duration::from_millis(200);
/// A camera must have been seen live this long before it gets a fault or
/// its door a delivery: the bridge's warmup (3 s) plus a margin.
const SETTLED: Duration = Duration::from_secs(5);
const MAX_FAULTS: usize = 6;
const MAX_DELIVERIES: usize = 12;

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = (hi - lo).as_millis().max(1) as u64;
        lo + Duration::from_millis(self.next() % span)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Freeze,
    Stall,
    Drop,
}

struct Fault {
    kind: Kind,
    at: Instant,
    restore_at: Instant,
    detected: Option<Instant>,
    /// Doors with an unlocked delivery when the fault was injected, and
    /// whether each has tripped yet.
    expect_trip: BTreeMap<usize, Option<Instant>>,
}

#[derive(Default)]
struct CameraTrack {
    live: bool,
    live_since: Option<Instant>,
    fault: Option<Fault>,
    /// Restored, not yet seen live again: state changes still belong to the
    /// fault.
    recovering: bool,
}

impl CameraTrack {
    fn healthy(&self, now: Instant) -> bool {
        self.fault.is_none()
            && !self.recovering
            && self.live
            && self.live_since.is_some_and(|t| now - t >= SETTLED)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DoorPhase {
    Idle,
    /// Grant and request sent, waiting for the response.
    Requested,
    /// Granted; the delivery ends at `finish` (courier or owner).
    Unlocked,
    /// The end was started (door opened, or end pressed) or the delivery
    /// tripped: waiting for the door to be locked and shut.
    Finishing,
    Cooldown,
}

struct DoorTrack {
    cameras: Vec<usize>,
    phase: DoorPhase,
    /// When the next step for this door is due.
    due: Instant,
    courier: bool,
    opened: bool,
    last_delivery: String,
    last_lock: String,
}

#[derive(Default)]
struct Tally {
    injected: BTreeMap<Kind, usize>,
    detected: BTreeMap<Kind, Vec<f64>>,
    missed_detections: Vec<String>,
    expected_trips: usize,
    trips_seen: Vec<f64>,
    missed_trips: Vec<String>,
    false_trips: Vec<String>,
    requests: usize,
    granted: usize,
    refused_with_fault: usize,
    refused_without_fault: BTreeMap<String, usize>,
    completed: usize,
    tripped_events: usize,
    unlock_commands: usize,
    /// Doors whose lock the bridge did not report LOCKED at the end.
    left_unlocked: Vec<String>,
    /// Simulated locks physically unlocked at the end.
    sim_unlocked: usize,
    lock_commands: usize,
    messages: usize,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(soak());
}

async fn soak() {
    let secs: u64 = env_or("DOORWARDEN_SOAK_SECS", 120);
    let seed: u64 = env_or("DOORWARDEN_SOAK_SEED", 1);
    let n_cams: usize = env_or("DOORWARDEN_SOAK_CAMERAS", 32);
    let n_doors: usize = env_or("DOORWARDEN_SOAK_DOORS", 50);
    let fault_every: u64 = env_or("DOORWARDEN_SOAK_FAULT_EVERY_MS", 3000);
    let delivery_every: u64 = env_or("DOORWARDEN_SOAK_DELIVERY_EVERY_MS", 1000);
    println!(
        "doorwarden soak, {}: {secs} s, seed {seed}, {n_cams} cameras, {n_doors} doors, a fault every ~{fault_every} ms, a delivery every ~{delivery_every} ms",
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
    );
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("tempdir");

    let mut cameras = Vec::new();
    for _ in 0..n_cams {
        match SimCamera::start(SimCameraOptions::default()).await {
            Ok(c) => cameras.push(c),
            Err(e) => return println!("simulated camera failed to start: {e}"),
        }
    }
    let urls: Vec<String> = cameras.iter().map(SimCamera::url).collect();
    // Every door watches camera d % n; every other door a second one too.
    let door_cameras: Vec<Vec<usize>> = (0..n_doors)
        .map(|d| {
            let first = d % n_cams;
            let second = (d * 7 + 3) % n_cams;
            if d % 2 == 1 && second != first {
                vec![first, second]
            } else {
                vec![first]
            }
        })
        .collect();
    let mut contacts = Vec::new();
    let mut locks = Vec::new();
    for d in 0..n_doors {
        let lock = SimZigbeeLock::start("127.0.0.1", broker.port(), &rig::lock_topic(d)).await;
        let contact =
            SimZigbeeContact::start("127.0.0.1", broker.port(), &rig::contact_topic(d)).await;
        match (lock, contact) {
            (Ok(l), Ok(c)) => {
                locks.push(l);
                contacts.push(c);
            }
            _ => return println!("simulated lock or contact failed to start"),
        }
    }
    let config = rig::config_text(&HomeSpec {
        broker_port: broker.port(),
        camera_urls: &urls,
        door_cameras: &door_cameras,
        camera_extra: "",
        deliveries: Some(
            "    time_zone: UTC\n    max_unlocked: 1m\n    relock_after_close: 2s\n    entries_per_window: 1\n    grant_duration: 10m\n",
        ),
        storage: &dir.path().join("storage"),
    });
    let mut ha = Observer::connect(broker.port(), "soak-ha").await;
    ha.subscribe("doorwarden/#").await;
    ha.subscribe("zigbee2mqtt/+/set").await;
    let mut bridge = BridgeProcess::spawn(dir.path(), &config);

    let mut cams: Vec<CameraTrack> = (0..n_cams).map(|_| CameraTrack::default()).collect();
    let now = Instant::now();
    let mut doors: Vec<DoorTrack> = door_cameras
        .iter()
        .map(|c| DoorTrack {
            cameras: c.clone(),
            phase: DoorPhase::Idle,
            due: now,
            courier: false,
            opened: false,
            last_delivery: String::new(),
            last_lock: String::new(),
        })
        .collect();
    let mut tally = Tally::default();

    // Start: every camera live and settled, every lock reported.
    let start_limit = Instant::now() + Duration::from_secs(90);
    loop {
        while let Ok(m) = ha.rx.try_recv() {
            observe_start(&m, &mut cams, &mut doors);
        }
        let now = Instant::now();
        let all = cams
            .iter()
            .all(|c| c.live && c.live_since.is_some_and(|t| now - t >= SETTLED));
        if all || now > start_limit {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    let live_at_start = cams.iter().filter(|c| c.live).count();
    println!(
        "   start: {live_at_start}/{n_cams} cameras live after {:.1} s",
        bridge.started.elapsed().as_secs_f64()
    );
    // The sensors report only on change: tell the bridge every door is shut.
    for c in &contacts {
        let _ = c.close().await;
    }

    let cpu0 = bridge.cpu_secs();
    let own0 = rig::cpu_secs("self");
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    let p_fault = TICK.as_millis() as f64 / fault_every.max(1) as f64;
    let p_delivery = TICK.as_millis() as f64 / delivery_every.max(1) as f64;
    let mut tick = tokio::time::interval(TICK);
    let mut bridge_died = false;
    loop {
        tokio::select! {
            Some(m) = ha.rx.recv() => {
                observe(&m, &mut cams, &mut doors, &mut tally, &mut rng);
                continue;
            }
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        if !bridge.is_running() {
            bridge_died = true;
            break;
        }
        // Restore faults whose time is up (a missed one gets a last chance
        // of 10 s more before it counts as missed).
        for (i, cam) in cams.iter_mut().enumerate() {
            let Some(f) = &cam.fault else { continue };
            let hold_done = now >= f.restore_at;
            let settled = f
                .detected
                .is_some_and(|d| now - d >= Duration::from_secs(3));
            let overdue = now - f.at >= Duration::from_secs(20);
            if !(hold_done && (settled || overdue)) {
                continue;
            }
            if let Some(f) = cam.fault.take() {
                if f.detected.is_none() {
                    tally
                        .missed_detections
                        .push(format!("cam{i:03} {:?} held 20 s, still live", f.kind));
                }
                for (d, tripped) in &f.expect_trip {
                    if tripped.is_none() {
                        tally.missed_trips.push(format!(
                            "door{d:03}: cam{i:03} {:?} with the delivery unlocked, no interlock_tripped (detected after {:?}; door now {:?}, delivery {:?}, lock {:?})",
                            f.kind,
                            f.detected.map(|t| t - f.at),
                            doors[*d].phase,
                            doors[*d].last_delivery,
                            doors[*d].last_lock
                        ));
                    }
                }
                if f.kind == Kind::Drop {
                    cameras[i].accept();
                }
                cameras[i].restore();
                cam.recovering = true;
            }
        }
        // Doors' scheduled steps.
        for (d, door) in doors.iter_mut().enumerate() {
            if now < door.due {
                continue;
            }
            match door.phase {
                DoorPhase::Unlocked
                    if door
                        .cameras
                        .iter()
                        .any(|&c| cams[c].fault.as_ref().is_some_and(|f| f.detected.is_none())) =>
                {
                    // A fault on its way to being detected: the delivery
                    // stays open until it is, so a missing trip is judged
                    // on a session that was still running.
                    door.due = now + Duration::from_millis(500);
                }
                DoorPhase::Unlocked => {
                    door.phase = DoorPhase::Finishing;
                    if door.courier {
                        let _ = contacts[d].open().await;
                        door.opened = true;
                        door.due =
                            now + rng.between(Duration::from_secs(1), Duration::from_secs(2));
                    } else {
                        ha.publish(
                            &format!("doorwarden/{}/delivery/end/set", rig::door_name(d)),
                            "PRESS",
                        )
                        .await;
                        door.due = now + Duration::from_secs(60);
                    }
                }
                DoorPhase::Finishing if door.opened => {
                    let _ = contacts[d].close().await;
                    door.opened = false;
                    door.due = now + Duration::from_secs(60);
                }
                DoorPhase::Cooldown => {
                    // Close the window, so the next grant starts a fresh one
                    // (its entry count is spent).
                    ha.publish(
                        &format!("doorwarden/{}/delivery/end/set", rig::door_name(d)),
                        "PRESS",
                    )
                    .await;
                    door.phase = DoorPhase::Idle;
                }
                _ => {}
            }
        }
        // Past the end: no new faults or deliveries; wait for the running
        // ones to finish (45 s at most), so every unlock can be matched
        // with its relock.
        if now >= end {
            let settled = cams.iter().all(|c| c.fault.is_none())
                && doors.iter().all(|d| d.phase == DoorPhase::Idle);
            if settled || now >= end + Duration::from_secs(45) {
                break;
            }
            continue;
        }
        // A new fault.
        let active = cams.iter().filter(|c| c.fault.is_some()).count();
        if active < MAX_FAULTS && rng.chance(p_fault) {
            let healthy: Vec<usize> = (0..n_cams)
                .filter(|&i| cams[i].healthy(now))
                .filter(|&i| {
                    // Never under a pending request: its answer would be
                    // ambiguous.
                    !doors
                        .iter()
                        .any(|d| d.phase == DoorPhase::Requested && d.cameras.contains(&i))
                })
                .collect();
            let watched: Vec<usize> = healthy
                .iter()
                .copied()
                .filter(|&i| {
                    doors
                        .iter()
                        .any(|d| d.phase == DoorPhase::Unlocked && d.cameras.contains(&i))
                })
                .collect();
            let pool = if !watched.is_empty() && rng.chance(0.5) {
                &watched
            } else {
                &healthy
            };
            if !pool.is_empty() {
                let i = pool[rng.below(pool.len())];
                let kind = [Kind::Freeze, Kind::Stall, Kind::Drop][rng.below(3)];
                let expect_trip: BTreeMap<usize, Option<Instant>> = doors
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| {
                        d.phase == DoorPhase::Unlocked
                            && d.last_delivery == "unlocked"
                            && d.cameras.contains(&i)
                    })
                    .map(|(d, _)| (d, None))
                    .collect();
                tally.expected_trips += expect_trip.len();
                *tally.injected.entry(kind).or_default() += 1;
                let at = Instant::now();
                match kind {
                    Kind::Freeze => cameras[i].freeze(),
                    Kind::Stall => cameras[i].stall(),
                    Kind::Drop => {
                        cameras[i].refuse();
                        cameras[i].drop_all();
                    }
                }
                cams[i].fault = Some(Fault {
                    kind,
                    at,
                    restore_at: at + rng.between(Duration::from_secs(4), Duration::from_secs(8)),
                    detected: None,
                    expect_trip,
                });
            }
        }
        // A new delivery.
        let busy = doors
            .iter()
            .filter(|d| !matches!(d.phase, DoorPhase::Idle))
            .count();
        if busy < MAX_DELIVERIES && rng.chance(p_delivery) {
            let ready: Vec<usize> = (0..n_doors)
                .filter(|&d| {
                    doors[d].phase == DoorPhase::Idle
                        && doors[d].last_lock == "LOCKED"
                        && doors[d].cameras.iter().all(|&c| cams[c].healthy(now))
                })
                .collect();
            if !ready.is_empty() {
                let d = ready[rng.below(ready.len())];
                let name = rig::door_name(d);
                ha.publish(&format!("doorwarden/{name}/delivery/grant/set"), "PRESS")
                    .await;
                ha.publish(
                    &format!("doorwarden/{name}/delivery/request"),
                    r#"{"carrier":"Soak"}"#,
                )
                .await;
                tally.requests += 1;
                doors[d].phase = DoorPhase::Requested;
                doors[d].courier = rng.chance(0.5);
                doors[d].due = now + Duration::from_secs(60);
            }
        }
    }
    // Whatever is still in flight gets a moment to arrive.
    let quiet = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Some(m)) = tokio::time::timeout_at(quiet, ha.rx.recv()).await {
        observe(&m, &mut cams, &mut doors, &mut tally, &mut rng);
    }
    tally.left_unlocked = doors
        .iter()
        .enumerate()
        .filter(|(_, d)| d.last_lock != "LOCKED")
        .map(|(i, d)| format!("door{i:03}: lock {:?}, phase {:?}", d.last_lock, d.phase))
        .collect();
    tally.sim_unlocked = locks.iter().filter(|l| !l.is_locked()).count();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = bridge.cpu_secs() - cpu0;
    let own = rig::cpu_secs("self") - own0;
    let (rss, hwm) = bridge.memory_kib();
    report(&tally, wall, cpu, own, rss, hwm, bridge_died, &bridge);
}

fn camera_index(topic: &str) -> Option<usize> {
    topic
        .strip_prefix("doorwarden/camera/cam")?
        .strip_suffix("/state")?
        .parse()
        .ok()
}

fn door_index(topic: &str, leaf: &str) -> Option<usize> {
    topic
        .strip_prefix("doorwarden/door")?
        .strip_suffix(leaf)?
        .parse()
        .ok()
}

fn observe_start(m: &Seen, cams: &mut [CameraTrack], doors: &mut [DoorTrack]) {
    if let Some(i) = camera_index(&m.topic).filter(|&i| i < cams.len()) {
        let live = m.json()["live"] == true;
        if live && !cams[i].live {
            cams[i].live_since = Some(m.at);
        }
        cams[i].live = live;
    } else if let Some(d) = door_index(&m.topic, "/state").filter(|&d| d < doors.len()) {
        let s = m.json();
        doors[d].last_lock = s["lock"].as_str().unwrap_or("").to_string();
        doors[d].last_delivery = s["delivery"].as_str().unwrap_or("").to_string();
    }
}

fn observe(
    m: &Seen,
    cams: &mut [CameraTrack],
    doors: &mut [DoorTrack],
    tally: &mut Tally,
    rng: &mut Rng,
) {
    tally.messages += 1;
    if let Some(i) = camera_index(&m.topic).filter(|&i| i < cams.len()) {
        let s = m.json();
        let live = s["live"] == true;
        let cam = &mut cams[i];
        if !live {
            if let Some(f) = &mut cam.fault {
                if f.detected.is_none() {
                    f.detected = Some(m.at);
                    tally
                        .detected
                        .entry(f.kind)
                        .or_default()
                        .push(ms(m.at - f.at));
                }
            } else if !cam.recovering && cam.live {
                tally.false_trips.push(format!(
                    "cam{i:03} went {} with no fault: {}",
                    s["state"].as_str().unwrap_or("?"),
                    s["reason"].as_str().unwrap_or("")
                ));
            }
        } else if !cam.live {
            cam.live_since = Some(m.at);
            cam.recovering = false;
        }
        cam.live = live;
        return;
    }
    if let Some(d) = door_index(&m.topic, "/state").filter(|&d| d < doors.len()) {
        let s = m.json();
        let door = &mut doors[d];
        door.last_lock = s["lock"].as_str().unwrap_or("").to_string();
        door.last_delivery = s["delivery"].as_str().unwrap_or("").to_string();
        let done = matches!(
            door.last_delivery.as_str(),
            "completed" | "tripped" | "idle"
        ) && door.last_lock == "LOCKED"
            && !door.opened;
        if done && matches!(door.phase, DoorPhase::Finishing) {
            door.phase = DoorPhase::Cooldown;
            door.due = m.at + Duration::from_secs(2);
        }
        return;
    }
    if let Some(d) = door_index(&m.topic, "/delivery/response").filter(|&d| d < doors.len()) {
        let s = m.json();
        let door = &mut doors[d];
        if door.phase != DoorPhase::Requested {
            return;
        }
        if s["granted"] == true {
            tally.granted += 1;
            door.phase = DoorPhase::Unlocked;
            // The unlock needs the lock's confirmation before the state says
            // "unlocked"; 3-12 s is plenty.
            door.due = m.at + rng.between(Duration::from_secs(3), Duration::from_secs(12));
        } else {
            let faulted = door
                .cameras
                .iter()
                .any(|&c| cams[c].fault.is_some() || cams[c].recovering);
            if faulted {
                tally.refused_with_fault += 1;
            } else {
                let reason = s["reason"].as_str().unwrap_or("").to_string();
                *tally.refused_without_fault.entry(reason).or_default() += 1;
            }
            door.phase = DoorPhase::Cooldown;
            door.due = m.at + Duration::from_secs(2);
        }
        return;
    }
    if let Some(d) = door_index(&m.topic, "/delivery/event").filter(|&d| d < doors.len()) {
        let s = m.json();
        match s["event_type"].as_str().unwrap_or("") {
            "interlock_tripped" => {
                tally.tripped_events += 1;
                let mut explained = false;
                for &c in &doors[d].cameras {
                    if let Some(f) = &mut cams[c].fault {
                        explained = true;
                        if let Some(slot) = f.expect_trip.get_mut(&d)
                            && slot.is_none()
                        {
                            *slot = Some(m.at);
                            tally.trips_seen.push(ms(m.at - f.at));
                        }
                    } else if cams[c].recovering {
                        explained = true;
                    }
                }
                if !explained {
                    tally.false_trips.push(format!(
                        "door{d:03} interlock_tripped with no camera fault: {}",
                        s["reason"].as_str().unwrap_or("")
                    ));
                }
                let door = &mut doors[d];
                if matches!(door.phase, DoorPhase::Unlocked) {
                    // The courier will not open a door that was relocked.
                    door.phase = DoorPhase::Finishing;
                    door.due = m.at + Duration::from_secs(60);
                }
            }
            "completed" => tally.completed += 1,
            _ => {}
        }
        return;
    }
    if m.topic.starts_with("zigbee2mqtt/") && m.topic.ends_with("/set") {
        match m.json()["state"].as_str() {
            Some("UNLOCK") => tally.unlock_commands += 1,
            Some("LOCK") => tally.lock_commands += 1,
            _ => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    t: &Tally,
    wall: f64,
    cpu: f64,
    own: f64,
    rss: u64,
    hwm: u64,
    died: bool,
    bridge: &BridgeProcess,
) {
    println!("\n== soak summary ({wall:.0} s measured)");
    if died {
        println!(
            "   THE BRIDGE PROCESS EXITED during the run; log: {}",
            bridge.log_path().display()
        );
    }
    println!(
        "   {:<10} {:>8} {:>9} {:>14} {:>12}",
        "fault", "injected", "detected", "median ms", "p99 ms"
    );
    let mut total = 0;
    let mut total_detected = 0;
    for kind in [Kind::Freeze, Kind::Stall, Kind::Drop] {
        let n = t.injected.get(&kind).copied().unwrap_or(0);
        let lat = t.detected.get(&kind).cloned().unwrap_or_default();
        total += n;
        total_detected += lat.len();
        let s = summarize(lat);
        println!(
            "   {:<10} {n:>8} {:>9} {:>14.1} {:>12.1}",
            format!("{kind:?}"),
            s.n,
            s.median,
            s.p99
        );
    }
    let trips = summarize(t.trips_seen.clone());
    println!(
        "   {:<44} {total_detected}/{total}",
        "faults detected (camera left live)"
    );
    println!(
        "   {:<44} {}/{} (fault -> interlock_tripped median {:.1} ms, p99 {:.1} ms)",
        "deliveries in progress tripped", trips.n, t.expected_trips, trips.median, trips.p99
    );
    println!(
        "   {:<44} {}",
        "missed detections (must be 0)",
        t.missed_detections.len()
    );
    println!(
        "   {:<44} {}",
        "missed trips (must be 0)",
        t.missed_trips.len()
    );
    println!(
        "   {:<44} {}",
        "false trips (must be 0)",
        t.false_trips.len()
    );
    println!(
        "   {:<44} {} (simulated locks physically unlocked: {})",
        "doors left unlocked at the end (must be 0)",
        t.left_unlocked.len(),
        t.sim_unlocked
    );
    println!(
        "   {:<44} {} requests, {} granted, {} completed, {} refused during a fault",
        "deliveries", t.requests, t.granted, t.completed, t.refused_with_fault
    );
    let refused: usize = t.refused_without_fault.values().sum();
    println!("   {:<44} {refused}", "refused with healthy cameras");
    for (reason, n) in &t.refused_without_fault {
        println!("      {n} x {reason}");
    }
    println!(
        "   {:<44} {} UNLOCK, {} LOCK; {} interlock_tripped events; {} messages seen",
        "lock commands", t.unlock_commands, t.lock_commands, t.tripped_events, t.messages
    );
    println!(
        "   {:<44} {:.2} s/min ({:.1}% of a core); RSS {:.1} MiB, peak {:.1} MiB",
        "bridge process",
        cpu / wall * 60.0,
        cpu / wall * 100.0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "   {:<44} {:.2} s/min ({:.1}% of a core)",
        "bench process (cameras, locks, broker client)",
        own / wall * 60.0,
        own / wall * 100.0
    );
    for line in t
        .missed_detections
        .iter()
        .chain(&t.missed_trips)
        .chain(&t.false_trips)
        .chain(&t.left_unlocked)
        .take(20)
    {
        println!("   ! {line}");
    }
    let warnings = bridge.log_lines_with("WARN") + bridge.log_lines_with("ERROR");
    println!("   bridge log: {warnings} warn/error lines; the first few:");
    for line in bridge.log_lines_matching(&["WARN", "ERROR"]).iter().take(6) {
        println!("      {}", line.chars().take(220).collect::<String>());
    }
}
