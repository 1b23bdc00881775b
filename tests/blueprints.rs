//! The Home Assistant automation blueprints in `blueprints/automation/doorwarden/`.
//!
//! Each file is read with a YAML loader that keeps the `!input` tag (serde_yaml
//! gives it as `Value::Tagged`), then checked for what Home Assistant needs to
//! import it on 2024.3 and every later release, and against doorwarden's own
//! MQTT contract (docs/mqtt.md): the entity kinds it creates and the delivery
//! event types it sends.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_yaml::Value;

const SOURCE_BASE: &str =
    "https://github.com/doorwarden/doorwarden/blob/main/blueprints/automation/doorwarden/";

/// Inputs that are meant to take an entity from another integration.
const FOREIGN_ENTITY_INPUTS: [(&str, &str); 1] =
    [("grant_window_on_out_for_delivery.yaml", "tracking_entity")];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("blueprints/automation/doorwarden")
}

fn blueprints() -> Vec<(String, Value)> {
    let mut files: Vec<(String, Value)> = std::fs::read_dir(dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&p).unwrap();
            let value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, value)
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

/// Every `!input <id>` in `value`.
fn input_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Tagged(tagged) => {
            if tagged.tag == "input" {
                match &tagged.value {
                    Value::String(id) => out.push(id.clone()),
                    other => panic!("`!input` must name an input, got {other:?}"),
                }
            } else {
                panic!("unexpected YAML tag {}", tagged.tag);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| input_refs(v, out)),
        Value::Mapping(m) => m.values().for_each(|v| input_refs(v, out)),
        _ => {}
    }
}

fn inputs(bp: &Value) -> &serde_yaml::Mapping {
    bp["blueprint"]["input"]
        .as_mapping()
        .expect("blueprint.input is a mapping")
}

/// Event types doorwarden sends, as listed in docs/mqtt.md.
fn documented_event_types() -> BTreeSet<String> {
    let doc =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/mqtt.md"))
            .unwrap();
    let start = doc
        .find("Delivery event types")
        .expect("docs/mqtt.md lists the event types");
    let end = start + doc[start..].find("Each carries").unwrap();
    doc[start..end]
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| *s != "event_type")
        .map(str::to_string)
        .collect()
}

#[test]
fn there_is_a_blueprint_for_each_routine() {
    let names: Vec<String> = blueprints().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "camera_not_live_alert.yaml",
            "delivery_summary.yaml",
            "door_held_open_lock_unresponsive.yaml",
            "grant_window_on_out_for_delivery.yaml",
            "interlock_tripped_notify.yaml",
        ]
    );
}

