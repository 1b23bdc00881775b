//! Home Assistant MQTT discovery: every entity of every door, camera and
//! the bridge, as retained configs on `<prefix>/<component>/<unique_id>/config`.
//!
//! Built in two passes. First, one table per device kind ([`BRIDGE`],
//! [`DOOR`], [`CAMERA`]) says which entities a device has and what is
//! particular to each (component, name, device class, where its state is
//! read and how). Then one renderer ([`configs`]) adds what every entity
//! shares: full topics, `unique_id`, the `device` block, `origin` and the
//! availability list. Supporting a new entity is one table row.
//!
//! Only per-component discovery topics are used (no device-based `cmps`
//! discovery, no lock `open`, no `object_id`), so every entity appears on
//! Home Assistant 2024.3 and later. Every key is read by 2024.3 except the
//! enum sensors' `options` (2024.9; older releases drop it):
//! [`super::keys::KEYS`] lists each key with the release that reads it, and
//! a test keeps that list complete.

use serde_json::{Map, Value, json};

use super::{Message, ORIGIN_NAME, Topics};
use crate::config::{Config, Door};
use crate::core::DeliveryEventKind;
use crate::core::liveness::LivenessKind;

/// The Home Assistant MQTT platforms doorwarden uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    BinarySensor,
    Button,
    Event,
    Image,
    Lock,
    Number,
    Sensor,
    Text,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::BinarySensor => "binary_sensor",
            Component::Button => "button",
            Component::Event => "event",
            Component::Image => "image",
            Component::Lock => "lock",
            Component::Number => "number",
            Component::Sensor => "sensor",
            Component::Text => "text",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// A setting (shown under "Configuration").
    Config,
    /// Health information (shown under "Diagnostic").
    Diagnostic,
}

impl Category {
    fn as_str(self) -> &'static str {
        match self {
            Category::Config => "config",
            Category::Diagnostic => "diagnostic",
        }
    }
}

/// When a door has an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// Only for a door with a contact sensor.
    HasContact,
}

/// What is particular to one platform, beyond the common keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Extra {
    None,
    /// `LOCK`/`UNLOCK` commands and the five states 2024.3 knows.
    Lock,
    /// A binary sensor whose state topic carries these words, not JSON.
    OnOff {
        on: &'static str,
        off: &'static str,
    },
    /// An enum sensor with these options.
    Options(&'static [&'static str]),
    /// The delivery event types ([`DeliveryEventKind::ALL`]).
    DeliveryEvents,
    /// The camera liveness states.
    LivenessOptions,
    Press,
    Number {
        min: u32,
        max: u32,
        unit: &'static str,
    },
    /// A password-mode text entity whose value is never echoed.
    Secret {
        max: u32,
        pattern: &'static str,
    },
    /// A measurement with a unit, kept for long-term statistics.
    Measure {
        unit: &'static str,
        precision: u8,
    },
    /// A JPEG image on `<device topic>/snapshot`, its attributes (the
    /// picture's time) on `<device topic>/snapshot/meta`.
    Snapshot,
}

/// One row of a device table: an entity, without the parts the renderer
/// adds. Topics are relative to the device's topic (`<base>/<door>`,
/// `<base>/camera/<camera>`, `<base>/bridge`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntitySpec {
    /// Appended to the device's id stem to make the unique id.
    pub key: &'static str,
    pub component: Component,
    /// `None`: the device's main feature (`"name": null`, the entity takes
    /// the device's name).
    pub name: Option<&'static str>,
    pub device_class: Option<&'static str>,
    pub category: Option<Category>,
    pub icon: Option<&'static str>,
    pub state_topic: Option<&'static str>,
    pub value_template: Option<&'static str>,
    pub command_topic: Option<&'static str>,
    /// A template on the state topic whose JSON object becomes attributes.
    pub attributes: Option<&'static str>,
    pub extra: Extra,
    pub when: When,
    /// Also unavailable while the door's lock backend is unreachable
    /// (`<base>/<door>/availability`). Only the lock itself: the delivery
    /// sensors and events must stay available exactly then, to show and
    /// report what an unreachable lock means for a delivery.
    pub follows_lock: bool,
}

const fn row(key: &'static str, component: Component) -> EntitySpec {
    EntitySpec {
        key,
        component,
        name: None,
        device_class: None,
        category: None,
        icon: None,
        state_topic: None,
        value_template: None,
        command_topic: None,
        attributes: None,
        extra: Extra::None,
        when: When::Always,
        follows_lock: false,
    }
}

const STATE: &str = "state";

