//! The MQTT link against a real Mosquitto on loopback: what another client
//! (Home Assistant, a lock backend) sees of doorwarden's connection.

mod common;

use std::time::Duration;

use common::mosquitto::{Mosquitto, TestClient};
use doorwarden::io::mqtt::{BrokerLink, Incoming, LinkError, OUTGOING_CAPACITY};
use tokio::sync::{mpsc, oneshot};

const AVAILABILITY: &str = "doorwarden/bridge/availability";
const WAIT: Duration = Duration::from_secs(10);

/// A link whose shutdown is in the test's hands.
struct Running {
    link: BrokerLink,
    stop: Option<oneshot::Sender<()>>,
}

fn start(cfg: &doorwarden::config::Mqtt, subscriptions: &[&str]) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let link = BrokerLink::start(
        cfg,
        subscriptions.iter().map(|s| s.to_string()).collect(),
        async move {
            let _ = stopped.await;
        },
    )
    .expect("link starts");
    Running {
        link,
        stop: Some(stop),
    }
}

/// The next `Incoming` matching `want`, skipping others.
async fn next(
    rx: &mut mpsc::Receiver<Incoming>,
    mut want: impl FnMut(&Incoming) -> bool,
    what: &str,
) -> Incoming {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(i)) if want(&i) => return i,
            Ok(Some(_)) => {}
            Ok(None) => panic!("link channel closed while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

async fn connected(rx: &mut mpsc::Receiver<Incoming>) {
    next(rx, |i| *i == Incoming::Connected, "Connected").await;
}

async fn disconnected(rx: &mut mpsc::Receiver<Incoming>) -> String {
    match next(
        rx,
        |i| matches!(i, Incoming::Disconnected { .. }),
        "Disconnected",
    )
    .await
    {
        Incoming::Disconnected { reason } => reason,
        _ => unreachable!("filtered above"),
    }
}

async fn message_on(rx: &mut mpsc::Receiver<Incoming>, topic: &str) -> (Vec<u8>, bool) {
    match next(
        rx,
        |i| matches!(i, Incoming::Message { topic: t, .. } if t == topic),
        topic,
    )
    .await
    {
        Incoming::Message {
            payload, retain, ..
        } => (payload, retain),
        _ => unreachable!("filtered above"),
    }
}

#[tokio::test]
async fn test_helper_brokers_accept_clients() {
    for broker in [
        Mosquitto::start(),
        Mosquitto::builder().user("dw", "s3cret pass").start(),
        Mosquitto::builder().tls().start(),
    ] {
        let mut a = TestClient::connect(&broker).await;
        a.subscribe("t/#").await;
        let b = TestClient::connect(&broker).await;
        b.publish("t/x", "hello", false).await;
        let got = a.wait_topic("t/x", Duration::from_secs(5)).await;
        assert_eq!(got.text(), "hello");
        assert!(!got.retain);
    }
}

#[tokio::test]
async fn connect_announces_online_retained_and_receives_subscribed_messages() {
    let broker = Mosquitto::start();
    let mut run = start(&broker.mqtt_config("dw-online"), &["doorwarden/+/lock/set"]);
    connected(&mut run.link.incoming).await;

    // A client connecting later (Home Assistant after a restart) gets the
    // retained `online` at once.
    let mut ha = TestClient::connect(&broker).await;
    ha.subscribe(AVAILABILITY).await;
    let online = ha.wait_topic(AVAILABILITY, WAIT).await;
    assert_eq!(online.text(), "online");
    assert!(online.retain, "availability must be retained");

    ha.publish("doorwarden/front/lock/set", "LOCK", false).await;
    let (payload, retain) = message_on(&mut run.link.incoming, "doorwarden/front/lock/set").await;
    assert_eq!(payload, b"LOCK");
    assert!(!retain);

    // And what the link publishes reaches other clients.
    ha.subscribe("doorwarden/front/state").await;
    run.link
        .handle
        .publish("doorwarden/front/state", r#"{"lock":"LOCKED"}"#, true)
        .expect("queued");
    let state = ha.wait_topic("doorwarden/front/state", WAIT).await;
    assert_eq!(state.text(), r#"{"lock":"LOCKED"}"#);
}

#[tokio::test]
async fn killed_link_leaves_offline_from_the_last_will() {
    let broker = Mosquitto::start();
    let mut run = start(&broker.mqtt_config("dw-will"), &[]);
    connected(&mut run.link.incoming).await;
    let mut ha = TestClient::connect(&broker).await;
    ha.subscribe(AVAILABILITY).await;
    assert_eq!(ha.wait_topic(AVAILABILITY, WAIT).await.text(), "online");

    // No DISCONNECT: the task dies with its socket, as in a crash.
    run.link.task.abort();
    let offline = ha.wait_topic(AVAILABILITY, WAIT).await;
    assert_eq!(offline.text(), "offline");

    // Retained, so Home Assistant starting later also sees it.
    let mut late = TestClient::connect(&broker).await;
    late.subscribe(AVAILABILITY).await;
    let seen = late.wait_topic(AVAILABILITY, WAIT).await;
    assert_eq!(seen.text(), "offline");
    assert!(seen.retain);
}

#[tokio::test]
async fn clean_shutdown_publishes_offline_itself() {
    let broker = Mosquitto::start();
    let mut run = start(&broker.mqtt_config("dw-bye"), &[]);
    connected(&mut run.link.incoming).await;
    let mut ha = TestClient::connect(&broker).await;
    ha.subscribe(AVAILABILITY).await;
    assert_eq!(ha.wait_topic(AVAILABILITY, WAIT).await.text(), "online");

    let _ = run.stop.take().expect("not stopped yet").send(());
    tokio::time::timeout(WAIT, &mut run.link.task)
        .await
        .expect("link task ends after shutdown")
        .expect("link task did not panic");
    assert_eq!(ha.wait_topic(AVAILABILITY, WAIT).await.text(), "offline");
    assert!(matches!(
        run.link.handle.publish("doorwarden/x", "y", false),
        Err(LinkError::Closed { .. })
    ));
}

#[tokio::test]
async fn broker_restart_reconnects_republishes_online_and_resubscribes() {
    let mut broker = Mosquitto::start();
    let mut run = start(
        &broker.mqtt_config("dw-restart"),
        &["doorwarden/+/lock/set"],
    );
    connected(&mut run.link.incoming).await;
    assert!(run.link.handle.is_connected());

    broker.stop();
    let reason = disconnected(&mut run.link.incoming).await;
    assert!(reason.contains("mqtt://127.0.0.1"), "{reason}");
    assert!(!run.link.handle.is_connected());

    // While the broker is down, a lock command is refused (not queued to
    // move the lock later); a state is queued for after the reconnect.
    assert!(matches!(
        run.link
            .handle
            .publish_command("zigbee2mqtt/front_lock/set", r#"{"state":"UNLOCK"}"#),
        Err(LinkError::NotConnected { .. })
    ));
    run.link
        .handle
        .publish("doorwarden/front/state", r#"{"lock":"LOCKED"}"#, true)
        .expect("states queue while disconnected");

    // The broker keeps no state across the restart (no persistence), so
    // everything seen below was sent again by the link.
    broker.restart();
    connected(&mut run.link.incoming).await;

    let mut ha = TestClient::connect(&broker).await;
    ha.subscribe(AVAILABILITY).await;
    ha.subscribe("doorwarden/front/state").await;
    let seen = ha.collect(Duration::from_millis(300)).await;
    assert!(
        seen.iter()
            .any(|m| m.topic == AVAILABILITY && m.text() == "online" && m.retain),
        "online republished after restart: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|m| m.topic == "doorwarden/front/state" && m.retain),
        "state queued during the outage was sent: {seen:?}"
    );

    ha.publish("doorwarden/front/lock/set", "UNLOCK", false)
        .await;
    let (payload, _) = message_on(&mut run.link.incoming, "doorwarden/front/lock/set").await;
    assert_eq!(payload, b"UNLOCK", "subscription restored after restart");
    run.link
        .handle
        .publish_command("zigbee2mqtt/front_lock/set", r#"{"state":"LOCK"}"#)
        .expect("commands go out again once connected");
}

#[tokio::test]
async fn full_queue_is_reported_not_dropped_silently() {
    let mut broker = Mosquitto::start();
    let mut run = start(&broker.mqtt_config("dw-full"), &[]);
    connected(&mut run.link.incoming).await;
    broker.stop();
    disconnected(&mut run.link.incoming).await;

    let mut accepted = 0;
    let refused = loop {
        match run
            .link
            .handle
            .publish(&format!("doorwarden/fill/{accepted}"), "x", false)
        {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted <= OUTGOING_CAPACITY, "queue never filled");
    };
    assert!(
        matches!(refused, LinkError::QueueFull { ref topic, .. } if *topic == format!("doorwarden/fill/{accepted}")),
        "{refused}"
    );
    assert!(
        accepted >= OUTGOING_CAPACITY - 2,
        "only {accepted} accepted"
    );

    broker.restart();
    connected(&mut run.link.incoming).await;
}

#[tokio::test]
async fn password_login_works_and_a_wrong_password_is_not_echoed() {
    let broker = Mosquitto::builder()
        .user("doorwarden", "correct horse")
        .start();

    let mut ok = start(&broker.mqtt_config("dw-auth"), &[]);
    connected(&mut ok.link.incoming).await;

    // Same login from a password file with a trailing newline.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mqtt_password");
    std::fs::write(&file, "correct horse\n").expect("write password file");
    let mut cfg = broker.mqtt_config("dw-auth-file");
    cfg.password = None;
    cfg.password_file = Some(file);
    let mut from_file = start(&cfg, &[]);
    connected(&mut from_file.link.incoming).await;

    let mut wrong = broker.mqtt_config("dw-auth-wrong");
    wrong.password = Some(doorwarden::config::Secret::new("battery staple"));
    let mut bad = start(&wrong, &[]);
    let reason = disconnected(&mut bad.link.incoming).await;
    assert!(
        reason.contains("bad username or password") || reason.contains("not authorized"),
        "{reason}"
    );
    assert!(!reason.contains("battery staple"), "{reason}");
    assert!(!reason.contains("correct horse"), "{reason}");
    assert!(!bad.link.handle.is_connected());
}

#[tokio::test]
async fn tls_with_the_configured_ca() {
    let broker = Mosquitto::builder().tls().start();
    assert!(broker.url().starts_with("mqtts://"));
    let mut run = start(&broker.mqtt_config("dw-tls"), &["doorwarden/+/lock/set"]);
    connected(&mut run.link.incoming).await;

    let ha = TestClient::connect(&broker).await;
    ha.publish("doorwarden/front/lock/set", "LOCK", false).await;
    let (payload, _) = message_on(&mut run.link.incoming, "doorwarden/front/lock/set").await;
    assert_eq!(payload, b"LOCK");

    // Without our CA the system roots do not trust the test certificate.
    let mut untrusted = broker.mqtt_config("dw-tls-untrusted");
    untrusted.ca_file = None;
    let mut bad = start(&untrusted, &[]);
    let reason = disconnected(&mut bad.link.incoming).await;
    assert!(reason.starts_with("mqtts://127.0.0.1"), "{reason}");
    assert!(!bad.link.handle.is_connected());
}

#[tokio::test]
async fn settings_errors_come_before_connecting() {
    let broker = Mosquitto::start();
    let mut cfg = broker.mqtt_config("dw-bad");
    cfg.url = "http://user:hunter2@127.0.0.1:1".into();
    let err =
        BrokerLink::start(&cfg, vec![], std::future::pending()).expect_err("http:// is not MQTT");
    let text = err.to_string();
    assert!(text.contains("mqtt://"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");

    let cfg = broker.mqtt_config("dw-bad-filter");
    let err = BrokerLink::start(&cfg, vec!["a/#/b".into()], std::future::pending())
        .expect_err("bad filter");
    assert!(matches!(err, LinkError::BadFilter { .. }), "{err}");
}

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn level(&mut self) -> String {
        // No control characters: Mosquitto drops a client whose topic has one.
        const CHARS: &[char] = &['a', 'z', '0', '_', '-', ' ', '$', 'é', '門', '.', '"', '\''];
        (0..self.below(12))
            .map(|_| CHARS[self.below(CHARS.len())])
            .collect()
    }
    fn payload(&mut self) -> Vec<u8> {
        let len = match self.below(10) {
            0 => 0,
            1 => 16 * 1024 + self.below(48 * 1024),
            _ => self.below(512),
        };
        let mut bytes: Vec<u8> = (0..len).map(|_| self.next() as u8).collect();
        // Some payloads that nearly make sense.
        if self.below(4) == 0 {
            let near = [
                "PRESS",
                "UNLOCK",
                "{\"code\":",
                "{\"minutes\": 1e999}",
                "online",
                "{",
            ];
            bytes = near[self.below(near.len())].as_bytes().to_vec();
            bytes.extend((0..self.below(4)).map(|_| self.next() as u8));
        }
        bytes
    }
}

#[tokio::test]
async fn a_thousand_random_payloads_on_every_subscription_break_nothing() {
    let broker = Mosquitto::start();
    let yaml = format!(
        "mqtt:\n  url: {}\n  client_id: dw-fuzz\nlocks:\n  front:\n    zigbee2mqtt:\n      topic: zigbee2mqtt/front\n",
        broker.url()
    );
    let config = doorwarden::config::load_str(&yaml, "fuzz.yaml").expect("valid config");
    let commands = doorwarden::ha::CommandTopics::new(&config);
    let mirror = doorwarden::ha::Mirror::new(&config);
    let mut filters = commands.subscriptions();
    filters.push(mirror.config_filter());
    let refs: Vec<&str> = filters.iter().map(String::as_str).collect();
    let mut run = start(&config.mqtt, &refs);
    connected(&mut run.link.incoming).await;

    let mut rng = XorShift(0x5eed_d00d_cafe_f00d);
    let sender = TestClient::connect(&broker).await;
    let mut retained_topics = Vec::new();
    for _ in 0..1000 {
        let filter = &filters[rng.below(filters.len())];
        let topic = filter
            .split('/')
            .map(|level| {
                if level == "+" {
                    rng.level()
                } else {
                    level.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let retain = rng.below(3) == 0;
        if retain {
            retained_topics.push(topic.clone());
        }
        let payload = rng.payload();
        sender.publish(&topic, payload, retain).await;
    }

    let mut received = 0;
    while received < 1000 {
        match tokio::time::timeout(WAIT, run.link.incoming.recv()).await {
            Ok(Some(Incoming::Message {
                topic,
                payload,
                retain,
            })) => {
                received += 1;
                let parsed = commands.parse(&topic, &payload, retain);
                if retain {
                    assert!(
                        !matches!(parsed, doorwarden::ha::CommandParse::Command { .. }),
                        "retained message on {topic} acted on"
                    );
                }
                let _ = mirror.stale_config(&topic, &payload, retain);
            }
            Ok(Some(other)) => panic!("link changed state under load: {other:?}"),
            Ok(None) | Err(_) => panic!(
                "only {received} of 1000 messages arrived; broker log:\n{}",
                broker.log()
            ),
        }
    }

    // Still connected, still subscribed, still publishing.
    assert!(run.link.handle.is_connected());
    let mut ha = TestClient::connect(&broker).await;
    ha.subscribe("doorwarden/front/state").await;
    run.link
        .handle
        .publish("doorwarden/front/state", "{}", false)
        .expect("queued");
    ha.wait_topic("doorwarden/front/state", WAIT).await;
    sender
        .publish(
            "doorwarden/front/delivery/courier_unlock/set",
            "PRESS",
            false,
        )
        .await;
    let (payload, retain) = message_on(
        &mut run.link.incoming,
        "doorwarden/front/delivery/courier_unlock/set",
    )
    .await;
    assert!(matches!(
        commands.parse(
            "doorwarden/front/delivery/courier_unlock/set",
            &payload,
            retain
        ),
        doorwarden::ha::CommandParse::Command { .. }
    ));
    for topic in retained_topics {
        sender.clear_retained(&topic).await;
    }
}

#[tokio::test]
async fn a_broker_that_comes_up_later_is_joined_and_the_outage_reported_once() {
    let mut broker = Mosquitto::start();
    broker.stop();
    let mut run = start(&broker.mqtt_config("dw-late"), &["doorwarden/+/lock/set"]);
    let reason = disconnected(&mut run.link.incoming).await;
    assert!(reason.contains("127.0.0.1"), "{reason}");

    // Several attempts fail (0.5 s, 1 s, …) while the broker is down; the
    // runtime hears about the outage once.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let mut reports = 0;
    while let Ok(incoming) = run.link.incoming.try_recv() {
        assert!(
            matches!(incoming, Incoming::Disconnected { .. }),
            "{incoming:?}"
        );
        reports += 1;
    }
    assert_eq!(reports, 0, "outage reported more than once");

    broker.restart();
    connected(&mut run.link.incoming).await;
    let ha = TestClient::connect(&broker).await;
    ha.publish("doorwarden/front/lock/set", "LOCK", false).await;
    let (payload, _) = message_on(&mut run.link.incoming, "doorwarden/front/lock/set").await;
    assert_eq!(payload, b"LOCK");
}
