//! The link to the MQTT broker: one task that owns the rumqttc event loop.
//!
//! [`BrokerLink::start`] connects with the settings of [`config::Mqtt`]
//! (`mqtt://` or `mqtts://`, username and password or password file, a CA
//! file for TLS), and keeps the connection up until `shutdown` resolves:
//!
//! - **Last will**: `<base>/bridge/availability` = `offline`, retained. On
//!   every connect the link publishes `online` there (retained), and on a
//!   clean shutdown it publishes `offline` itself before disconnecting (a
//!   clean DISCONNECT does not fire the will).
//! - **Reconnect** with capped exponential backoff: 0.5 s, doubling to 5 s.
//!   The delay goes back to 0.5 s once a connection has stayed up for
//!   [`HEALTHY_AFTER`].
//! - **Resubscribe** after every connect. The link uses a clean session, so
//!   nothing is kept by the broker between connections, and in particular no
//!   unacknowledged command from before an outage is replayed after it.
//! - **Incoming** messages, and [`Incoming::Connected`] /
//!   [`Incoming::Disconnected`], go to one bounded channel (capacity
//!   [`INCOMING_CAPACITY`]); when the consumer is slow the link waits, it
//!   never drops an incoming message.
//!
//! # Outgoing queue
//!
//! All publishes go through one FIFO queue of [`OUTGOING_CAPACITY`]
//! messages, drained as fast as the connection allows. Nothing is dropped
//! silently; each call says what happened to its message:
//!
//! - [`LinkHandle::publish`] (states, discovery, events) queues even while
//!   disconnected, so the last states go out after a reconnect. When the
//!   queue is full it returns [`LinkError::QueueFull`]; the caller logs it,
//!   and the full republish that follows every reconnect
//!   ([`Incoming::Connected`]) restores every retained state.
//! - [`LinkHandle::publish_command`] (commands to a lock) only queues while
//!   connected and otherwise returns [`LinkError::NotConnected`]: a command
//!   must not sit in a queue and move a lock minutes later. It also returns
//!   [`LinkError::QueueFull`] rather than wait. Either error means the lock
//!   did not get the command; the core's confirmation timeout then reports
//!   the lock unresponsive. A command already queued when the connection
//!   drops is sent right after the reconnect, in order, so a later relock
//!   still comes after an earlier unlock; one already written to the socket
//!   but not acknowledged is not resent (clean session).
//!
//! # Use from the runtime
//!
//! ```text
//! let link = BrokerLink::start(&config.mqtt, subscriptions, shutdown)?;
//! while let Some(incoming) = link.incoming.recv().await {
//!     match incoming {
//!         Incoming::Connected => { /* republish everything */ }
//!         Incoming::Disconnected { reason } => { /* log */ }
//!         Incoming::Message { topic, payload, retain } => { /* parse */ }
//!     }
//! }
//! link.handle.publish(&topic, payload, true)?;
//! ```
//!
//! Secrets: the password is read here and handed to rumqttc only; it is in
//! no error and no log line. The broker URL goes through
//! [`crate::redact::text`] wherever it is shown.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Outgoing, Packet, QoS, SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config;
use crate::redact;

/// Messages waiting to be written to the broker, across all publishers, at
/// the least: [`BrokerLink::start_sized`] makes room for a whole republish of
/// a large home on top of this.
pub const OUTGOING_CAPACITY: usize = 1024;
/// Received messages waiting for the runtime.
pub const INCOMING_CAPACITY: usize = 1024;
/// First reconnect delay; doubles after every failed attempt.
pub const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest reconnect delay. Kept short on purpose: a relock that fell due
/// while the broker was away goes out on the first reconnect, so this bounds
/// how long a door can wait after the broker is back. Trying a broker on the
/// home network every few seconds costs nothing.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// A connection that stayed up this long resets the backoff.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// Largest packet accepted or sent. Other integrations' discovery configs
/// (seen on `<prefix>/+/+/config`) can exceed rumqttc's 10 KiB default, and
/// an oversized packet would cost the whole connection.
pub const MAX_PACKET: usize = 1024 * 1024;
/// How long a clean shutdown waits for `offline` and DISCONNECT to be sent.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// What the link reports to the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// Connected and subscribed (the broker acknowledged the subscriptions),
    /// `online` queued. Sent after every (re)connect: republish all
    /// discovery configs and states now.
    Connected,
    /// The connection was lost or could not be made; the link retries by
    /// itself. Sent once per outage, not for every failed attempt. `reason`
    /// holds no secret.
    Disconnected { reason: String },
    /// A message on one of the subscriptions.
    Message {
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    },
}

