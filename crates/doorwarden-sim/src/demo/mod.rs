//! `doorwarden demo`: the whole story on a fresh machine.
//!
//! An embedded MQTT broker (unless `--broker` names one), a simulated home
//! ([`home::SimHome`]: lock, contact sensor and RTSP camera, all simulations)
//! and the real bridge on top. A scripted story then acts like a courier, an
//! owner and a saboteur, and prints what doorwarden does as a timeline, each
//! line with the MQTT topic where anyone can watch it happen.
//!
//! The story talks to the bridge only through MQTT and the simulated
//! devices, exactly as Home Assistant, a courier app and the real devices
//! would; nothing reaches into the bridge.

// The demo's whole job is to print a timeline for a person to read.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod broker;
pub mod home;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use home::{CAMERA, CONTACT_TOPIC, DOOR, LOCK_TOPIC, SimHome};

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// `mqtt://host:port` of a broker to use instead of the embedded one.
    pub broker: Option<String>,
    /// Port of the embedded broker (0 = a free one).
    pub port: u16,
    /// Read commands (freeze, stall, request, open…) from stdin after the
    /// story.
    pub interactive: bool,
    /// Leave after the story instead of staying up.
    pub exit_after_story: bool,
    /// Where the demo bridge keeps its state and audit log.
    pub storage: Option<PathBuf>,
    /// Where the embedded broker's own log lines go (the caller's logging
    /// sends them there); named in the header so they can be found.
    pub broker_log: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Broker(#[from] broker::BrokerError),
    #[error("--broker `{0}`: expected mqtt://127.0.0.1:PORT")]
    BrokerUrl(String),
    #[error("{0}")]
    Home(#[from] home::HomeError),
    #[error("demo story stopped: {0}")]
    Story(String),
}

/// What one story step waits for: a message on the broker.
#[derive(Debug, Clone)]
struct Seen {
    topic: String,
    payload: Vec<u8>,
    at: Instant,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Prints timeline lines, with colours on a terminal.
struct Timeline {
    start: Instant,
    color: bool,
}

#[derive(Clone, Copy)]
enum Tone {
    Step,
    Good,
    Alarm,
    Note,
}

impl Timeline {
    fn line(&self, tone: Tone, text: &str, topic: &str) {
        let t = self.start.elapsed().as_secs_f64();
        let (mark, on) = match tone {
            Tone::Step => ("→", "\x1b[36m"),
            Tone::Good => ("✔", "\x1b[32m"),
            Tone::Alarm => ("✖", "\x1b[31;1m"),
            Tone::Note => ("·", "\x1b[2m"),
        };
        let topic = if topic.is_empty() {
            String::new()
        } else {
            format!("  [{topic}]")
        };
        if self.color {
            println!("{on}{t:>7.2}s {mark} {text}\x1b[0m\x1b[2m{topic}\x1b[0m");
        } else {
            println!("{t:>7.2}s {mark} {text}{topic}");
        }
    }
}

/// The observer: a separate MQTT client that sees what Home Assistant and
/// the lock would see.
struct Observer {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Seen>,
    /// Messages that arrived but were not what a step waited for, kept for
    /// later steps (a lock can confirm before the log line for the command).
    backlog: Vec<Seen>,
}

impl Observer {
    async fn connect(port: u16) -> Result<Observer, DemoError> {
        let mut options = MqttOptions::new("doorwarden-demo-story", "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(10));
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready = Some(ready_tx);
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let seen = Seen {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            at: Instant::now(),
                        };
                        if tx.send(seen).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        for filter in ["doorwarden/#", "zigbee2mqtt/#"] {
            client
                .subscribe(filter, QoS::AtLeastOnce)
                .await
                .map_err(|e| DemoError::Story(e.to_string()))?;
        }
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .map_err(|_| DemoError::Story("the demo's observer could not subscribe".into()))?
            .map_err(|_| DemoError::Story("the demo's observer stopped".into()))?;
        Ok(Observer {
            client,
            rx,
            backlog: Vec::new(),
        })
    }

    async fn publish(&self, topic: &str, payload: &str) -> Result<(), DemoError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .map_err(|e| DemoError::Story(e.to_string()))
    }

    /// Wait for the first message after `since` matching `want`.
    async fn wait(
        &mut self,
        what: &str,
        since: Instant,
        limit: Duration,
        want: impl Fn(&Seen) -> bool,
    ) -> Result<Seen, DemoError> {
        if let Some(i) = self.backlog.iter().position(|s| s.at >= since && want(s)) {
            return Ok(self.backlog.remove(i));
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(seen)) if seen.at >= since && want(&seen) => return Ok(seen),
                Ok(Some(seen)) => {
                    self.backlog.push(seen);
                    if self.backlog.len() > 4096 {
                        self.backlog.drain(..2048);
                    }
                }
                Ok(None) => return Err(DemoError::Story("observer disconnected".into())),
                Err(_) => {
                    return Err(DemoError::Story(format!(
                        "waited {}s for {what}",
                        limit.as_secs()
                    )));
                }
            }
        }
    }
}