/// The bridge itself.
pub const BRIDGE: &[EntitySpec] = &[
    // Its state topic is the availability topic, so it lists no
    // availability of its own: it shows "off", not "unavailable", when
    // doorwarden is gone.
    EntitySpec {
        name: Some("Connectivity"),
        device_class: Some("connectivity"),
        category: Some(Category::Diagnostic),
        state_topic: Some("availability"),
        extra: Extra::OnOff {
            on: "online",
            off: "offline",
        },
        ..row("connectivity", Component::BinarySensor)
    },
    EntitySpec {
        name: Some("Version"),
        category: Some(Category::Diagnostic),
        icon: Some("mdi:information-outline"),
        state_topic: Some("info"),
        value_template: Some("{{ value_json.version }}"),
        ..row("version", Component::Sensor)
    },
    // On while messages from the broker are being turned away (a flood, an
    // oversized or malformed message); the attributes say what and how many.
    EntitySpec {
        name: Some("Problem"),
        device_class: Some("problem"),
        category: Some(Category::Diagnostic),
        state_topic: Some("health"),
        value_template: Some("{{ 'ON' if value_json.problem else 'OFF' }}"),
        attributes: Some(
            "{{ {'reason': value_json.reason, 'dropped': value_json.dropped} | tojson }}",
        ),
        ..row("problem", Component::BinarySensor)
    },
];

/// Every door.
pub const DOOR: &[EntitySpec] = &[
    EntitySpec {
        state_topic: Some(STATE),
        // A null lock renders as `None`, which resets the entity to unknown.
        value_template: Some("{{ value_json.lock }}"),
        command_topic: Some("lock/set"),
        attributes: Some("{{ {'lock_source': value_json.lock_source} | tojson }}"),
        extra: Extra::Lock,
        follows_lock: true,
        ..row("lock", Component::Lock)
    },
    EntitySpec {
        name: Some("Door"),
        device_class: Some("door"),
        state_topic: Some(STATE),
        value_template: Some(
            "{% if value_json.door == 'open' %}ON{% elif value_json.door == 'closed' %}OFF{% else %}None{% endif %}",
        ),
        when: When::HasContact,
        ..row("door", Component::BinarySensor)
    },
    EntitySpec {
        name: Some("Interlock"),
        device_class: Some("problem"),
        icon: Some("mdi:shield-lock-outline"),
        state_topic: Some(STATE),
        value_template: Some("{{ 'ON' if value_json.interlock == 'blocking' else 'OFF' }}"),
        attributes: Some("{{ {'reason': value_json.interlock_reason} | tojson }}"),
        ..row("interlock", Component::BinarySensor)
    },
    EntitySpec {
        name: Some("Delivery"),
        device_class: Some("enum"),
        icon: Some("mdi:truck-delivery-outline"),
        state_topic: Some(STATE),
        value_template: Some("{{ value_json.delivery }}"),
        attributes: Some(
            "{{ {'window_ends': value_json.window_ends, 'entries_left': value_json.entries_left, 'compromised': value_json.compromised, 'backstop_armed': value_json.backstop_armed, 'schedule_warning': value_json.schedule_warning} | tojson }}",
        ),
        extra: Extra::Options(&[
            "idle",
            "window_open",
            "unlocked",
            "watching",
            "completed",
            "tripped",
            "denied",
        ]),
        ..row("delivery", Component::Sensor)
    },
    EntitySpec {
        name: Some("Delivery event"),
        icon: Some("mdi:package-variant"),
        state_topic: Some("delivery/event"),
        extra: Extra::DeliveryEvents,
        ..row("delivery_event", Component::Event)
    },
    EntitySpec {
        name: Some("Grant delivery window"),
        icon: Some("mdi:clock-start"),
        command_topic: Some("delivery/grant/set"),
        extra: Extra::Press,
        ..row("grant", Component::Button)
    },
    EntitySpec {
        name: Some("End delivery"),
        icon: Some("mdi:lock-check-outline"),
        command_topic: Some("delivery/end/set"),
        extra: Extra::Press,
        ..row("end", Component::Button)
    },
    EntitySpec {
        name: Some("Courier unlock"),
        icon: Some("mdi:account-key-outline"),
        command_topic: Some("delivery/courier_unlock/set"),
        extra: Extra::Press,
        ..row("courier_unlock", Component::Button)
    },
    EntitySpec {
        name: Some("Grant duration"),
        category: Some(Category::Config),
        icon: Some("mdi:timer-outline"),
        state_topic: Some(STATE),
        value_template: Some("{{ value_json.grant_minutes }}"),
        command_topic: Some("delivery/grant_minutes/set"),
        extra: Extra::Number {
            min: 1,
            max: 1440,
            unit: "min",
        },
        ..row("grant_minutes", Component::Number)
    },
    // The state is always empty: the code goes in and never comes back,
    // so it is in no state, history or log of Home Assistant's either.
    EntitySpec {
        name: Some("Delivery code"),
        category: Some(Category::Config),
        icon: Some("mdi:form-textbox-password"),
        state_topic: Some(STATE),
        value_template: Some("{{ '' }}"),
        command_topic: Some("delivery/code/set"),
        extra: Extra::Secret {
            max: 10,
            pattern: "^([0-9]{4,10})?$",
        },
        ..row("code", Component::Text)
    },
];

