//! The config file as an owner meets it: the example loads, and every broken
//! file is answered with `file:line:col: what is wrong`, all problems at once.

use std::process::Command;

use doorwarden::config::{self, load_str};

const DOORWARDEN: &str = env!("CARGO_BIN_EXE_doorwarden");

fn example_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml")
}

/// The errors for `text`, as the owner would read them.
fn errors(text: &str) -> Vec<String> {
    match load_str(text, "home.yaml") {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const MQTT: &str = "mqtt:\n  url: mqtt://broker.local:1883\n";

#[test]
fn example_config_loads_and_describes_every_door() {
    let cfg = config::load(&example_path()).expect("config.example.yaml must be valid");
    assert_eq!(
        cfg.locks.keys().collect::<Vec<_>>(),
        ["front_door", "garage"]
    );
    assert_eq!(cfg.cameras.len(), 3);
    let out = Command::new(DOORWARDEN)
        .args(["check-config"])
        .arg(example_path())
        .output()
        .expect("run doorwarden");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    for line in [
        "front_door \"Front door\": Zigbee2MQTT lock `zigbee2mqtt/Front door lock`, contact sensor `zigbee2mqtt/Front door contact`",
        "garage \"Garage side door\": Z-Wave JS UI lock `zwave/Garage/side_door_lock`",
        "cameras that must be live: porch, hallway",
        "delivery window: Mon-Fri 09:00-12:30 (Europe/Berlin)",
        "delivery window: Sat 10:00-14:00 (Europe/Berlin)",
        "delivery window: Mon-Fri 22:00-06:00 next day (Europe/Berlin)",
        "doorwarden/front_door/state, doorwarden/front_door/lock/set, doorwarden/front_door/delivery/request",
    ] {
        assert!(summary.contains(line), "summary lacks {line:?}:\n{summary}");
    }
    // Every camera's picture policy: porch says `required`; hallway and
    // garage say nothing, and a door names each.
    let pictures: Vec<&str> = summary
        .lines()
        .filter(|l| l.contains("picture check:"))
        .collect();
    let by_default = "    picture check: required (the default for a camera a door names: not live until its picture is checked)";
    assert_eq!(
        pictures,
        [by_default, by_default, "    picture check: required"],
        "{summary}"
    );
    // The example carries an inline camera password; it must not be echoed.
    assert!(!summary.contains("change-me"), "{summary}");
}

#[test]
fn defaults_fill_what_is_left_out() {
    let cfg = load_str(MQTT, "home.yaml").expect("minimal config");
    assert_eq!(cfg.mqtt.base_topic, "doorwarden");
    assert_eq!(cfg.mqtt.discovery_prefix, "homeassistant");
    assert_eq!(cfg.mqtt.keep_alive, std::time::Duration::from_secs(30));
    assert!(cfg.locks.is_empty());
    assert!(cfg.recordings.is_none(), "nothing is recorded unless asked");
    let cfg = load_str(
        &format!("{MQTT}recordings:\n  path: /media/doorwarden\n"),
        "home.yaml",
    )
    .expect("recordings with defaults");
    let rec = cfg.recordings.expect("recordings");
    assert_eq!(rec.pre_roll, std::time::Duration::from_secs(10));
    assert_eq!(rec.post_roll, std::time::Duration::from_secs(10));
    assert_eq!(
        rec.retention.max_age,
        std::time::Duration::from_secs(30 * 86400)
    );
    assert_eq!(rec.retention.max_size, 2 << 30);
}

/// Each broken file, with every message it must produce, in order.
#[test]
fn picture_check_defaults_to_required_for_a_door_camera_and_optional_for_the_others() {
    use doorwarden::core::picture::PicturePolicy;
    let text = format!(
        "{MQTT}cameras:\n  porch:\n    url: rtsp://porch.lan/s\n  yard:\n    url: rtsp://yard.lan/s\n  \
         side:\n    url: rtsp://side.lan/s\n    picture_check: off\n  \
         shed:\n    url: rtsp://shed.lan/s\n    picture_check: required\n\
         locks:\n  front:\n    zigbee2mqtt:\n      topic: zigbee2mqtt/front\n    cameras: [porch, side]\n"
    );
    let cfg = load_str(&text, "home.yaml").expect("valid config");
    let policy = |cam: &str| cfg.cameras[cam].picture_policy();
    // Named by a door, nothing said: its picture must be checked.
    assert_eq!(policy("porch"), PicturePolicy::Required);
    // Named by no door: checked, but an undecodable stream does not make
    // it unlive (it gates nothing).
    assert_eq!(policy("yard"), PicturePolicy::Optional);
    // What the file says wins, either way.
    assert_eq!(policy("side"), PicturePolicy::Off);
    assert_eq!(policy("shed"), PicturePolicy::Required);

    // check-config shows the policy in force and why.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("home.yaml");
    std::fs::write(&path, &text).expect("write");
    let out = Command::new(DOORWARDEN)
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run doorwarden");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    let cameras: Vec<&str> = summary
        .lines()
        .filter(|l| l.contains("picture check:"))
        .collect();
    assert_eq!(
        cameras,
        [
            // BTreeMap order: porch, shed, side, yard.
            "    picture check: required (the default for a camera a door names: not live until its picture is checked)",
            "    picture check: required",
            "    picture check: off",
            "    picture check: optional (the default for a camera no door names)",
        ],
        "{summary}"
    );
}

#[test]
fn broken_configs_are_reported_with_line_and_column() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "recordings with a size nobody can read and a misspelt roll",
            "mqtt:\n  url: mqtt://broker.local\nrecordings:\n  path: /media/doorwarden\n  pre_rol: 5s\n  retention:\n    max_size: lots\n",
            &[
                "home.yaml:5:3: unknown key `pre_rol` in recordings; did you mean `pre_roll`?",
                "home.yaml:7:15: recordings.retention.max_size: `lots` is not a size; write it like \"2GiB\", \"500MiB\" or \"1GB\"",
            ],
        ),
        (
            "misspelt top-level key",
            "mqtt:\n  url: mqtt://broker.local\ncamras:\n  porch: {url: rtsp://porch-camera.local/s}\n",
            &["home.yaml:3:1: unknown key `camras` at the top level; did you mean `cameras`?"],
        ),
        (
            "misspelt camera option",
            "mqtt:\n  url: mqtt://broker.local\ncameras:\n  porch:\n    url: rtsp://porch-camera.local/s\n    stal_after: 2s\n",
            &[
                "home.yaml:6:5: unknown key `stal_after` in cameras.porch; did you mean `stall_after`?",
            ],
        ),
        (
            "door names an unknown camera",
            "mqtt:\n  url: mqtt://broker.local\ncameras:\n  porch: {url: rtsp://porch-camera.local/s}\nlocks:\n  front:\n    zigbee2mqtt: {topic: zigbee2mqtt/front}\n    cameras: [porhc]\n",
            &[
                "home.yaml:8:15: locks.front names camera `porhc`, which is not under `cameras:`; did you mean `porch`?",
            ],
        ),
        (
            "window with from == to",
            "mqtt:\n  url: mqtt://broker.local\ncameras:\n  porch: {url: rtsp://porch-camera.local/s}\nlocks:\n  front:\n    zigbee2mqtt: {topic: zigbee2mqtt/front}\n    cameras: [porch]\ndeliveries:\n  front:\n    time_zone: Europe/Berlin\n    windows:\n      - days: [mon]\n        from: \"09:00\"\n        to: \"09:00\"\n",
            &[
                "home.yaml:15:13: deliveries.front.windows[0]: from and to are both 09:00; a window needs a start and a different end",
            ],
        ),
        (
            "unknown time zone",
            "mqtt:\n  url: mqtt://broker.local\ncameras:\n  porch: {url: rtsp://porch-camera.local/s}\nlocks:\n  front:\n    zigbee2mqtt: {topic: zigbee2mqtt/front}\n    cameras: [porch]\ndeliveries:\n  front:\n    time_zone: Europe/Berln\n",
            &[
                "home.yaml:11:16: deliveries.front.time_zone: unknown time zone `Europe/Berln`: use an IANA name such as \"Europe/Berlin\" or \"America/New_York\"",
            ],
        ),
        (
            "stall_after below 200ms",
            "mqtt:\n  url: mqtt://broker.local\ncameras:\n  porch:\n    url: rtsp://porch-camera.local/s\n    stall_after: 100ms\n",
            &[
                "home.yaml:6:18: cameras.porch.stall_after is 100ms; it must be at least 200ms (shorter reads network jitter as a stall)",
            ],
        ),
        (
            "duration that is not one",
            "mqtt:\n  url: mqtt://broker.local\ncameras:\n  porch:\n    url: rtsp://porch-camera.local/s\n    warmup: three seconds\n",
            &[
                "home.yaml:6:13: cameras.porch.warmup: `three seconds` is not a duration (expected number at 0); write it like \"90s\", \"2m 30s\" or \"500ms\"",
            ],
        ),
        (
            "broker url with the wrong scheme",
            "mqtt:\n  url: http://broker.local:1883\n",
            &["home.yaml:2:8: mqtt.url must start with mqtt:// or mqtts://, not http://"],
        ),
        (
            "no mqtt section",
            "cameras: {}\n",
            &["home.yaml:1:1: missing `mqtt:` section (at least `url: mqtt://host:1883`)"],
        ),
        (
            "lock with two backends",
            "mqtt:\n  url: mqtt://broker.local\nlocks:\n  front:\n    zigbee2mqtt: {topic: zigbee2mqtt/front}\n    zwave_js: {node: 4}\n",
            &[
                "home.yaml:6:5: locks.front: a lock has one backend; give one of zigbee2mqtt, zwave_js or zwave_js_server",
            ],
        ),
        (
            "Z-Wave JS server over wss://",
            "mqtt:\n  url: mqtt://broker.local\nlocks:\n  front:\n    zwave_js_server: {url: \"wss://ha.local:3000\", node: 5}\n",
            &[
                "home.yaml:5:28: locks.front.zwave_js_server.url: wss:// is not supported; the Z-Wave JS server speaks plain ws:// (e.g. `ws://homeassistant.local:3000`)",
            ],
        ),
        (
            "Z-Wave JS server node id 0 and an http url",
            "mqtt:\n  url: mqtt://broker.local\nlocks:\n  front:\n    zwave_js_server:\n      url: http://ha.local:3000\n      node: 0\n",
            &[
                "home.yaml:6:12: locks.front.zwave_js_server.url must be the server's WebSocket address, e.g. `ws://homeassistant.local:3000`",
                "home.yaml:7:13: locks.front.zwave_js_server.node 0 is not a Z-Wave node id (1-232, or 256-4000 for Long Range)",
            ],
        ),
        (
            "lock on the gateway and the server at once",
            "mqtt:\n  url: mqtt://broker.local\nlocks:\n  front:\n    zwave_js: {node: 4}\n    zwave_js_server: {url: \"ws://ha.local:3000\", node: 4}\n",
            &[
                "home.yaml:6:5: locks.front: a lock has one backend; give one of zigbee2mqtt, zwave_js or zwave_js_server",
            ],
        ),
        (
            "deliveries for a door that does not exist",
            "mqtt:\n  url: mqtt://broker.local\nlocks:\n  front:\n    zigbee2mqtt: {topic: zigbee2mqtt/front}\ndeliveries:\n  fornt:\n    time_zone: Europe/Berlin\n",
            &[
                "home.yaml:7:3: deliveries.fornt: there is no door `fornt` under `locks:`; did you mean `front`?",
            ],
        ),
        (
            "time of day without a leading zero",
            "mqtt:\n  url: mqtt://broker.local\ncameras:\n  porch: {url: rtsp://porch-camera.local/s}\nlocks:\n  front:\n    zigbee2mqtt: {topic: zigbee2mqtt/front}\n    cameras: [porch]\ndeliveries:\n  front:\n    time_zone: Europe/Berlin\n    windows:\n      - days: [mon]\n        from: \"9:00\"\n        to: \"12:00\"\n",
            &[
                "home.yaml:14:15: deliveries.front.windows[0].from: `9:00` is not a time of day; write it as HH:MM, e.g. \"09:30\"",
            ],
        ),
        (
            "unknown transport",
            "mqtt:\n  url: mqtt://broker.local\ncameras:\n  porch:\n    url: rtsp://porch-camera.local/s\n    transport: sctp\n",
            &[
                "home.yaml:6:16: cameras.porch.transport: unknown variant `sctp`, expected `tcp` or `udp`",
            ],
        ),
        (
            "unknown picture check",
            "mqtt:\n  url: mqtt://broker.local\ncameras:\n  porch:\n    url: rtsp://porch-camera.local/s\n    picture_check: sometimes\n",
            &[
                "home.yaml:6:20: cameras.porch.picture_check: unknown variant `sometimes`, expected one of `required`, `optional`, `off`",
            ],
        ),
        (
            "camera without a url",
            "mqtt:\n  url: mqtt://broker.local\ncameras:\n  porch:\n    transport: tcp\n",
            &["home.yaml:4:3: cameras.porch: missing field `url`"],
        ),
        (
            "reserved door name",
            "mqtt:\n  url: mqtt://broker.local\nlocks:\n  bridge:\n    zigbee2mqtt: {topic: zigbee2mqtt/front}\n",
            &[
                "home.yaml:4:3: door name `bridge` is reserved for doorwarden's own topics; pick another",
            ],
        ),
        (
            "zero entries per window",
            "mqtt:\n  url: mqtt://broker.local\ncameras:\n  porch: {url: rtsp://porch-camera.local/s}\nlocks:\n  front:\n    zigbee2mqtt: {topic: zigbee2mqtt/front}\n    cameras: [porch]\ndeliveries:\n  front:\n    time_zone: UTC\n    entries_per_window: 0\n",
            &["home.yaml:12:25: deliveries.front.entries_per_window must be at least 1"],
        ),
        (
            "deliveries on a door no camera watches",
            "mqtt:\n  url: mqtt://broker.local\nlocks:\n  front:\n    zigbee2mqtt: {topic: zigbee2mqtt/front}\ndeliveries:\n  front:\n    time_zone: UTC\n",
            &[
                "home.yaml:4:3: locks.front has delivery rules but no cameras; deliveries need at least one camera to watch the door",
            ],
        ),
        (
            "not YAML at all",
            "mqtt:\n  url: [mqtt://broker.local\n",
            &["home.yaml:3:1: not valid YAML: did not find expected ',' or ']'"],
        ),
    ];
    for (what, text, want) in cases {
        let got = errors(text);
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "case: {what}");
    }
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let text = "mqtt:\n  url: mqtt://broker.local\n  keepalive: 30s\ncameras:\n  porch:\n    url: rtsp://porch-camera.local/s\n    stall_after: 50ms\n    freze_after: 1s\nlocks:\n  front:\n    zigbee2mqtt: {topic: zigbee2mqtt/front}\n    cameras: [porch, attic]\n";
    let got = errors(text);
    assert_eq!(
        got,
        [
            "home.yaml:3:3: unknown key `keepalive` in mqtt; did you mean `keep_alive`?",
            "home.yaml:7:18: cameras.porch.stall_after is 50ms; it must be at least 200ms (shorter reads network jitter as a stall)",
            "home.yaml:8:5: unknown key `freze_after` in cameras.porch; did you mean `freeze_after`?",
            "home.yaml:12:22: locks.front names camera `attic`, which is not under `cameras:`",
        ]
    );
}