fn topic_is(seen: &Seen, topic: &str) -> bool {
    seen.topic == topic
}

/// Run the demo until the story ends (with `exit_after_story`) or Ctrl-C.
///
/// # Errors
/// When the broker or a simulated device cannot start, or a step of the
/// story does not happen in time.
pub async fn run(options: DemoOptions) -> Result<(), DemoError> {
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let port = match &options.broker {
        Some(url) => parse_broker(url)?,
        None => broker::start(options.port)?,
    };
    let storage = options.storage.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("doorwarden-demo-{}", std::process::id()))
    });
    println!(
        "doorwarden demo — a simulated home: one door (Zigbee2MQTT-style lock and contact sensor)"
    );
    println!("and one RTSP camera, all simulations, with the real bridge on top.");
    match &options.broker {
        Some(_) => println!("MQTT broker: mqtt://127.0.0.1:{port} (given with --broker)"),
        None => println!("MQTT broker: embedded, mqtt://127.0.0.1:{port}"),
    }
    if let (None, Some(log)) = (&options.broker, &options.broker_log) {
        println!("broker log:  {}", log.display());
    }
    println!(
        "watch along:  mosquitto_sub -h 127.0.0.1 -p {port} -t 'doorwarden/#' -t 'zigbee2mqtt/#' -v\n"
    );

    let mut observer = Observer::connect(port).await?;
    let home = SimHome::start(port, &storage).await?;
    let timeline = Timeline {
        start: Instant::now(),
        color,
    };
    let story = story(&home, &mut observer, &timeline).await;
    if let Err(e) = &story {
        timeline.line(Tone::Alarm, &e.to_string(), "");
        home.stop().await;
        return story;
    }

    let stay_up =
        !options.exit_after_story && (options.interactive || std::io::stdin().is_terminal());
    if !stay_up {
        home.stop().await;
        return Ok(());
    }
    println!(
        "\nThe simulated home stays up: point Home Assistant's MQTT integration at 127.0.0.1:{port}"
    );
    println!(
        "or watch with mosquitto_sub. Commands: freeze, still, hang, cover, replay, stall, drop,"
    );
    println!(
        "restore, grant, end, request [code], open, close, unlock, lock, help, quit.  Ctrl-C to leave."
    );
    interact(&home, &mut observer, &timeline).await;
    home.stop().await;
    Ok(())
}

fn parse_broker(url: &str) -> Result<u16, DemoError> {
    let parsed =
        url::Url::parse(url).map_err(|_| DemoError::BrokerUrl(doorwarden::redact::text(url)))?;
    match (parsed.scheme(), parsed.host_str(), parsed.port()) {
        ("mqtt", Some("127.0.0.1" | "localhost"), Some(port)) => Ok(port),
        _ => Err(DemoError::BrokerUrl(doorwarden::redact::text(url))),
    }
}

