//! The link to the MQTT broker: one task that owns the rumqttc event loop,
//! and a feeder that hands it what to publish, safety first.
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
//!   [`HEALTHY_AFTER`]. Every connection gets a **fresh rumqttc client**:
//!   rumqttc keeps a packet-id collision across reconnects and then never
//!   sends again (bytebeamio/rumqtt#1014), so nothing of a dead connection's
//!   state is carried into the next one.
//! - **Resubscribe** after every connect. The link uses a clean session, so
//!   nothing is kept by the broker between connections, and in particular no
//!   unacknowledged command from before an outage is replayed after it.
//! - **Watchdog**: a connection that is up but acknowledges nothing for
//!   [`watchdog_after`] (two keep-alives) while something waits to be sent or
//!   subscribed is torn down and rebuilt. After [`WATCHDOG_GIVE_UP`] rebuilds
//!   in a row that change nothing, the link reports [`Incoming::Failed`] and
//!   stops, so the process can exit and its supervisor restart it (a restart
//!   relocks every door whose delivery was in progress).
//! - **Incoming** messages, and [`Incoming::Connected`] /
//!   [`Incoming::Disconnected`], go to one bounded channel (capacity
//!   [`INCOMING_CAPACITY`]); when the consumer is slow the link waits, it
//!   never drops an incoming message it accepted. A message larger than
//!   [`MAX_MESSAGE`] is not accepted: it is reported as
//!   [`Incoming::Oversized`] (topic and size only) and the connection stays
//!   up. rumqttc is allowed packets up to MQTT's own limit so that no
//!   message, however large, can cost the connection: an oversized
//!   *retained* message would otherwise end every reconnect the moment the
//!   subscription delivers it.
//!
//! # Outgoing
//!
//! Everything to publish goes through an [`Outbox`] of two lanes; a feeder
//! task moves messages from it into rumqttc's own (short) request queue,
//! safety lane first, so a lock command waits behind at most
//! [`CLIENT_QUEUE`] other messages however full the normal lane is. Nothing
//! is dropped silently; each call says what happened to its message:
//!
//! - [`LinkHandle::publish`] (states, discovery, answers) queues on the
//!   normal lane even while disconnected, so the last states go out after a
//!   reconnect. When the lane is full it returns [`LinkError::QueueFull`];
//!   the caller logs it, and the full republish that follows every reconnect
//!   ([`Incoming::Connected`]) restores every retained state.
//! - [`LinkHandle::publish_safety`] (delivery events: a trip, a relock, a
//!   forced door) queues on the safety lane, connected or not.
//! - [`LinkHandle::publish_query`] (asking a lock for its state) queues on
//!   the normal lane, only while connected.
//! - [`LinkHandle::publish_command`] (commands to a lock) only queues while
//!   connected and otherwise returns [`LinkError::NotConnected`]: a command
//!   must not sit in a queue and move a lock minutes later. Commands still
//!   waiting when the connection drops are taken out and handed back as
//!   [`Incoming::CommandsNotSent`]; one already written to the socket but
//!   not acknowledged is not resent (clean session).
//!
//! # Use from the runtime
//!
//! ```text
//! let link = BrokerLink::start(&config.mqtt, subscriptions, shutdown)?;
//! while let Some(incoming) = link.incoming.recv().await {
//!     match incoming {
//!         Incoming::Connected => { /* republish everything */ }
//!         Incoming::Message { topic, payload, retain } => { /* parse */ }
//!         other => { /* log, count, resend relocks, or stop */ }
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
    Outgoing as Sent, Packet, QoS, SubscribeFilter, SubscribeReasonCode, TlsConfiguration,
    Transport,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config;
use crate::io::outbox::{Lane, Outbox, Outgoing};
use crate::redact;

