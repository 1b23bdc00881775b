//! A simulated home around `doorwarden run` as a real child process, for the
//! fault and security tests.
//!
//! The simulated Zigbee2MQTT locks and contact sensors and the simulated
//! RTSP camera run inside the test process; the bridge is the `doorwarden`
//! binary itself, started from a config file like a user's, so a test can
//! kill it with SIGKILL at any moment, start it again on the same storage,
//! and read everything it printed and audited.
//!
//! Include it with `#[path = "common/process_home.rs"] mod process_home;`
//! next to `mod common;` (it uses `common::mosquitto`).

#![allow(dead_code)] // each test file uses its own subset

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use doorwarden_sim::camera::{SimCamera, SimCameraOptions};
use doorwarden_sim::zigbee2mqtt_lock::{SimZigbeeContact, SimZigbeeLock};
use serde_json::Value;

use crate::common::mosquitto::{Mosquitto, Received, TestClient};

/// The camera's key in every config written here.
pub const CAMERA: &str = "porch";
/// Waits for things the bridge must do: generous, so a loaded machine does
/// not fail a test that is only slow.
pub const LONG: Duration = Duration::from_secs(30);

/// Zigbee2MQTT topic of a door's simulated lock.
pub fn lock_topic(door: &str) -> String {
    format!("zigbee2mqtt/{door}_lock")
}

/// Zigbee2MQTT topic of a door's simulated contact sensor.
pub fn contact_topic(door: &str) -> String {
    format!("zigbee2mqtt/{door}_contact")
}

/// `doorwarden/<door>/<rest>`.
pub fn door_topic(door: &str, rest: &str) -> String {
    format!("doorwarden/{door}/{rest}")
}

/// The lock's discovery config topic.
pub fn lock_discovery_topic(door: &str) -> String {
    format!("homeassistant/lock/doorwarden_{door}_lock/config")
}

/// The delivery rules and timers of the home; short, so faults show fast.
#[derive(Debug, Clone)]
pub struct Rules {
    pub doors: Vec<&'static str>,
    pub confirm_timeout: &'static str,
    pub max_unlocked: &'static str,
    pub relock_after_close: &'static str,
    pub entries_per_window: u32,
    pub warmup: &'static str,
    /// The keypad slot doorwarden may use for delivery codes.
    pub code_slot: Option<u16>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            doors: vec!["front_door"],
            confirm_timeout: "3s",
            max_unlocked: "10m",
            relock_after_close: "500ms",
            entries_per_window: 3,
            warmup: "500ms",
            code_slot: None,
        }
    }
}

/// The config a user would write for this home. The broker's first user
/// (if any) goes in as the MQTT login.
pub fn config_text(rules: &Rules, broker: &Mosquitto, camera_url: &str, storage: &Path) -> String {
    let mut text = format!(
        "mqtt:\n  url: {}\n  client_id: doorwarden-under-test\n  keep_alive: 5s\n",
        broker.url()
    );
    if let Some((user, password)) = broker.credentials() {
        text.push_str(&format!("  username: {user}\n  password: {password:?}\n"));
    }
    text.push_str(&format!(
        "cameras:\n  {CAMERA}:\n    name: Porch camera\n    url: {camera_url:?}\n    \
         stall_after: 1s\n    freeze_after: 400ms\n    warmup: {}\n",
        rules.warmup
    ));
    text.push_str("locks:\n");
    for door in &rules.doors {
        text.push_str(&format!(
            "  {door}:\n    zigbee2mqtt:\n      topic: {}\n    contact:\n      zigbee2mqtt:\n        \
             topic: {}\n    cameras: [{CAMERA}]\n    confirm_timeout: {}\n",
            lock_topic(door),
            contact_topic(door),
            rules.confirm_timeout
        ));
    }
    text.push_str("deliveries:\n");
    for door in &rules.doors {
        text.push_str(&format!(
            "  {door}:\n    time_zone: UTC\n    max_unlocked: {}\n    relock_after_close: {}\n    \
             entries_per_window: {}\n    on_camera_loss: relock\n",
            rules.max_unlocked, rules.relock_after_close, rules.entries_per_window
        ));
        if let Some(slot) = rules.code_slot {
            text.push_str(&format!("    code_slot: {slot}\n"));
        }
    }
    text.push_str(&format!(
        "storage:\n  dir: {:?}\n",
        storage.display().to_string()
    ));
    text
}

/// How the bridge prints its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `doorwarden run --config FILE` as a child process. Each start writes its
/// stdout and stderr to files of their own (a pipe nobody reads would stall
/// the bridge); the child is killed on drop.
pub struct Bridge {
    config: PathBuf,
    logs: PathBuf,
    format: LogFormat,
    level: String,
    runs: u32,
    child: Option<Child>,
}

impl Bridge {
    pub fn start(config: &Path, logs: &Path, format: LogFormat, level: &str) -> Bridge {
        std::fs::create_dir_all(logs).expect("log directory");
        let mut bridge = Bridge {
            config: config.to_path_buf(),
            logs: logs.to_path_buf(),
            format,
            level: level.to_string(),
            runs: 0,
            child: None,
        };
        bridge.spawn();
        bridge
    }