/// Why the link could not start, or a message was not queued.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// `url` is already redacted.
    #[error("mqtt.url `{url}`: {problem}")]
    BadUrl { url: String, problem: String },
    #[error("mqtt.password_file {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mqtt.password_file {path} is empty")]
    EmptyPasswordFile { path: PathBuf },
    #[error("mqtt: a password is set but no username (MQTT needs both)")]
    PasswordWithoutUsername,
    #[error("mqtt.ca_file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mqtt.ca_file {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    CaNotPem { path: PathBuf },
    #[error("mqtt.ca_file {path} is set but mqtt.url is not mqtts://")]
    CaWithoutTls { path: PathBuf },
    #[error("subscription `{filter}` is not a valid MQTT topic filter")]
    BadFilter { filter: String },
    #[error("`{topic}` is not a valid MQTT topic to publish to")]
    BadTopic { topic: String },
    #[error("MQTT outgoing queue full ({capacity} messages); `{topic}` not sent")]
    QueueFull { topic: String, capacity: usize },
    #[error("not connected to the MQTT broker; command to `{topic}` not sent")]
    NotConnected { topic: String },
    #[error("the MQTT link has stopped; `{topic}` not sent")]
    Closed { topic: String },
}

/// A running link: the handle to publish with, the channel of what comes
/// in, and the task (which ends after `shutdown`).
#[derive(Debug)]
pub struct BrokerLink {
    pub handle: LinkHandle,
    pub incoming: mpsc::Receiver<Incoming>,
    pub task: JoinHandle<()>,
}

/// Cheap to clone; every clone publishes through the same queue.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    client: AsyncClient,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    connected: AtomicBool,
    stopped: AtomicBool,
}

