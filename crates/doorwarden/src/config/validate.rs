//! Checking a config file and reporting every problem with its position.
//!
//! Three passes, each collecting all it finds before the next runs:
//! 1. unknown keys, against the table in [`schema`] (with "did you mean"),
//! 2. types and required fields, one section item at a time, so that one bad
//!    camera does not hide a bad door,
//! 3. the rules that span fields: references between sections, time zones
//!    (looked up as each `deliveries` entry is read), windows, lower bounds
//!    on timers, URL shapes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::model::*;
use super::positions::{Pos, Positions, Seg, show_path};
use super::{ConfigError, ConfigErrors};
use crate::redact;

/// Smallest `stall_after` accepted: below it, ordinary network jitter on a
/// healthy camera would read as a stall.
pub const MIN_STALL_AFTER: Duration = Duration::from_millis(200);

/// Door names that would collide with doorwarden's own topics.
const RESERVED_DOOR_NAMES: [&str; 2] = ["bridge", "camera"];

/// Collects problems, each tied to a path in the document.
struct Report<'a> {
    file: &'a str,
    positions: &'a Positions,
    errors: Vec<ConfigError>,
}

impl Report<'_> {
    fn at(&mut self, pos: Pos, message: String) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line: pos.line,
            col: pos.col,
            // Messages may quote values from the file; a URL among them may
            // carry credentials.
            message: redact::text(&message),
        });
    }
    fn key(&mut self, path: &[Seg], message: String) {
        let pos = self.positions.key(path);
        self.at(pos, message);
    }
    fn value(&mut self, path: &[Seg], message: String) {
        let pos = self.positions.value(path);
        self.at(pos, message);
    }
}

fn p(parts: &[&str]) -> Vec<Seg> {
    parts.iter().map(|s| Seg::Key((*s).to_string())).collect()
}

fn with(base: &[Seg], more: &[&str]) -> Vec<Seg> {
    let mut v = base.to_vec();
    v.extend(more.iter().map(|s| Seg::Key((*s).to_string())));
    v
}

/// Check `text` (the contents of `file`) and build the config, or report
/// every problem found.
pub fn check(text: &str, file: &str) -> Result<Config, ConfigErrors> {
    let mut root: Value = match serde_yaml::from_str(text) {
        Ok(Value::Null) => Value::Mapping(Default::default()),
        Ok(v) => v,
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            return Err(ConfigErrors(vec![ConfigError {
                file: file.to_string(),
                line,
                col,
                message: format!(
                    "not valid YAML: {}",
                    redact::text(&strip_location(&e.to_string()))
                ),
            }]));
        }
    };
    let positions = Positions::index(text);
    let mut report = Report {
        file,
        positions: &positions,
        errors: Vec::new(),
    };

    // Pass 1: unknown keys (removed so the typed pass can still run).
    schema::prune_unknown(&schema::root(), &mut root, &mut Vec::new(), &mut report);

    // Pass 2: types, one item at a time.
    let Value::Mapping(top) = &root else {
        report.at(
            Pos::START,
            "the file must be a mapping with keys like `mqtt:`, `cameras:`, `locks:`".into(),
        );
        return Err(ConfigErrors(report.errors));
    };
    let get = |k: &str| top.get(Value::String(k.into())).cloned();
    let mqtt = match get("mqtt") {
        Some(v) => typed::<Mqtt>(v, &p(&["mqtt"]), &mut report),
        None => {
            report.at(
                Pos::START,
                "missing `mqtt:` section (at least `url: mqtt://host:1883`)".into(),
            );
            None
        }
    };
    let mut cameras = typed_map::<Camera>(get("cameras"), "cameras", &mut report);
    let locks = typed_map::<Door>(get("locks"), "locks", &mut report);
    resolve_picture_defaults(&mut cameras, &locks);
    let deliveries = typed_map::<Deliveries>(get("deliveries"), "deliveries", &mut report);
    let recordings = match get("recordings") {
        Some(Value::Null) | None => None,
        Some(v) => typed::<Recordings>(v, &p(&["recordings"]), &mut report),
    };
    let storage = match get("storage") {
        Some(v) => typed::<Storage>(v, &p(&["storage"]), &mut report),
        None => Some(Storage::default()),
    };
    let instance = get("instance").and_then(|v| {
        typed::<String>(v, &p(&["instance"]), &mut report)
            .filter(|name| check_instance(name, &mut report))
    });
    // An instance names the base topic and client id unless the file does:
    // two bridges on one broker must not share either.
    let mqtt_has = |key: &str| {
        top.get(Value::String("mqtt".into()))
            .and_then(|m| m.get(Value::String(key.into())))
            .is_some()
    };
    let mqtt = mqtt.map(|mut m| {
        if let Some(name) = &instance {
            if !mqtt_has("base_topic") {
                m.base_topic = format!("doorwarden_{name}");
            }
            if !mqtt_has("client_id") {
                m.client_id = format!("doorwarden_{name}");
            }
        }
        m
    });

    // Pass 3: rules across fields, on whatever parsed.
    if let Some(m) = &mqtt {
        check_mqtt(m, &mut report);
    }
    for (name, cam) in &cameras {
        check_camera(name, cam, &mut report);
    }
    for (name, door) in &locks {
        check_door(name, door, &cameras, &deliveries, &mut report);
    }
    for (name, d) in &deliveries {
        check_deliveries(name, d, &locks, &mut report);
    }

    match (mqtt, storage) {
        (Some(mqtt), Some(storage)) if report.errors.is_empty() => Ok(Config {
            instance,
            mqtt,
            cameras,
            locks,
            deliveries,
            storage,
            recordings,
            default_deliveries: Deliveries::for_door_without_entry(),
        }),
        _ => {
            report.errors.sort_by_key(|e| (e.line, e.col));
            Err(ConfigErrors(report.errors))
        }
    }
}

