//! Hostile input and secrets, on real parts: a real Mosquitto, `doorwarden
//! run` as a child process, the simulated Zigbee2MQTT lock and contact
//! sensor and the simulated RTSP camera. The tests look at what an attacker
//! would get out of it (an unlock at the lock, an open window, a secret in a
//! log line, an MQTT payload or the audit log) and at what the owner sees
//! (the answer given, the audit records written).

mod common;
#[path = "common/process_home.rs"]
mod process_home;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::mosquitto::{Mosquitto, Received, TestClient};
use doorwarden::config::Secret;
use doorwarden_sim::camera::{SimCamera, SimCameraOptions, SimCredentials};
use process_home::{
    Bridge, LONG, LogFormat, ProcessHome, Rules, audited, camera_state_topic, config_text,
    contact_topic, current_state, door_topic, is_event, is_state, lock_commands,
    lock_discovery_topic, lock_topic, request, wait_all, wait_lock_shown,
};

const DOOR: &str = "front_door";

/// Camera live and the lock known to be locked, in either order, as the
/// running bridge publishes them (not a retained copy left by an earlier
/// run).
async fn ready(obs: &mut TestClient, door: &str) {
    let camera = camera_state_topic();
    wait_all(
        obs,
        &[
            ("the camera to be live", &|m: &Received| {
                !m.retain && m.topic == camera && m.json()["live"] == true
            }),
            ("the lock to be shown LOCKED", &|m: &Received| {
                !m.retain && is_state(m, door) && m.json()["lock"] == "LOCKED"
            }),
        ],
    )
    .await;
}

async fn event(obs: &mut TestClient, door: &str, kind: &str) -> serde_json::Value {
    obs.wait_for(|m| is_event(m, door, kind), LONG, kind)
        .await
        .json()
}

// ---- retained command injection ----------------------------------------

/// One retained message on every command topic of `door`.
fn injected(door: &str, grant: &str) -> Vec<(String, String)> {
    [
        ("lock/set", "UNLOCK"),
        ("delivery/grant/set", grant),
        ("delivery/courier_unlock/set", "PRESS"),
        (
            "delivery/request",
            r#"{"carrier":"Injected","code":"4321"}"#,
        ),
        ("delivery/code/set", "4321"),
        ("delivery/grant_minutes/set", "5"),
        ("delivery/end/set", "PRESS"),
    ]
    .into_iter()
    .map(|(rest, payload)| (door_topic(door, rest), payload.to_string()))
    .collect()
}

/// Leaves `messages` retained on the broker and waits until it has stored
/// every one: a subscriber gets each back, with the retain flag if the
/// broker had it before the subscription, without it if it came after (and
/// was stored before being passed on).
async fn plant(broker: &Mosquitto, messages: &[(String, String)]) {
    let attacker = TestClient::connect(broker).await;
    for (topic, payload) in messages {
        attacker.publish(topic, payload.as_str(), true).await;
    }
    let mut check = TestClient::connect(broker).await;
    for (topic, _) in messages {
        check.subscribe(topic).await;
    }
    let mut missing: Vec<&str> = messages.iter().map(|(t, _)| t.as_str()).collect();
    while !missing.is_empty() {
        let m = check
            .wait_for(
                |m| {
                    messages
                        .iter()
                        .any(|(t, p)| *t == m.topic && p.as_bytes() == m.payload)
                },
                LONG,
                "the planted messages back",
            )
            .await;
        missing.retain(|t| *t != m.topic);
    }
}

/// Log lines saying a retained command was dropped.
fn ignored_in_log(log: &str) -> usize {
    log.matches("ignoring a retained message on a command topic")
        .count()
}