/// Every camera.
pub const CAMERA: &[EntitySpec] = &[
    EntitySpec {
        name: Some("Live"),
        device_class: Some("connectivity"),
        state_topic: Some(STATE),
        value_template: Some("{{ 'ON' if value_json.live else 'OFF' }}"),
        ..row("live", Component::BinarySensor)
    },
    EntitySpec {
        name: Some("Frozen"),
        device_class: Some("problem"),
        icon: Some("mdi:image-off-outline"),
        state_topic: Some(STATE),
        value_template: Some("{{ 'ON' if value_json.frozen else 'OFF' }}"),
        ..row("frozen", Component::BinarySensor)
    },
    EntitySpec {
        name: Some("Liveness"),
        device_class: Some("enum"),
        icon: Some("mdi:cctv"),
        state_topic: Some(STATE),
        value_template: Some("{{ value_json.state }}"),
        // The time of the last good frame is an attribute, not a timestamp
        // sensor of its own: it is null until the first frame (which a
        // timestamp sensor rejects with a warning), and as a state of its
        // own it would be a recorder row per frame. It is as fresh as the
        // camera's last published state: the moment a camera stops being
        // live, it says when its last good picture came.
        attributes: Some(
            "{{ {'reason': value_json.reason, 'since': value_json.since, 'last_frame': value_json.last_frame} | tojson }}",
        ),
        extra: Extra::LivenessOptions,
        ..row("liveness", Component::Sensor)
    },
    EntitySpec {
        name: Some("Frame rate"),
        category: Some(Category::Diagnostic),
        icon: Some("mdi:filmstrip"),
        state_topic: Some(STATE),
        value_template: Some("{{ value_json.fps }}"),
        extra: Extra::Measure {
            unit: "fps",
            precision: 1,
        },
        ..row("fps", Component::Sensor)
    },
    EntitySpec {
        name: Some("Bitrate"),
        device_class: Some("data_rate"),
        category: Some(Category::Diagnostic),
        state_topic: Some(STATE),
        value_template: Some("{{ value_json.bitrate_kbps }}"),
        extra: Extra::Measure {
            unit: "kbit/s",
            precision: 0,
        },
        ..row("bitrate", Component::Sensor)
    },
];

/// A camera whose pictures are decoded (`picture_check` not `off`): the
/// last picture taken while it was verifiably live. Cameras whose pictures
/// are not decoded have no picture to show, so no such entity.
pub const CAMERA_SNAPSHOT: &[EntitySpec] = &[EntitySpec {
    name: Some("Snapshot"),
    icon: Some("mdi:doorbell-video"),
    extra: Extra::Snapshot,
    ..row("snapshot", Component::Image)
}];

/// Whether a camera has a snapshot entity ([`CAMERA_SNAPSHOT`]).
pub fn has_snapshot(camera: &crate::config::Camera) -> bool {
    camera.picture_policy() != crate::core::picture::PicturePolicy::Off
}

const LIVENESS_STATES: [LivenessKind; 5] = [
    LivenessKind::Connecting,
    LivenessKind::Live,
    LivenessKind::Stalled,
    LivenessKind::Frozen,
    LivenessKind::Offline,
];

/// A device as Home Assistant's device registry shows it, and where its
/// entities' topics and ids start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The device registry identifier (`doorwarden_bridge`,
    /// `doorwarden_door_<door>`, `doorwarden_camera_<camera>`; with an
    /// instance, `doorwarden_<instance>_` instead of `doorwarden_`).
    pub identifier: String,
    /// Unique ids are `<stem>_<key>`.
    pub id_stem: String,
    pub name: String,
    pub model: String,
    /// Relative entity topics are appended to this.
    pub topic: String,
    /// `<base>/<door>/availability` for a door.
    pub lock_availability: Option<String>,
    pub via_bridge: bool,
}