/// A camera a door names gates that door, so by default it must show a
/// picture that was checked (a recording or an undecodable stream must not
/// open the door); a camera no door names gates nothing, so its picture is
/// checked (its snapshot, its faults) without making it unlive where the
/// picture cannot be decoded. `picture_check` in the file wins either way.
fn resolve_picture_defaults(
    cameras: &mut BTreeMap<String, Camera>,
    locks: &BTreeMap<String, Door>,
) {
    for (key, cam) in cameras.iter_mut() {
        let named = locks.values().any(|door| door.cameras.contains(key));
        cam.picture_default = if named {
            crate::core::picture::PicturePolicy::Required
        } else {
            crate::core::picture::PicturePolicy::Optional
        };
    }
}

/// serde_yaml appends " at line L column C" to its messages; we print the
/// position in front instead.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn typed<T: DeserializeOwned>(value: Value, base: &[Seg], report: &mut Report) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(t) => Some(t),
        Err(e) => {
            let mut path = base.to_vec();
            for seg in e.path().iter() {
                match seg {
                    serde_path_to_error::Segment::Map { key } => path.push(Seg::Key(key.clone())),
                    serde_path_to_error::Segment::Seq { index } => path.push(Seg::Index(*index)),
                    _ => {}
                }
            }
            let message = strip_location(&e.inner().to_string());
            let shown = show_path(&path);
            if message.starts_with("missing field") {
                report.key(&path, format!("{shown}: {message}"));
            } else {
                report.value(&path, format!("{shown}: {message}"));
            }
            None
        }
    }
}

fn typed_map<T: DeserializeOwned>(
    value: Option<Value>,
    section: &str,
    report: &mut Report,
) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    let Some(value) = value else { return out };
    let base = p(&[section]);
    match value {
        Value::Null => {}
        Value::Mapping(map) => {
            for (k, v) in map {
                let Some(name) = k.as_str().map(str::to_string) else {
                    report.value(&base, format!("{section}: names must be text"));
                    continue;
                };
                let item = with(&base, &[&name]);
                if let Some(t) = typed::<T>(v, &item, report) {
                    out.insert(name, t);
                }
            }
        }
        _ => report.value(
            &base,
            format!("{section}: expected a mapping of name -> settings"),
        ),
    }
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && !topic.contains(['+', '#', '\0'])
        && !topic.starts_with('/')
        && !topic.ends_with('/')
}