impl BrokerLink {
    /// Checks the settings, then spawns the link task on the current tokio
    /// runtime. Connecting happens in the task: a broker that is down or
    /// refuses the login shows up as [`Incoming::Disconnected`] and is
    /// retried, it is not an error here.
    ///
    /// `subscriptions` are topic filters (QoS 1), subscribed again after
    /// every connect. `shutdown` ends the link cleanly (`offline`, then
    /// DISCONNECT).
    ///
    /// # Errors
    ///
    /// A URL that is not `mqtt://host[:port]` / `mqtts://host[:port]`, an
    /// unreadable or empty password file, an unreadable or non-PEM CA file,
    /// a password without username, an invalid subscription filter.
    pub fn start(
        cfg: &config::Mqtt,
        subscriptions: Vec<String>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<BrokerLink, LinkError> {
        Self::start_sized(cfg, subscriptions, 0, shutdown)
    }

    /// [`BrokerLink::start`] with room for a burst of `burst` messages
    /// beyond [`OUTGOING_CAPACITY`]: the runtime republishes every discovery
    /// config and state at once after each connect, and a home of 50 doors
    /// and 100 cameras has over a thousand of them. A queue too small for
    /// that would drop entities Home Assistant then never sees.
    ///
    /// # Errors
    ///
    /// As [`BrokerLink::start`].
    pub fn start_sized(
        cfg: &config::Mqtt,
        subscriptions: Vec<String>,
        burst: usize,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<BrokerLink, LinkError> {
        let options = options(cfg)?;
        let filters = subscriptions
            .into_iter()
            .map(|filter| {
                if rumqttc::valid_filter(&filter) {
                    Ok(SubscribeFilter::new(filter, QoS::AtLeastOnce))
                } else {
                    Err(LinkError::BadFilter { filter })
                }
            })
            .collect::<Result<Vec<_>, _>>()?;

        let (client, mut eventloop) = AsyncClient::new(options, OUTGOING_CAPACITY + burst);
        // Lock commands are small packets that must leave at once: without
        // this, Nagle's algorithm held each one back ~40 ms waiting for the
        // broker's ACK of the previous packet (docs/performance.md).
        eventloop.network_options.set_tcp_nodelay(true);
        let (tx, incoming) = mpsc::channel(INCOMING_CAPACITY);
        let shared = Arc::new(Shared {
            connected: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        });
        let link = LinkTask {
            client: client.clone(),
            eventloop,
            filters,
            availability: availability_topic(cfg),
            url: redact::text(&cfg.url),
            tx,
            shared: shared.clone(),
        };
        let task = tokio::spawn(link.run(shutdown));
        Ok(BrokerLink {
            handle: LinkHandle { client, shared },
            incoming,
            task,
        })
    }
}

/// `<base>/bridge/availability`: the last will and the `online` topic.
pub fn availability_topic(cfg: &config::Mqtt) -> String {
    format!("{}/bridge/availability", cfg.base_topic)
}

impl LinkHandle {
    /// Queues a message (QoS 1) for the broker, connected or not.
    ///
    /// # Errors
    ///
    /// [`LinkError::QueueFull`] when [`OUTGOING_CAPACITY`] messages are
    /// already waiting, [`LinkError::BadTopic`] for an empty topic or one
    /// with a wildcard, [`LinkError::Closed`] after shutdown.
    pub fn publish(
        &self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        retain: bool,
    ) -> Result<(), LinkError> {
        self.enqueue(topic, payload.into(), retain)
    }

    /// Like [`LinkHandle::publish`], but waits for room in the queue instead
    /// of failing when it is full. For bulk republishing from a task that
    /// can afford to wait; never for lock commands.
    pub async fn publish_waiting(
        &self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        retain: bool,
    ) -> Result<(), LinkError> {
        check_topic(topic)?;
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(LinkError::Closed {
                topic: topic.to_string(),
            });
        }
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.into())
            .await
            .map_err(|_| LinkError::Closed {
                topic: topic.to_string(),
            })
    }

    /// Queues a command for a device (not retained), only while connected:
    /// see the module doc for why.
    ///
    /// # Errors
    ///
    /// [`LinkError::NotConnected`] while the link is down,
    /// [`LinkError::QueueFull`], [`LinkError::BadTopic`],
    /// [`LinkError::Closed`]. In every case the command was not sent.
    pub fn publish_command(
        &self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
    ) -> Result<(), LinkError> {
        if !self.is_connected() {
            return Err(LinkError::NotConnected {
                topic: topic.to_string(),
            });
        }
        self.enqueue(topic, payload.into(), false)
    }

    /// Whether the link is connected and subscribed right now.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    fn enqueue(&self, topic: &str, payload: Vec<u8>, retain: bool) -> Result<(), LinkError> {
        check_topic(topic)?;
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(LinkError::Closed {
                topic: topic.to_string(),
            });
        }
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
        {
            Ok(()) => Ok(()),
            // The topic was checked above, so the only causes left are a
            // full queue or an event loop that has gone away.
            Err(_) if self.shared.stopped.load(Ordering::Acquire) => Err(LinkError::Closed {
                topic: topic.to_string(),
            }),
            Err(_) => Err(LinkError::QueueFull {
                topic: topic.to_string(),
                capacity: OUTGOING_CAPACITY,
            }),
        }
    }
}

fn check_topic(topic: &str) -> Result<(), LinkError> {
    if topic.is_empty() || topic.contains(['+', '#', '\0']) || topic.len() > usize::from(u16::MAX) {
        return Err(LinkError::BadTopic {
            topic: topic.chars().take(200).collect(),
        });
    }
    Ok(())
}