/// One entity's discovery config.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveryConfig {
    pub component: Component,
    pub unique_id: String,
    /// `<prefix>/<component>/<unique_id>/config`.
    pub topic: String,
    pub payload: Value,
}

impl DiscoveryConfig {
    /// The retained message that creates or updates the entity.
    pub fn message(&self) -> Message {
        Message::retained(self.topic.clone(), self.payload.to_string())
    }
}

/// The bridge device.
pub fn bridge_device(topics: &Topics) -> Device {
    // With several bridges on one Home Assistant, the device list says
    // which is which.
    let name = match &topics.instance {
        Some(instance) => format!("{ORIGIN_NAME} {instance}"),
        None => ORIGIN_NAME.to_string(),
    };
    Device {
        identifier: topics.bridge_id(),
        id_stem: topics.bridge_id(),
        name,
        model: "doorwarden bridge".to_string(),
        topic: topics.bridge(),
        lock_availability: None,
        via_bridge: false,
    }
}

pub fn door_device(topics: &Topics, key: &str, door: &Door) -> Device {
    let backend = if door.zigbee2mqtt.is_some() {
        "Door with a Zigbee2MQTT lock"
    } else if door.zwave_js.is_some() {
        "Door with a Z-Wave JS lock"
    } else if door.zwave_js_server.is_some() {
        "Door with a Z-Wave JS server lock"
    } else {
        "Door"
    };
    Device {
        identifier: format!("{}door_{key}", topics.ids),
        id_stem: format!("{}{key}", topics.ids),
        name: door.name.clone().unwrap_or_else(|| key.to_string()),
        model: backend.to_string(),
        topic: topics.door(key),
        lock_availability: Some(topics.door_availability(key)),
        via_bridge: true,
    }
}

pub fn camera_device(topics: &Topics, key: &str, name: Option<&str>) -> Device {
    Device {
        identifier: format!("{}camera_{key}", topics.ids),
        id_stem: format!("{}camera_{key}", topics.ids),
        name: name.unwrap_or(key).to_string(),
        model: "RTSP camera".to_string(),
        topic: topics.camera(key),
        lock_availability: None,
        via_bridge: true,
    }
}

/// A door's evidence entities, only when clips are recorded (`recordings:`
/// in the config). Kept apart from [`DOOR`] so a home without recordings
/// sees no button that does nothing.
pub const DOOR_EVIDENCE: &[EntitySpec] = &[EntitySpec {
    name: Some("Acknowledge delivery evidence"),
    icon: Some("mdi:filmstrip-box-multiple"),
    command_topic: Some("delivery/evidence_ack/set"),
    extra: Extra::Press,
    ..row("evidence_ack", Component::Button)
}];

/// Every discovery config for the configured home: the bridge, then each
/// door, then each camera, in key order (so the output is stable).
pub fn configs(config: &Config) -> Vec<DiscoveryConfig> {
    let topics = Topics::new(config);
    let mut out = Vec::new();
    let bridge = bridge_device(&topics);
    out.extend(BRIDGE.iter().map(|spec| render(&topics, &bridge, spec)));
    for (key, door) in &config.locks {
        let device = door_device(&topics, key, door);
        out.extend(
            DOOR.iter()
                .filter(|spec| match spec.when {
                    When::Always => true,
                    When::HasContact => door.contact.is_some(),
                })
                .map(|spec| render(&topics, &device, spec)),
        );
        if config.recordings.is_some() {
            out.extend(
                DOOR_EVIDENCE
                    .iter()
                    .map(|spec| render(&topics, &device, spec)),
            );
        }
    }
    for (key, camera) in &config.cameras {
        let device = camera_device(&topics, key, camera.name.as_deref());
        out.extend(CAMERA.iter().map(|spec| render(&topics, &device, spec)));
        if has_snapshot(camera) {
            out.extend(
                CAMERA_SNAPSHOT
                    .iter()
                    .map(|spec| render(&topics, &device, spec)),
            );
        }
    }
    out
}