    fn spawn(&mut self) {
        self.runs += 1;
        let out = File::create(self.logs.join(format!("run-{}.stdout", self.runs)))
            .expect("stdout capture file");
        let err = File::create(self.logs.join(format!("run-{}.stderr", self.runs)))
            .expect("stderr capture file");
        let format = match self.format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        let child = Command::new(env!("CARGO_BIN_EXE_doorwarden"))
            .arg("--log-format")
            .arg(format)
            .arg("--log-level")
            .arg(&self.level)
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            // The level asked for, not whatever the developer's shell says.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn doorwarden");
        self.child = Some(child);
    }

    /// SIGKILL (what `Child::kill` sends on Unix): no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill, then start again with the same config and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// `Some(status)` if the bridge has exited on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Everything every run printed so far, stdout and stderr, in run order.
    pub fn output(&self) -> String {
        let mut all = String::new();
        for run in 1..=self.runs {
            for stream in ["stdout", "stderr"] {
                let path = self.logs.join(format!("run-{run}.{stream}"));
                all.push_str(&std::fs::read_to_string(path).unwrap_or_default());
            }
        }
        all
    }

    /// The stderr of the latest run (where the log goes).
    pub fn last_log(&self) -> String {
        std::fs::read_to_string(self.logs.join(format!("run-{}.stderr", self.runs)))
            .unwrap_or_default()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what the bridge said last.
        if std::thread::panicking() {
            let out = self.output();
            let lines: Vec<&str> = out.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- last lines of the bridge's log ---\n{}",
                tail.join("\n")
            );
        }
    }
}

/// One door's simulated devices.
pub struct DoorSims {
    pub name: &'static str,
    pub lock: SimZigbeeLock,
    pub contact: SimZigbeeContact,
}

/// The simulated devices and the bridge process over them.
pub struct ProcessHome {
    pub camera: SimCamera,
    pub doors: Vec<DoorSims>,
    pub bridge: Bridge,
    pub rules: Rules,
    storage: PathBuf,
    dir: tempfile::TempDir,
}

impl ProcessHome {
    /// Devices on `broker`, then the bridge, with an empty storage directory.
    pub async fn start(broker: &Mosquitto, rules: Rules) -> ProcessHome {
        ProcessHome::start_with(broker, rules, |_| {}).await
    }

    /// Like [`ProcessHome::start`], letting `prepare` break the storage
    /// directory (given its path, created and empty) before the bridge
    /// starts.
    pub async fn start_with(
        broker: &Mosquitto,
        rules: Rules,
        prepare: impl FnOnce(&Path),
    ) -> ProcessHome {
        ProcessHome::start_prepared(broker, rules, prepare, |_| {}).await
    }

    /// Like [`ProcessHome::start_with`], also letting `devices` set up the
    /// simulated devices (a silent lock, say) before the bridge first
    /// talks to them.
    pub async fn start_prepared(
        broker: &Mosquitto,
        rules: Rules,
        prepare: impl FnOnce(&Path),
        devices: impl FnOnce(&[DoorSims]),
    ) -> ProcessHome {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("storage dir");
        prepare(&storage);
        let camera = SimCamera::start(SimCameraOptions::default())
            .await
            .expect("simulated camera");
        let mut doors = Vec::new();
        for name in &rules.doors {
            let lock = SimZigbeeLock::start("127.0.0.1", broker.port(), &lock_topic(name))
                .await
                .expect("simulated lock");
            let contact = SimZigbeeContact::start("127.0.0.1", broker.port(), &contact_topic(name))
                .await
                .expect("simulated contact sensor");
            doors.push(DoorSims {
                name,
                lock,
                contact,
            });
        }
        devices(&doors);
        let config = dir.path().join("doorwarden.yaml");
        std::fs::write(
            &config,
            config_text(&rules, broker, &camera.url(), &storage),
        )
        .expect("write config");
        let bridge = Bridge::start(&config, &dir.path().join("logs"), LogFormat::Text, "info");
        ProcessHome {
            camera,
            doors,
            bridge,
            rules,
            storage,
            dir,
        }
    }

    /// The first door (most tests have one).
    pub fn door(&self) -> &DoorSims {
        &self.doors[0]
    }

    pub fn storage(&self) -> &Path {
        &self.storage
    }

    /// Every audit record on disk, oldest first.
    pub fn audit(&self) -> Vec<Value> {
        audit_records(&self.storage)
    }
}

