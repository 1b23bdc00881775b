//! The lock translators against the simulated Zigbee2MQTT and Z-Wave JS UI
//! locks over a real Mosquitto: this test plays doorwarden's part (publishes
//! what `DoorDevices::commands` says, parses what comes back) and drives the
//! core's `LockTracker` with the reports, so a silent lock ends as
//! `Unresponsive` after one retry, exactly as the core would see it.

mod common;

use std::time::{Duration, Instant};

use common::mosquitto::{Mosquitto, TestClient};
use doorwarden::config::{self, Secret};
use doorwarden::core::lock::{LockNote, LockTracker, Want};
use doorwarden::core::{DoorReport, LockCommand, LockDisplay, LockState, MoveSource};
use doorwarden::devices::{DoorDevices, Parsed};
use doorwarden_sim::zigbee2mqtt_lock::{SimZigbeeContact, SimZigbeeLock};
use doorwarden_sim::zwave_js_lock::{PayloadStyle, SimZwaveLock, ZwaveSimConfig};

/// Generous: the broker and the simulators answer in milliseconds, but the
/// machine is shared.
const LIMIT: Duration = Duration::from_secs(10);

/// doorwarden's side of one door: its MQTT subscriptions, the translator
/// and the core's lock tracker.
struct Door {
    devices: DoorDevices,
    link: TestClient,
    tracker: LockTracker,
    seen: Vec<DoorReport>,
    /// Descriptions of the malformed messages, as the shell would log them.
    malformed: Vec<String>,
}

impl Door {
    async fn connect(broker: &Mosquitto, yaml: &str, confirm: Duration) -> Door {
        let cfg: config::Door = serde_yaml::from_str(yaml).expect("test door config");
        let devices = DoorDevices::from_config("front", &cfg);
        let mut link = TestClient::connect(broker).await;
        for filter in devices.subscriptions() {
            link.subscribe(&filter).await;
        }
        Door {
            devices,
            link,
            tracker: LockTracker::new(confirm),
            seen: Vec::new(),
            malformed: Vec::new(),
        }
    }

    async fn send(&self, cmd: &LockCommand) {
        for out in self.devices.commands(cmd) {
            assert!(!out.retain, "commands are never retained");
            self.link.publish(&out.topic, out.payload, out.retain).await;
        }
    }

    async fn command(&mut self, want: Want) {
        let cmd = self.tracker.command(Instant::now(), want);
        self.send(&cmd).await;
    }

