//! The configuration file's shape: one struct per YAML mapping.
//!
//! Everything here is plain data deserialized by serde. Cross-field rules
//! (a door naming an unknown camera, a window whose start equals its end…)
//! live in `validate.rs`, which reports them with the line and column they
//! came from.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use jiff::tz::TimeZone;
use serde::Deserialize;

use super::duration;

/// The whole home, as the owner described it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which bridge this is, when one Home Assistant has several (another
    /// building, another gate): `[a-z0-9_]`, up to 32. It goes into every
    /// unique id and device id, and is the default of `mqtt.base_topic` and
    /// `mqtt.client_id` (`doorwarden_<instance>`). Without it, ids and
    /// topics are what they always were.
    #[serde(default)]
    pub instance: Option<String>,
    pub mqtt: Mqtt,
    #[serde(default)]
    pub cameras: BTreeMap<String, Camera>,
    /// Doors, keyed by name, each with the lock that secures it.
    #[serde(default)]
    pub locks: BTreeMap<String, Door>,
    /// Delivery rules per door (same keys as `locks`).
    #[serde(default)]
    pub deliveries: BTreeMap<String, Deliveries>,
    #[serde(default)]
    pub storage: Storage,
    /// Video evidence of each delivery; `None`: nothing is recorded.
    #[serde(default)]
    pub recordings: Option<Recordings>,
    /// The rules of a door without a `deliveries` entry, its zone looked up
    /// while loading (see [`Config::delivery_rules`]).
    #[serde(skip, default = "Deliveries::for_door_without_entry")]
    pub default_deliveries: Deliveries,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mqtt {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_keep_alive", with = "duration")]
    pub keep_alive: Duration,
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    #[serde(default = "default_base_topic")]
    pub base_topic: String,
    /// Where Home Assistant announces itself (`online` after it starts).
    #[serde(default = "default_ha_status_topic")]
    pub ha_status_topic: String,
}

fn default_client_id() -> String {
    "doorwarden".into()
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_discovery_prefix() -> String {
    "homeassistant".into()
}
fn default_base_topic() -> String {
    "doorwarden".into()
}
fn default_ha_status_topic() -> String {
    "homeassistant/status".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    /// Friendly name shown in Home Assistant; defaults to the key.
    #[serde(default)]
    pub name: Option<String>,
    /// `rtsp://host[:port]/path`. Credentials may be given here or below;
    /// either way they never appear in logs or errors.
    pub url: String,
    #[serde(default)]
    pub transport: Transport,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// No complete frame for this long: stalled.
    #[serde(default = "default_stall_after", with = "duration")]
    pub stall_after: Duration,
    /// Identical picture content for this long: frozen.
    #[serde(default = "default_freeze_after", with = "duration")]
    pub freeze_after: Duration,
    /// Continuous good frames needed before the camera counts as live.
    #[serde(default = "default_warmup", with = "duration")]
    pub warmup: Duration,
    /// Largest accepted difference between the RTP clock and the wall clock,
    /// as a fraction (0.25 = the stream may run 25 % fast or slow over the
    /// measuring window).
    #[serde(default = "default_clock_tolerance")]
    pub clock_tolerance: f64,
    /// Whether decoded pictures are judged (`required`: the camera is live
    /// only once its pictures were seen to be a live scene, and never when
    /// they cannot be decoded; `optional`: picture faults count, an
    /// undecodable camera is judged by its stream; `off`), as the file
    /// says. Left out, [`Camera::picture_policy`] decides.
    #[serde(default)]
    pub picture_check: Option<crate::core::picture::PicturePolicy>,
    /// The same camera's low-resolution substream (`rtsp://...`), whose
    /// pictures the picture checks decode instead of the main stream's (a
    /// 320x180 frame costs a small fraction of a 720p one). The camera is
    /// then live only while both streams are. Credentials as for `url`
    /// (in the URL, or the camera's `username` / `password`).
    #[serde(default)]
    pub picture_url: Option<String>,
    /// The policy when `picture_check` is left out. Loading the config sets
    /// it from the doors: `required` for a camera a door names (a stream
    /// alone must not open a door), `optional` for one no door names (it
    /// gates nothing). A camera built without loading a whole config (a
    /// test, a bench) gets the stricter one.
    #[serde(skip, default = "default_picture_check")]
    pub picture_default: crate::core::picture::PicturePolicy,
}

impl Camera {
    /// The picture policy in force: the file's, else the default for this
    /// camera (see `picture_default`).
    pub fn picture_policy(&self) -> crate::core::picture::PicturePolicy {
        self.picture_check.unwrap_or(self.picture_default)
    }
}

fn default_picture_check() -> crate::core::picture::PicturePolicy {
    crate::core::picture::PicturePolicy::Required
}

fn default_stall_after() -> Duration {
    Duration::from_secs(2)
}
// A live encoder never sends the same frame twice (every slice header
// carries a new frame number), so repeated frames can be judged fast: at
// 15 fps, 200 ms flags a replayed frame on its third repeat. The slower
// still-picture rule waits at least 3 s whatever this is (core::liveness).
fn default_freeze_after() -> Duration {
    Duration::from_millis(200)
}
fn default_warmup() -> Duration {
    Duration::from_secs(3)
}
fn default_clock_tolerance() -> f64 {
    0.25
}

/// A door and the lock that secures it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Door {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub zigbee2mqtt: Option<Zigbee2Mqtt>,
    #[serde(default)]
    pub zwave_js: Option<ZwaveJs>,
    /// The lock as a node of a Z-Wave JS server (the WebSocket API Home
    /// Assistant's Z-Wave integration uses), without any MQTT gateway.
    #[serde(default)]
    pub zwave_js_server: Option<ZwaveJsServer>,
    /// The door's contact sensor, if it has one.
    #[serde(default)]
    pub contact: Option<Contact>,
    /// Cameras that must be live for a delivery through this door.
    #[serde(default)]
    pub cameras: Vec<String>,
    /// How long a lock may take to confirm a command before it is retried
    /// once and then reported unresponsive.
    #[serde(default = "default_confirm_timeout", with = "duration")]
    pub confirm_timeout: Duration,
    /// Also require live cameras for the owner's own unlock from Home
    /// Assistant (off by default: the owner's unlock is passed through).
    #[serde(default)]
    pub owner_unlock_requires_cameras: bool,
}