#[test]
fn blueprint_block_has_what_home_assistant_requires() {
    for (file, bp) in blueprints() {
        let b = &bp["blueprint"];
        assert!(
            b["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("doorwarden - ")),
            "{file}: name"
        );
        assert!(
            b["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{file}: description"
        );
        assert_eq!(b["domain"], Value::from("automation"), "{file}: domain");
        assert_eq!(
            b["source_url"],
            Value::from(format!("{SOURCE_BASE}{file}")),
            "{file}: source_url"
        );
        // Loads on 2024.3: say so, so older releases refuse it with a clear message.
        assert_eq!(
            b["homeassistant"]["min_version"],
            Value::from("2024.3.0"),
            "{file}: min_version"
        );
        for (id, input) in inputs(&bp) {
            let id = id.as_str().unwrap();
            assert!(
                input["name"].as_str().is_some(),
                "{file}: input {id} has no name"
            );
            // Input sections need 2024.6.
            assert!(
                input.get("input").is_none(),
                "{file}: input {id} is a section"
            );
            let selector = input["selector"]
                .as_mapping()
                .unwrap_or_else(|| panic!("{file}: input {id} has no selector"));
            assert_eq!(selector.len(), 1, "{file}: input {id}: one selector type");
            let kind = selector.keys().next().unwrap().as_str().unwrap();
            assert!(
                [
                    "entity", "device", "text", "number", "boolean", "duration", "select"
                ]
                .contains(&kind),
                "{file}: input {id}: selector `{kind}`"
            );
            if kind == "select" {
                let options: Vec<&Value> = selector["select"]["options"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|o| if o.is_mapping() { &o["value"] } else { o })
                    .collect();
                if let Some(defaults) = input.get("default") {
                    for d in defaults.as_sequence().unwrap() {
                        assert!(
                            options.contains(&d),
                            "{file}: input {id}: default {d:?} is not an option"
                        );
                    }
                }
            }
            if kind == "number" {
                let n = &selector["number"];
                let (min, max) = (n["min"].as_f64().unwrap(), n["max"].as_f64().unwrap());
                if let Some(d) = input.get("default").and_then(Value::as_f64) {
                    assert!(
                        (min..=max).contains(&d),
                        "{file}: input {id}: default out of range"
                    );
                }
            }
        }
        let mode = bp["mode"].as_str().unwrap_or("single");
        assert!(
            ["single", "restart", "queued", "parallel"].contains(&mode),
            "{file}: mode {mode}"
        );
    }
}

#[test]
fn every_input_is_declared_and_used() {
    for (file, bp) in blueprints() {
        let declared: BTreeSet<String> = inputs(&bp)
            .keys()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        let mut body = bp.as_mapping().unwrap().clone();
        body.remove("blueprint");
        let mut used = Vec::new();
        input_refs(&Value::Mapping(body), &mut used);
        let used: BTreeSet<String> = used.into_iter().collect();
        let undeclared: Vec<_> = used.difference(&declared).collect();
        let unused: Vec<_> = declared.difference(&used).collect();
        assert!(
            undeclared.is_empty(),
            "{file}: `!input` of undeclared inputs {undeclared:?}"
        );
        assert!(unused.is_empty(), "{file}: inputs never used {unused:?}");
    }
}

/// `trigger:`/`platform:`/`condition:`/`action:`/`service:` as 2024.3 reads
/// them; the plural keys and `trigger: state` / `action: lock.lock` came in
/// 2024.10 and 2024.8.
#[test]
fn classic_spelling_throughout() {
    fn walk(file: &str, path: &str, value: &Value) {
        match value {
            Value::Mapping(m) => {
                if let Some(Value::String(s)) = m.get("action") {
                    panic!("{file}: {path}: `action: {s}` needs 2024.8; write `service: {s}`");
                }
                if m.contains_key("wait_for_trigger") {
                    for t in m["wait_for_trigger"].as_sequence().unwrap() {
                        assert!(
                            t.get("platform").is_some(),
                            "{file}: {path}: wait_for_trigger needs `platform:`"
                        );
                    }
                }
                for (k, v) in m {
                    let k = k.as_str().unwrap_or("?");
                    // Payloads, not steps: a notification's `actions` list
                    // rightly has `action:` keys.
                    if k != "data" && k != "event_data" {
                        walk(file, &format!("{path}.{k}"), v);
                    }
                }
            }
            Value::Sequence(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(file, &format!("{path}[{i}]"), v);
                }
            }
            _ => {}
        }
    }
    for (file, bp) in blueprints() {
        for new in ["triggers", "conditions", "actions"] {
            assert!(bp.get(new).is_none(), "{file}: `{new}:` needs 2024.10");
        }
        let triggers = bp["trigger"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{file}: trigger list"));
        assert!(!triggers.is_empty());
        for t in triggers {
            assert!(
                t.get("platform").is_some_and(Value::is_string),
                "{file}: trigger without `platform:`"
            );
            assert!(
                t.get("trigger").is_none(),
                "{file}: `trigger: <kind>` needs 2024.10"
            );
        }
        let actions = bp["action"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{file}: action list"));
        assert!(!actions.is_empty());
        walk(&file, "action", &bp["action"]);
        if let Some(conditions) = bp.get("condition") {
            for c in conditions.as_sequence().unwrap() {
                assert!(
                    c.get("condition").is_some(),
                    "{file}: condition without `condition:`"
                );
            }
        }
    }
}

/// Entity selectors offer only doorwarden's entities: integration mqtt and
/// the domain / device class doorwarden gives that entity.
#[test]
fn entity_selectors_are_filtered_to_doorwarden_entities() {
    // Domain -> device classes doorwarden creates for it (docs/mqtt.md).
    let ours: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("event", &[][..]),
        ("button", &[][..]),
        ("lock", &[][..]),
        ("number", &[][..]),
        ("binary_sensor", &["connectivity", "problem", "door"][..]),
        ("sensor", &["enum", "timestamp"][..]),
        ("image", &[][..]),
    ]);
    let mut seen = 0;
    for (file, bp) in blueprints() {
        for (id, input) in inputs(&bp) {
            let id = id.as_str().unwrap();
            let Some(entity) = input["selector"].get("entity") else {
                if let Some(device) = input["selector"].get("device") {
                    assert_eq!(
                        device["filter"][0]["integration"],
                        Value::from("mobile_app"),
                        "{file}: input {id}: device selectors pick a phone"
                    );
                }
                continue;
            };
            if FOREIGN_ENTITY_INPUTS.contains(&(file.as_str(), id)) {
                continue;
            }
            seen += 1;
            let filters = entity["filter"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{file}: input {id}: no filter"));
            assert!(!filters.is_empty(), "{file}: input {id}: empty filter");
            for f in filters {
                assert_eq!(f["integration"], Value::from("mqtt"), "{file}: input {id}");
                let domain = f["domain"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{file}: input {id}: no domain"));
                let classes = ours
                    .get(domain)
                    .unwrap_or_else(|| panic!("{file}: input {id}: doorwarden has no {domain}"));
                match f.get("device_class").and_then(Value::as_str) {
                    Some(class) => assert!(
                        classes.contains(&class),
                        "{file}: input {id}: {domain} {class}"
                    ),
                    // A binary_sensor or sensor without a class would offer
                    // the wrong kind of doorwarden entity.
                    None => assert!(
                        classes.is_empty(),
                        "{file}: input {id}: {domain} needs a device_class"
                    ),
                }
            }
        }
    }
    assert!(seen >= 6, "only {seen} doorwarden entity inputs");
}

/// Every event type a blueprint offers or compares with is one doorwarden
/// sends, and the attributes read from an event are the documented ones.
#[test]
fn event_types_and_attributes_match_the_mqtt_contract() {
    let documented = documented_event_types();
    assert!(
        documented.contains("interlock_tripped") && documented.contains("completed"),
        "{documented:?}"
    );
    let attributes: BTreeSet<&str> = [
        "event_type",
        "reason",
        "camera",
        "source",
        "duration_s",
        "entries",
        "compromised",
        "clip",
        "clip_duration_s",
        "snapshot_at",
        "snapshot_due",
        "friendly_name",
    ]
    .into_iter()
    .collect();
    for (file, bp) in blueprints() {
        let text = std::fs::read_to_string(dir().join(&file)).unwrap();
        // Literals compared with the event type in templates.
        let mut used = BTreeSet::new();
        for (i, _) in text.match_indices("event_type ==") {
            let rest = &text[i + "event_type ==".len()..];
            if let Some(literal) = rest
                .trim_start()
                .strip_prefix('\'')
                .and_then(|r| r.split('\'').next())
            {
                used.insert(literal.to_string());
            }
        }
        // Options offered by select inputs.
        for (_, input) in inputs(&bp) {
            if let Some(select) = input["selector"].get("select") {
                for o in select["options"].as_sequence().unwrap() {
                    used.insert(o["value"].as_str().unwrap().to_string());
                }
            }
        }
        for event_type in &used {
            assert!(
                documented.contains(event_type),
                "{file}: `{event_type}` is not a doorwarden event type"
            );
        }
        for (i, _) in text.match_indices("to_state.attributes.") {
            let name: String = text[i + "to_state.attributes.".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                attributes.contains(name.as_str()),
                "{file}: reads attribute `{name}`, which events lack"
            );
        }
    }
}

/// Triggers on the event entities skip the state changes that are not events:
/// the entity going unavailable (bridge offline) and coming back from it.
#[test]
fn event_entity_triggers_ignore_availability_changes() {
    for (file, bp) in blueprints() {
        for t in bp["trigger"].as_sequence().unwrap() {
            let Some(Value::Tagged(tag)) = t.get("entity_id") else {
                continue;
            };
            let Value::String(id) = &tag.value else {
                continue;
            };
            let selector = &inputs(&bp)[id.as_str()]["selector"];
            if selector["entity"]["filter"][0]["domain"] != "event" {
                continue;
            }
            assert!(
                t["not_from"]
                    .as_sequence()
                    .is_some_and(|s| s.contains(&Value::from("unavailable"))),
                "{file}: trigger on {id} fires when the entity comes back"
            );
            assert!(
                t["not_to"]
                    .as_sequence()
                    .is_some_and(|s| s.contains(&Value::from("unavailable"))),
                "{file}: trigger on {id} fires when the entity goes away"
            );
        }
    }
}

/// The actionable notification's buttons are answered in the same run.
#[test]
fn interlock_alert_buttons_are_handled() {
    let text = std::fs::read_to_string(dir().join("interlock_tripped_notify.yaml")).unwrap();
    let bp: Value = serde_yaml::from_str(&text).unwrap();
    let steps = bp["action"].as_sequence().unwrap();
    let notify = steps
        .iter()
        .find(|s| s.get("type") == Some(&Value::from("notify")))
        .unwrap();
    let buttons: Vec<&str> = notify["data"]["actions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    // The button wait may run beside another branch (`parallel:`).
    let wait = keyed(&bp["action"], "wait_for_trigger")[0];
    let waited: Vec<&str> = wait
        .as_sequence()
        .unwrap()
        .iter()
        .inspect(|t| {
            assert_eq!(
                t["event_type"],
                Value::from("mobile_app_notification_action")
            )
        })
        .map(|t| t["event_data"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(buttons, waited, "each button has its wait_for_trigger");
    let services: Vec<&str> = keyed(&bp["action"], "choose")
        .into_iter()
        .flat_map(|c| c.as_sequence().unwrap())
        .flat_map(|o| o["sequence"].as_sequence().unwrap())
        .filter_map(|s| s["service"].as_str())
        .collect();
    assert_eq!(services, ["lock.lock", "button.press"]);
    assert!(
        text.contains("trigger.to_state.attributes.camera")
            && text.contains("trigger.to_state.attributes.reason")
    );
}

/// docs/home-assistant.md offers a one-click import for every blueprint, in
/// the my.home-assistant.io redirect form, pointing at the file's raw URL.
#[test]
fn every_blueprint_has_an_import_link_in_the_docs() {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/home-assistant.md"),
    )
    .unwrap();
    const PREFIX: &str = "https://my.home-assistant.io/redirect/blueprint_import/?blueprint_url=";
    let mut linked = BTreeSet::new();
    for (i, _) in doc.match_indices(PREFIX) {
        let encoded: String = doc[i + PREFIX.len()..]
            .chars()
            .take_while(|c| !matches!(c, ')' | ' ' | '\n'))
            .collect();
        let mut decoded = Vec::new();
        let bytes = encoded.as_bytes();
        let mut j = 0;
        while j < bytes.len() {
            if bytes[j] == b'%' {
                let hex = std::str::from_utf8(&bytes[j + 1..j + 3]).unwrap();
                decoded.push(u8::from_str_radix(hex, 16).unwrap());
                j += 3;
            } else {
                decoded.push(bytes[j]);
                j += 1;
            }
        }
        let url = String::from_utf8(decoded).unwrap();
        assert!(
            !url.contains('/') || encoded.contains("%2F"),
            "{url}: the blueprint URL must be URL-encoded"
        );
        let file = url
            .strip_prefix(
                "https://raw.githubusercontent.com/doorwarden/doorwarden/main/blueprints/automation/doorwarden/",
            )
            .unwrap_or_else(|| panic!("{url} is not a raw URL of a blueprint"));
        linked.insert(file.to_string());
    }
    let files: BTreeSet<String> = blueprints().into_iter().map(|(n, _)| n).collect();
    assert_eq!(linked, files);
}

/// The interlock alert and the delivery summary attach the camera's
/// verified snapshot through the image entity's proxy, and nothing when
/// there is none.
#[test]
fn alerts_attach_the_verified_snapshot() {
    for file in ["interlock_tripped_notify.yaml", "delivery_summary.yaml"] {
        let text = std::fs::read_to_string(dir().join(file)).unwrap();
        let bp: Value = serde_yaml::from_str(&text).unwrap();
        let input = &inputs(&bp)[&Value::from("snapshot_images")];
        assert_eq!(
            input["selector"]["entity"]["filter"][0]["domain"],
            Value::from("image"),
            "{file}"
        );
        assert_eq!(input["default"], Value::Sequence(Vec::new()), "{file}");
        assert!(
            text.contains("trigger.to_state.attributes.snapshot_due"),
            "{file}: the event's due time picks the picture of the moment"
        );
        assert!(
            text.contains(
                "image: \"{{ '/api/image_proxy/' ~ snapshot_entity if snapshot_entity else '' }}\""
            ),
            "{file}: the notification attaches the picture"
        );
    }
}

/// Every value under `key`, at any depth (steps nest in `if`/`then`,
/// `parallel`, `sequence`).
fn keyed<'a>(value: &'a Value, key: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    fn walk<'a>(value: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
        match value {
            Value::Mapping(m) => {
                for (k, v) in m {
                    if k.as_str() == Some(key) {
                        out.push(v);
                    }
                    walk(v, key, out);
                }
            }
            Value::Sequence(items) => items.iter().for_each(|v| walk(v, key, out)),
            _ => {}
        }
    }
    walk(value, key, &mut out);
    out
}

/// Every step (mapping) that has `key`, at any depth.
fn steps_with<'a>(value: &'a Value, key: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    fn walk<'a>(value: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
        match value {
            Value::Mapping(m) => {
                if m.contains_key(key) {
                    out.push(value);
                }
                m.values().for_each(|v| walk(v, key, out));
            }
            Value::Sequence(items) => items.iter().for_each(|v| walk(v, key, out)),
            _ => {}
        }
    }
    walk(value, key, &mut out);
    out
}

/// A template rendered as Home Assistant renders it: by Jinja2, with the
/// Home Assistant functions the blueprints call (tests/ha_template.py),
/// over the given image entities' `taken_at`. Times print in UTC.
fn render(template: &Value, variables: serde_json::Value, taken: &[(&str, &str)]) -> String {
    use std::io::Write;
    let template = template.as_str().expect("a template is a string");
    let states: serde_json::Map<String, serde_json::Value> = taken
        .iter()
        .map(|(e, t)| (e.to_string(), serde_json::json!({ "taken_at": t })))
        .collect();
    let job = serde_json::json!({
        "template": template,
        "variables": variables,
        "states": states,
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ha_template.py");
    // The system's Python, where scripts/test.sh installs Jinja2.
    let python = std::env::var_os("DOORWARDEN_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/python3"));
    let mut child = std::process::Command::new(python)
        .arg(script)
        .env("TZ", "UTC")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{template}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const PORCH: &str = "image.porch_snapshot";
const DRIVE: &str = "image.drive_snapshot";
/// The event's due time, the last picture shown before it, and one taken
/// after it.
const DUE: &str = "2026-12-07T14:02:09.25+00:00";
const BEFORE: &str = "2026-12-07T14:02:05+00:00";
const AFTER: &str = "2026-12-07T14:02:09.4+00:00";

/// The one `variables:` step that defines `name`, and its template.
fn variable<'a>(bp: &'a Value, name: &str) -> &'a Value {
    let steps = steps_with(&bp["action"], "variables");
    let found: Vec<&Value> = steps
        .iter()
        .filter_map(|s| s["variables"].get(name))
        .collect();
    assert_eq!(found.len(), 1, "variable {name} defined once");
    found[0]
}

/// The wait for the picture of the moment: on the image entities'
/// `taken_at`, bounded by the `picture_wait` input, and what it is
/// waiting for.
fn picture_wait(file: &str, bp: &Value) -> &'static str {
    let waits = steps_with(&bp["action"], "wait_template");
    assert_eq!(waits.len(), 1, "{file}: one wait for the picture");
    let wait = waits[0];
    match &wait["timeout"] {
        Value::Tagged(t) => assert_eq!(t.value, Value::from("picture_wait"), "{file}"),
        other => panic!("{file}: the wait's timeout is {other:?}, not the picture_wait input"),
    }
    assert_eq!(wait["continue_on_timeout"], Value::from(true), "{file}");
    let images = serde_json::json!([DRIVE, PORCH]);
    let vars = serde_json::json!({ "snapshot_images": images, "snapshot_due": DUE });
    let template = &wait["wait_template"];
    // Only the picture shown before the event: still waiting.
    assert_eq!(
        render(template, vars.clone(), &[(PORCH, BEFORE)]),
        "False",
        "{file}"
    );
    assert_eq!(render(template, vars.clone(), &[]), "False", "{file}");
    // The picture taken after the event is shown: the wait is over.
    assert_eq!(
        render(template, vars.clone(), &[(DRIVE, BEFORE), (PORCH, AFTER)]),
        "True",
        "{file}"
    );
    // Nothing is due (no camera of the door live): no wait at all.
    let guard = steps_with(&bp["action"], "if")
        .into_iter()
        .find(|s| !steps_with(&s["then"], "wait_template").is_empty())
        .unwrap_or_else(|| panic!("{file}: the wait is guarded"));
    let guard = &guard["if"][0]["value_template"];
    assert_eq!(render(guard, vars, &[]), "True", "{file}");
    let nothing_due = serde_json::json!({ "snapshot_images": images, "snapshot_due": "" });
    assert_eq!(render(guard, nothing_due, &[]), "False", "{file}");
    "waited"
}