/// rumqttc options from the config. Never logged: they hold the password.
fn options(cfg: &config::Mqtt) -> Result<MqttOptions, LinkError> {
    let shown = redact::text(&cfg.url);
    let bad = |problem: &str| LinkError::BadUrl {
        url: shown.clone(),
        problem: problem.to_string(),
    };
    let url = url::Url::parse(cfg.url.trim()).map_err(|e| bad(&e.to_string()))?;
    let tls = match url.scheme() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        _ => return Err(bad("the scheme must be mqtt:// or mqtts://")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "put the username and password in mqtt.username and mqtt.password, not in the URL",
        ));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "only mqtt[s]://host[:port] is understood (no path or query)",
        ));
    }
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(host) => host.to_string(),
        None => return Err(bad("no host")),
    };
    let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });

    let mut options = MqttOptions::new(cfg.client_id.clone(), host, port);
    // rumqttc panics on a keep-alive between 0 and 1 s; round such a value
    // up rather than let a config value crash the bridge.
    let keep_alive = if cfg.keep_alive.is_zero() {
        Duration::ZERO
    } else {
        cfg.keep_alive.max(Duration::from_secs(1))
    };
    options.set_keep_alive(keep_alive);
    options.set_clean_session(true);
    options.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    options.set_last_will(LastWill::new(
        availability_topic(cfg),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));

    let password = match (&cfg.password, &cfg.password_file) {
        (Some(secret), _) => Some(secret.expose().to_string()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| LinkError::PasswordFile {
                path: path.clone(),
                source,
            })?;
            let password = text.trim_end_matches(['\r', '\n']).to_string();
            if password.is_empty() {
                return Err(LinkError::EmptyPasswordFile { path: path.clone() });
            }
            Some(password)
        }
        (None, None) => None,
    };
    match (&cfg.username, password) {
        (Some(user), password) => {
            options.set_credentials(user.clone(), password.unwrap_or_default());
        }
        (None, Some(_)) => return Err(LinkError::PasswordWithoutUsername),
        (None, None) => {}
    }

    match (&cfg.ca_file, tls) {
        (Some(path), true) => {
            let ca = std::fs::read(path).map_err(|source| LinkError::CaFile {
                path: path.clone(),
                source,
            })?;
            if !ca
                .windows(b"-----BEGIN CERTIFICATE-----".len())
                .any(|w| w == b"-----BEGIN CERTIFICATE-----")
            {
                return Err(LinkError::CaNotPem { path: path.clone() });
            }
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth: None,
            }));
        }
        (Some(path), false) => return Err(LinkError::CaWithoutTls { path: path.clone() }),
        (None, true) => {
            // The system's root certificates.
            options.set_transport(Transport::tls_with_default_config());
        }
        (None, false) => {}
    }
    Ok(options)
}

struct LinkTask {
    client: AsyncClient,
    eventloop: EventLoop,
    filters: Vec<SubscribeFilter>,
    availability: String,
    /// Redacted.
    url: String,
    tx: mpsc::Sender<Incoming>,
    shared: Arc<Shared>,
}

/// Where the connection stands, as the task sees it.
enum Phase {
    /// Waiting for CONNACK (first attempt, or after a failure).
    Connecting,
    /// CONNACK received, SUBACK not yet.
    Subscribing { since: Instant },
    /// Subscribed; `Incoming::Connected` sent.
    Up { since: Instant },
}

impl LinkTask {
    async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let mut phase = Phase::Connecting;
        let mut backoff = BACKOFF_START;
        // True once an outage has been reported, so a broker that stays
        // down gives one `Disconnected`, not one per attempt.
        let mut outage_reported = false;