fn default_confirm_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A device exposed by Zigbee2MQTT, addressed by its full state topic
/// (`zigbee2mqtt/<friendly_name>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zigbee2Mqtt {
    pub topic: String,
}

/// A node of Z-Wave JS UI's MQTT gateway (ValueId topics). Give either the
/// node's topic (`zwave/Garage/garage_lock`) or its id (then the topic is
/// `<prefix>/<node>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZwaveJs {
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub node: Option<u32>,
    #[serde(default = "default_zwave_prefix")]
    pub prefix: String,
    /// The gateway's name (`MQTT_NAME`), used for its API topics.
    #[serde(default = "default_zwave_gateway")]
    pub gateway: String,
}

fn default_zwave_prefix() -> String {
    "zwave".into()
}
fn default_zwave_gateway() -> String {
    "zwave-js-ui".into()
}

impl ZwaveJs {
    /// The node's base topic, under which its values are published.
    pub fn node_topic(&self) -> String {
        match (&self.topic, self.node) {
            (Some(topic), _) => topic.trim_end_matches('/').to_string(),
            (None, Some(node)) => format!("{}/{}", self.prefix.trim_end_matches('/'), node),
            // validate.rs rejects a zwave_js block with neither; keep a
            // harmless value rather than panic if it is ever reached.
            (None, None) => self.prefix.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    #[serde(default)]
    pub zigbee2mqtt: Option<Zigbee2Mqtt>,
    #[serde(default)]
    pub zwave_js: Option<ZwaveJs>,
    #[serde(default)]
    pub zwave_js_server: Option<ZwaveJsServer>,
}

/// A node of a Z-Wave JS server (`zwave-server`, the Z-Wave JS add-on, or
/// Z-Wave JS UI's built-in server): its WebSocket URL (`ws://host:3000`)
/// and the node id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZwaveJsServer {
    pub url: String,
    pub node: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnCameraLoss {
    #[default]
    Relock,
    AlertOnly,
}

/// Delivery rules for one door, with its time zone looked up.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "DeliveriesEntry")]
pub struct Deliveries {
    /// IANA time zone of the windows; the system's zone when absent.
    pub time_zone: Option<String>,
    /// The zone `time_zone` names (the system's when absent), looked up as
    /// the entry is read, or why it cannot be found (the loader reports that
    /// with its line and column). Looking it up here, once, is what lets
    /// the core read no file.
    pub zone: Result<TimeZone, String>,
    pub windows: Vec<Window>,
    /// Longest the door may stay unlocked for one entry.
    pub max_unlocked: Duration,
    /// Relock this long after the door has opened and shut again.
    pub relock_after_close: Duration,
    /// Unlocks allowed per window.
    pub entries_per_window: u32,
    pub on_camera_loss: OnCameraLoss,
    /// Keypad user slot that carries the one-time delivery code.
    pub code_slot: Option<u16>,
    /// Length of a window granted now from Home Assistant.
    pub grant_duration: Duration,
}

impl Deliveries {
    /// The rules of a door with no `deliveries` entry: those of an empty
    /// entry. Such a door has no windows, so its zone only formats times,
    /// and UTC is honest when the system's cannot be found.
    pub fn for_door_without_entry() -> Deliveries {
        let mut rules = Deliveries::from(DeliveriesEntry::default());
        rules.zone = Ok(rules.zone.unwrap_or(TimeZone::UTC));
        rules
    }
}

/// A `deliveries` entry as the owner writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesEntry {
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    windows: Vec<Window>,
    #[serde(default = "default_max_unlocked", with = "duration")]
    max_unlocked: Duration,
    #[serde(default = "default_relock_after_close", with = "duration")]
    relock_after_close: Duration,
    #[serde(default = "default_entries")]
    entries_per_window: u32,
    #[serde(default)]
    on_camera_loss: OnCameraLoss,
    #[serde(default)]
    code_slot: Option<u16>,
    #[serde(default = "default_grant", with = "duration")]
    grant_duration: Duration,
}

/// An empty entry (`deliveries: {front: {}}`).
impl Default for DeliveriesEntry {
    fn default() -> Self {
        DeliveriesEntry {
            time_zone: None,
            windows: Vec::new(),
            max_unlocked: default_max_unlocked(),
            relock_after_close: default_relock_after_close(),
            entries_per_window: default_entries(),
            on_camera_loss: OnCameraLoss::default(),
            code_slot: None,
            grant_duration: default_grant(),
        }
    }
}

impl From<DeliveriesEntry> for Deliveries {
    fn from(entry: DeliveriesEntry) -> Deliveries {
        Deliveries {
            zone: super::zone::time_zone(entry.time_zone.as_deref()),
            time_zone: entry.time_zone,
            windows: entry.windows,
            max_unlocked: entry.max_unlocked,
            relock_after_close: entry.relock_after_close,
            entries_per_window: entry.entries_per_window,
            on_camera_loss: entry.on_camera_loss,
            code_slot: entry.code_slot,
            grant_duration: entry.grant_duration,
        }
    }
}

fn default_max_unlocked() -> Duration {
    Duration::from_secs(120)
}
fn default_relock_after_close() -> Duration {
    Duration::from_secs(5)
}
fn default_entries() -> u32 {
    1
}
fn default_grant() -> Duration {
    Duration::from_secs(30 * 60)
}

/// A weekly delivery window in the door's local time. `to` earlier than
/// `from` means the window runs past midnight into the next day.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub days: Vec<Weekday>,
    pub from: LocalTime,
    pub to: LocalTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    #[serde(alias = "monday")]
    Mon,
    #[serde(alias = "tuesday")]
    Tue,
    #[serde(alias = "wednesday")]
    Wed,
    #[serde(alias = "thursday")]
    Thu,
    #[serde(alias = "friday")]
    Fri,
    #[serde(alias = "saturday")]
    Sat,
    #[serde(alias = "sunday")]
    Sun,
}

