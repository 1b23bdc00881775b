//! The Home Assistant add-on: its manifest, the config it builds from the
//! add-on options and the Supervisor's MQTT service, and `run.sh` run for
//! real against a fake Supervisor on 127.0.0.1.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use doorwarden::addon::{AddonError, AddonPaths, build_config, prepare};
use serde_json::{Value as Json, json};
use serde_yaml::Value as Yaml;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn addon_dir() -> PathBuf {
    root().join("addon/doorwarden")
}

fn manifest() -> Yaml {
    let text = std::fs::read_to_string(addon_dir().join("config.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn service(ssl: bool, port: &str) -> Json {
    json!({"result": "ok", "data": {
        "addon": "core_mosquitto", "host": "core-mosquitto", "port": port, "ssl": ssl,
        "protocol": "3.1.1", "username": "addons", "password": "Mq77-pass-never-shown"
    }})
}

/// Options as the Supervisor writes them for a typical home: a Zigbee front
/// door with a contact sensor and two cameras, a Z-Wave garage.
fn home_options() -> Json {
    json!({
        "log_level": "debug",
        "time_zone": "Europe/Berlin",
        "cameras": [
            {"name": "Porch camera", "url": "rtsp://porch-camera.local:554/stream1",
             "username": "viewer", "password": "Cam-pass-never-shown"},
            {"name": "Hall", "url": "rtsp://hall-camera.local/live"}
        ],
        "doors": [
            {"name": "Front door", "zigbee2mqtt_topic": "zigbee2mqtt/Front door lock",
             "contact_topic": "zigbee2mqtt/Front door contact",
             "cameras": ["Porch camera", "hall"]},
            {"name": "Garage", "zwave_node": 7, "cameras": ["Porch camera"]}
        ],
        "delivery_windows": [
            {"door": "Front door", "days": ["mon", "tue", "wed", "thu", "fri"], "from": "09:00", "to": "17:00"},
            {"door": "front_door", "days": ["sat"], "from": "22:00", "to": "06:30"}
        ]
    })
}

fn paths(dir: &Path) -> AddonPaths {
    AddonPaths {
        data_dir: dir.join("data"),
        config_dir: dir.join("config"),
    }
}

// ---------------------------------------------------------------------------
// The manifest.

#[test]
fn manifest_has_what_the_supervisor_requires() {
    let m = manifest();
    for key in ["name", "version", "slug", "description", "arch", "url"] {
        assert!(m.get(key).is_some(), "config.yaml lacks `{key}`");
    }
    assert_eq!(m["slug"], Yaml::from("doorwarden"));
    assert_eq!(
        m["version"],
        Yaml::from(env!("CARGO_PKG_VERSION")),
        "add-on version follows the crate"
    );
    let arch: Vec<&str> = m["arch"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    for a in ["amd64", "aarch64", "armv7"] {
        assert!(arch.contains(&a), "arch lacks {a}: {arch:?}");
    }
    let services: Vec<&str> = m["services"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(services.contains(&"mqtt:need"), "services: {services:?}");
    // The image is based on ghcr.io/home-assistant/base (s6-overlay v3).
    assert_eq!(m["init"], Yaml::Bool(false));
    let maps: Vec<String> = m["map"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| match e {
            Yaml::String(s) => s.split(':').next().unwrap_or_default().to_string(),
            other => other["type"].as_str().unwrap_or_default().to_string(),
        })
        .collect();
    assert!(maps.iter().any(|t| t == "addon_config"), "map: {maps:?}");

    let dockerfile = std::fs::read_to_string(addon_dir().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("cargo build --release"),
        "multi-stage build of the release binary"
    );
    assert!(
        dockerfile.contains("FROM ghcr.io/home-assistant/base:"),
        "explicit base image"
    );
    for label in ["io.hass.version", "io.hass.type", "io.hass.arch"] {
        assert!(dockerfile.contains(label), "Dockerfile lacks label {label}");
    }
    assert!(dockerfile.contains("COPY run.sh"), "the image runs run.sh");
    for file in [
        "build.yaml",
        "run.sh",
        "DOCS.md",
        "README.md",
        "CHANGELOG.md",
        "translations/en.yaml",
    ] {
        assert!(
            addon_dir().join(file).is_file(),
            "addon/doorwarden/{file} is missing"
        );
    }
    let repo: Yaml =
        serde_yaml::from_str(&std::fs::read_to_string(root().join("repository.yaml")).unwrap())
            .unwrap();
    assert!(
        repo["name"].as_str().is_some_and(|n| !n.is_empty()),
        "repository.yaml needs a name"
    );
}

#[test]
fn icons_are_pngs_of_the_expected_size() {
    for (file, w, h) in [("icon.png", 128, 128), ("logo.png", 250, 100)] {
        let bytes = std::fs::read(addon_dir().join(file)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{file} is not a PNG");
        assert_eq!(&bytes[12..16], b"IHDR");
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((width, height), (w, h), "{file}");
    }
}

/// The Supervisor searches the whole repository for `config.yaml` /
/// `config.json` / `config.yml`; any other such file would be taken for a
/// second, broken add-on.
#[test]
fn the_manifest_is_the_only_file_the_supervisor_would_take_for_one() {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    walk(&path, found);
                }
            } else if matches!(name.as_str(), "config.yaml" | "config.yml" | "config.json") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&root(), &mut found);
    assert_eq!(found, vec![addon_dir().join("config.yaml")]);
}

/// A schema leaf as the Supervisor's `RE_SCHEMA_ELEMENT` accepts it.
fn valid_schema_type(t: &str) -> bool {
    let t = t.strip_suffix('?').unwrap_or(t);
    let args = |prefix: &str| -> Option<bool> {
        let rest = t.strip_prefix(prefix)?;
        if rest.is_empty() {
            return Some(true);
        }
        let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
        let (lo, hi) = inner.split_once(',')?;
        let num = |s: &str| s.is_empty() || s.parse::<f64>().is_ok();
        Some(num(lo) && num(hi))
    };
    matches!(t, "bool" | "email" | "url" | "port" | "device")
        || ["str", "password", "int", "float"]
            .iter()
            .any(|p| args(p) == Some(true))
        || (t.starts_with("match(") && t.ends_with(')'))
        || (t.starts_with("list(") && t.ends_with(')') && t.len() > 6)
}

fn check_schema(path: &str, node: &Yaml, keys: &mut BTreeSet<String>) {
    match node {
        Yaml::String(t) => assert!(
            valid_schema_type(t),
            "schema {path}: `{t}` is not a Supervisor type"
        ),
        Yaml::Sequence(items) => {
            assert_eq!(
                items.len(),
                1,
                "schema {path}: a list holds exactly one element type"
            );
            assert!(
                !items[0].is_sequence(),
                "schema {path}: a list may not directly hold a list"
            );
            check_schema(&format!("{path}[]"), &items[0], keys);
        }
        Yaml::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().unwrap();
                let p = if path.is_empty() {
                    k.to_string()
                } else {
                    format!("{path}.{k}")
                };
                // Keys are named like `doors.cameras`, lists left out.
                keys.insert(p.replace("[]", ""));
                check_schema(&p, v, keys);
            }
        }
        other => panic!("schema {path}: unexpected {other:?}"),
    }
}