#[test]
fn broken_file_exits_2_with_positions_on_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, "mqtt:\n  url: mqtt://broker.local\ncamras: {}\n").expect("write");
    for args in [
        vec!["check-config".to_string()],
        vec!["run".to_string(), "--config".to_string()],
    ] {
        let out = Command::new(DOORWARDEN)
            .args(&args)
            .arg(&path)
            .output()
            .expect("run doorwarden");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let want = format!(
            "{}:3:1: unknown key `camras` at the top level; did you mean `cameras`?",
            path.display()
        );
        assert!(stderr.contains(&want), "{args:?}: {stderr}");
    }
}

#[test]
fn secrets_never_appear_in_errors_or_summaries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_cam = "Sup3rSecretCam";
    let secret_mqtt = "Sup3rSecretMqtt";
    // Valid file: the summary must not echo either secret.
    let good = format!(
        "mqtt:\n  url: mqtt://broker.local\n  username: dw\n  password: {secret_mqtt}\ncameras:\n  porch:\n    url: rtsp://admin:{secret_cam}@porch-camera.local:554/s\n"
    );
    // Broken files whose errors quote the very values holding the secrets.
    let bad = [
        format!("mqtt:\n  url: mqtt://dw:{secret_mqtt}@broker.local\n"),
        format!(
            "mqtt:\n  url: mqtt://broker.local\ncameras:\n  porch:\n    url: http://admin:{secret_cam}@porch-camera.local/s\n"
        ),
        format!(
            "mqtt:\n  url: mqtt://broker.local\ncameras:\n  porch:\n    url: rtsp://admin:{secret_cam}@porch-camera.local/s\n    username: admin\n"
        ),
        format!(
            "mqtt:\n  url: mqtt://broker.local\n  password: {secret_mqtt}\n  password_file: /nonexistent\n"
        ),
    ];
    let mut outputs = Vec::new();
    for (i, text) in std::iter::once(&good).chain(bad.iter()).enumerate() {
        let path = dir.path().join(format!("c{i}.yaml"));
        std::fs::write(&path, text).expect("write");
        for sub in [&["check-config"][..], &["run", "--config"][..]] {
            if i == 0 && sub[0] == "run" {
                continue; // a valid file would start the bridge
            }
            let out = Command::new(DOORWARDEN)
                .args(sub)
                .arg(&path)
                .output()
                .expect("run doorwarden");
            if i > 0 {
                assert_eq!(
                    out.status.code(),
                    Some(2),
                    "file {i} should be refused:\n{text}"
                );
            }
            outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
            outputs.push(String::from_utf8_lossy(&out.stderr).into_owned());
        }
    }
    for o in &outputs {
        assert!(
            !o.contains(secret_cam) && !o.contains(secret_mqtt),
            "secret leaked in:\n{o}"
        );
    }
    // The errors still say what is wrong, with the credentials masked.
    let all = outputs.join("\n");
    assert!(
        all.contains("mqtt.url must not contain credentials"),
        "{all}"
    );
    assert!(all.contains("rtsp://***@porch-camera.local"), "{all}");
}

