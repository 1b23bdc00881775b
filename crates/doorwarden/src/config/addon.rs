//! The Home Assistant add-on's start-up hook: turn the add-on's options and
//! the Supervisor's MQTT service into the config file doorwarden reads.
//!
//! The add-on's `run.sh` only moves bytes: it asks the Supervisor for
//! `/services/mqtt`, pipes the answer into `doorwarden addon-config`, then
//! starts `doorwarden run` on the file written here. Every decision (which
//! broker URL, which door key a friendly name becomes, what happens with a
//! full YAML file) is made in this module, so it is tested in Rust. It
//! writes nothing: the command in `main.rs` reads the inputs and writes
//! what [`prepare`] returns (it only reads a `config_file` the options name).
//!
//! # What is written
//!
//! - `--out` (the add-on uses `/data/doorwarden.yaml`): the config. It holds
//!   no password: the MQTT password and camera passwords go to files under
//!   `<data_dir>/secrets/` (mode 0600), referenced by `password_file`.
//! - `storage.dir` is `<data_dir>` (`/data`, the add-on's persistent volume,
//!   included in Home Assistant backups).
//!
//! # `config_file`
//!
//! When the options name a YAML file (relative paths are resolved in the
//! add-on's config folder, `/config` inside the container), that file is the
//! config and the other door/camera options are ignored. Its text is kept
//! as is, so the `line:col` of any error doorwarden reports matches the
//! user's file; only missing top-level sections are appended: `mqtt` from the
//! Supervisor when the file has none, `storage` (pointing at `/data`) when
//! the file has none.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use serde_yaml::{Mapping, Value as Yaml};

use super::Secret;

/// Where the add-on keeps things inside its container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonPaths {
    /// The add-on's private, persistent volume (`/data`).
    pub data_dir: PathBuf,
    /// The user-visible add-on config folder (`addon_config`, `/config`).
    pub config_dir: PathBuf,
}

impl Default for AddonPaths {
    fn default() -> Self {
        AddonPaths {
            data_dir: PathBuf::from("/data"),
            config_dir: PathBuf::from("/config"),
        }
    }
}

/// A secret that must be written to its own file before doorwarden starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    pub path: PathBuf,
    pub value: Secret,
}

/// The config text plus the secret files it refers to.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub yaml: String,
    pub secrets: Vec<SecretFile>,
}

/// Why the add-on could not build a config. Messages never hold a password.
#[derive(Debug, thiserror::Error)]
pub enum AddonError {
    #[error("add-on option {path}: {message}")]
    Option { path: String, message: String },
    #[error(
        "Home Assistant offers no MQTT broker to doorwarden ({detail}); install and start the \
         Mosquitto broker add-on, or give an `mqtt:` section in config_file"
    )]
    NoMqttService { detail: String },
    #[error("the Supervisor's MQTT service answer is unusable: {detail}")]
    BadMqttService { detail: String },
    #[error("config_file {path}: {detail}")]
    ConfigFile { path: PathBuf, detail: String },
    #[error("cannot render the config: {0}")]
    Render(String),
}