fn schema_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    check_schema("", &manifest()["schema"], &mut keys);
    keys
}

#[test]
fn every_option_has_a_valid_schema_entry() {
    let m = manifest();
    let schema = m["schema"].as_mapping().unwrap();
    let keys = schema_keys();
    for (key, value) in m["options"].as_mapping().unwrap() {
        let key = key.as_str().unwrap();
        assert!(
            schema.contains_key(key),
            "option `{key}` has no schema entry"
        );
        // An option listed with a default is required by the Supervisor.
        let leaf = schema[key].as_str().unwrap_or_default();
        assert!(
            !leaf.ends_with('?'),
            "option `{key}` has a default but an optional type"
        );
        if let Yaml::Sequence(items) = value {
            assert!(items.is_empty(), "option `{key}` defaults to an empty list");
        }
    }
    assert!(
        keys.contains("config_file"),
        "the full YAML file is an option"
    );
    assert!(keys.contains("doors.cameras"), "doors list their cameras");
    assert!(keys.contains("cameras.password"), "cameras take a password");
    assert_eq!(
        schema["cameras"][0]["password"],
        Yaml::from("password?"),
        "shown masked in the UI"
    );
    for (key, _) in m["schema"].as_mapping().unwrap() {
        let key = key.as_str().unwrap();
        assert!(
            std::fs::read_to_string(addon_dir().join("translations/en.yaml"))
                .unwrap()
                .contains(&format!("  {key}:\n")),
            "translations/en.yaml has no label for `{key}`"
        );
    }
}