/// The records of `audit.jsonl` in `storage` (rotated files first). A line
/// that is not JSON (torn by a crash) is skipped: the store cuts it off at
/// its next start, and the chain check is the test for that.
pub fn audit_records(storage: &Path) -> Vec<Value> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(storage)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let n = name
                        .strip_prefix("audit.")
                        .and_then(|r| r.strip_suffix(".jsonl"))
                        .and_then(|n| n.parse().ok());
                    n.map(|n| (n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.push((u64::MAX, storage.join("audit.jsonl")));
    files
        .iter()
        .flat_map(|(_, path)| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Audit records of `door` with `decision`.
pub fn audited<'a>(records: &'a [Value], door: &str, decision: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["door"] == door && r["decision"] == decision)
        .collect()
}

/// How many `{"state": word}` commands the simulated lock received.
pub fn lock_commands(lock: &SimZigbeeLock, word: &str) -> usize {
    lock.received()
        .iter()
        .filter(|m| m["state"] == word)
        .count()
}

/// A delivery event of `door` with this `event_type`.
pub fn is_event(m: &Received, door: &str, kind: &str) -> bool {
    m.topic == door_topic(door, "delivery/event") && m.json()["event_type"] == kind
}

/// A state message of `door`.
pub fn is_state(m: &Received, door: &str) -> bool {
    m.topic == door_topic(door, "state")
}

/// The camera's state topic.
pub fn camera_state_topic() -> String {
    format!("doorwarden/camera/{CAMERA}/state")
}

/// Waits for the camera to be reported live. The camera's state goes out
/// only when it changes, so the retained state is asked for again (a new
/// SUBSCRIBE makes the broker send it): a camera that went live before the
/// call is seen at once.
pub async fn wait_live(client: &mut TestClient) {
    let topic = camera_state_topic();
    client.subscribe(&topic).await;
    client
        .wait_for(
            |m| m.topic == topic && m.json()["live"] == true,
            LONG,
            "the camera to be live",
        )
        .await;
}

/// Camera live and the lock known to be locked, in whichever order the
/// bridge reports them.
pub async fn ready(obs: &mut TestClient, door: &str) {
    let camera = camera_state_topic();
    wait_all(
        obs,
        &[
            ("the camera to be live", &|m: &Received| {
                m.topic == camera && m.json()["live"] == true
            }),
            ("the lock to be shown LOCKED", &|m: &Received| {
                is_state(m, door) && m.json()["lock"] == "LOCKED"
            }),
        ],
    )
    .await;
}

/// Waits for `door`'s state to show the lock with `word` (`LOCKED`, …).
pub async fn wait_lock_shown(client: &mut TestClient, door: &str, word: &str) -> Received {
    client
        .wait_for(
            |m| is_state(m, door) && m.json()["lock"] == word,
            LONG,
            &format!("{door}'s lock entity to show {word}"),
        )
        .await
}

/// Asks for a delivery on MQTT and returns the answer's JSON.
pub async fn request(client: &mut TestClient, door: &str, payload: &str) -> Value {
    client
        .publish(&door_topic(door, "delivery/request"), payload, false)
        .await;
    client
        .wait_topic(&door_topic(door, "delivery/response"), LONG)
        .await
        .json()
}

/// Every message up to and including the first that matches `want`.
pub async fn collect_until(
    client: &mut TestClient,
    mut want: impl FnMut(&Received) -> bool,
    what: &str,
) -> Vec<Received> {
    let deadline = tokio::time::Instant::now() + LONG;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.try_wait_for(|_| true, left).await {
            Some(m) => {
                let done = want(&m);
                seen.push(m);
                if done {
                    return seen;
                }
            }
            None => panic!(
                "timed out after {LONG:?} waiting for {what}; saw {:?}",
                seen.iter()
                    .map(|m| format!("{} {}", m.topic, m.text()))
                    .collect::<Vec<_>>()
            ),
        }
    }
}

/// What [`wait_all`] waits for: a description and a test of a message.
pub type Want<'a> = (&'a str, &'a dyn Fn(&Received) -> bool);

/// Waits until each condition has matched a message, in any order; returns
/// the first match of each, in the order of `wants`.
pub async fn wait_all(client: &mut TestClient, wants: &[Want<'_>]) -> Vec<Received> {
    let deadline = tokio::time::Instant::now() + LONG;
    let mut found: Vec<Option<Received>> = vec![None; wants.len()];
    while found.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(m) = client.try_wait_for(|_| true, left).await else {
            let missing: Vec<&str> = wants
                .iter()
                .zip(&found)
                .filter(|(_, f)| f.is_none())
                .map(|((what, _), _)| *what)
                .collect();
            panic!("timed out after {LONG:?} waiting for {missing:?}");
        };
        for (slot, (_, want)) in found.iter_mut().zip(wants) {
            if slot.is_none() && want(&m) {
                *slot = Some(m.clone());
            }
        }
    }
    found.into_iter().flatten().collect()
}

/// Polls `check` until it holds (the simulators' own records are not on
/// MQTT, so there is nothing to wait on).
pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LONG;
    while !check() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {LONG:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The door state as a client connecting now would see it (the retained
/// copy on the broker).
pub async fn current_state(broker: &Mosquitto, door: &str) -> Value {
    let mut fresh = TestClient::connect(broker).await;
    fresh.subscribe(&door_topic(door, "state")).await;
    fresh
        .wait_topic(&door_topic(door, "state"), LONG)
        .await
        .json()
}