/// Messages waiting on the normal lane, across all publishers, at the
/// least: [`BrokerLink::start_sized`] makes room for a whole republish of a
/// large home on top of this.
pub const OUTGOING_CAPACITY: usize = 1024;
/// Lock commands and delivery events waiting. Far more than a home makes:
/// each door sends a handful per delivery.
pub const SAFETY_CAPACITY: usize = 256;
/// rumqttc's own request queue. Short on purpose: it is FIFO, so whatever
/// sits in it is ahead of the next lock command.
pub const CLIENT_QUEUE: usize = 16;
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
/// Largest packet doorwarden sends. Other integrations' discovery configs
/// (seen on `<prefix>/+/+/config`) can exceed rumqttc's 10 KiB default.
pub const MAX_PACKET: usize = 1024 * 1024;
/// Largest payload handed to the runtime. doorwarden's own commands and the
/// lock backends' reports are well under a kilobyte, and the largest
/// discovery configs of other integrations a few kilobytes.
pub const MAX_MESSAGE: usize = 256 * 1024;
/// MQTT's largest remaining length: rumqttc reads any packet up to this, so
/// that the link, not a broken connection, decides about a large message.
/// The broker's own limit (Mosquitto's `message_size_limit`) bounds the
/// memory this can take.
const MAX_INCOMING_PACKET: usize = 268_435_455;
/// Rebuilds in a row, each without a single acknowledgement, after which
/// the link stops and the process should be restarted.
pub const WATCHDOG_GIVE_UP: u32 = 3;
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
    /// A message larger than [`MAX_MESSAGE`], dropped. `topic` is cut to
    /// 200 characters; the payload is gone.
    Oversized { topic: String, bytes: usize },
    /// Device commands that were accepted but had not reached rumqttc when
    /// the connection dropped: they were not sent.
    CommandsNotSent(Vec<Outgoing>),
    /// The watchdog gave up: the link has stopped and will not come back.
    Failed { reason: String },
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
/// in, and the task (which ends after `shutdown`, or when the watchdog
/// gives up).
#[derive(Debug)]
pub struct BrokerLink {
    pub handle: LinkHandle,
    pub incoming: mpsc::Receiver<Incoming>,
    pub task: JoinHandle<()>,
}

/// Cheap to clone; every clone publishes through the same outbox.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    outbox: Arc<Outbox>,
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

        let outbox = Arc::new(Outbox::new(SAFETY_CAPACITY, OUTGOING_CAPACITY + burst));
        let (tx, incoming) = mpsc::channel(INCOMING_CAPACITY);
        let shared = Arc::new(Shared {
            connected: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        });
        let (current, feeder_sees) = watch::channel(None);
        let feeder = tokio::spawn(feed(outbox.clone(), feeder_sees, tx.clone()));
        let (client, eventloop) = fresh_client(&options);
        let link = LinkTask {
            watchdog: watchdog_after(options.keep_alive()),
            options,
            client,
            eventloop,
            filters,
            availability: availability_topic(cfg),
            url: redact::text(&cfg.url),
            tx,
            shared: shared.clone(),
            outbox: outbox.clone(),
            current,
            feeder,
        };
        let task = tokio::spawn(link.run(shutdown));
        Ok(BrokerLink {
            handle: LinkHandle { outbox, shared },
            incoming,
            task,
        })
    }
}

/// `<base>/bridge/availability`: the last will and the `online` topic.
pub fn availability_topic(cfg: &config::Mqtt) -> String {
    format!("{}/bridge/availability", cfg.base_topic)
}

/// How long an established connection may acknowledge nothing while work
/// waits before it is rebuilt: two keep-alives, as rumqttc gives a silent
/// broker, and a minute when keep-alive is off.
pub fn watchdog_after(keep_alive: Duration) -> Duration {
    if keep_alive.is_zero() {
        Duration::from_secs(60)
    } else {
        2 * keep_alive
    }
}

fn fresh_client(options: &MqttOptions) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = AsyncClient::new(options.clone(), CLIENT_QUEUE);
    // Lock commands are small packets that must leave at once: without
    // this, Nagle's algorithm held each one back ~40 ms waiting for the
    // broker's ACK of the previous packet (docs/performance.md).
    eventloop.network_options.set_tcp_nodelay(true);
    (client, eventloop)
}

impl LinkHandle {
    /// Queues a message (QoS 1) on the normal lane, connected or not.
    ///
    /// # Errors
    ///
    /// [`LinkError::QueueFull`] when the normal lane is full,
    /// [`LinkError::BadTopic`] for an empty topic or one with a wildcard,
    /// [`LinkError::Closed`] after shutdown.
    pub fn publish(
        &self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        retain: bool,
    ) -> Result<(), LinkError> {
        self.enqueue(topic, payload.into(), retain, Lane::Normal, false)
    }