/// The second pass: one table row on one device, made whole.
pub fn render(topics: &Topics, device: &Device, spec: &EntitySpec) -> DiscoveryConfig {
    let unique_id = format!("{}_{}", device.id_stem, spec.key);
    let at = |relative: &str| format!("{}/{relative}", device.topic);
    let mut p = Map::new();

    p.insert("name".into(), spec.name.map_or(Value::Null, Value::from));
    p.insert("unique_id".into(), Value::from(unique_id.clone()));
    p.insert("device".into(), device_block(topics, device));
    p.insert(
        "origin".into(),
        json!({ "name": ORIGIN_NAME, "sw_version": env!("CARGO_PKG_VERSION") }),
    );
    // The bridge's connectivity entity *is* the availability; see BRIDGE.
    let is_availability = spec.state_topic.map(at) == Some(topics.bridge_availability());
    if !is_availability {
        let mut list = vec![json!({ "topic": topics.bridge_availability() })];
        if spec.follows_lock
            && let Some(lock) = &device.lock_availability
        {
            list.push(json!({ "topic": lock }));
        }
        p.insert("availability".into(), Value::Array(list));
        p.insert("availability_mode".into(), Value::from("all"));
    }
    p.insert("qos".into(), Value::from(1));
    if let Some(topic) = spec.state_topic {
        p.insert("state_topic".into(), Value::from(at(topic)));
    }
    if let Some(template) = spec.value_template {
        p.insert("value_template".into(), Value::from(template));
    }
    if let Some(topic) = spec.command_topic {
        p.insert("command_topic".into(), Value::from(at(topic)));
        p.insert("retain".into(), Value::from(false));
    }
    if let (Some(template), Some(topic)) = (spec.attributes, spec.state_topic) {
        p.insert("json_attributes_topic".into(), Value::from(at(topic)));
        p.insert("json_attributes_template".into(), Value::from(template));
    }
    if let Some(class) = spec.device_class {
        p.insert("device_class".into(), Value::from(class));
    }
    if let Some(category) = spec.category {
        p.insert("entity_category".into(), Value::from(category.as_str()));
    }
    if let Some(icon) = spec.icon {
        p.insert("icon".into(), Value::from(icon));
    }
    add_extra(&mut p, spec.extra);
    if spec.extra == Extra::Snapshot {
        // Raw JPEG bytes, as published; the attributes say when the
        // picture was taken.
        p.insert("image_topic".into(), Value::from(at("snapshot")));
        p.insert("content_type".into(), Value::from("image/jpeg"));
        p.insert(
            "json_attributes_topic".into(),
            Value::from(at("snapshot/meta")),
        );
    }

    DiscoveryConfig {
        component: spec.component,
        topic: topics.discovery(spec.component.as_str(), &unique_id),
        unique_id,
        payload: Value::Object(p),
    }
}

fn device_block(topics: &Topics, device: &Device) -> Value {
    let mut d = Map::new();
    d.insert("identifiers".into(), json!([device.identifier]));
    d.insert("name".into(), Value::from(device.name.clone()));
    d.insert("manufacturer".into(), Value::from(ORIGIN_NAME));
    d.insert("model".into(), Value::from(device.model.clone()));
    d.insert("sw_version".into(), Value::from(env!("CARGO_PKG_VERSION")));
    if device.via_bridge {
        d.insert("via_device".into(), Value::from(topics.bridge_id()));
    }
    Value::Object(d)
}

fn add_extra(p: &mut Map<String, Value>, extra: Extra) {
    let mut put = |k: &str, v: Value| {
        p.insert(k.to_string(), v);
    };
    match extra {
        Extra::None | Extra::Snapshot => {}
        Extra::Lock => {
            put("payload_lock", "LOCK".into());
            put("payload_unlock", "UNLOCK".into());
            put("state_locked", "LOCKED".into());
            put("state_unlocked", "UNLOCKED".into());
            put("state_locking", "LOCKING".into());
            put("state_unlocking", "UNLOCKING".into());
            put("state_jammed", "JAMMED".into());
            put("optimistic", false.into());
        }
        Extra::OnOff { on, off } => {
            put("payload_on", on.into());
            put("payload_off", off.into());
        }
        // Read from 2024.9 on (see `keys`); earlier releases drop it and
        // show the sensor without its list of states.
        Extra::Options(options) => put("options", json!(options)),
        Extra::LivenessOptions => put(
            "options",
            json!(
                LIVENESS_STATES
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
            ),
        ),
        Extra::DeliveryEvents => put(
            "event_types",
            json!(
                DeliveryEventKind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
            ),
        ),
        Extra::Press => put("payload_press", "PRESS".into()),
        Extra::Number { min, max, unit } => {
            put("min", min.into());
            put("max", max.into());
            put("step", 1.into());
            put("mode", "box".into());
            put("unit_of_measurement", unit.into());
        }
        Extra::Secret { max, pattern } => {
            put("mode", "password".into());
            put("min", 0.into());
            put("max", max.into());
            put("pattern", pattern.into());
        }
        Extra::Measure { unit, precision } => {
            put("unit_of_measurement", unit.into());
            put("state_class", "measurement".into());
            put("suggested_display_precision", precision.into());
        }
    }
}