/// The next instant after now at which `zone` moves its clocks, forward
/// (`forward`) or back, and the local date it happens on.
fn next_clock_change(zone: &str, forward: bool) -> jiff::civil::Date {
    let tz = jiff::tz::TimeZone::get(zone).expect("zone exists");
    let now = jiff::Timestamp::now();
    tz.following(now)
        .find(|t| {
            let before = tz.to_offset(t.timestamp() - jiff::SignedDuration::from_nanos(1));
            (t.offset() > before) == forward && t.offset() != before
        })
        .map(|t| t.timestamp().to_zoned_datetime(tz.clone()).date())
        .expect("the zone changes its clocks every year")
}

#[test]
fn check_config_warns_about_windows_in_skipped_or_repeated_hours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dst.yaml");
    std::fs::write(
        &path,
        "mqtt:\n  url: mqtt://broker.local\n\
         cameras:\n  porch: {url: rtsp://porch-camera.local/s}\n\
         locks:\n  front_door:\n    zigbee2mqtt: {topic: zigbee2mqtt/front}\n    cameras: [porch]\n  \
         side:\n    zigbee2mqtt: {topic: zigbee2mqtt/side}\n    cameras: [porch]\n  \
         garage:\n    zigbee2mqtt: {topic: zigbee2mqtt/garage}\n    cameras: [porch]\n\
         deliveries:\n  \
         front_door:\n    time_zone: Europe/Berlin\n    windows: [{days: [sun], from: \"02:00\", to: \"03:00\"}]\n  \
         side:\n    time_zone: America/New_York\n    windows: [{days: [sun], from: \"01:00\", to: \"02:00\"}]\n  \
         garage:\n    time_zone: Europe/Berlin\n    windows: [{days: [mon, tue, wed, thu, fri], from: \"09:00\", to: \"12:00\"}]\n",
    )
    .expect("write");
    let out = Command::new(DOORWARDEN)
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run doorwarden");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // A warning, not an error: the file is valid and the bridge would start.
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spring = next_clock_change("Europe/Berlin", true);
    let autumn = next_clock_change("America/New_York", false);
    for line in [
        format!(
            "warning: front_door: window Sun 02:00-03:00 on {spring} falls in the hour \
             Europe/Berlin skips (clocks go 02:00 -> 03:00): it will not open that day"
        ),
        format!(
            "warning: side: window Sun 01:00-02:00 on {autumn} falls in the hour \
             America/New_York repeats (clocks go 02:00 -> 01:00): it will open once, \
             from 01:00 EDT to 01:00 EST (1h)"
        ),
    ] {
        assert!(
            stdout.lines().any(|l| l.trim() == line),
            "no line {line:?} in:\n{stdout}"
        );
    }
    // Weekday mornings never meet a clock change in Berlin.
    assert!(
        !stdout.contains("warning: garage"),
        "garage has no DST trouble:\n{stdout}"
    );
}