/// Options covering every key of the schema (checked below), so that a key
/// added to the schema but not handled by `build_config` fails here.
fn every_schema_key_options() -> Json {
    let mut options = home_options();
    // Empty: the Supervisor's UI leaves an emptied optional text like this.
    options["config_file"] = json!("");
    options["instance"] = json!("north");
    options["doors"][1]["zwave_js_server"] = json!("ws://core-zwave-js:3000");
    options["cameras"][0]["picture_url"] = json!("rtsp://porch-camera.local:554/stream2");
    options["cameras"][1]["picture_check"] = json!("optional");
    options
}

#[test]
fn a_camera_substream_option_is_passed_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = home_options();
    options["cameras"][0]["picture_url"] = json!("rtsp://porch-camera.local:554/stream2");
    let prepared = prepare(&options, &service(false, "1883"), &paths(dir.path())).unwrap();
    let cfg = doorwarden::config::load_str(&prepared.yaml, "doorwarden.yaml")
        .unwrap_or_else(|e| panic!("{e}\n---\n{}", prepared.yaml));
    let porch = &cfg.cameras["porch_camera"];
    assert_eq!(
        porch.picture_url.as_deref(),
        Some("rtsp://porch-camera.local:554/stream2")
    );
    // A door's camera: its pictures are checked by default, now on the substream.
    assert_eq!(
        porch.picture_policy(),
        doorwarden::core::picture::PicturePolicy::Required
    );
    // The camera without one is as before.
    assert!(cfg.cameras["hall"].picture_url.is_none());

    options["cameras"][0]["picture_url"] = json!("http://viewer:Sub5ecret@cam/x");
    let err = build_config(&options, &service(false, "1883"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cameras[0].picture_url"), "{err}");
    assert!(err.contains("is not an rtsp:// URL"), "{err}");
    assert!(!err.contains("Sub5ecret"), "{err}");
}

#[test]
fn a_cameras_picture_check_is_passed_on_and_left_out_gets_the_configs_default() {
    use doorwarden::core::picture::PicturePolicy;
    let dir = tempfile::tempdir().unwrap();
    let mut options = home_options();
    // The hall camera streams H.265: the owner lets it count on its stream.
    options["cameras"][1]["picture_check"] = json!("optional");
    // A yard camera no door names.
    options["cameras"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "Yard", "url": "rtsp://yard-camera.local/live"}));
    let prepared = prepare(&options, &service(false, "1883"), &paths(dir.path())).unwrap();
    let cfg = doorwarden::config::load_str(&prepared.yaml, "doorwarden.yaml")
        .unwrap_or_else(|e| panic!("{e}\n---\n{}", prepared.yaml));
    let policy = |cam: &str| cfg.cameras[cam].picture_policy();
    assert_eq!(policy("hall"), PicturePolicy::Optional);
    // Left out: a door's camera must show a checked picture, another not.
    assert_eq!(policy("porch_camera"), PicturePolicy::Required);
    assert_eq!(policy("yard"), PicturePolicy::Optional);
    assert_eq!(
        prepared.yaml.matches("picture_check").count(),
        1,
        "{}",
        prepared.yaml
    );
}

#[test]
fn a_zwave_node_with_a_server_url_talks_to_the_zwave_js_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = home_options();
    options["doors"][1]["zwave_js_server"] = json!("ws://core-zwave-js:3000");
    let prepared = prepare(&options, &service(false, "1883"), &paths(dir.path())).unwrap();
    let cfg = doorwarden::config::load_str(&prepared.yaml, "doorwarden.yaml")
        .unwrap_or_else(|e| panic!("{e}\n---\n{}", prepared.yaml));
    let garage = &cfg.locks["garage"];
    assert!(garage.zwave_js.is_none(), "not the MQTT gateway");
    let server = garage.zwave_js_server.as_ref().expect("the server backend");
    assert_eq!(server.url, "ws://core-zwave-js:3000");
    assert_eq!(server.node, 7);

    // A server URL needs the node it is for.
    let mut options = home_options();
    options["doors"][0]["zwave_js_server"] = json!("ws://core-zwave-js:3000");
    let err = prepare(&options, &service(false, "1883"), &paths(dir.path()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("doors[0].zwave_js_server"), "{err}");
    assert!(err.contains("zwave_node"), "{err}");
}

