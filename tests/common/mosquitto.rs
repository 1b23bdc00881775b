//! A real Mosquitto broker on loopback for integration tests, and a small
//! MQTT client that plays the part of Home Assistant or a lock backend.
//!
//! ```ignore
//! let broker = Mosquitto::start();                       // anonymous
//! let broker = Mosquitto::builder().user("dw", "pw").start();
//! let broker = Mosquitto::builder().tls().start();       // mqtts:// + ca_file()
//! let mut ha = TestClient::connect(&broker).await;
//! ha.subscribe("homeassistant/#").await;
//! let msg = ha.wait_for(|m| m.topic.ends_with("/config"), Duration::from_secs(5)).await;
//! ```
//!
//! The broker runs from a generated config in its own tempdir on a free
//! 127.0.0.1 port, is killed on drop, and can be stopped and restarted on
//! the same port to exercise reconnects.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::mpsc;

const NOT_FOUND: &str = "mosquitto not found: run scripts/test.sh (it installs it)";

/// How long a freshly spawned broker gets to open its port.
const STARTUP_LIMIT: Duration = Duration::from_secs(10);

/// Options for [`Mosquitto::start`]: anonymous plain TCP unless told otherwise.
#[derive(Debug, Default, Clone)]
pub struct MosquittoBuilder {
    users: Vec<(String, String)>,
    tls: bool,
    extra: String,
}

impl MosquittoBuilder {
    /// Appends these lines to the generated mosquitto.conf (a bridge
    /// `connection` section, say).
    pub fn extra(mut self, lines: &str) -> Self {
        self.extra.push_str(lines);
        if !self.extra.ends_with('\n') {
            self.extra.push('\n');
        }
        self
    }

    /// Adds a user to a password file and turns anonymous access off.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_string(), password.to_string()));
        self
    }

    /// Serves TLS only, with a server certificate for 127.0.0.1/localhost
    /// signed by a CA generated for this broker (see [`Mosquitto::ca_file`]).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    pub fn start(self) -> Mosquitto {
        let binary = find_binary("mosquitto").unwrap_or_else(|| panic!("{NOT_FOUND}"));
        let dir = tempfile::tempdir().expect("tempdir for mosquitto");
        let port = free_port();

        let mut conf = String::new();
        conf.push_str(&format!("listener {port} 127.0.0.1\n"));
        conf.push_str("persistence false\n");
        // As docs/performance.md recommends for real brokers: small packets
        // (lock commands) leave at once instead of waiting on Nagle.
        conf.push_str("set_tcp_nodelay true\n");
        // A file rather than stderr: cargo test cannot capture a child's
        // output, and a failing test can print it with `log()`.
        conf.push_str(&format!(
            "log_dest file {}\n",
            dir.path().join("mosquitto.log").display()
        ));
        conf.push_str("log_type error\nlog_type warning\nlog_type notice\n");
        // When run as root mosquitto switches to the `mosquitto` user, which
        // could not read the files in our root-owned tempdir.
        if let Some(me) = current_user() {
            conf.push_str(&format!("user {me}\n"));
        }

        let mut credentials = None;
        if self.users.is_empty() {
            conf.push_str("allow_anonymous true\n");
        } else {
            let passwd = dir.path().join("passwd");
            let tool = find_binary("mosquitto_passwd").unwrap_or_else(|| panic!("{NOT_FOUND}"));
            for (i, (name, password)) in self.users.iter().enumerate() {
                let mut cmd = Command::new(&tool);
                if i == 0 {
                    cmd.arg("-c");
                }
                let status = cmd
                    .arg("-b")
                    .arg(&passwd)
                    .arg(name)
                    .arg(password)
                    .stdout(Stdio::null())
                    .status()
                    .expect("run mosquitto_passwd");
                assert!(status.success(), "mosquitto_passwd failed for {name}");
            }
            conf.push_str("allow_anonymous false\n");
            conf.push_str(&format!("password_file {}\n", passwd.display()));
            credentials = self.users.first().cloned();
        }

        let mut ca_file = None;
        if self.tls {
            let certs = generate_certs(dir.path());
            conf.push_str(&format!("cafile {}\n", certs.ca.display()));
            conf.push_str(&format!("certfile {}\n", certs.cert.display()));
            conf.push_str(&format!("keyfile {}\n", certs.key.display()));
            ca_file = Some(certs.ca);
        }

        // Sections such as a bridge's `connection` come last: every line
        // after `connection` belongs to it.
        conf.push_str(&self.extra);
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).expect("write mosquitto.conf");

        let mut broker = Mosquitto {
            binary,
            conf_path,
            port,
            tls: self.tls,
            ca_file,
            credentials,
            child: None,
            _dir: dir,
        };
        broker.spawn();
        broker
    }
}

/// A running (or stopped) Mosquitto owned by one test.
#[derive(Debug)]
pub struct Mosquitto {
    binary: PathBuf,
    conf_path: PathBuf,
    port: u16,
    tls: bool,
    ca_file: Option<PathBuf>,
    credentials: Option<(String, String)>,
    child: Option<Child>,
    // Held so the config, password file and certificates outlive the broker.
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Anonymous, plain TCP.
    pub fn start() -> Mosquitto {
        MosquittoBuilder::default().start()
    }

    pub fn builder() -> MosquittoBuilder {
        MosquittoBuilder::default()
    }

    /// `mqtt://127.0.0.1:PORT`, or `mqtts://…` for a TLS broker.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The broker process, while it runs (for benches that read its CPU).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The CA that signed the broker's certificate (TLS brokers only).
    pub fn ca_file(&self) -> &Path {
        self.ca_file
            .as_deref()
            .expect("ca_file() asked of a broker started without tls()")
    }