impl Weekday {
    pub fn to_jiff(self) -> jiff::civil::Weekday {
        use jiff::civil::Weekday as J;
        match self {
            Weekday::Mon => J::Monday,
            Weekday::Tue => J::Tuesday,
            Weekday::Wed => J::Wednesday,
            Weekday::Thu => J::Thursday,
            Weekday::Fri => J::Friday,
            Weekday::Sat => J::Saturday,
            Weekday::Sun => J::Sunday,
        }
    }
}

/// A wall-clock time of day, written `HH:MM` or `HH:MM:SS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalTime(pub jiff::civil::Time);

impl<'de> Deserialize<'de> for LocalTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_local_time(&text)
            .map(LocalTime)
            .map_err(serde::de::Error::custom)
    }
}

fn parse_local_time(text: &str) -> Result<jiff::civil::Time, String> {
    let bad = || format!("`{text}` is not a time of day; write it as HH:MM, e.g. \"09:30\"");
    let mut parts = text.trim().split(':');
    let mut next = |max: i8| -> Result<Option<i8>, String> {
        match parts.next() {
            None => Ok(None),
            Some(p) if p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()) => {
                let n: i8 = p.parse().map_err(|_| bad())?;
                if n > max { Err(bad()) } else { Ok(Some(n)) }
            }
            Some(_) => Err(bad()),
        }
    };
    let hour = next(23)?.ok_or_else(bad)?;
    let minute = next(59)?.ok_or_else(bad)?;
    let second = next(59)?.unwrap_or(0);
    if parts.next().is_some() {
        return Err(bad());
    }
    jiff::civil::Time::new(hour, minute, second, 0).map_err(|_| bad())
}