#[test]
fn the_instance_option_names_this_bridge_and_is_left_out_when_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = home_options();
    options["instance"] = json!("north");
    let prepared = prepare(&options, &service(false, "1883"), &paths(dir.path())).unwrap();
    let cfg = doorwarden::config::load_str(&prepared.yaml, "doorwarden.yaml")
        .unwrap_or_else(|e| panic!("{e}\n---\n{}", prepared.yaml));
    assert_eq!(cfg.instance.as_deref(), Some("north"));

    for empty in [json!(""), Json::Null] {
        let mut options = home_options();
        options["instance"] = empty;
        let prepared = prepare(&options, &service(false, "1883"), &paths(dir.path())).unwrap();
        assert!(
            !prepared.yaml.contains("instance"),
            "no instance key for a single bridge:\n{}",
            prepared.yaml
        );
    }
}

fn json_keys(path: &str, node: &Json, keys: &mut BTreeSet<String>) {
    match node {
        Json::Object(m) => {
            for (k, v) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                keys.insert(p.clone());
                json_keys(&p, v, keys);
            }
        }
        Json::Array(items) => {
            for item in items {
                json_keys(path, item, keys);
            }
        }
        _ => {}
    }
}

#[test]
fn build_config_accepts_every_schema_key_and_nothing_else() {
    let options = every_schema_key_options();
    let mut used = BTreeSet::new();
    json_keys("", &options, &mut used);
    assert_eq!(
        used,
        schema_keys(),
        "the fixture must exercise exactly the schema's keys"
    );
    build_config(&options, &service(false, "1883")).unwrap();

    // The reverse: an option the schema does not have is an error naming
    // the fields build_config does read, which must be the schema's.
    let schema = schema_keys();
    for (place, probe) in [
        ("", json!({"zz_probe": 1})),
        (
            "cameras",
            json!({"cameras": [{"name": "a", "url": "rtsp://h/", "zz_probe": 1}]}),
        ),
        (
            "doors",
            json!({"doors": [{"name": "a", "zwave_node": 2, "zz_probe": 1}]}),
        ),
        (
            "delivery_windows",
            json!({"delivery_windows": [{"door": "a", "days": [], "from": "", "to": "", "zz_probe": 1}]}),
        ),
    ] {
        let err = build_config(&probe, &service(false, "1883"))
            .unwrap_err()
            .to_string();
        let expected = err
            .split("expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("{err}"));
        let read: BTreeSet<String> = expected
            .split(", ")
            .map(|f| f.trim_matches('`').to_string())
            .map(|f| {
                if place.is_empty() {
                    f
                } else {
                    format!("{place}.{f}")
                }
            })
            .collect();
        let declared: BTreeSet<String> = schema
            .iter()
            .filter(|k| match k.rsplit_once('.') {
                Some((parent, _)) => parent == place,
                None => place.is_empty(),
            })
            .cloned()
            .collect();
        assert_eq!(read, declared, "options read at `{place}` vs. the schema");
    }
}

#[test]
fn run_sh_reads_only_options_in_the_schema() {
    let script = std::fs::read_to_string(addon_dir().join("run.sh")).unwrap();
    let schema = schema_keys();
    let mut read = Vec::new();
    for line in script.lines().filter(|l| l.contains("jq ")) {
        let filter = line
            .split('\'')
            .nth(1)
            .unwrap_or_else(|| panic!("jq filter not quoted: {line}"));
        for (i, c) in filter.char_indices() {
            if c == '.' {
                let name: String = filter[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    read.push(name);
                }
            }
        }
    }
    assert!(!read.is_empty(), "run.sh reads log_level");
    for key in read {
        assert!(
            schema.contains(&key),
            "run.sh reads `{key}`, which the schema lacks"
        );
    }
}

// ---------------------------------------------------------------------------
// build_config.

#[test]
fn options_become_a_config_doorwarden_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let prepared = prepare(&home_options(), &service(false, "1883"), &paths(dir.path())).unwrap();
    let cfg = doorwarden::config::load_str(&prepared.yaml, "doorwarden.yaml")
        .unwrap_or_else(|e| panic!("{e}\n---\n{}", prepared.yaml));

    assert_eq!(cfg.mqtt.url, "mqtt://core-mosquitto:1883");
    assert_eq!(cfg.mqtt.username.as_deref(), Some("addons"));
    assert!(
        cfg.mqtt.password.is_none(),
        "the password is not in the YAML"
    );
    let mqtt_secret = dir.path().join("data/secrets/mqtt_password");
    assert_eq!(
        cfg.mqtt.password_file.as_deref(),
        Some(mqtt_secret.as_path())
    );
    assert_eq!(cfg.storage.dir, dir.path().join("data"));

    // Friendly names become the keys HA's entity ids are built from.
    assert_eq!(
        cfg.locks.keys().collect::<Vec<_>>(),
        ["front_door", "garage"]
    );
    assert_eq!(
        cfg.cameras.keys().collect::<Vec<_>>(),
        ["hall", "porch_camera"]
    );
    let front = &cfg.locks["front_door"];
    assert_eq!(front.name.as_deref(), Some("Front door"));
    assert_eq!(
        front.zigbee2mqtt.as_ref().unwrap().topic,
        "zigbee2mqtt/Front door lock"
    );
    let contact = front
        .contact
        .as_ref()
        .unwrap()
        .zigbee2mqtt
        .as_ref()
        .unwrap();
    assert_eq!(contact.topic, "zigbee2mqtt/Front door contact");
    assert_eq!(front.cameras, ["porch_camera", "hall"]);
    let garage = &cfg.locks["garage"];
    assert_eq!(garage.zwave_js.as_ref().unwrap().node, Some(7));
    assert_eq!(garage.zwave_js.as_ref().unwrap().node_topic(), "zwave/7");

    let porch = &cfg.cameras["porch_camera"];
    assert_eq!(porch.url, "rtsp://porch-camera.local:554/stream1");
    assert_eq!(porch.username.as_deref(), Some("viewer"));
    let cam_secret = dir.path().join("data/secrets/camera_porch_camera_password");
    assert_eq!(porch.password_file.as_deref(), Some(cam_secret.as_path()));

    let windows = &cfg.deliveries["front_door"];
    assert_eq!(windows.time_zone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(windows.windows.len(), 2);
    assert_eq!(windows.windows[0].days.len(), 5);
    assert_eq!(windows.windows[1].from.to_string(), "22:00");
    assert_eq!(windows.windows[1].to.to_string(), "06:30");
    // A door without a weekly window can still be granted one from HA.
    assert!(cfg.deliveries["garage"].windows.is_empty());

    let secrets: Vec<(PathBuf, &str)> = prepared
        .secrets
        .iter()
        .map(|s| (s.path.clone(), s.value.expose()))
        .collect();
    assert_eq!(
        secrets,
        [
            (cam_secret, "Cam-pass-never-shown"),
            (mqtt_secret, "Mq77-pass-never-shown")
        ]
    );
    for secret in ["Cam-pass-never-shown", "Mq77-pass-never-shown"] {
        assert!(
            !prepared.yaml.contains(secret),
            "{secret} leaked into the YAML"
        );
    }
}

#[test]
fn a_tls_broker_gets_mqtts_and_the_string_port_becomes_a_number() {
    let yaml = build_config(&home_options(), &service(true, "8883")).unwrap();
    let cfg = doorwarden::config::load_str(&yaml, "doorwarden.yaml").unwrap();
    assert_eq!(cfg.mqtt.url, "mqtts://core-mosquitto:8883");
    assert_eq!(
        cfg.mqtt.password_file.as_deref(),
        Some(Path::new("/data/secrets/mqtt_password"))
    );
    assert_eq!(cfg.storage.dir, Path::new("/data"));

    let err = build_config(&home_options(), &service(false, "mqtt")).unwrap_err();
    assert!(matches!(err, AddonError::BadMqttService { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("`port` \"mqtt\" is not a TCP port"),
        "{err}"
    );
}

#[test]
fn no_broker_in_home_assistant_is_a_clear_error() {
    let answer = json!({"result": "error", "message": "No mqtt service available"});
    let err = build_config(&home_options(), &answer).unwrap_err();
    assert!(matches!(err, AddonError::NoMqttService { .. }));
    assert_eq!(
        err.to_string(),
        "Home Assistant offers no MQTT broker to doorwarden (the Supervisor says: No mqtt service \
         available); install and start the Mosquitto broker add-on, or give an `mqtt:` section in \
         config_file"
    );
    let err = build_config(
        &home_options(),
        &json!({"result": "ok", "data": {"port": "1883"}}),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the Supervisor's MQTT service answer is unusable: `host` is missing"
    );
}

#[test]
fn options_that_cannot_make_a_door_say_which_and_why() {
    let cases = [
        (
            json!({"doors": [{"name": "Front door"}]}),
            "add-on option doors[0].zigbee2mqtt_topic: the door needs its lock",
        ),
        (
            json!({"doors": [{"name": "Front", "zwave_node": 3, "zigbee2mqtt_topic": "zigbee2mqtt/x"}]}),
            "add-on option doors[0].zwave_node: give either zigbee2mqtt_topic or zwave_node, not both",
        ),
        (
            json!({"doors": [{"name": "Front", "zwave_node": 3, "cameras": ["Porch"]}]}),
            "add-on option doors[0].cameras[0]: no camera named `Porch` in the cameras option",
        ),
        (
            json!({"doors": [{"name": "Bridge", "zwave_node": 3}]}),
            "add-on option doors[0].name: `bridge` is reserved; pick another door name",
        ),
        (
            json!({"doors": [{"name": "Front", "zwave_node": 3}, {"name": "front", "zwave_node": 4}]}),
            "add-on option doors[1].name: a second door named `front`",
        ),
        (
            json!({"doors": [{"name": "Front", "zwave_node": 3}],
                   "delivery_windows": [{"door": "Back", "days": ["mon"], "from": "09:00", "to": "10:00"}]}),
            "add-on option delivery_windows[0].door: no door named `Back` in the doors option",
        ),
        (
            json!({"cameras": [{"name": "Porch", "url": "http://user:hunter2@cam/x"}]}),
            "add-on option cameras[0].url: `http://***@cam/x` is not an rtsp:// URL",
        ),
    ];
    for (options, expected) in cases {
        let err = build_config(&options, &service(false, "1883"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(expected),
            "got:      {err}\nexpected: {expected}"
        );
        assert!(!err.contains("hunter2"));
    }
}

// ---------------------------------------------------------------------------
// config_file.

const USER_FILE: &str = "\
# my own doorwarden config
cameras:
  porch:
    url: rtsp://porch-camera.local/stream1
locks:
  front:
    zigbee2mqtt: {topic: zigbee2mqtt/Front door lock}
    cameras: [porch]
";

#[test]
fn config_file_without_mqtt_gets_the_supervisors_broker_and_keeps_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config/doorwarden.yaml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, USER_FILE).unwrap();
    // Relative to the add-on config folder; other options are ignored.
    let options = json!({"config_file": "doorwarden.yaml", "doors": [{"name": "ignored"}]});
    let prepared = prepare(&options, &service(true, "8883"), &paths(dir.path())).unwrap();
    assert!(
        prepared.yaml.starts_with(USER_FILE),
        "the user's lines stay where they were:\n{}",
        prepared.yaml
    );
    let cfg = doorwarden::config::load_str(&prepared.yaml, "doorwarden.yaml").unwrap();
    assert_eq!(cfg.mqtt.url, "mqtts://core-mosquitto:8883");
    assert_eq!(cfg.mqtt.username.as_deref(), Some("addons"));
    assert_eq!(cfg.storage.dir, dir.path().join("data"));
    assert_eq!(cfg.locks.keys().collect::<Vec<_>>(), ["front"]);
    assert_eq!(prepared.secrets.len(), 1);

    // An error in the user's file is reported at the user's line.
    let broken = USER_FILE.replace("cameras: [porch]", "cameras: [porch]\n    colour: blue");
    std::fs::write(&file, &broken).unwrap();
    let yaml = prepare(&options, &service(true, "8883"), &paths(dir.path()))
        .unwrap()
        .yaml;
    let errors = doorwarden::config::load_str(&yaml, "doorwarden.yaml")
        .unwrap_err()
        .to_string();
    assert!(errors.contains("doorwarden.yaml:9:"), "{errors}");
}

#[test]
fn config_file_with_its_own_mqtt_is_used_as_is_even_without_a_broker() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("full.yaml");
    let text = format!(
        "mqtt:\n  url: mqtt://homeassistant.local:1883\nstorage:\n  dir: /data/state\n{USER_FILE}"
    );
    std::fs::write(&file, &text).unwrap();
    let no_broker = json!({"result": "error", "message": "No mqtt service available"});
    let options = json!({"config_file": file.display().to_string()});
    let yaml = build_config(&options, &no_broker).unwrap();
    assert_eq!(yaml, text);

    let missing = json!({"config_file": dir.path().join("nope.yaml").display().to_string()});
    let err = build_config(&missing, &service(false, "1883")).unwrap_err();
    assert!(
        matches!(&err, AddonError::ConfigFile { path, .. } if path.ends_with("nope.yaml")),
        "{err}"
    );

    std::fs::write(&file, "- just\n- a list\n").unwrap();
    let err = build_config(&options, &service(false, "1883"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be a YAML mapping"), "{err}");
}

// ---------------------------------------------------------------------------
// run.sh against a fake Supervisor.

/// What the fake Supervisor saw: request line and Authorization header.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A fake of the Supervisor's HTTP API, on 127.0.0.1: answers
/// `GET /services/mqtt` with `answer` when the bearer token is right,
/// 401 otherwise.
fn fake_supervisor(token: &'static str, answer: Json) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap_or_default();
            let mut auth = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("authorization")
                {
                    auth = Some(value.trim().to_string());
                }
            }
            let authorized = auth.as_deref() == Some(&format!("Bearer {token}"));
            let right_path = request.starts_with("GET /services/mqtt ");
            log.lock().unwrap().push((request.trim().to_string(), auth));
            let (status, body) = match (authorized, right_path) {
                (true, true) => ("200 OK", answer.to_string()),
                (false, _) => ("401 Unauthorized", "401: Unauthorized".to_string()),
                (true, false) => ("404 Not Found", "404: Not Found".to_string()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

struct RunSh {
    status: std::process::ExitStatus,
    output: String,
    exec_args: Option<String>,
}

/// Run run.sh with every path inside `dir`. `doorwarden` is the real binary
/// for `addon-config`; its final `exec doorwarden run` goes to a shim that
/// records the arguments and runs the real `check-config` on the file
/// instead, so the test ends and still proves doorwarden accepts the config.
fn run_sh(dir: &Path, supervisor: &str, token: &str, options: &Json) -> RunSh {
    let real = env!("CARGO_BIN_EXE_doorwarden");
    let shim = dir.join("doorwarden-shim");
    let exec_log = dir.join("exec-args");
    std::fs::write(
        &shim,
        format!(
            "#!/usr/bin/env bash\n\
             if [[ \"$1\" == run ]]; then\n  printf '%s ' \"$@\" > '{log}'\n  exec '{real}' check-config \"$3\"\nfi\n\
             exec '{real}' \"$@\"\n",
            log = exec_log.display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::create_dir_all(dir.join("config")).unwrap();
    let options_file = dir.join("data/options.json");
    std::fs::write(&options_file, options.to_string()).unwrap();
    let out = Command::new("bash")
        .arg(addon_dir().join("run.sh"))
        .env_remove("RUST_LOG")
        .env("SUPERVISOR_TOKEN", token)
        .env("DOORWARDEN_SUPERVISOR_URL", supervisor)
        .env("DOORWARDEN_OPTIONS", &options_file)
        .env("DOORWARDEN_DATA_DIR", dir.join("data"))
        .env("DOORWARDEN_ADDON_CONFIG_DIR", dir.join("config"))
        .env("DOORWARDEN_BIN", &shim)
        .output()
        .unwrap();
    RunSh {
        status: out.status,
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        exec_args: std::fs::read_to_string(exec_log).ok(),
    }
}

#[test]
fn run_sh_gets_the_broker_from_the_supervisor_and_starts_doorwarden() {
    const TOKEN: &str = "supervisor-token-4711";
    let (url, seen) = fake_supervisor(TOKEN, service(true, "8883"));
    let dir = tempfile::tempdir().unwrap();
    let run = run_sh(dir.path(), &url, TOKEN, &home_options());
    assert!(run.status.success(), "run.sh failed:\n{}", run.output);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].0.starts_with("GET /services/mqtt HTTP/1.1"),
        "{seen:?}"
    );
    assert_eq!(seen[0].1.as_deref(), Some("Bearer supervisor-token-4711"));

    let config = dir.path().join("data/doorwarden.yaml");
    assert_eq!(
        run.exec_args.as_deref(),
        Some(format!("run --config {} ", config.display()).as_str())
    );
    let cfg = doorwarden::config::load(&config).unwrap();
    assert_eq!(cfg.mqtt.url, "mqtts://core-mosquitto:8883");
    assert_eq!(
        cfg.locks.keys().collect::<Vec<_>>(),
        ["front_door", "garage"]
    );
    // check-config's summary, run by the shim, names every door.
    assert!(
        run.output.contains("Front door") && run.output.contains("Garage"),
        "{}",
        run.output
    );

    let secret = dir.path().join("data/secrets/mqtt_password");
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "Mq77-pass-never-shown"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "only the add-on may read the password");
    }
    for secret in ["Mq77-pass-never-shown", "Cam-pass-never-shown", TOKEN] {
        assert!(
            !run.output.contains(secret),
            "{secret} appeared in run.sh's output:\n{}",
            run.output
        );
        assert!(!std::fs::read_to_string(&config).unwrap().contains(secret));
    }
}

#[test]
fn run_sh_stops_with_the_reason_when_home_assistant_has_no_broker() {
    const TOKEN: &str = "supervisor-token-4712";
    let answer = json!({"result": "error", "message": "No mqtt service available"});
    let (url, _) = fake_supervisor(TOKEN, answer);
    let dir = tempfile::tempdir().unwrap();
    let run = run_sh(dir.path(), &url, TOKEN, &home_options());
    assert!(!run.status.success());
    assert!(
        run.output
            .contains("install and start the Mosquitto broker add-on"),
        "{}",
        run.output
    );
    assert!(
        run.exec_args.is_none(),
        "doorwarden must not start without a config"
    );
    assert!(!dir.path().join("data/doorwarden.yaml").exists());
}

#[test]
fn run_sh_refuses_to_run_outside_an_add_on() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_sh(dir.path(), "http://127.0.0.1:9", "", &home_options());
    assert!(!run.status.success());
    assert!(
        run.output.contains("SUPERVISOR_TOKEN is not set"),
        "{}",
        run.output
    );
}

#[test]
fn shell_scripts_are_shellcheck_clean() {
    let out = Command::new("shellcheck")
        .arg("--severity=style")
        .arg(addon_dir().join("run.sh"))
        .output()
        .unwrap_or_else(|e| {
            panic!("shellcheck is needed for this test (apt-get install shellcheck): {e}")
        });
    assert!(
        out.status.success(),
        "shellcheck findings:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The arguments of one `doorwarden addon-config` run, as run.sh passes them.
struct AddonConfigArgs {
    options: PathBuf,
    mqtt_service: PathBuf,
    out: PathBuf,
    data_dir: PathBuf,
    config_dir: PathBuf,
}

/// Run `doorwarden addon-config` (its file writes live in the command, not
/// the library): `Err` holds what it printed after its own name.
fn addon_config(args: &AddonConfigArgs) -> Result<(), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_doorwarden"))
        .arg("addon-config")
        .arg("--options")
        .arg(&args.options)
        .arg("--mqtt-service")
        .arg(&args.mqtt_service)
        .arg("--out")
        .arg(&args.out)
        .arg("--data-dir")
        .arg(&args.data_dir)
        .arg("--config-dir")
        .arg(&args.config_dir)
        .output()
        .unwrap();
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("doorwarden addon-config: "))
        .unwrap_or_else(|| panic!("addon-config failed without saying why:\n{stderr}"));
    Err(line.to_string())
}

/// What `doorwarden addon-config` does on disk: the config, and each
/// password in its own private file.
#[test]
fn addon_config_writes_the_config_and_private_password_files() {
    let dir = tempfile::tempdir().unwrap();
    let options = dir.path().join("options.json");
    let answer = dir.path().join("mqtt.json");
    std::fs::write(&options, home_options().to_string()).unwrap();
    std::fs::write(&answer, service(false, "1883").to_string()).unwrap();
    let args = AddonConfigArgs {
        options,
        mqtt_service: answer,
        out: dir.path().join("data/doorwarden.yaml"),
        data_dir: dir.path().join("data"),
        config_dir: dir.path().join("config"),
    };
    addon_config(&args).unwrap();
    let cfg = doorwarden::config::load(&args.out).unwrap();
    assert_eq!(cfg.mqtt.url, "mqtt://core-mosquitto:1883");
    let secrets = dir.path().join("data/secrets");
    assert_eq!(
        std::fs::read_to_string(secrets.join("mqtt_password")).unwrap(),
        "Mq77-pass-never-shown"
    );
    assert_eq!(
        std::fs::read_to_string(secrets.join("camera_porch_camera_password")).unwrap(),
        "Cam-pass-never-shown"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&secrets), 0o700);
        assert_eq!(mode(&secrets.join("mqtt_password")), 0o600);
        assert_eq!(mode(&args.out), 0o600);
    }
    // No temporary file left behind by the atomic writes.
    let mut left: Vec<String> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    left.sort();
    assert_eq!(left, ["doorwarden.yaml", "secrets"]);

    // An answer that is not JSON is refused without echoing it.
    std::fs::write(&args.mqtt_service, "password=Mq77-pass-never-shown").unwrap();
    let err = addon_config(&args).unwrap_err();
    assert!(
        err.starts_with("the Supervisor's MQTT service answer is unusable: not JSON"),
        "{err}"
    );
    assert!(!err.contains("Mq77"), "{err}");
}