    /// The first user given to the builder, used by [`TestClient::connect`].
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// A doorwarden MQTT config pointing at this broker (first user's
    /// password inline, CA file for TLS), with the given client id.
    pub fn mqtt_config(&self, client_id: &str) -> doorwarden::config::Mqtt {
        let mut yaml = format!(
            "url: {}\nclient_id: {client_id}\nkeep_alive: 5s\n",
            self.url()
        );
        if let Some((user, password)) = self.credentials() {
            yaml.push_str(&format!("username: {user}\npassword: {password:?}\n"));
        }
        if let Some(ca) = &self.ca_file {
            yaml.push_str(&format!("ca_file: {:?}\n", ca.display().to_string()));
        }
        serde_yaml::from_str(&yaml).expect("test mqtt config parses")
    }

    /// What the broker logged so far (connections, auth failures, errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.conf_path.with_file_name("mosquitto.log")).unwrap_or_default()
    }

    /// Kills the broker (as a crash or power cut would: no clean disconnects).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port with the same config.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            let mut child = Command::new(&self.binary)
                .arg("-c")
                .arg(&self.conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn mosquitto");
            let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
            loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(_exit)) = child.try_wait() {
                    // Usually the port is still held by the previous
                    // instance's sockets for a moment; try again.
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("mosquitto did not open port {} in time", self.port);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if Instant::now() > deadline {
                panic!("mosquitto kept exiting on port {}", self.port);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn current_user() -> Option<String> {
    let out = Command::new("id").arg("-un").output().ok()?;
    let name = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!name.is_empty()).then_some(name)
}

struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A throwaway CA and a server certificate for 127.0.0.1 and localhost.
fn generate_certs(dir: &Path) -> Certs {
    let ca_key = dir.join("ca.key");
    let ca = dir.join("ca.crt");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let cert = dir.join("server.crt");
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write server.ext");

    let p = |p: &Path| p.display().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=doorwarden test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        &p(&ca_key),
        "-out",
        &p(&ca),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p(&key),
        "-out",
        &p(&csr),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(&ca),
        "-CAkey",
        &p(&ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p(&ext),
        "-out",
        &p(&cert),
    ]);
    Certs { ca, cert, key }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl not found: run scripts/test.sh (it installs it)");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One message as a subscriber saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "payload on {} is not JSON ({e}): {}",
                self.topic,
                self.text()
            )
        })
    }
}

/// A plain MQTT client for tests: subscribe, collect, publish.
pub struct TestClient {
    client: AsyncClient,
    messages: mpsc::UnboundedReceiver<Received>,
    subacks: mpsc::UnboundedReceiver<()>,
    task: tokio::task::JoinHandle<()>,
}

impl TestClient {
    /// Connects to the broker with its first user (if any) and its CA (if TLS).
    pub async fn connect(broker: &Mosquitto) -> TestClient {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("test-{}-{n}", std::process::id());
        let mut options = MqttOptions::new(id, "127.0.0.1", broker.port());
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(1 << 20, 1 << 20);
        if let Some((user, password)) = broker.credentials() {
            options.set_credentials(user, password);
        }
        if broker.is_tls() {
            let ca = std::fs::read(broker.ca_file()).expect("read test CA");
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth: None,
            }));
        }
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let (msg_tx, messages) = mpsc::unbounded_channel();
        let (ack_tx, subacks) = mpsc::unbounded_channel();
        let (conn_tx, mut connected) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = conn_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = msg_tx.send(Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                        });
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ack_tx.send(());
                    }
                    Ok(_) => {}
                    // The test client follows the broker through restarts.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), connected.recv())
            .await
            .expect("test client connects within 10 s");
        TestClient {
            client,
            messages,
            subacks,
            task,
        }
    }

    /// Subscribes at QoS 1 and waits for the broker's acknowledgement, so
    /// anything published afterwards is seen.
    pub async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue subscribe");
        tokio::time::timeout(Duration::from_secs(5), self.subacks.recv())
            .await
            .expect("suback within 5 s");
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.into())
            .await
            .expect("queue publish");
    }

    /// Removes a retained message.
    pub async fn clear_retained(&self, topic: &str) {
        self.publish(topic, Vec::new(), true).await;
    }

    /// Everything that arrives until `quiet` passes without a new message.
    pub async fn collect(&mut self, quiet: Duration) -> Vec<Received> {
        let mut out = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout(quiet, self.messages.recv()).await {
            out.push(m);
        }
        out
    }

    /// The first message matching `want` within `limit`, or `None`.
    /// Messages that do not match are dropped.
    pub async fn try_wait_for(
        &mut self,
        mut want: impl FnMut(&Received) -> bool,
        limit: Duration,
    ) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.messages.recv()).await {
                Ok(Some(m)) if want(&m) => return Some(m),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Like [`TestClient::try_wait_for`], panicking with `what` on timeout.
    pub async fn wait_for(
        &mut self,
        want: impl FnMut(&Received) -> bool,
        limit: Duration,
        what: &str,
    ) -> Received {
        match self.try_wait_for(want, limit).await {
            Some(m) => m,
            None => panic!("timed out after {limit:?} waiting for {what}"),
        }
    }

    /// Waits for a message on exactly `topic`.
    pub async fn wait_topic(&mut self, topic: &str, limit: Duration) -> Received {
        self.wait_for(|m| m.topic == topic, limit, topic).await
    }

    /// Drops whatever has been received so far.
    pub fn drain(&mut self) {
        while self.messages.try_recv().is_ok() {}
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}