#[test]
fn a_picture_substream_is_checked_and_its_credentials_never_shown() {
    let cam = |extra: &str| {
        format!(
            "mqtt:\n  url: mqtt://broker.local\ncameras:\n  porch:\n    url: rtsp://porch-camera.local/s\n{extra}"
        )
    };
    let cases: &[(&str, String, &[&str])] = &[
        (
            "not rtsp",
            cam("    picture_check: required\n    picture_url: http://porch-camera.local/sub\n"),
            &["home.yaml:7:18: cameras.porch.picture_url must start with rtsp://, not http://"],
        ),
        (
            "not a URL",
            cam("    picture_check: required\n    picture_url: porch-camera.local/sub\n"),
            &[
                "home.yaml:7:18: cameras.porch.picture_url is not a URL (relative URL without a base); write it as rtsp://host:554/substream",
            ],
        ),
        (
            "pictures not checked",
            // Only an explicit `off`: left out, the policy is never off.
            cam("    picture_check: off\n    picture_url: rtsp://porch-camera.local/sub\n"),
            &[
                "home.yaml:7:5: cameras.porch.picture_url is set but picture_check is off: the substream would never be looked at (set picture_check: required or optional, or remove picture_url)",
            ],
        ),
    ];
    for (what, text, want) in cases {
        let got = errors(text);
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "case: {what}");
    }
    // Valid, with credentials in the substream's URL: the summary names the
    // substream, masked.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub.yaml");
    std::fs::write(
        &path,
        cam("    picture_check: required\n    picture_url: rtsp://viewer:Sub5ecret@porch-camera.local/sub\n"),
    )
    .expect("write");
    let out = Command::new(DOORWARDEN)
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run doorwarden");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{summary}");
    assert!(
        summary.contains(
            "pictures checked on its substream rtsp://***@porch-camera.local/sub; live only while both streams are"
        ),
        "{summary}"
    );
    assert!(!summary.contains("Sub5ecret"), "{summary}");
}