fn check_mqtt(m: &Mqtt, r: &mut Report) {
    match url::Url::parse(&m.url) {
        Ok(u) => {
            if !matches!(u.scheme(), "mqtt" | "mqtts") {
                r.value(
                    &p(&["mqtt", "url"]),
                    format!(
                        "mqtt.url must start with mqtt:// or mqtts://, not {}://",
                        u.scheme()
                    ),
                );
            } else if u.host_str().is_none_or(str::is_empty) {
                r.value(&p(&["mqtt", "url"]), "mqtt.url has no host name".into());
            } else if u.scheme() == "mqtt" && m.ca_file.is_some() {
                r.key(
                    &p(&["mqtt", "ca_file"]),
                    "mqtt.ca_file is only used with an mqtts:// url".into(),
                );
            }
            if !u.username().is_empty() || u.password().is_some() {
                r.value(
                    &p(&["mqtt", "url"]),
                    "mqtt.url must not contain credentials; use mqtt.username and mqtt.password_file".into(),
                );
            }
        }
        Err(e) => r.value(
            &p(&["mqtt", "url"]),
            format!("mqtt.url is not a URL ({e}); write it as mqtt://host:1883"),
        ),
    }
    if m.password.is_some() && m.password_file.is_some() {
        r.key(
            &p(&["mqtt", "password_file"]),
            "give mqtt.password or mqtt.password_file, not both".into(),
        );
    }
    if (m.password.is_some() || m.password_file.is_some()) && m.username.is_none() {
        r.key(&p(&["mqtt"]), "mqtt: a password needs a username".into());
    }
    for (key, topic) in [
        ("base_topic", &m.base_topic),
        ("discovery_prefix", &m.discovery_prefix),
        ("ha_status_topic", &m.ha_status_topic),
    ] {
        if !valid_topic(topic) {
            r.value(
                &p(&["mqtt", key]),
                format!("mqtt.{key} `{topic}` is not a usable topic (no + or #, no leading or trailing /)"),
            );
        }
    }
    if m.client_id.trim().is_empty() {
        r.value(
            &p(&["mqtt", "client_id"]),
            "mqtt.client_id must not be empty".into(),
        );
    }
    if m.keep_alive < Duration::from_secs(5) {
        r.value(
            &p(&["mqtt", "keep_alive"]),
            "mqtt.keep_alive must be at least 5s".into(),
        );
    }
}

/// Longest `instance` name: it is repeated in every unique id and topic.
const MAX_INSTANCE_LEN: usize = 32;

/// An instance name goes into ids and topics as one word.
fn check_instance(name: &str, r: &mut Report) -> bool {
    let plain = !name.is_empty()
        && name.len() <= MAX_INSTANCE_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain {
        r.value(
            &p(&["instance"]),
            format!(
                "instance `{name}` must be 1 to {MAX_INSTANCE_LEN} of a-z, 0-9 and _ (it goes into \
                 Home Assistant's ids and the MQTT topics)"
            ),
        );
    }
    plain
}