/// The delivery summary is not urgent: it waits for the picture taken at
/// the end of the delivery, and if none comes (the camera stopped being
/// live) it attaches the last verified picture and says how old it is.
#[test]
fn the_summary_waits_for_the_picture_of_the_moment() {
    let file = "delivery_summary.yaml";
    let bp: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir().join(file)).unwrap()).unwrap();
    picture_wait(file, &bp);
    let vars = serde_json::json!({ "snapshot_images": [DRIVE, PORCH], "snapshot_due": DUE });
    let pick = |taken: &[(&str, &str)]| {
        let fresh = render(variable(&bp, "fresh_entity"), vars.clone(), taken);
        let newest = render(variable(&bp, "newest_entity"), vars.clone(), taken);
        let both = serde_json::json!({ "fresh_entity": fresh, "newest_entity": newest });
        let entity = render(variable(&bp, "snapshot_entity"), both, taken);
        let note = render(
            variable(&bp, "picture_note"),
            serde_json::json!({ "snapshot_entity": entity, "fresh_entity": fresh }),
            taken,
        );
        (entity, note)
    };
    // The picture came in time.
    let (entity, note) = pick(&[(DRIVE, BEFORE), (PORCH, AFTER)]);
    assert_eq!((entity.as_str(), note.as_str()), (PORCH, ""));
    // Timed out: the older picture, said to be older.
    let (entity, note) = pick(&[(PORCH, BEFORE)]);
    assert_eq!(entity, PORCH);
    assert_eq!(
        note,
        "Picture from 14:02:05, before the end: the camera was not live for a newer one."
    );
    let notify = steps_with(&bp["action"], "type")
        .into_iter()
        .rfind(|s| s["type"] == "notify")
        .unwrap();
    let message = render(
        &notify["message"],
        serde_json::json!({
            "took": "4 min 10 s", "entries": 1, "compromised": false, "picture_note": note,
            "trigger": { "to_state": { "attributes": {} } },
        }),
        &[],
    );
    assert_eq!(
        message,
        "Took 4 min 10 s, 1 entry. Cameras stayed live throughout. \
         Picture from 14:02:05, before the end: the camera was not live for a newer one."
    );
    let image = render(
        &notify["data"]["image"],
        serde_json::json!({ "snapshot_entity": entity }),
        &[],
    );
    assert_eq!(image, "/api/image_proxy/image.porch_snapshot");
    // No picture was ever shown: none attached, nothing said.
    let (entity, note) = pick(&[]);
    assert_eq!((entity.as_str(), note.as_str()), ("", ""));
}