fn option_error(path: impl Into<String>, message: impl Into<String>) -> AddonError {
    AddonError::Option {
        path: path.into(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------
// The add-on options, as `/data/options.json` holds them. Every struct denies
// unknown fields so that a key added to `config.yaml`'s schema without being
// handled here is caught by the tests (tests/addon.rs) rather than ignored.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// Read by run.sh (it sets RUST_LOG); accepted here so the schema and
    /// this struct agree.
    #[serde(default, rename = "log_level")]
    _log_level: Option<serde::de::IgnoredAny>,
    /// This bridge's name when several share one Home Assistant.
    #[serde(default)]
    instance: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    config_file: Option<String>,
    #[serde(default)]
    cameras: Vec<CameraOption>,
    #[serde(default)]
    doors: Vec<DoorOption>,
    #[serde(default)]
    delivery_windows: Vec<WindowOption>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CameraOption {
    name: String,
    url: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default, deserialize_with = "lenient_secret")]
    password: Option<Secret>,
    /// The camera's low-resolution substream, for the picture checks.
    #[serde(default)]
    picture_url: Option<String>,
    /// Left out: the config's default (`required` for a camera a door
    /// names, `optional` for the others).
    #[serde(default)]
    picture_check: Option<crate::core::picture::PicturePolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DoorOption {
    name: String,
    #[serde(default)]
    zigbee2mqtt_topic: Option<String>,
    #[serde(default)]
    zwave_node: Option<u32>,
    /// With `zwave_node`: talk to Z-Wave JS's own server at this URL
    /// instead of Z-Wave JS UI's MQTT gateway.
    #[serde(default)]
    zwave_js_server: Option<String>,
    #[serde(default)]
    contact_topic: Option<String>,
    #[serde(default)]
    cameras: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowOption {
    door: String,
    days: Vec<String>,
    from: String,
    to: String,
}

/// A password typed into the add-on UI is a string, but the Supervisor does
/// not coerce types, so a numeric one can arrive as a JSON number. Accept
/// any scalar instead of failing with serde's "invalid type: integer `1234`"
/// message, which would print the password.
fn lenient_secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(match Json::deserialize(d)? {
        Json::Null => None,
        Json::String(s) if s.is_empty() => None,
        Json::String(s) => Some(Secret::new(s)),
        Json::Number(n) => Some(Secret::new(n.to_string())),
        Json::Bool(b) => Some(Secret::new(b.to_string())),
        _ => return Err(serde::de::Error::custom("a password must be text")),
    })
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The config key for an option's `name`; an error at `at("name")` when
/// the name has nothing a key can be made of.
fn named_key(name: &str, at: &dyn Fn(&str) -> String) -> Result<String, AddonError> {
    let key = key_for(name);
    if key.is_empty() {
        return Err(option_error(
            at("name"),
            "needs at least one letter or digit",
        ));
    }
    Ok(key)
}

/// The config-file key for a friendly name: "Front door" -> `front_door`.
///
/// Home Assistant derives entity ids the same way from the device name, so
/// the door "Front door" gets `lock.front_door` and the topic key
/// `front_door`. A name that already is a key is returned unchanged.
pub fn key_for(name: &str) -> String {
    let mut key = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            key.push(c);
        } else if !key.ends_with('_') {
            key.push('_');
        }
    }
    key.trim_matches('_').to_string()
}

// ---------------------------------------------------------------------------
// The Supervisor's `/services/mqtt` answer.

/// The broker the Supervisor hands to an add-on declaring `mqtt:need`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttService {
    pub host: String,
    pub port: u16,
    pub ssl: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

impl MqttService {
    /// Read the Supervisor's answer, `{"result":"ok","data":{...}}`, where
    /// `port` is a string. The bare `data` object (as bashio prints it) is
    /// accepted too.
    ///
    /// # Errors
    ///
    /// [`AddonError::NoMqttService`] when the Supervisor answered with an
    /// error (no broker installed), [`AddonError::BadMqttService`] when the
    /// answer lacks a host or a usable port.
    pub fn from_json(answer: &Json) -> Result<Self, AddonError> {
        let bad = |detail: &str| AddonError::BadMqttService {
            detail: detail.to_string(),
        };
        let Some(object) = answer.as_object() else {
            return Err(bad("not a JSON object"));
        };
        let data = match object.get("result").and_then(Json::as_str) {
            Some("ok") => object.get("data").ok_or_else(|| bad("`data` is missing"))?,
            Some(other) => {
                let message = object
                    .get("message")
                    .and_then(Json::as_str)
                    .filter(|m| !m.is_empty())
                    .map(|m| format!("the Supervisor says: {m}"))
                    .unwrap_or_else(|| format!("the Supervisor answered result `{other}`"));
                return Err(AddonError::NoMqttService { detail: message });
            }
            None => answer,
        };
        let text = |key: &str| -> Option<String> {
            match data.get(key) {
                Some(Json::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Some(Json::Number(n)) => Some(n.to_string()),
                _ => None,
            }
        };
        let host = text("host").ok_or_else(|| bad("`host` is missing"))?;
        let port = match text("port") {
            None => 1883,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(&format!("`port` {p:?} is not a TCP port")))?,
        };
        let ssl = match data.get("ssl") {
            Some(Json::Bool(b)) => *b,
            Some(Json::String(s)) => matches!(s.as_str(), "true" | "True" | "1"),
            _ => false,
        };
        let password = match data.get("password") {
            Some(Json::String(s)) if !s.is_empty() => Some(Secret::new(s.clone())),
            _ => None,
        };
        Ok(MqttService {
            host,
            port,
            ssl,
            username: text("username"),
            password,
        })
    }

    /// `mqtt://host:port`, or `mqtts://` when the Supervisor says the broker
    /// speaks TLS.
    pub fn url(&self) -> String {
        let scheme = if self.ssl { "mqtts" } else { "mqtt" };
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

// ---------------------------------------------------------------------------
// Building the config.

/// Build the config YAML doorwarden reads from the add-on's options and the
/// Supervisor's `/services/mqtt` answer, with the add-on's usual paths
/// (`/data`, `/config`).
///
/// The YAML never contains a password: it refers to `password_file`s under
/// `/data/secrets/`, which [`prepare`] returns and `doorwarden addon-config`
/// writes.
///
/// # Errors
///
/// An option that cannot become a valid door/camera/window (with its path,
/// e.g. `doors[1].zwave_node`), no MQTT broker when one is needed, or a
/// `config_file` that cannot be read or is not a YAML mapping.
pub fn build_config(options: &Json, mqtt_service: &Json) -> Result<String, AddonError> {
    prepare(options, mqtt_service, &AddonPaths::default()).map(|p| p.yaml)
}

/// [`build_config`] with explicit paths, also returning the secret files.
pub fn prepare(
    options: &Json,
    mqtt_service: &Json,
    paths: &AddonPaths,
) -> Result<Prepared, AddonError> {
    let options: Options = serde_path_to_error::deserialize(options).map_err(|e| {
        let path = e.path().to_string();
        option_error(path, e.into_inner().to_string())
    })?;
    let mut secrets = Vec::new();
    match non_empty(&options.config_file) {
        Some(file) => {
            let path = paths.config_dir.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| AddonError::ConfigFile {
                path: path.clone(),
                detail: e.to_string(),
            })?;
            let yaml = extend_user_file(&path, &text, mqtt_service, paths, &mut secrets)?;
            Ok(Prepared { yaml, secrets })
        }
        None => {
            let mqtt = MqttService::from_json(mqtt_service)?;
            let yaml = from_options(&options, &mqtt, paths, &mut secrets)?;
            Ok(Prepared { yaml, secrets })
        }
    }
}

// The file the add-on writes, typed: each struct is one mapping, its fields
// in the order they are written, `None` left out.

#[derive(Serialize)]
struct MqttSection {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_file: Option<String>,
}

#[derive(Serialize)]
struct StorageSection {
    dir: String,
}

#[derive(Serialize)]
struct CameraEntry {
    name: String,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    picture_check: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    picture_url: Option<String>,
}

#[derive(Serialize)]
struct DoorEntry {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    zigbee2mqtt: Option<TopicEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    zwave_js: Option<NodeEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    zwave_js_server: Option<ServerEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contact: Option<ContactEntry>,
    cameras: Vec<String>,
}

#[derive(Serialize)]
struct TopicEntry {
    topic: String,
}

#[derive(Serialize)]
struct NodeEntry {
    node: u32,
}

#[derive(Serialize)]
struct ServerEntry {
    url: String,
    node: u32,
}

#[derive(Serialize)]
struct ContactEntry {
    zigbee2mqtt: TopicEntry,
}

#[derive(Serialize)]
struct DeliveriesEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    time_zone: Option<String>,
    windows: Vec<WindowEntry>,
}

#[derive(Serialize)]
struct WindowEntry {
    days: Vec<String>,
    from: String,
    to: String,
}

#[derive(Serialize)]
struct AddonFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    mqtt: MqttSection,
    cameras: Keyed<CameraEntry>,
    locks: Keyed<DoorEntry>,
    deliveries: Keyed<DeliveriesEntry>,
    storage: StorageSection,
}