fn check_camera(name: &str, cam: &Camera, r: &mut Report) {
    let base = p(&["cameras", name]);
    if !valid_name(name) {
        r.key(
            &base,
            format!("camera name `{name}` may only hold a-z, 0-9 and _"),
        );
    }
    match url::Url::parse(&cam.url) {
        Ok(u) => {
            if u.scheme() != "rtsp" {
                r.value(
                    &with(&base, &["url"]),
                    format!(
                        "cameras.{name}.url must start with rtsp://, not {}://",
                        u.scheme()
                    ),
                );
            } else if u.host_str().is_none_or(str::is_empty) {
                r.value(
                    &with(&base, &["url"]),
                    format!("cameras.{name}.url has no host name"),
                );
            }
            let url_has_creds = !u.username().is_empty() || u.password().is_some();
            if url_has_creds
                && (cam.username.is_some() || cam.password.is_some() || cam.password_file.is_some())
            {
                r.value(
                    &with(&base, &["url"]),
                    format!("cameras.{name}: credentials are given both in the url and as username/password; keep one"),
                );
            }
        }
        Err(e) => r.value(
            &with(&base, &["url"]),
            format!("cameras.{name}.url is not a URL ({e}); write it as rtsp://host:554/path"),
        ),
    }
    if let Some(sub) = &cam.picture_url {
        check_picture_url(name, cam, sub, &base, r);
    }
    if cam.password.is_some() && cam.password_file.is_some() {
        r.key(
            &with(&base, &["password_file"]),
            format!("cameras.{name}: give password or password_file, not both"),
        );
    }
    if cam.stall_after < MIN_STALL_AFTER {
        r.value(
            &with(&base, &["stall_after"]),
            format!(
                "cameras.{name}.stall_after is {}; it must be at least 200ms (shorter reads network jitter as a stall)",
                super::duration::show(cam.stall_after)
            ),
        );
    }
    if cam.freeze_after < Duration::from_millis(200) {
        r.value(
            &with(&base, &["freeze_after"]),
            format!("cameras.{name}.freeze_after must be at least 200ms"),
        );
    }
    if cam.warmup > Duration::from_secs(300) {
        r.value(
            &with(&base, &["warmup"]),
            format!("cameras.{name}.warmup must be at most 5m"),
        );
    }
    if !(cam.clock_tolerance > 0.0 && cam.clock_tolerance < 1.0) {
        r.value(
            &with(&base, &["clock_tolerance"]),
            format!("cameras.{name}.clock_tolerance must be between 0 and 1 (0.25 = 25 %)"),
        );
    }
}

/// `picture_url`: an rtsp:// URL with a host, and pictures to check.
fn check_picture_url(name: &str, cam: &Camera, sub: &str, base: &[Seg], r: &mut Report) {
    let at = with(base, &["picture_url"]);
    match url::Url::parse(sub) {
        Ok(u) if u.scheme() != "rtsp" => r.value(
            &at,
            format!(
                "cameras.{name}.picture_url must start with rtsp://, not {}://",
                u.scheme()
            ),
        ),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => r.value(
            &at,
            format!("cameras.{name}.picture_url has no host name"),
        ),
        Ok(_) => {}
        // The parser's message never quotes the URL, so no secret leaks.
        Err(e) => r.value(
            &at,
            format!(
                "cameras.{name}.picture_url is not a URL ({e}); write it as rtsp://host:554/substream"
            ),
        ),
    }
    // Only an explicit `off` can be off: neither default is.
    if cam.picture_check == Some(crate::core::picture::PicturePolicy::Off) {
        r.key(
            &at,
            format!(
                "cameras.{name}.picture_url is set but picture_check is off: the substream would \
                 never be looked at (set picture_check: required or optional, or remove picture_url)"
            ),
        );
    }
}