/// An interlock trip alerts at once, never held back for a picture: the
/// alert carries the last verified picture (said to be from before it),
/// and is updated with the picture of the moment when a camera that
/// stayed live shows one, while its buttons are answered.
#[test]
fn the_interlock_alert_is_sent_at_once_and_updated_with_the_picture() {
    let file = "interlock_tripped_notify.yaml";
    let bp: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir().join(file)).unwrap()).unwrap();
    let steps = bp["action"].as_sequence().unwrap();
    let first = steps
        .iter()
        .position(|s| s["type"] == "notify")
        .expect("a top-level notify");
    for step in &steps[..first] {
        assert!(
            step.get("variables").is_some() && step.as_mapping().unwrap().len() == 1,
            "{file}: only variables before the alert, got {step:?}"
        );
    }
    let alert = &steps[first];
    let taken = [(PORCH, BEFORE)];
    let vars = serde_json::json!({ "snapshot_images": [DRIVE, PORCH], "snapshot_due": DUE });
    let entity = render(variable(&bp, "snapshot_entity"), vars, &taken);
    assert_eq!(entity, PORCH);
    let note = render(
        variable(&bp, "picture_note"),
        serde_json::json!({ "snapshot_entity": entity }),
        &taken,
    );
    assert_eq!(note, "Picture from 14:02:05, before the alert.");
    let message = render(
        &alert["message"],
        serde_json::json!({ "camera": "porch", "reason": "picture frozen: not even sensor noise changes", "picture_note": note }),
        &[],
    );
    assert_eq!(
        message,
        "Camera porch: picture frozen: not even sensor noise changes Picture from 14:02:05, before the alert."
    );
    assert_eq!(
        render(
            &alert["data"]["image"],
            serde_json::json!({ "snapshot_entity": entity }),
            &[]
        ),
        "/api/image_proxy/image.porch_snapshot"
    );

    // Beside the buttons: the wait, and the update it gates.
    let parallel = steps[first + 1]["parallel"]
        .as_sequence()
        .expect("the next step runs the picture and the buttons side by side");
    assert_eq!(parallel.len(), 2);
    assert_eq!(keyed(&parallel[1], "wait_for_trigger").len(), 1);
    assert_eq!(picture_wait(file, &bp), "waited");
    assert!(keyed(&parallel[0], "wait_for_trigger").is_empty());
    let gate = steps_with(&parallel[0], "if")
        .into_iter()
        .find(|s| s["if"][0]["value_template"] == "{{ wait.completed }}")
        .expect("the update only when the picture came");
    let update = gate["then"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "notify")
        .expect("the update");
    assert_eq!(
        update["data"]["tag"], alert["data"]["tag"],
        "the same notification"
    );
    assert_eq!(
        update["data"]["actions"], alert["data"]["actions"],
        "the same buttons"
    );
    assert_eq!(
        update["data"]["alert_once"],
        Value::from(true),
        "it does not ring again"
    );
    let fresh = render(
        &gate["then"][0]["variables"]["fresh_entity"],
        serde_json::json!({ "snapshot_images": [DRIVE, PORCH], "snapshot_due": DUE }),
        &[(DRIVE, BEFORE), (PORCH, AFTER)],
    );
    assert_eq!(fresh, PORCH);
    assert_eq!(
        render(
            &update["data"]["image"],
            serde_json::json!({ "fresh_entity": fresh }),
            &[]
        ),
        "/api/image_proxy/image.porch_snapshot"
    );
}