/// Nothing a retained command could have done was done.
async fn nothing_acted_on(broker: &Mosquitto, home: &ProcessHome, when: &str) {
    let door = home.door();
    assert_eq!(
        lock_commands(&door.lock, "UNLOCK"),
        0,
        "{when}: unlock sent"
    );
    assert!(door.lock.is_locked(), "{when}: the lock moved");
    let state = current_state(broker, DOOR).await;
    assert_eq!(state["delivery"], "idle", "{when}: {state}");
    assert_eq!(
        state["window_ends"],
        serde_json::Value::Null,
        "{when}: {state}"
    );
    assert_eq!(state["grant_minutes"], 30, "{when}: {state}");
    assert_eq!(state["lock"], "LOCKED", "{when}: {state}");
    let acted: Vec<_> = home
        .audit()
        .into_iter()
        .filter(|r| {
            [
                "window_granted",
                "window_ended",
                "owner_unlock",
                "owner_lock",
                "granted",
                "denied",
                "code_set",
                "grant_duration",
            ]
            .iter()
            .any(|d| r["decision"] == *d)
        })
        .collect();
    assert!(acted.is_empty(), "{when}: {acted:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_commands_are_never_acted_on_before_start_or_on_a_reconnect() {
    let mut broker = Mosquitto::start();
    // Before doorwarden starts: a retained message on every command topic.
    let before = injected(DOOR, "PRESS");
    plant(&broker, &before).await;
    let mut obs = TestClient::connect(&broker).await;
    obs.subscribe("doorwarden/#").await;
    let mut events = TestClient::connect(&broker).await;
    events.subscribe("doorwarden/+/delivery/event").await;
    events.subscribe("doorwarden/+/delivery/response").await;
    let home = ProcessHome::start(&broker, Rules::default()).await;
    ready(&mut obs, DOOR).await;
    // The bridge got every one of them when it subscribed, and said so.
    let wanted = before.len();
    process_home::wait_until("every retained command logged as ignored", || {
        ignored_in_log(&home.bridge.output()) >= wanted
    })
    .await;
    nothing_acted_on(&broker, &home, "before start").await;
    let said = events.collect(Duration::from_millis(300)).await;
    assert!(said.is_empty(), "before start: {said:?}");

    // While it runs: the broker goes down, and while doorwarden waits to
    // reconnect, someone plants commands on the fresh broker. They reach the
    // bridge when it subscribes again, retained.
    broker.stop();
    // The bridge tries again 0.5 s after the loss and 1 s after that; the
    // next try is 2 s later, which leaves time to plant.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    broker.restart();
    let mut availability = TestClient::connect(&broker).await;
    availability
        .subscribe("doorwarden/bridge/availability")
        .await;
    let mut events = TestClient::connect(&broker).await;
    events.subscribe("doorwarden/+/delivery/event").await;
    events.subscribe("doorwarden/+/delivery/response").await;
    let during = injected(DOOR, r#"{"minutes":10,"code":"4321"}"#);
    plant(&broker, &during).await;
    assert!(
        availability
            .try_wait_for(|m| m.text() == "online", Duration::ZERO)
            .await
            .is_none(),
        "the bridge reconnected before the commands were planted: the test's timing assumption failed"
    );
    let mut ha = TestClient::connect(&broker).await;
    ha.subscribe("doorwarden/#").await;
    ha.subscribe(&lock_discovery_topic(DOOR)).await;
    wait_lock_shown(&mut ha, DOOR, "LOCKED").await;
    let wanted = before.len() + during.len();
    process_home::wait_until(
        "the re-delivered retained commands logged as ignored",
        || ignored_in_log(&home.bridge.output()) >= wanted,
    )
    .await;
    nothing_acted_on(&broker, &home, "after the reconnect").await;
    let said = events.collect(Duration::from_millis(300)).await;
    assert!(said.is_empty(), "after the reconnect: {said:?}");

    // The same topics, not retained, are obeyed: the checks above could fail.
    ha.publish(&door_topic(DOOR, "delivery/grant/set"), "PRESS", false)
        .await;
    event(&mut ha, DOOR, "window_opened").await;
    let answer = request(&mut ha, DOOR, "{}").await;
    assert_eq!(answer["granted"], true, "{answer}");
    process_home::wait_until("the unlock at the lock", || {
        lock_commands(&home.door().lock, "UNLOCK") == 1
    })
    .await;
}

// ---- one-time codes -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_codes_open_once_replays_and_wrong_codes_are_refused_and_five_failures_lock_the_door_out_for_a_minute()
 {
    let broker = Mosquitto::start();
    let rules = Rules {
        doors: vec!["front_door", "back_door"],
        entries_per_window: 1,
        relock_after_close: "300ms",
        ..Rules::default()
    };
    let mut front = TestClient::connect(&broker).await;
    front.subscribe(&door_topic("front_door", "#")).await;
    front.subscribe(&camera_state_topic()).await;
    let mut back = TestClient::connect(&broker).await;
    back.subscribe(&door_topic("back_door", "#")).await;
    let home = ProcessHome::start(&broker, rules).await;
    ready(&mut front, "front_door").await;
    wait_lock_shown(&mut back, "back_door", "LOCKED").await;
    let lock = &home.doors[0].lock;

    // A window with a code: the right code opens the door, once.
    let first_code = "482913";
    front
        .publish(
            &door_topic(DOOR, "delivery/grant/set"),
            format!(r#"{{"minutes":10,"code":"{first_code}"}}"#),
            false,
        )
        .await;
    event(&mut front, DOOR, "window_opened").await;
    let no_code = request(&mut front, DOOR, r#"{"carrier":"Parcel Co"}"#).await;
    assert_eq!(no_code["granted"], false, "{no_code}");
    assert_eq!(no_code["reason"], "a delivery code is required");
    let with_code = format!(r#"{{"code":"{first_code}","carrier":"Parcel Co"}}"#);
    let granted = request(&mut front, DOOR, &with_code).await;
    assert_eq!(granted["granted"], true, "{granted}");
    event(&mut front, DOOR, "unlocked").await;
    home.doors[0].contact.open().await.expect("open");
    home.doors[0].contact.close().await.expect("close");
    event(&mut front, DOOR, "completed").await;
    // The same code again: the window's one entry is spent.
    let replay = request(&mut front, DOOR, &with_code).await;
    assert_eq!(replay["granted"], false, "{replay}");
    assert_eq!(
        replay["reason"],
        "this window's entries are used up (1 of 1)"
    );
    assert_eq!(lock_commands(lock, "UNLOCK"), 1);

    // A new window with a new code: the old one is now just a wrong code.
    let code = "731406";
    front
        .publish(
            &door_topic(DOOR, "delivery/grant/set"),
            format!(r#"{{"minutes":10,"code":"{code}"}}"#),
            false,
        )
        .await;
    event(&mut front, DOOR, "window_opened").await;
    let first_failure = Instant::now();
    for wrong in [first_code, "000000", "111111", "2222", "9999999999"] {
        let answer = request(&mut front, DOOR, &format!(r#"{{"code":"{wrong}"}}"#)).await;
        assert_eq!(answer["granted"], false, "{wrong}: {answer}");
        assert_eq!(answer["reason"], "wrong delivery code", "{wrong}");
    }
    // Five wrong codes within the minute: now even the right one is refused.
    let right = format!(r#"{{"code":"{code}"}}"#);
    for attempt in [right.as_str(), r#"{"code":"123456"}"#, "{}"] {
        let answer = request(&mut front, DOOR, attempt).await;
        assert_eq!(answer["granted"], false, "{attempt}: {answer}");
        let reason = answer["reason"].as_str().unwrap_or_default();
        let wait: u64 = reason
            .strip_prefix("too many wrong codes; try again in ")
            .and_then(|r| r.strip_suffix(" s"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{attempt}: {reason}"));
        assert!((1..=60).contains(&wait), "{reason}");
    }
    assert_eq!(lock_commands(lock, "UNLOCK"), 1);

    // The lockout is per door: the back door takes its own code meanwhile.
    back.publish(
        &door_topic("back_door", "delivery/grant/set"),
        r#"{"minutes":10,"code":"55512345"}"#,
        false,
    )
    .await;
    event(&mut back, "back_door", "window_opened").await;
    let other = request(&mut back, "back_door", r#"{"code":"55512345"}"#).await;
    assert_eq!(other["granted"], true, "{other}");
    process_home::wait_until("the back door's unlock", || {
        lock_commands(&home.doors[1].lock, "UNLOCK") == 1
    })
    .await;

    // Each failure is audited with its count, and no code is on disk.
    let audit = home.audit();
    let failures = audited(&audit, DOOR, "wrong_code");
    let counts: Vec<_> = failures
        .iter()
        .map(|r| r["details"]["failures_this_minute"].clone())
        .collect();
    assert_eq!(
        counts,
        [1, 2, 3, 4, 5].map(serde_json::Value::from),
        "{audit:#?}"
    );
    assert!(
        failures
            .iter()
            .all(|r| r["reason"] == "wrong delivery code")
    );
    let lockouts = audited(&audit, DOOR, "denied")
        .into_iter()
        .filter(|r| {
            r["reason"]
                .as_str()
                .is_some_and(|s| s.starts_with("too many wrong codes"))
        })
        .count();
    assert_eq!(lockouts, 3, "{audit:#?}");
    let on_disk = serde_json::to_string(&audit).unwrap_or_default();
    for secret in [first_code, code, "55512345"] {
        assert!(!on_disk.contains(secret), "code {secret} in the audit log");
    }

    // Once the minute since the first failure is over, the right code works.
    tokio::time::sleep_until((first_failure + Duration::from_secs(62)).into()).await;
    let after = request(&mut front, DOOR, &right).await;
    assert_eq!(after["granted"], true, "{after}");
    process_home::wait_until("the second unlock", || lock_commands(lock, "UNLOCK") == 2).await;
}

// ---- secrets ------------------------------------------------------------

const MQTT_PASSWORD: &str = "mqtt-pw-Zq8RkT3vWb";
const CAMERA_USER: &str = "viewer";
const CAMERA_PASSWORD: &str = "cam-pw-Hx4Nd7LpQe";
const DELIVERY_CODE: &str = "5820491736";

/// Base64 (standard alphabet, padded), for the Basic form of a credential.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every form in which a secret could leak.
fn secret_forms() -> Vec<String> {
    vec![
        MQTT_PASSWORD.to_string(),
        CAMERA_PASSWORD.to_string(),
        DELIVERY_CODE.to_string(),
        base64(format!("{CAMERA_USER}:{CAMERA_PASSWORD}").as_bytes()),
        base64(format!("doorwarden:{MQTT_PASSWORD}").as_bytes()),
    ]
}

fn leaks(text: &str) -> Vec<String> {
    secret_forms()
        .into_iter()
        .filter(|s| text.contains(s.as_str()))
        .collect()
}

/// The lock and contact sensor of a password-protected broker, played by a
/// test client (the simulators log in anonymously): answers `/set` and
/// `/get` the way Zigbee2MQTT does, with the bolt where it was told to go.
struct PasswordLock {
    locked: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl PasswordLock {
    async fn start(broker: &Mosquitto, door: &str) -> PasswordLock {
        let topic = lock_topic(door);
        let mut client = TestClient::connect(broker).await;
        client.subscribe(&format!("{topic}/set")).await;
        client.subscribe(&format!("{topic}/get")).await;
        client
            .publish(
                &format!("{topic}/availability"),
                r#"{"state":"online"}"#,
                true,
            )
            .await;
        let locked = Arc::new(AtomicBool::new(true));
        let bolt = locked.clone();
        let task = tokio::spawn(async move {
            let state = |locked: bool| {
                if locked {
                    r#"{"state":"LOCK","lock_state":"locked","battery":90}"#
                } else {
                    r#"{"state":"UNLOCK","lock_state":"unlocked","battery":90}"#
                }
            };
            loop {
                let Some(m) = client.try_wait_for(|_| true, LONG).await else {
                    continue;
                };
                if m.topic.ends_with("/set") {
                    match m.json()["state"].as_str() {
                        Some("LOCK") => bolt.store(true, Ordering::SeqCst),
                        Some("UNLOCK") => bolt.store(false, Ordering::SeqCst),
                        _ => continue,
                    }
                }
                client
                    .publish(&topic, state(bolt.load(Ordering::SeqCst)), false)
                    .await;
            }
        });
        PasswordLock { locked, task }
    }
}

impl Drop for PasswordLock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One whole delivery with every secret in play, then the camera lost and
/// found again; returns once it is over.
async fn secret_scenario(
    broker: &Mosquitto,
    camera: &SimCamera,
    lock: &PasswordLock,
    obs: &mut TestClient,
) {
    ready(obs, DOOR).await;
    let contact = TestClient::connect(broker).await;
    obs.publish(&door_topic(DOOR, "delivery/code/set"), DELIVERY_CODE, false)
        .await;
    obs.publish(
        &door_topic(DOOR, "delivery/grant/set"),
        format!(r#"{{"minutes":10,"code":"{DELIVERY_CODE}"}}"#),
        false,
    )
    .await;
    event(obs, DOOR, "window_opened").await;
    let wrong = request(obs, DOOR, r#"{"code":"0000"}"#).await;
    assert_eq!(wrong["reason"], "wrong delivery code", "{wrong}");
    let answer = request(
        obs,
        DOOR,
        &format!(r#"{{"code":"{DELIVERY_CODE}","carrier":"Parcel Co"}}"#),
    )
    .await;
    assert_eq!(answer["granted"], true, "{answer}");
    event(obs, DOOR, "unlocked").await;
    assert!(!lock.locked.load(Ordering::SeqCst));
    contact
        .publish(&contact_topic(DOOR), r#"{"contact":false}"#, false)
        .await;
    event(obs, DOOR, "door_opened").await;
    contact
        .publish(&contact_topic(DOOR), r#"{"contact":true}"#, false)
        .await;
    event(obs, DOOR, "completed").await;
    assert!(lock.locked.load(Ordering::SeqCst));

    // The camera drops off and refuses connections for a while: the bridge
    // logs its reconnect attempts, with the camera's URL in them.
    camera.refuse();
    camera.drop_all();
    let topic = camera_state_topic();
    obs.wait_for(
        |m| m.topic == topic && m.json()["live"] == false,
        LONG,
        "the camera shown not live",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    camera.accept();
    obs.wait_for(
        |m| m.topic == topic && m.json()["live"] == true,
        LONG,
        "the camera live again",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_line_an_mqtt_message_or_the_audit_log() {
    let broker = Mosquitto::builder()
        .user("doorwarden", MQTT_PASSWORD)
        .start();
    let mut sniffer = TestClient::connect(&broker).await;
    sniffer.subscribe("#").await;
    let camera = SimCamera::start(SimCameraOptions {
        credentials: Some(SimCredentials::new(
            CAMERA_USER,
            Secret::new(CAMERA_PASSWORD),
        )),
        ..SimCameraOptions::default()
    })
    .await
    .expect("simulated camera");
    let url = camera.url().replacen(
        "rtsp://",
        &format!("rtsp://{CAMERA_USER}:{CAMERA_PASSWORD}@"),
        1,
    );
    let lock = PasswordLock::start(&broker, DOOR).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("storage");
    let config = dir.path().join("doorwarden.yaml");
    std::fs::write(
        &config,
        config_text(&Rules::default(), &broker, &url, &storage),
    )
    .expect("write config");

    // The detector finds what it looks for: the config holds two secrets.
    let written = std::fs::read_to_string(&config).expect("read config");
    assert_eq!(leaks(&written), [MQTT_PASSWORD, CAMERA_PASSWORD]);

    let mut output = String::new();
    for format in [LogFormat::Text, LogFormat::Json] {
        let mut obs = TestClient::connect(&broker).await;
        obs.subscribe("doorwarden/#").await;
        let logs = dir.path().join(format!("logs-{format:?}"));
        let mut bridge = Bridge::start(&config, &logs, format, "debug");
        secret_scenario(&broker, &camera, &lock, &mut obs).await;
        bridge.kill();
        let printed = bridge.output();
        // The checks below mean something only if the log is the detailed
        // one and the camera's URL went into it.
        assert!(
            printed.contains("DEBUG"),
            "no debug lines in the {format:?} log"
        );
        assert!(
            printed.contains(&camera.local_addr().to_string()),
            "the camera URL never reached the {format:?} log"
        );
        if format == LogFormat::Json {
            for line in printed.lines().filter(|l| !l.trim().is_empty()) {
                let parsed: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
                assert!(parsed["level"].is_string(), "{line}");
            }
        }
        output.push_str(&printed);
    }

    let leaked = leaks(&output);
    assert!(
        leaked.is_empty(),
        "secrets in the bridge's output: {leaked:?}"
    );

    // Every message on the broker, except the test's own commands that
    // carry the code in.
    let inputs = [
        door_topic(DOOR, "delivery/grant/set"),
        door_topic(DOOR, "delivery/code/set"),
        door_topic(DOOR, "delivery/request"),
    ];
    let messages = sniffer.collect(Duration::from_millis(500)).await;
    let from_bridge: Vec<&Received> = messages
        .iter()
        .filter(|m| !inputs.contains(&m.topic))
        .collect();
    assert!(
        from_bridge
            .iter()
            .any(|m| m.topic == door_topic(DOOR, "delivery/response")),
        "the sniffer saw no delivery response"
    );
    for m in &from_bridge {
        let leaked = leaks(&format!("{} {}", m.topic, m.text()));
        assert!(leaked.is_empty(), "{leaked:?} in {} {}", m.topic, m.text());
    }

    // The storage directory: state, audit log, anything else written there.
    let mut files = 0;
    for entry in std::fs::read_dir(&storage).expect("storage dir").flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        let leaked = leaks(&String::from_utf8_lossy(&bytes));
        assert!(
            leaked.is_empty(),
            "{leaked:?} in {}",
            entry.path().display()
        );
        files += 1;
    }
    let audit = process_home::audit_records(&storage);
    assert!(
        files > 0 && !audited(&audit, DOOR, "wrong_code").is_empty(),
        "the audit log holds no record of the scenario"
    );
}