/// A mapping written in the order the options listed its entries (the
/// config's own maps are sorted only when read).
struct Keyed<T>(Vec<(String, T)>);

impl<T: Serialize> Serialize for Keyed<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

fn mqtt_section(
    mqtt: &MqttService,
    paths: &AddonPaths,
    secrets: &mut Vec<SecretFile>,
) -> MqttSection {
    let password_file = mqtt.password.as_ref().map(|password| {
        let path = secrets_dir(paths).join("mqtt_password");
        let shown = path.display().to_string();
        secrets.push(SecretFile {
            path,
            value: password.clone(),
        });
        shown
    });
    MqttSection {
        url: mqtt.url(),
        username: mqtt.username.clone(),
        password_file,
    }
}

fn storage_section(paths: &AddonPaths) -> StorageSection {
    StorageSection {
        dir: paths.data_dir.display().to_string(),
    }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn from_options(
    options: &Options,
    mqtt: &MqttService,
    paths: &AddonPaths,
    secrets: &mut Vec<SecretFile>,
) -> Result<String, AddonError> {
    let mut cameras = Vec::new();
    let mut camera_keys = BTreeSet::new();
    for (i, camera) in options.cameras.iter().enumerate() {
        let at = |field: &str| format!("cameras[{i}].{field}");
        let key = named_key(&camera.name, &at)?;
        if !camera_keys.insert(key.clone()) {
            return Err(option_error(
                at("name"),
                format!("a second camera named `{key}`"),
            ));
        }
        let url = camera.url.trim();
        if !(url.starts_with("rtsp://") || url.starts_with("rtsps://")) {
            // The URL may carry credentials; show only its scheme-less shape.
            return Err(option_error(
                at("url"),
                format!("`{}` is not an rtsp:// URL", crate::redact::text(url)),
            ));
        }
        let picture_url = match non_empty(&camera.picture_url) {
            Some(sub) if !(sub.starts_with("rtsp://") || sub.starts_with("rtsps://")) => {
                return Err(option_error(
                    at("picture_url"),
                    format!("`{}` is not an rtsp:// URL", crate::redact::text(sub)),
                ));
            }
            sub => sub.map(str::to_string),
        };
        let password_file = camera.password.as_ref().map(|password| {
            let path = secrets_dir(paths).join(format!("camera_{key}_password"));
            let shown = path.display().to_string();
            secrets.push(SecretFile {
                path,
                value: password.clone(),
            });
            shown
        });
        cameras.push((
            key,
            CameraEntry {
                name: camera.name.trim().into(),
                url: url.into(),
                username: non_empty(&camera.username).map(str::to_string),
                password_file,
                picture_check: camera.picture_check.map(|p| p.to_string()),
                picture_url,
            },
        ));
    }

    let mut locks = Vec::new();
    let mut door_keys = Vec::new();
    for (i, door) in options.doors.iter().enumerate() {
        let at = |field: &str| format!("doors[{i}].{field}");
        let key = named_key(&door.name, &at)?;
        if key == "bridge" || key == "camera" {
            return Err(option_error(
                at("name"),
                format!("`{key}` is reserved; pick another door name"),
            ));
        }
        if door_keys.contains(&key) {
            return Err(option_error(
                at("name"),
                format!("a second door named `{key}`"),
            ));
        }
        let (zigbee2mqtt, zwave_js) = match (non_empty(&door.zigbee2mqtt_topic), door.zwave_node) {
            (Some(topic), None) => (
                Some(TopicEntry {
                    topic: topic.into(),
                }),
                None,
            ),
            (None, Some(node)) => (None, Some(NodeEntry { node })),
            (Some(_), Some(_)) => {
                return Err(option_error(
                    at("zwave_node"),
                    "give either zigbee2mqtt_topic or zwave_node, not both",
                ));
            }
            (None, None) => {
                return Err(option_error(
                    at("zigbee2mqtt_topic"),
                    "the door needs its lock: a zigbee2mqtt_topic (e.g. `zigbee2mqtt/Front door lock`) \
                     or a zwave_node",
                ));
            }
        };
        // The same node, reached through Z-Wave JS's own server.
        let (zwave_js, zwave_js_server) = match (non_empty(&door.zwave_js_server), zwave_js) {
            (None, gateway) => (gateway, None),
            (Some(url), Some(NodeEntry { node })) => (
                None,
                Some(ServerEntry {
                    url: url.into(),
                    node,
                }),
            ),
            (Some(_), None) => {
                return Err(option_error(
                    at("zwave_js_server"),
                    "goes with the lock's zwave_node, not a zigbee2mqtt_topic",
                ));
            }
        };
        let contact = non_empty(&door.contact_topic).map(|topic| ContactEntry {
            zigbee2mqtt: TopicEntry {
                topic: topic.into(),
            },
        });
        let mut door_cameras: Vec<String> = Vec::new();
        for (j, name) in door.cameras.iter().enumerate() {
            let camera = key_for(name);
            if !camera_keys.contains(&camera) {
                return Err(option_error(
                    format!("doors[{i}].cameras[{j}]"),
                    format!("no camera named `{}` in the cameras option", name.trim()),
                ));
            }
            if !door_cameras.contains(&camera) {
                door_cameras.push(camera);
            }
        }
        locks.push((
            key.clone(),
            DoorEntry {
                name: door.name.trim().into(),
                zigbee2mqtt,
                zwave_js,
                zwave_js_server,
                contact,
                cameras: door_cameras,
            },
        ));
        door_keys.push(key);
    }

    // Every door gets a deliveries entry, so a window granted from Home
    // Assistant works even for a door without a weekly schedule.
    let mut windows: Vec<Vec<WindowEntry>> = door_keys.iter().map(|_| Vec::new()).collect();
    for (i, window) in options.delivery_windows.iter().enumerate() {
        let at = |field: &str| format!("delivery_windows[{i}].{field}");
        let door = key_for(&window.door);
        let Some(index) = door_keys.iter().position(|k| *k == door) else {
            return Err(option_error(
                at("door"),
                format!("no door named `{}` in the doors option", window.door.trim()),
            ));
        };
        let mut days = Vec::new();
        for (j, day) in window.days.iter().enumerate() {
            let day = day.trim().to_lowercase();
            let short: String = day.chars().take(3).collect();
            if !DAYS.contains(&short.as_str()) {
                return Err(option_error(
                    format!("delivery_windows[{i}].days[{j}]"),
                    format!("`{day}` is not a day; use mon, tue, wed, thu, fri, sat or sun"),
                ));
            }
            days.push(short);
        }
        if days.is_empty() {
            return Err(option_error(at("days"), "list at least one day"));
        }
        windows[index].push(WindowEntry {
            days,
            from: window.from.trim().into(),
            to: window.to.trim().into(),
        });
    }
    let deliveries = door_keys
        .iter()
        .zip(windows)
        .map(|(key, windows)| {
            let rules = DeliveriesEntry {
                time_zone: non_empty(&options.time_zone).map(str::to_string),
                windows,
            };
            (key.clone(), rules)
        })
        .collect();

    let file = AddonFile {
        instance: non_empty(&options.instance).map(str::to_string),
        mqtt: mqtt_section(mqtt, paths, secrets),
        cameras: Keyed(cameras),
        locks: Keyed(locks),
        deliveries: Keyed(deliveries),
        storage: storage_section(paths),
    };
    let body = to_yaml(&file)?;
    Ok(format!(
        "# Written by the doorwarden add-on from its options at every start;\n\
         # edits here are lost. Use the config_file option for a file of your own.\n{body}"
    ))
}

fn to_yaml(value: &impl Serialize) -> Result<String, AddonError> {
    // Serializing plain mappings, sequences and strings cannot fail; map the
    // error anyway rather than panic.
    serde_yaml::to_string(value).map_err(|e| AddonError::Render(e.to_string()))
}

fn to_value(value: &impl Serialize) -> Result<Yaml, AddonError> {
    serde_yaml::to_value(value).map_err(|e| AddonError::Render(e.to_string()))
}

/// The user's own file, with `mqtt` and `storage` appended when missing.
fn extend_user_file(
    path: &Path,
    text: &str,
    mqtt_service: &Json,
    paths: &AddonPaths,
    secrets: &mut Vec<SecretFile>,
) -> Result<String, AddonError> {
    let file_error = |detail: String| AddonError::ConfigFile {
        path: path.to_path_buf(),
        detail,
    };
    let parsed: Yaml =
        serde_yaml::from_str(text).map_err(|e| file_error(format!("not valid YAML: {e}")))?;
    let Yaml::Mapping(root) = &parsed else {
        return Err(file_error(
            "must be a YAML mapping with mqtt, cameras, locks, … at the top".into(),
        ));
    };
    let mut extra = Mapping::new();
    if !root.contains_key("mqtt") {
        let mqtt = MqttService::from_json(mqtt_service)?;
        extra.insert(
            "mqtt".into(),
            to_value(&mqtt_section(&mqtt, paths, secrets))?,
        );
    }
    if !root.contains_key("storage") {
        extra.insert("storage".into(), to_value(&storage_section(paths))?);
    }
    if extra.is_empty() {
        return Ok(text.to_string());
    }
    let addition = to_yaml(&Yaml::Mapping(extra.clone()))?;
    // Appending keeps every line of the user's file where it was, so the
    // `line:col` in doorwarden's errors points into their file. That only
    // works for a block mapping; a flow mapping (`{...}`) is re-rendered.
    let mut appended = text.to_string();
    if !appended.is_empty() && !appended.ends_with('\n') {
        appended.push('\n');
    }
    appended.push_str("# Added by the doorwarden add-on:\n");
    appended.push_str(&addition);
    match serde_yaml::from_str::<Yaml>(&appended) {
        Ok(Yaml::Mapping(m)) if extra.keys().all(|k| m.contains_key(k)) => Ok(appended),
        _ => {
            let mut merged = root.clone();
            for (k, v) in extra {
                merged.insert(k, v);
            }
            to_yaml(&Yaml::Mapping(merged))
        }
    }
}

/// The Supervisor's `/services/mqtt` answer as `doorwarden addon-config`
/// receives it. An empty answer is what run.sh passes on when curl could
/// not reach the Supervisor at all: say so instead of "EOF while parsing".
///
/// # Errors
///
/// Text that is not JSON (the error never quotes it).
pub fn parse_service(text: &str) -> Result<Json, AddonError> {
    if text.trim().is_empty() {
        return Ok(Json::Object(
            [
                ("result".to_string(), Json::from("error")),
                (
                    "message".to_string(),
                    Json::from("no answer from the Supervisor"),
                ),
            ]
            .into_iter()
            .collect(),
        ));
    }
    serde_json::from_str(text).map_err(|e| AddonError::BadMqttService {
        detail: format!("not JSON ({e})"),
    })
}

/// The folder of the password files [`prepare`] returns.
pub fn secrets_dir(paths: &AddonPaths) -> PathBuf {
    paths.data_dir.join("secrets")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn friendly_names_become_the_keys_home_assistant_also_derives() {
        for (name, key) in [
            ("Front door", "front_door"),
            ("front_door", "front_door"),
            ("  Garage -- side door ", "garage_side_door"),
            ("Porch Cam 2", "porch_cam_2"),
            ("!!!", ""),
        ] {
            assert_eq!(key_for(name), key, "{name:?}");
        }
    }

    #[test]
    fn ipv6_broker_hosts_are_bracketed() {
        let svc = MqttService {
            host: "fd00::1".into(),
            port: 1883,
            ssl: false,
            username: None,
            password: None,
        };
        assert_eq!(svc.url(), "mqtt://[fd00::1]:1883");
    }

    #[test]
    fn a_numeric_password_is_accepted_and_never_printed() {
        let options = serde_json::json!({
            "cameras": [{"name": "porch", "url": "rtsp://porch-camera.local/s", "password": 918273}],
            "doors": [{"name": "front", "zwave_node": 5, "cameras": ["porch"], "bogus": 1}],
        });
        let err = prepare(&options, &serde_json::json!({}), &AddonPaths::default()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("doors[0]") && text.contains("bogus"),
            "{text}"
        );
        assert!(!text.contains("918273"), "{text}");
    }
}