impl std::fmt::Display for LocalTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.0;
        if t.second() == 0 {
            write!(f, "{:02}:{:02}", t.hour(), t.minute())
        } else {
            write!(f, "{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// Directory for the persisted delivery state and the audit log.
    #[serde(default = "default_storage_dir")]
    pub dir: PathBuf,
    /// Start a new audit log file once the current one reaches this size.
    #[serde(default = "default_audit_rotate_bytes")]
    pub audit_rotate_bytes: u64,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            dir: default_storage_dir(),
            audit_rotate_bytes: default_audit_rotate_bytes(),
        }
    }
}

fn default_storage_dir() -> PathBuf {
    PathBuf::from("/var/lib/doorwarden")
}
fn default_audit_rotate_bytes() -> u64 {
    10 * 1024 * 1024
}

/// Where and how long delivery clips are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recordings {
    /// Directory for the clips and their sidecars (Home Assistant's media
    /// folder, for example `/media/doorwarden`).
    pub path: PathBuf,
    /// Video kept from before the unlock.
    #[serde(default = "default_roll", with = "duration")]
    pub pre_roll: Duration,
    /// Video kept after the relock.
    #[serde(default = "default_roll", with = "duration")]
    pub post_roll: Duration,
    #[serde(default)]
    pub retention: Retention,
}

/// Which clips retention deletes: older than `max_age`, or the oldest while
/// all of them take more than `max_size`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default = "default_max_age", with = "duration")]
    pub max_age: Duration,
    #[serde(
        default = "default_max_size",
        deserialize_with = "super::size::deserialize"
    )]
    pub max_size: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age: default_max_age(),
            max_size: default_max_size(),
        }
    }
}

fn default_roll() -> Duration {
    Duration::from_secs(10)
}
fn default_max_age() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
fn default_max_size() -> u64 {
    2 * 1024 * 1024 * 1024
}

/// A secret string (password, PIN): its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one place that must send it (the MQTT
    /// CONNECT packet, the RTSP Authorization header, the lock's PIN slot).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_parse_and_reject() {
        assert_eq!(
            parse_local_time("09:30").unwrap(),
            jiff::civil::time(9, 30, 0, 0)
        );
        assert_eq!(
            parse_local_time("23:59:59").unwrap(),
            jiff::civil::time(23, 59, 59, 0)
        );
        for bad in ["9:30", "24:00", "12:60", "12", "12:00:00:00", "noon", ""] {
            assert!(parse_local_time(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }

    /// The hand-written `Default` is what serde fills in for an empty
    /// entry; the two must not drift apart.
    #[test]
    fn default_delivery_rules_are_those_of_an_empty_entry() {
        let empty: DeliveriesEntry = serde_yaml::from_str("{}").expect("an empty entry is valid");
        assert_eq!(
            format!("{:?}", DeliveriesEntry::default()),
            format!("{empty:?}")
        );
    }
}