    /// Feed messages and deadlines to the tracker until `want` matches a
    /// note or a report (whichever the caller looks for).
    async fn until(
        &mut self,
        mut want: impl FnMut(Option<&LockNote>, Option<&DoorReport>) -> bool,
        what: &str,
    ) {
        let give_up = tokio::time::Instant::now() + LIMIT;
        loop {
            let now = tokio::time::Instant::now();
            if now >= give_up {
                panic!(
                    "timed out waiting for {what}; reports seen: {:?}",
                    self.seen
                );
            }
            let wake = self
                .tracker
                .poll_timeout()
                .map(|t| tokio::time::Instant::from_std(t).min(give_up))
                .unwrap_or(give_up);
            let limit = wake.saturating_duration_since(now);
            match self.link.try_wait_for(|_| true, limit).await {
                Some(msg) => {
                    let reports = match self.devices.parse(&msg.topic, &msg.payload) {
                        Parsed::Reports(r) => r,
                        Parsed::NotMine => continue,
                        Parsed::Malformed(why) => {
                            self.malformed.push(why);
                            continue;
                        }
                    };
                    for report in reports {
                        self.seen.push(report.clone());
                        let note = self.tracker.handle_report(Instant::now(), &report);
                        if want(note.as_ref(), Some(&report)) {
                            return;
                        }
                    }
                }
                None => {
                    if let Some(note) = self.tracker.handle_timeout(Instant::now()) {
                        if let LockNote::Retry(cmd) = &note {
                            self.send(cmd).await;
                        }
                        if want(Some(&note), None) {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Wait until `n` malformed messages have been seen (and set aside).
    async fn until_malformed(&mut self, n: usize) {
        while self.malformed.len() < n {
            let Some(msg) = self.link.try_wait_for(|_| true, LIMIT).await else {
                panic!(
                    "timed out waiting for {n} malformed messages; saw {:?}",
                    self.malformed
                );
            };
            match self.devices.parse(&msg.topic, &msg.payload) {
                Parsed::Malformed(why) => self.malformed.push(why),
                Parsed::Reports(reports) => {
                    for report in reports {
                        let _ = self.tracker.handle_report(Instant::now(), &report);
                        self.seen.push(report);
                    }
                }
                Parsed::NotMine => {}
            }
        }
    }

    async fn until_note(&mut self, expected: LockNote) {
        let what = format!("{expected:?}");
        self.until(|note, _| note == Some(&expected), &what).await;
    }

    async fn until_report(&mut self, expected: DoorReport) {
        let what = format!("{expected:?}");
        self.until(|_, report| report == Some(&expected), &what)
            .await;
    }
}

fn bolt(state: LockState) -> impl FnMut(Option<&LockNote>, Option<&DoorReport>) -> bool {
    move |_, r| matches!(r, Some(DoorReport::Lock { state: s, .. }) if *s == state)
}

// ---------------------------------------------------------------- Zigbee2MQTT

const Z2M_DOOR: &str = "zigbee2mqtt: {topic: zigbee2mqtt/Front door}";

async fn zigbee(confirm: Duration) -> (Mosquitto, SimZigbeeLock, Door) {
    let broker = Mosquitto::start();
    let sim = SimZigbeeLock::start("127.0.0.1", broker.port(), "zigbee2mqtt/Front door")
        .await
        .expect("sim lock");
    let mut door = Door::connect(&broker, Z2M_DOOR, confirm).await;
    // Zigbee2MQTT does not retain device state: ask, as doorwarden does at start.
    for out in door.devices.refresh() {
        door.link.publish(&out.topic, out.payload, false).await;
    }
    door.until(bolt(LockState::Locked), "the lock's state after a refresh")
        .await;
    (broker, sim, door)
}

#[tokio::test]
async fn zigbee_unlock_and_lock_are_confirmed_by_the_lock() {
    let (_broker, sim, mut door) = zigbee(Duration::from_secs(5)).await;
    sim.set_response_delay(Duration::from_millis(200));
    door.command(Want::Unlocked).await;
    door.until_note(LockNote::Confirmed(Want::Unlocked)).await;
    assert!(!sim.is_locked());
    // The radio report that confirms doorwarden's own command is shown as
    // doorwarden's move, not an anonymous RF one.
    assert_eq!(door.tracker.source(), Some(MoveSource::Doorwarden));
    door.command(Want::Locked).await;
    door.until_note(LockNote::Confirmed(Want::Locked)).await;
    assert!(sim.is_locked());
    let sent: Vec<String> = sim.received().iter().map(|v| v.to_string()).collect();
    assert_eq!(
        sent,
        [
            r#"{"state":""}"#,
            r#"{"state":"UNLOCK"}"#,
            r#"{"state":"LOCK"}"#
        ]
    );
}

#[tokio::test]
async fn zigbee_malformed_messages_change_nothing() {
    let (broker, sim, mut door) = zigbee(Duration::from_secs(5)).await;
    let stranger = TestClient::connect(&broker).await;
    stranger
        .publish(
            "zigbee2mqtt/Front door",
            r#"{"state":"UNLOCK","lock_st"#,
            false,
        )
        .await;
    stranger
        .publish(
            "zigbee2mqtt/Front door",
            r#"{"state":"OPEN","lock_state":"open"}"#,
            false,
        )
        .await;
    stranger
        .publish(
            "zigbee2mqtt/Front door",
            r#"{"state":"UNLOCK","battery":"low"}"#,
            false,
        )
        .await;
    door.until_malformed(3).await;
    sim.manual_lock()
        .await
        .expect("a real message after the bad ones");
    door.until(bolt(LockState::Locked), "the lock's next real message")
        .await;
    assert_eq!(door.malformed.len(), 3, "{:?}", door.malformed);
    assert!(!door.seen.iter().any(|r| matches!(
        r,
        DoorReport::Lock {
            state: LockState::Unlocked,
            ..
        }
    )));
    assert_eq!(door.tracker.state(), LockState::Locked);
    assert_eq!(door.tracker.display(), Some(LockDisplay::Locked));
}

#[tokio::test]
async fn zigbee_silent_lock_is_unresponsive_after_one_retry() {
    let (_broker, sim, mut door) = zigbee(Duration::from_millis(400)).await;
    sim.set_silent(true);
    door.command(Want::Unlocked).await;
    door.until_note(LockNote::Unresponsive(Want::Unlocked))
        .await;
    let unlocks = sim
        .received()
        .iter()
        .filter(|v| v["state"] == "UNLOCK")
        .count();
    assert_eq!(unlocks, 2, "the command and its one retry");
    assert!(sim.is_locked());
    assert_eq!(door.tracker.display(), Some(LockDisplay::Jammed));
}

#[tokio::test]
async fn zigbee_jam_is_reported_at_once() {
    let (_broker, sim, mut door) = zigbee(Duration::from_secs(5)).await;
    door.command(Want::Unlocked).await;
    door.until_note(LockNote::Confirmed(Want::Unlocked)).await;
    sim.jam_next_command();
    door.command(Want::Locked).await;
    door.until_note(LockNote::Jammed {
        pending: Some(Want::Locked),
    })
    .await;
    assert!(!door.tracker.is_secured());
}

#[tokio::test]
async fn zigbee_thumb_turn_unlock_is_a_manual_move() {
    let (_broker, sim, mut door) = zigbee(Duration::from_secs(5)).await;
    sim.manual_unlock().await.expect("thumb-turn");
    door.until_note(LockNote::Moved {
        state: LockState::Unlocked,
        source: Some(MoveSource::Manual),
    })
    .await;
}

#[tokio::test]
async fn zigbee_lock_going_offline_and_back() {
    let (_broker, sim, mut door) = zigbee(Duration::from_secs(5)).await;
    sim.set_online(false).await.expect("offline");
    door.until_note(LockNote::Availability(false)).await;
    sim.set_online(true).await.expect("online");
    door.until_note(LockNote::Availability(true)).await;
}

#[tokio::test]
async fn zigbee_bridge_vanishing_takes_the_lock_away() {
    let (_broker, sim, mut door) = zigbee(Duration::from_secs(5)).await;
    // The bridge process dies: the broker publishes its last will.
    drop(sim);
    door.until_note(LockNote::Availability(false)).await;
}

#[tokio::test]
async fn zigbee_door_opened_and_shut() {
    let broker = Mosquitto::start();
    let _lock = SimZigbeeLock::start("127.0.0.1", broker.port(), "zigbee2mqtt/Front door")
        .await
        .expect("sim lock");
    let contact =
        SimZigbeeContact::start("127.0.0.1", broker.port(), "zigbee2mqtt/Front door contact")
            .await
            .expect("sim contact");
    let yaml =
        format!("{Z2M_DOOR}\ncontact: {{zigbee2mqtt: {{topic: zigbee2mqtt/Front door contact}}}}");
    let mut door = Door::connect(&broker, &yaml, Duration::from_secs(5)).await;
    contact.open().await.expect("open");
    door.until_report(DoorReport::Contact { open: true }).await;
    contact.close().await.expect("close");
    door.until_report(DoorReport::Contact { open: false }).await;
    contact.set_online(false).await.expect("offline");
    door.until_report(DoorReport::ContactAvailable(false)).await;
}

#[tokio::test]
async fn zigbee_delivery_pin_slot_set_and_cleared() {
    let (_broker, sim, mut door) = zigbee(Duration::from_secs(5)).await;
    door.send(&LockCommand::SetCode {
        slot: 3,
        code: Secret::new("0042"),
    })
    .await;
    door.until_report(DoorReport::CodeSlot { slot: 3, set: true })
        .await;
    assert_eq!(sim.pin_slots().get(&3).map(String::as_str), Some("0042"));
    door.send(&LockCommand::ClearCode { slot: 3 }).await;
    door.until_report(DoorReport::CodeSlot {
        slot: 3,
        set: false,
    })
    .await;
    assert!(sim.pin_slots().is_empty());
    door.send(&LockCommand::SetAutoRelock(45)).await;
    door.until_report(DoorReport::AutoRelock(45)).await;
    assert_eq!(sim.auto_relock(), 45);
}

// ---------------------------------------------------------------- Z-Wave JS UI

async fn zwave(
    style: PayloadStyle,
    with_node_id: bool,
    confirm: Duration,
) -> (Mosquitto, SimZwaveLock, Door) {
    let broker = Mosquitto::start();
    let mut cfg = ZwaveSimConfig::new("zwave/Entry/front_door", 7);
    cfg.style = style;
    let sim = SimZwaveLock::start("127.0.0.1", broker.port(), cfg)
        .await
        .expect("sim lock");
    let node = if with_node_id { ", node: 7" } else { "" };
    let yaml = format!("zwave_js: {{topic: zwave/Entry/front_door{node}}}");
    let mut door = Door::connect(&broker, &yaml, confirm).await;
    // The gateway retains its values: the state arrives on subscribe.
    door.until(bolt(LockState::Locked), "the retained currentMode")
        .await;
    (broker, sim, door)
}

#[tokio::test]
async fn zwave_unlock_and_lock_are_confirmed_in_both_payload_styles() {
    for style in [PayloadStyle::TimeValue, PayloadStyle::Raw] {
        let (_broker, sim, mut door) = zwave(style, false, Duration::from_secs(5)).await;
        sim.set_response_delay(Duration::from_millis(200));
        door.command(Want::Unlocked).await;
        door.until_note(LockNote::Confirmed(Want::Unlocked)).await;
        assert!(!sim.is_locked(), "{style:?}");
        door.command(Want::Locked).await;
        door.until_note(LockNote::Confirmed(Want::Locked)).await;
        let writes: Vec<(String, String)> = sim
            .received()
            .into_iter()
            .map(|(t, v)| (t, v.to_string()))
            .collect();
        assert_eq!(
            writes,
            [
                (
                    "zwave/Entry/front_door/98/0/targetMode/set".to_string(),
                    "0".to_string()
                ),
                (
                    "zwave/Entry/front_door/98/0/targetMode/set".to_string(),
                    "255".to_string()
                ),
            ]
        );
    }
}

#[tokio::test]
async fn zwave_silent_lock_is_unresponsive_after_one_retry() {
    let (_broker, sim, mut door) =
        zwave(PayloadStyle::TimeValue, false, Duration::from_millis(400)).await;
    sim.set_silent(true);
    door.command(Want::Unlocked).await;
    door.until_note(LockNote::Unresponsive(Want::Unlocked))
        .await;
    assert_eq!(sim.received().len(), 2, "the command and its one retry");
    assert!(sim.is_locked());
}

#[tokio::test]
async fn zwave_jam_is_reported_at_once() {
    let (_broker, sim, mut door) =
        zwave(PayloadStyle::TimeValue, false, Duration::from_secs(5)).await;
    door.command(Want::Unlocked).await;
    door.until_note(LockNote::Confirmed(Want::Unlocked)).await;
    sim.jam_next_command();
    door.command(Want::Locked).await;
    door.until_note(LockNote::Jammed {
        pending: Some(Want::Locked),
    })
    .await;
    assert!(!door.tracker.is_secured());
}

#[tokio::test]
async fn zwave_thumb_turn_unlock_is_a_manual_move() {
    let (_broker, sim, mut door) = zwave(PayloadStyle::Raw, false, Duration::from_secs(5)).await;
    sim.manual_unlock().await.expect("thumb-turn");
    door.until_note(LockNote::Moved {
        state: LockState::Unlocked,
        source: Some(MoveSource::Manual),
    })
    .await;
}

#[tokio::test]
async fn zwave_dead_node_is_unavailable() {
    let (_broker, sim, mut door) =
        zwave(PayloadStyle::TimeValue, false, Duration::from_secs(5)).await;
    sim.set_alive(false).await.expect("dead");
    door.until_note(LockNote::Availability(false)).await;
    sim.set_alive(true).await.expect("alive");
    door.until_note(LockNote::Availability(true)).await;
}

#[tokio::test]
async fn zwave_gateway_vanishing_takes_the_lock_away() {
    let (_broker, sim, mut door) =
        zwave(PayloadStyle::TimeValue, false, Duration::from_secs(5)).await;
    drop(sim);
    door.until_note(LockNote::Availability(false)).await;
}

#[tokio::test]
async fn zwave_door_opened_and_shut_by_the_locks_sensor() {
    let (_broker, sim, mut door) =
        zwave(PayloadStyle::TimeValue, false, Duration::from_secs(5)).await;
    sim.set_door_open(true).await.expect("open");
    door.until_report(DoorReport::Contact { open: true }).await;
    sim.set_door_open(false).await.expect("shut");
    door.until_report(DoorReport::Contact { open: false }).await;
}

#[tokio::test]
async fn zwave_delivery_pin_slot_through_the_gateway_api_and_value_writes() {
    // With a node id: User Code CC calls through sendCommand.
    let (_broker, sim, mut door) = zwave(PayloadStyle::Raw, true, Duration::from_secs(5)).await;
    door.send(&LockCommand::SetCode {
        slot: 5,
        code: Secret::new("0730"),
    })
    .await;
    door.until_report(DoorReport::CodeSlot { slot: 5, set: true })
        .await;
    assert_eq!(sim.pin_slots().get(&5).map(String::as_str), Some("0730"));
    door.send(&LockCommand::ClearCode { slot: 5 }).await;
    door.until_report(DoorReport::CodeSlot {
        slot: 5,
        set: false,
    })
    .await;
    assert!(sim.pin_slots().is_empty());

    // Without one: value writes on the node's topics.
    let (_broker, sim, mut door) =
        zwave(PayloadStyle::TimeValue, false, Duration::from_secs(5)).await;
    door.send(&LockCommand::SetCode {
        slot: 2,
        code: Secret::new("0042"),
    })
    .await;
    door.until_report(DoorReport::CodeSlot { slot: 2, set: true })
        .await;
    assert_eq!(sim.pin_slots().get(&2).map(String::as_str), Some("0042"));
    door.send(&LockCommand::SetAutoRelock(30)).await;
    door.until_report(DoorReport::AutoRelock(30)).await;
    assert_eq!(sim.auto_relock(), 30);
}