/// The scripted story. Each step acts, then waits for the message that
/// proves doorwarden reacted, and prints it.
async fn story(home: &SimHome, obs: &mut Observer, tl: &Timeline) -> Result<(), DemoError> {
    let base = "doorwarden";
    let camera_state = format!("{base}/camera/{CAMERA}/state");
    let door_state = format!("{base}/{DOOR}/state");
    let events = format!("{base}/{DOOR}/delivery/event");
    let request = format!("{base}/{DOOR}/delivery/request");
    let response = format!("{base}/{DOOR}/delivery/response");
    let lock_set = format!("{LOCK_TOPIC}/set");
    let step = Duration::from_secs(20);
    let is_event = |kind: &'static str| {
        let events = events.clone();
        move |s: &Seen| topic_is(s, &events) && s.json()["event_type"] == kind
    };

    tl.line(
        Tone::Step,
        "bridge starting; waiting until the porch camera is proven live",
        "",
    );
    let live = obs
        .wait(
            "the camera to go live",
            tl.start,
            Duration::from_secs(30),
            |s| topic_is(s, &camera_state) && s.json()["live"] == true,
        )
        .await?;
    let fps = live.json()["fps"].as_f64().unwrap_or(0.0);
    tl.line(
        Tone::Good,
        &format!(
            "camera porch is live ({fps:.0} fps, frames changing, clock on time, picture checked: a live scene)"
        ),
        &camera_state,
    );

    let t = Instant::now();
    tl.line(
        Tone::Step,
        "owner presses \"Grant delivery window\" in Home Assistant",
        &format!("{base}/{DOOR}/delivery/grant/set"),
    );
    obs.publish(&format!("{base}/{DOOR}/delivery/grant/set"), "PRESS")
        .await?;
    let opened = obs
        .wait("the window to open", t, step, is_event("window_opened"))
        .await?;
    tl.line(
        Tone::Good,
        &format!(
            "delivery window open: {}",
            opened.json()["reason"].as_str().unwrap_or("")
        ),
        &events,
    );

    let t = Instant::now();
    tl.line(Tone::Step, "courier asks to be let in", &request);
    obs.publish(&request, r#"{"carrier":"Demo Parcel Co"}"#)
        .await?;
    let answer = obs
        .wait("the answer to the courier", t, step, |s| {
            topic_is(s, &response)
        })
        .await?;
    if answer.json()["granted"] != true {
        return Err(DemoError::Story(format!(
            "courier refused: {}",
            answer.text()
        )));
    }
    tl.line(
        Tone::Good,
        "granted: window open, lock confirmed locked, camera live",
        &response,
    );
    obs.wait("the unlock command", t, step, |s| {
        topic_is(s, &lock_set) && s.text().contains("UNLOCK")
    })
    .await?;
    tl.line(Tone::Step, "unlock sent to the lock", &lock_set);
    obs.wait("the lock to confirm", t, step, |s| {
        topic_is(s, LOCK_TOPIC) && s.json()["lock_state"] == "unlocked"
    })
    .await?;
    tl.line(Tone::Good, "lock confirms: unlocked", LOCK_TOPIC);

    let t = Instant::now();
    home.contact
        .open()
        .await
        .map_err(|e| DemoError::Story(e.to_string()))?;
    obs.wait("the door to open", t, step, is_event("door_opened"))
        .await?;
    tl.line(Tone::Step, "courier opens the door", CONTACT_TOPIC);

    tokio::time::sleep(Duration::from_millis(500)).await;
    let fault = Instant::now();
    home.camera.freeze();
    tl.line(
        Tone::Alarm,
        "saboteur freezes the camera: it keeps sending the same frame, on time",
        "",
    );
    let tripped = obs
        .wait(
            "the interlock to trip",
            fault,
            step,
            is_event("interlock_tripped"),
        )
        .await?;
    let ms = tripped.at.duration_since(fault).as_millis();
    let reason = tripped.json()["reason"].as_str().unwrap_or("").to_string();
    tl.line(
        Tone::Alarm,
        &format!("interlock tripped {ms} ms after the freeze: {reason}"),
        &events,
    );
    tl.line(
        Tone::Note,
        "the door is open, so doorwarden relocks the moment it shuts",
        "",
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = Instant::now();
    home.contact
        .close()
        .await
        .map_err(|e| DemoError::Story(e.to_string()))?;
    tl.line(Tone::Step, "door shuts", CONTACT_TOPIC);
    obs.wait("the relock command", t, step, |s| {
        topic_is(s, &lock_set) && s.text().contains("\"LOCK\"")
    })
    .await?;
    tl.line(Tone::Step, "relock sent to the lock", &lock_set);
    obs.wait("the lock to confirm", t, step, |s| {
        topic_is(s, LOCK_TOPIC) && s.json()["lock_state"] == "locked"
    })
    .await?;
    tl.line(Tone::Good, "lock confirms: locked", LOCK_TOPIC);
    obs.wait("the delivery to be marked compromised", fault, step, |s| {
        topic_is(s, &door_state) && s.json()["compromised"] == true
    })
    .await?;
    tl.line(
        Tone::Alarm,
        "owner alerted: interlock_tripped on the delivery event entity, delivery marked compromised",
        &events,
    );

    let t = Instant::now();
    tl.line(
        Tone::Step,
        "another courier asks to be let in while the camera is still frozen",
        &request,
    );
    obs.publish(&request, r#"{"carrier":"Demo Parcel Co"}"#)
        .await?;
    let refused = obs
        .wait("the refusal", t, step, |s| topic_is(s, &response))
        .await?;
    if refused.json()["granted"] != false {
        return Err(DemoError::Story(
            "a request was granted while the camera was frozen".into(),
        ));
    }
    let why = refused.json()["reason"].as_str().unwrap_or("").to_string();
    tl.line(Tone::Alarm, &format!("refused: {why}"), &response);

    let t = Instant::now();
    home.camera.restore();
    tl.line(Tone::Step, "camera restored", "");
    obs.wait(
        "the camera to be live again",
        t,
        Duration::from_secs(30),
        |s| topic_is(s, &camera_state) && s.json()["live"] == true,
    )
    .await?;
    tl.line(
        Tone::Good,
        "camera porch live again (after its warm-up)",
        &camera_state,
    );
    obs.wait("the interlock to clear", t, step, |s| {
        topic_is(s, &door_state) && s.json()["interlock"] == "clear"
    })
    .await?;
    tl.line(
        Tone::Good,
        "interlock clear: deliveries possible again",
        &door_state,
    );
    let replay_ms = replay_chapter(home, obs, tl).await?;
    tl.line(
        Tone::Note,
        &format!(
            "story complete; the frozen camera was caught in {ms} ms, the replayed one in {replay_ms} ms"
        ),
        "",
    );
    Ok(())
}

/// The camera is swapped for a recording of itself: it replays its last
/// three seconds, byte for byte, on time. Every stream rule passes that;
/// the picture checks see its keyframes come round again. Returns how long
/// that took to catch.
async fn replay_chapter(
    home: &SimHome,
    obs: &mut Observer,
    tl: &Timeline,
) -> Result<u128, DemoError> {
    let base = "doorwarden";
    let camera_state = format!("{base}/camera/{CAMERA}/state");
    let request = format!("{base}/{DOOR}/delivery/request");
    let response = format!("{base}/{DOOR}/delivery/response");
    let step = Duration::from_secs(20);

    let fault = Instant::now();
    home.camera.replay();
    tl.line(
        Tone::Alarm,
        "saboteur swaps the camera's picture for a recording of its last 3 seconds, looped on time",
        "",
    );
    let caught = obs
        .wait("the replay to be caught", fault, step, |s| {
            topic_is(s, &camera_state)
                && s.json()["live"] == false
                && s.json()["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("replayed recording"))
        })
        .await?;
    let ms = caught.at.duration_since(fault).as_millis();
    let reason = caught.json()["reason"].as_str().unwrap_or("").to_string();
    tl.line(
        Tone::Alarm,
        &format!("camera porch caught {ms} ms after the swap: {reason}"),
        &camera_state,
    );

    let t = Instant::now();
    tl.line(
        Tone::Step,
        "a courier asks to be let in in front of the recording",
        &request,
    );
    obs.publish(&request, r#"{"carrier":"Demo Parcel Co"}"#)
        .await?;
    let refused = obs
        .wait("the refusal", t, step, |s| topic_is(s, &response))
        .await?;
    let why = refused.json()["reason"].as_str().unwrap_or("").to_string();
    if refused.json()["granted"] != false || !why.contains("replayed recording") {
        return Err(DemoError::Story(format!(
            "in front of a replayed camera the answer was: {}",
            refused.text()
        )));
    }
    tl.line(Tone::Alarm, &format!("refused: {why}"), &response);

    // A replay verdict stands for the rest of the camera's session: the
    // camera must come back on a new one, as after a reboot.
    let t = Instant::now();
    home.camera.restore();
    home.camera.drop_all();
    tl.line(Tone::Step, "camera fixed and rebooted", "");
    obs.wait(
        "the camera to be live again",
        t,
        Duration::from_secs(30),
        |s| topic_is(s, &camera_state) && s.json()["live"] == true,
    )
    .await?;
    tl.line(
        Tone::Good,
        "camera porch live again: a new live picture",
        &camera_state,
    );
    Ok(ms)
}

/// After the story: commands from stdin, and a line for every delivery event.
async fn interact(home: &SimHome, obs: &mut Observer, tl: &Timeline) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return,
            line = lines.next_line() => {
                let Ok(Some(line)) = line else { break };
                if !command(home, obs, tl, line.trim()).await {
                    break;
                }
            }
            Some(seen) = obs.rx.recv() => show_delivery(tl, &seen),
        }
    }
    // Answers to the last commands may still be on their way.
    while let Ok(Some(seen)) = tokio::time::timeout(Duration::from_secs(1), obs.rx.recv()).await {
        show_delivery(tl, &seen);
    }
}

/// A timeline line for a delivery event or a courier's answer.
fn show_delivery(tl: &Timeline, seen: &Seen) {
    let events = format!("doorwarden/{DOOR}/delivery/event");
    let response = format!("doorwarden/{DOOR}/delivery/response");
    if seen.topic != events && seen.topic != response {
        return;
    }
    let v = seen.json();
    let what = match v["event_type"].as_str() {
        Some(kind) => kind.to_string(),
        None if v["granted"] == true => "granted".to_string(),
        None => "refused".to_string(),
    };
    let alarming = matches!(
        what.as_str(),
        "interlock_tripped"
            | "denied"
            | "refused"
            | "door_forced"
            | "lock_unresponsive"
            | "door_held_open"
    );
    let tone = if alarming { Tone::Alarm } else { Tone::Good };
    tl.line(
        tone,
        &format!("{what}: {}", v["reason"].as_str().unwrap_or("")),
        &seen.topic,
    );
}

/// One interactive command; false to leave.
async fn command(home: &SimHome, obs: &Observer, tl: &Timeline, line: &str) -> bool {
    let base = format!("doorwarden/{DOOR}");
    let mut words = line.split_whitespace();
    let camera = &home.camera;
    let result = match words.next().unwrap_or("") {
        "" => Ok(()),
        "freeze" => {
            camera.freeze();
            Ok(())
        }
        "still" => {
            camera.still();
            Ok(())
        }
        "hang" => {
            camera.hang_sensor();
            Ok(())
        }
        "cover" => {
            camera.cover();
            Ok(())
        }
        "replay" => {
            camera.replay();
            Ok(())
        }
        "stall" => {
            camera.stall();
            Ok(())
        }
        "drop" => {
            camera.drop_all();
            Ok(())
        }
        "restore" => {
            camera.restore();
            Ok(())
        }
        "open" => home.contact.open().await.map_err(|e| e.to_string()),
        "close" => home.contact.close().await.map_err(|e| e.to_string()),
        "grant" => obs
            .publish(&format!("{base}/delivery/grant/set"), "PRESS")
            .await
            .map_err(|e| e.to_string()),
        "end" => obs
            .publish(&format!("{base}/delivery/end/set"), "PRESS")
            .await
            .map_err(|e| e.to_string()),
        "unlock" => obs
            .publish(&format!("{base}/lock/set"), "UNLOCK")
            .await
            .map_err(|e| e.to_string()),
        "lock" => obs
            .publish(&format!("{base}/lock/set"), "LOCK")
            .await
            .map_err(|e| e.to_string()),
        "request" => {
            let body = match words.next() {
                Some(code) => serde_json::json!({"carrier": "Demo Parcel Co", "code": code}),
                None => serde_json::json!({"carrier": "Demo Parcel Co"}),
            };
            obs.publish(&format!("{base}/delivery/request"), &body.to_string())
                .await
                .map_err(|e| e.to_string())
        }
        "quit" | "exit" => return false,
        _ => {
            println!(
                "commands: freeze, still, hang, cover, replay, stall, drop, restore, grant, end, request [code], open, close, unlock, lock, quit"
            );
            Ok(())
        }
    };
    match result {
        Ok(()) if !line.is_empty() => tl.line(Tone::Step, line, ""),
        Ok(()) => {}
        Err(e) => tl.line(Tone::Alarm, &format!("{line}: {e}"), ""),
    }
    true
}