    /// Queues a message (QoS 1) on the safety lane, connected or not: it
    /// goes out before any state, answer or discovery config waiting.
    ///
    /// # Errors
    ///
    /// As [`LinkHandle::publish`].
    pub fn publish_safety(
        &self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        retain: bool,
    ) -> Result<(), LinkError> {
        self.enqueue(topic, payload.into(), retain, Lane::Safety, false)
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
        self.check_open(topic)?;
        self.outbox
            .push_waiting(Outgoing {
                topic: topic.to_string(),
                payload: payload.into(),
                retain,
                lane: Lane::Normal,
                command: false,
            })
            .await;
        Ok(())
    }

    /// Queues a command for a device (not retained) on the safety lane,
    /// only while connected: see the module doc for why.
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
        self.enqueue(topic, payload.into(), false, Lane::Safety, true)
    }

    /// Queues a request for a device's state (not retained) on the normal
    /// lane, only while connected: asking again after a reconnect is the
    /// runtime's job, and it must never hold up a lock command.
    ///
    /// # Errors
    ///
    /// As [`LinkHandle::publish_command`].
    pub fn publish_query(&self, topic: &str, payload: impl Into<Vec<u8>>) -> Result<(), LinkError> {
        if !self.is_connected() {
            return Err(LinkError::NotConnected {
                topic: topic.to_string(),
            });
        }
        self.enqueue(topic, payload.into(), false, Lane::Normal, false)
    }

    /// Whether the link is connected and subscribed right now.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    fn check_open(&self, topic: &str) -> Result<(), LinkError> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(LinkError::Closed {
                topic: topic.to_string(),
            });
        }
        Ok(())
    }

    fn enqueue(
        &self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
        lane: Lane,
        command: bool,
    ) -> Result<(), LinkError> {
        check_topic(topic)?;
        self.check_open(topic)?;
        self.outbox
            .push(Outgoing {
                topic: topic.to_string(),
                payload,
                retain,
                lane,
                command,
            })
            .map_err(|full| LinkError::QueueFull {
                topic: topic.to_string(),
                capacity: full.capacity,
            })
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

/// The feeder: moves messages from the outbox into the rumqttc client of
/// the connection that is up, safety lane first. While no connection is up
/// it waits, and the outbox keeps everything. Ends when the link task does.
async fn feed(
    outbox: Arc<Outbox>,
    mut current: watch::Receiver<Option<AsyncClient>>,
    tx: mpsc::Sender<Incoming>,
) {
    loop {
        let client = current.borrow_and_update().clone();
        let Some(client) = client else {
            if current.changed().await.is_err() {
                return;
            }
            continue;
        };
        let message = tokio::select! {
            message = outbox.next() => message,
            changed = current.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        // Waits while rumqttc's short queue is full. If the connection goes
        // meanwhile, that client's queue is gone with it.
        let handed_on = tokio::select! {
            sent = client.publish(
                message.topic.as_str(),
                QoS::AtLeastOnce,
                message.retain,
                message.payload.clone(),
            ) => sent.is_ok(),
            _ = current.changed() => false,
        };
        if handed_on {
            continue;
        }
        if message.command {
            // Not onto a later connection: see `Outbox::take_commands`.
            let _ = tx.send(Incoming::CommandsNotSent(vec![message])).await;
        } else {
            outbox.give_back(message);
        }
    }
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
    options.set_max_packet_size(MAX_INCOMING_PACKET, MAX_PACKET);
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
    /// Kept to build a fresh client for every connection.
    options: MqttOptions,
    client: AsyncClient,
    eventloop: EventLoop,
    filters: Vec<SubscribeFilter>,
    availability: String,
    /// Redacted.
    url: String,
    tx: mpsc::Sender<Incoming>,
    shared: Arc<Shared>,
    outbox: Arc<Outbox>,
    /// The feeder's client: `Some` from CONNACK until the connection drops.
    current: watch::Sender<Option<AsyncClient>>,
    feeder: JoinHandle<()>,
    watchdog: Duration,
}

/// Where the connection stands, as the task sees it.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for CONNACK (first attempt, or after a failure).
    Connecting,
    /// CONNACK received, SUBACK not yet.
    Subscribing { since: Instant },
    /// Subscribed; `Incoming::Connected` sent.
    Up { since: Instant },
}

/// What the watchdog knows: when the broker last acknowledged anything, and
/// how many rebuilds in a row changed nothing.
#[derive(Debug)]
struct Watchdog {
    last_ack: Instant,
    fruitless_rebuilds: u32,
}

/// Why the loop stopped.
enum Stop {
    Shutdown,
    Failed(String),
}

impl LinkTask {
    async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let mut phase = Phase::Connecting;
        let mut backoff = BACKOFF_START;
        // True once an outage has been reported, so a broker that stays
        // down gives one `Disconnected`, not one per attempt.
        let mut outage_reported = false;
        let mut dog = Watchdog {
            last_ack: Instant::now(),
            fruitless_rebuilds: 0,
        };
        let mut check = tokio::time::interval(Duration::from_secs(1));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        let stop = loop {
            let event = tokio::select! {
                () = &mut shutdown => break Stop::Shutdown,
                event = self.eventloop.poll() => event,
                _ = check.tick() => {
                    if let Some(stuck) = self.stuck(phase, &dog) {
                        dog.fruitless_rebuilds += 1;
                        if dog.fruitless_rebuilds > WATCHDOG_GIVE_UP {
                            break Stop::Failed(stuck);
                        }
                        tracing::error!(
                            broker = %self.url,
                            "MQTT link stuck ({stuck}); starting a fresh connection"
                        );
                        if !self.lost(&mut phase, stuck, &mut outage_reported, &mut shutdown).await {
                            break Stop::Shutdown;
                        }
                        dog.last_ack = Instant::now();
                    }
                    continue;
                }
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!(broker = %self.url, "connected to MQTT broker");
                    phase = Phase::Subscribing {
                        since: Instant::now(),
                    };
                    dog.last_ack = Instant::now();
                    self.after_connect();
                    if self.filters.is_empty() && !self.up(&mut phase, &mut outage_reported).await {
                        break Stop::Shutdown;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    dog.last_ack = Instant::now();
                    dog.fruitless_rebuilds = 0;
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
                        break Stop::Shutdown;
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    dog.last_ack = Instant::now();
                    dog.fruitless_rebuilds = 0;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let message = if p.payload.len() > MAX_MESSAGE {
                        Incoming::Oversized {
                            topic: p.topic.chars().take(200).collect(),
                            bytes: p.payload.len(),
                        }
                    } else {
                        Incoming::Message {
                            topic: p.topic,
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                        }
                    };
                    if !self.deliver(message, &mut shutdown).await {
                        break Stop::Shutdown;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    let reason = describe(&error);
                    let lasted = match phase {
                        Phase::Up { since } | Phase::Subscribing { since } => since.elapsed(),
                        Phase::Connecting => Duration::ZERO,
                    };
                    if lasted >= HEALTHY_AFTER {
                        backoff = BACKOFF_START;
                    }
                    let was_connected = !matches!(phase, Phase::Connecting);
                    if !was_connected && outage_reported {
                        tracing::debug!(broker = %self.url, %reason, retry_in = ?backoff, "MQTT reconnect failed");
                    }
                    if !self
                        .lost(&mut phase, reason, &mut outage_reported, &mut shutdown)
                        .await
                    {
                        break Stop::Shutdown;
                    }
                    let wait = tokio::time::sleep(backoff);
                    tokio::select! {
                        () = &mut shutdown => break Stop::Shutdown,
                        () = wait => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                }
            }
        };
        match stop {
            Stop::Shutdown => self.close().await,
            Stop::Failed(reason) => {
                let reason = format!(
                    "{}: {reason}; {WATCHDOG_GIVE_UP} fresh connections did not help",
                    self.url
                );
                tracing::error!("MQTT link failed for good: {reason}");
                self.shared.connected.store(false, Ordering::Release);
                self.shared.stopped.store(true, Ordering::Release);
                self.feeder.abort();
                let _ = self.tx.send(Incoming::Failed { reason }).await;
            }
        }
    }

    /// Why the connection counts as stuck, if it does: up (or subscribing)
    /// for longer than the watchdog allows without one acknowledgement,
    /// while a subscription or a message waits.
    fn stuck(&self, phase: Phase, dog: &Watchdog) -> Option<String> {
        let quiet = dog.last_ack.elapsed();
        if quiet < self.watchdog {
            return None;
        }
        match phase {
            Phase::Connecting => None,
            Phase::Subscribing { .. } => Some(format!(
                "subscriptions not acknowledged for {}",
                humantime::format_duration(round(quiet))
            )),
            Phase::Up { .. } => {
                let waiting = self.outbox.len() + usize::from(self.eventloop.state.inflight());
                (waiting > 0).then(|| {
                    format!(
                        "nothing acknowledged for {} while {waiting} messages wait",
                        humantime::format_duration(round(quiet))
                    )
                })
            }
        }
    }

    /// The connection is gone (or given up on): stop feeding, hand back the
    /// commands that did not leave, report the outage once, and put a fresh
    /// client in place for the next attempt. False if the runtime is gone.
    async fn lost(
        &mut self,
        phase: &mut Phase,
        reason: String,
        outage_reported: &mut bool,
        shutdown: &mut std::pin::Pin<&mut (impl Future<Output = ()> + Send)>,
    ) -> bool {
        self.shared.connected.store(false, Ordering::Release);
        self.current.send_replace(None);
        let was_connected = !matches!(phase, Phase::Connecting);
        *phase = Phase::Connecting;
        let (client, eventloop) = fresh_client(&self.options);
        self.client = client;
        self.eventloop = eventloop;

        let unsent = self.outbox.take_commands();
        if !unsent.is_empty() {
            tracing::warn!(
                broker = %self.url,
                count = unsent.len(),
                "the connection dropped before these lock commands were sent"
            );
            if !self
                .deliver(Incoming::CommandsNotSent(unsent), shutdown)
                .await
            {
                return false;
            }
        }
        if was_connected || !*outage_reported {
            let reason = format!("{}: {reason}", self.url);
            tracing::warn!(%reason, "MQTT connection lost");
            *outage_reported = true;
            return self
                .deliver(Incoming::Disconnected { reason }, shutdown)
                .await;
        }
        true
    }

    /// Queues `online` and the subscriptions on the fresh client, ahead of
    /// anything the feeder will bring, then lets the feeder at it.
    fn after_connect(&self) {
        // The client's queue is new and empty, so both fit; if not, the
        // watchdog sees the subscriptions never acknowledged.
        let online = self
            .client
            .try_publish(&self.availability, QoS::AtLeastOnce, true, "online");
        let subscribed = if self.filters.is_empty() {
            Ok(())
        } else {
            self.client.try_subscribe_many(self.filters.clone())
        };
        if online.is_err() || subscribed.is_err() {
            tracing::warn!(broker = %self.url, "could not queue `online` and the subscriptions");
        }
        self.current.send_replace(Some(self.client.clone()));
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

    /// A clean goodbye: what waits on the safety lane (the relocks the
    /// runtime sends at shutdown), then `offline` (the will does not fire on
    /// DISCONNECT), then DISCONNECT, flushed for at most [`SHUTDOWN_FLUSH`].
    async fn close(mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        self.feeder.abort();
        self.current.send_replace(None);
        let was_connected = self.shared.connected.swap(false, Ordering::AcqRel);
        if !was_connected {
            return;
        }
        let flush = async {
            let mut step = Goodbye::Safety;
            loop {
                // Hand rumqttc what fits without waiting (nobody polls the
                // event loop while this waits), then let it write.
                step = self.goodbye(step);
                match self.eventloop.poll().await {
                    Ok(Event::Outgoing(Sent::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        if tokio::time::timeout(SHUTDOWN_FLUSH, flush).await.is_err() {
            tracing::warn!(
                broker = %self.url,
                "MQTT disconnect not flushed in time; the broker will publish `offline` from the last will"
            );
        }
        tracing::info!(broker = %self.url, "disconnected from MQTT broker");
    }
}

/// How far a clean goodbye has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goodbye {
    Safety,
    Offline,
    Disconnect,
    Done,
}

impl LinkTask {
    /// Queues as much of the goodbye as rumqttc's queue takes now: the
    /// safety lane, `offline`, DISCONNECT. Returns how far it got.
    fn goodbye(&mut self, mut step: Goodbye) -> Goodbye {
        loop {
            let queued = match step {
                Goodbye::Safety => match self.outbox.take_safety() {
                    Some(m) => {
                        let tried = self.client.try_publish(
                            m.topic.as_str(),
                            QoS::AtLeastOnce,
                            m.retain,
                            m.payload.clone(),
                        );
                        if tried.is_err() {
                            self.outbox.give_back(m);
                            return step;
                        }
                        continue;
                    }
                    None => {
                        step = Goodbye::Offline;
                        continue;
                    }
                },
                Goodbye::Offline => {
                    self.client
                        .try_publish(&self.availability, QoS::AtLeastOnce, true, "offline")
                }
                Goodbye::Disconnect => self.client.try_disconnect(),
                Goodbye::Done => return step,
            };
            if queued.is_err() {
                return step;
            }
            step = match step {
                Goodbye::Offline => Goodbye::Disconnect,
                _ => Goodbye::Done,
            };
        }
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
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