        loop {
            let event = tokio::select! {
                () = &mut shutdown => break,
                event = self.eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!(broker = %self.url, "connected to MQTT broker");
                    phase = Phase::Subscribing {
                        since: Instant::now(),
                    };
                    self.after_connect();
                    if self.filters.is_empty() && !self.up(&mut phase, &mut outage_reported).await {
                        break;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    for (code, filter) in ack.return_codes.iter().zip(&self.filters) {
                        if matches!(code, SubscribeReasonCode::Failure) {
                            tracing::warn!(
                                broker = %self.url,
                                filter = %filter.path,
                                "broker refused the subscription"
                            );
                        }
                    }
                    if matches!(phase, Phase::Subscribing { .. })
                        && !self.up(&mut phase, &mut outage_reported).await
                    {
                        break;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let message = Incoming::Message {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                    };
                    if !self.deliver(message, &mut shutdown).await {
                        break;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    self.shared.connected.store(false, Ordering::Release);
                    let reason = format!("{}: {}", self.url, describe(&error));
                    let lasted = match phase {
                        Phase::Up { since } | Phase::Subscribing { since } => since.elapsed(),
                        Phase::Connecting => Duration::ZERO,
                    };
                    if lasted >= HEALTHY_AFTER {
                        backoff = BACKOFF_START;
                    }
                    let was_connected = !matches!(phase, Phase::Connecting);
                    phase = Phase::Connecting;
                    if was_connected || !outage_reported {
                        tracing::warn!(%reason, retry_in = ?backoff, "MQTT connection lost");
                        outage_reported = true;
                        let note = Incoming::Disconnected {
                            reason: reason.clone(),
                        };
                        if !self.deliver(note, &mut shutdown).await {
                            break;
                        }
                    } else {
                        tracing::debug!(%reason, retry_in = ?backoff, "MQTT reconnect failed");
                    }
                    let wait = tokio::time::sleep(backoff);
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = wait => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                }
            }
        }
        self.close().await;
    }

    /// Queues `online` and the subscriptions. They go through the same
    /// bounded queue as everything else; a helper task waits for room so
    /// the event loop, which drains that queue, is never blocked by it.
    fn after_connect(&self) {
        let client = self.client.clone();
        let availability = self.availability.clone();
        let filters = self.filters.clone();
        tokio::spawn(async move {
            // Errors here mean the event loop is gone (shutdown).
            let _ = client
                .publish(availability, QoS::AtLeastOnce, true, "online")
                .await;
            if !filters.is_empty() {
                let _ = client.subscribe_many(filters).await;
            }
        });
    }

    /// Marks the link up and tells the runtime. False if the runtime is gone.
    async fn up(&mut self, phase: &mut Phase, outage_reported: &mut bool) -> bool {
        let since = match *phase {
            Phase::Subscribing { since } | Phase::Up { since } => since,
            Phase::Connecting => Instant::now(),
        };
        *phase = Phase::Up { since };
        *outage_reported = false;
        self.shared.connected.store(true, Ordering::Release);
        self.tx.send(Incoming::Connected).await.is_ok()
    }

    /// Hands a message to the runtime, waiting while its channel is full.
    /// False when the link should stop (shutdown, or the runtime is gone).
    /// (`&mut self` rather than `&self`: the event loop inside is `Send`
    /// but not `Sync`, and this future must be `Send`.)
    async fn deliver(
        &mut self,
        message: Incoming,
        shutdown: &mut std::pin::Pin<&mut (impl Future<Output = ()> + Send)>,
    ) -> bool {
        tokio::select! {
            () = shutdown.as_mut() => false,
            sent = self.tx.send(message) => sent.is_ok(),
        }
    }

    /// A clean goodbye: `offline` (the will does not fire on DISCONNECT),
    /// then DISCONNECT, flushed for at most [`SHUTDOWN_FLUSH`].
    async fn close(mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        let was_connected = self.shared.connected.swap(false, Ordering::AcqRel);
        if !was_connected {
            return;
        }
        let queued = self
            .client
            .try_publish(&self.availability, QoS::AtLeastOnce, true, "offline")
            .and_then(|()| self.client.try_disconnect());
        if queued.is_err() {
            tracing::warn!(
                broker = %self.url,
                "MQTT queue full at shutdown; the broker will publish `offline` from the last will"
            );
            return;
        }
        let flush = async {
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        if tokio::time::timeout(SHUTDOWN_FLUSH, flush).await.is_err() {
            tracing::warn!(broker = %self.url, "MQTT disconnect not flushed in time");
        }
        tracing::info!(broker = %self.url, "disconnected from MQTT broker");
    }
}

/// A short description of a connection error, for logs and
/// [`Incoming::Disconnected`]. rumqttc's errors hold no credentials.
fn describe(error: &ConnectionError) -> String {
    match error {
        ConnectionError::ConnectionRefused(code) => match code {
            ConnectReturnCode::BadUserNamePassword => {
                "broker refused the login: bad username or password".into()
            }
            ConnectReturnCode::NotAuthorized => "broker refused the login: not authorized".into(),
            ConnectReturnCode::BadClientId => {
                "broker refused the client id (mqtt.client_id)".into()
            }
            ConnectReturnCode::ServiceUnavailable => "broker unavailable".into(),
            ConnectReturnCode::RefusedProtocolVersion => {
                "broker refused MQTT 3.1.1 (protocol version)".into()
            }
            ConnectReturnCode::Success => "broker refused the connection".into(),
        },
        ConnectionError::Io(e) => e.to_string(),
        ConnectionError::NetworkTimeout => "connect timed out".into(),
        other => redact::text(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> config::Mqtt {
        serde_yaml::from_str(yaml).expect("test yaml")
    }

    #[test]
    fn urls_are_checked_before_anything_connects() {
        let cases = [
            // (url, accepted)
            ("mqtt://127.0.0.1:1883", true),
            ("mqtt://broker.lan", true),
            ("mqtts://broker.lan:8883", true),
            ("http://broker.lan", false),
            ("mqtt://user:hunter2@broker.lan", false),
            ("mqtt://broker.lan/some/path", false),
            ("not a url", false),
        ];
        for (url, accepted) in cases {
            let result = options(&cfg(&format!("url: {url:?}")));
            assert_eq!(result.is_ok(), accepted, "{url}");
            if let Err(e) = result {
                assert!(!e.to_string().contains("hunter2"), "{e}");
            }
        }
    }

    #[test]
    fn default_ports_follow_the_scheme() {
        let plain = options(&cfg("url: mqtt://broker.lan")).expect("valid");
        assert_eq!(plain.broker_address(), ("broker.lan".to_string(), 1883));
        let tls = options(&cfg("url: mqtts://broker.lan")).expect("valid");
        assert_eq!(tls.broker_address(), ("broker.lan".to_string(), 8883));
    }

    #[test]
    fn password_file_is_trimmed_and_never_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2\n").expect("write");
        let o = options(&cfg(&format!(
            "url: mqtt://b\nusername: dw\npassword_file: {:?}",
            path.display().to_string()
        )))
        .expect("valid");
        let login = o.credentials().expect("credentials set");
        assert_eq!(login.password, "hunter2");

        std::fs::write(&path, "\n").expect("write");
        let err = options(&cfg(&format!(
            "url: mqtt://b\nusername: dw\npassword_file: {:?}",
            path.display().to_string()
        )))
        .expect_err("empty file");
        assert!(matches!(err, LinkError::EmptyPasswordFile { .. }));
    }

    #[test]
    fn tiny_keep_alive_is_rounded_up_not_a_panic() {
        let o = options(&cfg("url: mqtt://b\nkeep_alive: 100ms")).expect("valid");
        assert_eq!(o.keep_alive(), Duration::from_secs(1));
    }

    #[test]
    fn publish_topics_with_wildcards_are_refused() {
        for topic in ["", "a/+/b", "a/#", "a\0b"] {
            assert!(check_topic(topic).is_err(), "{topic:?}");
        }
        assert!(check_topic("doorwarden/front/state").is_ok());
    }
}