fn check_door(
    name: &str,
    door: &Door,
    cameras: &BTreeMap<String, Camera>,
    deliveries: &BTreeMap<String, Deliveries>,
    r: &mut Report,
) {
    let base = p(&["locks", name]);
    if !valid_name(name) {
        r.key(
            &base,
            format!("door name `{name}` may only hold a-z, 0-9 and _"),
        );
    } else if RESERVED_DOOR_NAMES.contains(&name) {
        r.key(
            &base,
            format!("door name `{name}` is reserved for doorwarden's own topics; pick another"),
        );
    }
    let backends = [
        door.zigbee2mqtt.is_some(),
        door.zwave_js.is_some(),
        door.zwave_js_server.is_some(),
    ];
    match backends.iter().filter(|b| **b).count() {
        0 => r.key(&base, format!("locks.{name}: say how to reach the lock: `zigbee2mqtt: {{topic: ...}}`, `zwave_js: {{node: ...}}` or `zwave_js_server: {{url: ..., node: ...}}`")),
        1 => {}
        _ => r.key(&with(&base, &[second_backend(&backends)]), format!("locks.{name}: a lock has one backend; give one of zigbee2mqtt, zwave_js or zwave_js_server")),
    }
    if let Some(z) = &door.zigbee2mqtt {
        check_z2m(z, &with(&base, &["zigbee2mqtt"]), r);
    }
    if let Some(z) = &door.zwave_js {
        check_zwave(z, &with(&base, &["zwave_js"]), r);
    }
    if let Some(z) = &door.zwave_js_server {
        check_zwave_server(z, &with(&base, &["zwave_js_server"]), r);
    }
    if let Some(c) = &door.contact {
        let cbase = with(&base, &["contact"]);
        let backends = [
            c.zigbee2mqtt.is_some(),
            c.zwave_js.is_some(),
            c.zwave_js_server.is_some(),
        ];
        match backends.iter().filter(|b| **b).count() {
            0 => r.key(&cbase, format!("locks.{name}.contact: give `zigbee2mqtt: {{topic: ...}}`, `zwave_js: {{...}}` or `zwave_js_server: {{url: ..., node: ...}}`")),
            1 => {}
            _ => r.key(&with(&cbase, &[second_backend(&backends)]), format!("locks.{name}.contact: give one of zigbee2mqtt, zwave_js or zwave_js_server")),
        }
        if let Some(z) = &c.zigbee2mqtt {
            check_z2m(z, &with(&cbase, &["zigbee2mqtt"]), r);
        }
        if let Some(z) = &c.zwave_js {
            check_zwave(z, &with(&cbase, &["zwave_js"]), r);
        }
        if let Some(z) = &c.zwave_js_server {
            check_zwave_server(z, &with(&cbase, &["zwave_js_server"]), r);
        }
    }
    for (i, cam) in door.cameras.iter().enumerate() {
        if !cameras.contains_key(cam) {
            let mut at = with(&base, &["cameras"]);
            at.push(Seg::Index(i));
            let hint = suggest(cam, cameras.keys().map(String::as_str))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            r.value(
                &at,
                format!("locks.{name} names camera `{cam}`, which is not under `cameras:`{hint}"),
            );
        }
    }
    if door.cameras.is_empty() && deliveries.contains_key(name) {
        r.key(
            &with(&base, &["cameras"]),
            format!("locks.{name} has delivery rules but no cameras; deliveries need at least one camera to watch the door"),
        );
    }
    if door.confirm_timeout < Duration::from_secs(1) {
        r.value(
            &with(&base, &["confirm_timeout"]),
            format!("locks.{name}.confirm_timeout must be at least 1s"),
        );
    }
}

fn check_z2m(z: &Zigbee2Mqtt, at: &[Seg], r: &mut Report) {
    if !valid_topic(&z.topic) {
        r.value(
            &with(at, &["topic"]),
            format!(
                "{}.topic `{}` is not a usable topic",
                show_path(at),
                z.topic
            ),
        );
    }
}

/// The key of the second backend given, where a "one backend" error points.
fn second_backend(given: &[bool; 3]) -> &'static str {
    const NAMES: [&str; 3] = ["zigbee2mqtt", "zwave_js", "zwave_js_server"];
    given
        .iter()
        .zip(NAMES)
        .filter(|(g, _)| **g)
        .nth(1)
        .map_or(NAMES[2], |(_, n)| n)
}

/// Z-Wave node ids: 1-232 on a classic network, 256-4000 on Long Range.
fn valid_node_id(node: u32) -> bool {
    (1..=232).contains(&node) || (256..=4000).contains(&node)
}

fn check_zwave_server(z: &ZwaveJsServer, at: &[Seg], r: &mut Report) {
    match url::Url::parse(&z.url) {
        Ok(u) if u.scheme() == "ws" && u.host_str().is_some() => {}
        Ok(u) if u.scheme() == "wss" => r.value(
            &with(at, &["url"]),
            format!(
                "{}.url: wss:// is not supported; the Z-Wave JS server speaks plain ws:// (e.g. `ws://homeassistant.local:3000`)",
                show_path(at)
            ),
        ),
        _ => r.value(
            &with(at, &["url"]),
            format!(
                "{}.url must be the server's WebSocket address, e.g. `ws://homeassistant.local:3000`",
                show_path(at)
            ),
        ),
    }
    if !valid_node_id(z.node) {
        r.value(
            &with(at, &["node"]),
            format!(
                "{}.node {} is not a Z-Wave node id (1-232, or 256-4000 for Long Range)",
                show_path(at),
                z.node
            ),
        );
    }
}

