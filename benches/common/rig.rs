//! What the bridge and soak benchmarks share: the real `doorwarden` binary
//! as a child process (so its CPU and memory can be read alone from /proc),
//! a config for a home of any size, an MQTT observer that stamps every
//! message the moment it arrives, and the arithmetic for the figures.
//!
//! Benches are test code: a broker that will not start or a config the
//! bridge refuses is a broken bench, so those panic with the reason.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

/// An env var parsed, or the default when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The Zigbee2MQTT topic of door `i`'s lock.
pub fn lock_topic(i: usize) -> String {
    format!("zigbee2mqtt/bench_lock_{i:03}")
}

/// The Zigbee2MQTT topic of door `i`'s contact sensor.
pub fn contact_topic(i: usize) -> String {
    format!("zigbee2mqtt/bench_contact_{i:03}")
}

pub fn door_name(i: usize) -> String {
    format!("door{i:03}")
}

pub fn camera_name(i: usize) -> String {
    format!("cam{i:03}")
}

/// A home: `camera_urls[i]` is camera `cam<i>`'s URL; door `d` watches the
/// cameras in `door_cameras[d]`.
pub struct HomeSpec<'a> {
    pub broker_port: u16,
    pub camera_urls: &'a [String],
    pub door_cameras: &'a [Vec<usize>],
    /// Extra YAML lines for every camera (timers), indented by the caller's
    /// four spaces.
    pub camera_extra: &'a str,
    /// The `deliveries:` settings for every door, or none.
    pub deliveries: Option<&'a str>,
    pub storage: &'a Path,
}

/// The config as an owner would write it.
pub fn config_text(spec: &HomeSpec) -> String {
    let mut y = String::new();
    let _ = writeln!(
        y,
        "mqtt:\n  url: mqtt://127.0.0.1:{}\n  client_id: doorwarden-bench\n  keep_alive: 5s",
        spec.broker_port
    );
    if !spec.camera_urls.is_empty() {
        y.push_str("cameras:\n");
    }
    for (i, url) in spec.camera_urls.iter().enumerate() {
        let _ = writeln!(y, "  {}:\n    url: {url}", camera_name(i));
        y.push_str(spec.camera_extra);
    }
    y.push_str("locks:\n");
    for (d, cams) in spec.door_cameras.iter().enumerate() {
        let cams: Vec<String> = cams.iter().map(|&c| camera_name(c)).collect();
        let _ = writeln!(
            y,
            "  {}:\n    zigbee2mqtt:\n      topic: {}\n    contact:\n      zigbee2mqtt:\n        topic: {}\n    cameras: [{}]\n    confirm_timeout: 5s",
            door_name(d),
            lock_topic(d),
            contact_topic(d),
            cams.join(", ")
        );
    }
    if let Some(rules) = spec.deliveries {
        y.push_str("deliveries:\n");
        for d in 0..spec.door_cameras.len() {
            let _ = writeln!(y, "  {}:", door_name(d));
            y.push_str(rules);
        }
    }
    let _ = writeln!(y, "storage:\n  dir: {}", spec.storage.display());
    y
}

/// An RTSP URL on a loopback port nobody listens on: the connect is refused.
pub fn closed_port_url() -> String {
    // The listener is dropped at once, so the port is free and closed; the
    // kernel hands out ephemeral ports in sequence, so it is not reused soon.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port");
    format!("rtsp://127.0.0.1:{port}/nobody")
}

/// `doorwarden run --config <file>` as a child process, killed on drop.
pub struct BridgeProcess {
    child: Child,
    pub started: Instant,
    log: PathBuf,
}