fn check_zwave(z: &ZwaveJs, at: &[Seg], r: &mut Report) {
    match (&z.topic, z.node) {
        (None, None) => r.key(
            at,
            format!(
                "{}: give the node's `topic` or its `node` id",
                show_path(at)
            ),
        ),
        (Some(_), Some(_)) => r.key(
            &with(at, &["node"]),
            format!("{}: give `topic` or `node`, not both", show_path(at)),
        ),
        (Some(t), None) if !valid_topic(t) => r.value(
            &with(at, &["topic"]),
            format!("{}.topic `{t}` is not a usable topic", show_path(at)),
        ),
        _ => {}
    }
}

fn check_deliveries(name: &str, d: &Deliveries, locks: &BTreeMap<String, Door>, r: &mut Report) {
    let base = p(&["deliveries", name]);
    if !locks.contains_key(name) {
        let hint = suggest(name, locks.keys().map(String::as_str))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        r.key(
            &base,
            format!("deliveries.{name}: there is no door `{name}` under `locks:`{hint}"),
        );
    }
    if let Err(e) = &d.zone {
        r.value(
            &with(&base, &["time_zone"]),
            format!("deliveries.{name}.time_zone: {e}"),
        );
    }
    for (i, w) in d.windows.iter().enumerate() {
        let mut at = with(&base, &["windows"]);
        at.push(Seg::Index(i));
        if w.days.is_empty() {
            r.key(
                &with(&at, &["days"]),
                format!("{}: a window needs at least one day", show_path(&at)),
            );
        }
        if w.from == w.to {
            r.value(
                &with(&at, &["to"]),
                format!(
                    "{}: from and to are both {}; a window needs a start and a different end",
                    show_path(&at),
                    w.from
                ),
            );
        }
    }
    if d.max_unlocked < Duration::from_secs(5) {
        r.value(
            &with(&base, &["max_unlocked"]),
            format!("deliveries.{name}.max_unlocked must be at least 5s"),
        );
    }
    if d.relock_after_close > d.max_unlocked {
        r.value(
            &with(&base, &["relock_after_close"]),
            format!("deliveries.{name}.relock_after_close must not be longer than max_unlocked"),
        );
    }
    if d.entries_per_window == 0 {
        r.value(
            &with(&base, &["entries_per_window"]),
            format!("deliveries.{name}.entries_per_window must be at least 1"),
        );
    }
    if d.grant_duration < Duration::from_secs(60)
        || d.grant_duration > Duration::from_secs(24 * 3600)
    {
        r.value(
            &with(&base, &["grant_duration"]),
            format!("deliveries.{name}.grant_duration must be between 1m and 24h"),
        );
    }
}

/// The closest of `candidates` to `word`, if close enough to be a typo.
pub fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edits (insert, delete, substitute, swap two neighbours) between two
/// words: a swapped pair of letters is the commonest typo, so it costs one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The keys each mapping may hold. Kept beside the model; the example config
/// uses every key, and a test loads it, so a key added to the model but not
/// here is caught at once.
mod schema {
    use super::*;

    pub enum Shape {
        Struct(Vec<(&'static str, Shape)>),
        MapOf(Box<Shape>),
        SeqOf(Box<Shape>),
        Leaf,
    }
    use Shape::*;

    fn leaves(keys: &[&'static str]) -> Vec<(&'static str, Shape)> {
        keys.iter().map(|k| (*k, Leaf)).collect()
    }

    fn z2m() -> Shape {
        Struct(leaves(&["topic"]))
    }
    fn zwave() -> Shape {
        Struct(leaves(&["topic", "node", "prefix", "gateway"]))
    }
    fn zwave_server() -> Shape {
        Struct(leaves(&["url", "node"]))
    }

    pub fn root() -> Shape {
        Struct(vec![
            ("instance", Leaf),
            (
                "mqtt",
                Struct(leaves(&[
                    "url",
                    "client_id",
                    "username",
                    "password",
                    "password_file",
                    "ca_file",
                    "keep_alive",
                    "discovery_prefix",
                    "base_topic",
                    "ha_status_topic",
                ])),
            ),
            (
                "cameras",
                MapOf(Box::new(Struct(leaves(&[
                    "name",
                    "url",
                    "transport",
                    "username",
                    "password",
                    "password_file",
                    "stall_after",
                    "freeze_after",
                    "warmup",
                    "clock_tolerance",
                    "picture_check",
                    "picture_url",
                ])))),
            ),
            (
                "locks",
                MapOf(Box::new(Struct(vec![
                    ("name", Leaf),
                    ("zigbee2mqtt", z2m()),
                    ("zwave_js", zwave()),
                    ("zwave_js_server", zwave_server()),
                    (
                        "contact",
                        Struct(vec![
                            ("zigbee2mqtt", z2m()),
                            ("zwave_js", zwave()),
                            ("zwave_js_server", zwave_server()),
                        ]),
                    ),
                    ("cameras", Leaf),
                    ("confirm_timeout", Leaf),
                    ("owner_unlock_requires_cameras", Leaf),
                ]))),
            ),
            (
                "deliveries",
                MapOf(Box::new(Struct(vec![
                    ("time_zone", Leaf),
                    (
                        "windows",
                        SeqOf(Box::new(Struct(leaves(&["days", "from", "to"])))),
                    ),
                    ("max_unlocked", Leaf),
                    ("relock_after_close", Leaf),
                    ("entries_per_window", Leaf),
                    ("on_camera_loss", Leaf),
                    ("code_slot", Leaf),
                    ("grant_duration", Leaf),
                ]))),
            ),
            ("storage", Struct(leaves(&["dir", "audit_rotate_bytes"]))),
            (
                "recordings",
                Struct(vec![
                    ("path", Leaf),
                    ("pre_roll", Leaf),
                    ("post_roll", Leaf),
                    ("retention", Struct(leaves(&["max_age", "max_size"]))),
                ]),
            ),
        ])
    }

    /// Report and remove every key `shape` does not allow.
    pub(super) fn prune_unknown(
        shape: &Shape,
        value: &mut Value,
        path: &mut Vec<Seg>,
        r: &mut Report,
    ) {
        match (shape, value) {
            (Struct(fields), Value::Mapping(map)) => {
                let mut unknown = Vec::new();
                for (k, v) in map.iter_mut() {
                    let key = k.as_str().unwrap_or("?").to_string();
                    path.push(Seg::Key(key.clone()));
                    match fields.iter().find(|(name, _)| *name == key) {
                        Some((_, inner)) => prune_unknown(inner, v, path, r),
                        None => {
                            let names = fields.iter().map(|(n, _)| *n);
                            let hint = match suggest(&key, names.clone()) {
                                Some(s) => format!("; did you mean `{s}`?"),
                                None => format!(
                                    " (expected one of: {})",
                                    names.collect::<Vec<_>>().join(", ")
                                ),
                            };
                            let mut parent = path.clone();
                            parent.pop();
                            let place = if parent.is_empty() {
                                "at the top level".to_string()
                            } else {
                                format!("in {}", show_path(&parent))
                            };
                            r.key(path, format!("unknown key `{key}` {place}{hint}"));
                            unknown.push(k.clone());
                        }
                    }
                    path.pop();
                }
                for k in unknown {
                    map.remove(&k);
                }
            }
            (MapOf(inner), Value::Mapping(map)) => {
                for (k, v) in map.iter_mut() {
                    path.push(Seg::Key(k.as_str().unwrap_or("?").to_string()));
                    prune_unknown(inner, v, path, r);
                    path.pop();
                }
            }
            (SeqOf(inner), Value::Sequence(items)) => {
                for (i, v) in items.iter_mut().enumerate() {
                    path.push(Seg::Index(i));
                    prune_unknown(inner, v, path, r);
                    path.pop();
                }
            }
            // Wrong shapes are reported by the typed pass.
            _ => {}
        }
    }
}