impl BridgeProcess {
    /// Write `config` to `dir/doorwarden.yaml` and start the real binary on
    /// it, logging at warn to `dir/bridge.log`.
    pub fn spawn(dir: &Path, config: &str) -> BridgeProcess {
        let path = dir.join("doorwarden.yaml");
        std::fs::write(&path, config).expect("write the bench config");
        let log = dir.join("bridge.log");
        let log_file = std::fs::File::create(&log).expect("create the bridge log");
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_doorwarden"))
            .args(["--log-level", "warn", "run", "--config"])
            .arg(&path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start the doorwarden binary");
        BridgeProcess {
            child,
            started,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// On-CPU time so far, every thread, in seconds.
    pub fn cpu_secs(&self) -> f64 {
        cpu_secs(&self.pid().to_string())
    }

    /// (current RSS, peak RSS) in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let path = format!("/proc/{}/status", self.pid());
        (
            status_kib(&path, "VmRSS:").unwrap_or(0),
            status_kib(&path, "VmHWM:").unwrap_or(0),
        )
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Warnings and errors the bridge logged, counted by a word in them.
    pub fn log_lines_with(&self, word: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(word))
            .count()
    }

    /// The log lines holding any of `words`, without the ANSI colours.
    pub fn log_lines_matching(&self, words: &[&str]) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| words.iter().any(|w| l.contains(w)))
            .map(strip_ansi)
            .collect()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // Skip to the end of the escape sequence (a letter).
            for e in chars.by_ref() {
                if e.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// On-CPU time of a process (`self` or a pid) in seconds: the sum over its
/// threads of /proc/<pid>/task/*/schedstat's first field (nanoseconds),
/// which is finer than the clock ticks of /proc/<pid>/stat.
pub fn cpu_secs(pid: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let mut ns: u64 = 0;
    for task in tasks.flatten() {
        if let Some(v) = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|t| {
                t.split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
            })
        {
            ns += v;
        }
    }
    ns as f64 / 1e9
}

/// A `Vm…:` line of /proc/<pid>/status, in KiB.
pub fn status_kib(path: &str, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One message as the observer got it, stamped when its event loop read it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub topic: String,
    pub payload: Vec<u8>,
}

impl Seen {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A plain MQTT client standing in for Home Assistant, a courier app or a
/// lock's radio: it publishes, and hands over everything it receives with
/// the instant it arrived.
pub struct Observer {
    pub client: AsyncClient,
    pub rx: mpsc::UnboundedReceiver<Seen>,
    subacks: mpsc::UnboundedReceiver<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    pub async fn connect(port: u16, id: &str) -> Observer {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(10));
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 4096);
        // Without TCP_NODELAY a publish right after a PUBACK can wait for the
        // broker's delayed ACK (40 ms on Linux): that would be this client's
        // delay, not the bridge's, in every figure.
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ack_tx, subacks) = mpsc::unbounded_channel();
        let (up_tx, mut up) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Seen {
                            at: Instant::now(),
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                        });
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = up_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ack_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), up.recv())
            .await
            .expect("bench MQTT client connects within 10 s");
        Observer {
            client,
            rx,
            subacks,
            task,
        }
    }

    /// Subscribe at QoS 1 and wait for the broker's acknowledgement.
    pub async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue a subscribe");
        tokio::time::timeout(Duration::from_secs(10), self.subacks.recv())
            .await
            .expect("suback within 10 s");
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("queue a publish");
    }

    /// The first message matching `want` within `limit`; others are dropped.
    pub async fn wait_for(
        &mut self,
        mut want: impl FnMut(&Seen) -> bool,
        limit: Duration,
    ) -> Option<Seen> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) if want(&m) => return Some(m),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Drop whatever arrived so far.
    pub fn drain(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Percentile of a sorted sample by the nearest-rank method.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median, p99, min and max of a sample, in its own unit.
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
}

pub fn summarize(mut xs: Vec<f64>) -> Summary {
    xs.sort_by(f64::total_cmp);
    Summary {
        n: xs.len(),
        median: percentile(&xs, 50.0),
        p99: percentile(&xs, 99.0),
        min: xs.first().copied().unwrap_or(f64::NAN),
        max: xs.last().copied().unwrap_or(f64::NAN),
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
