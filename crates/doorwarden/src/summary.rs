//! What `doorwarden check-config` prints for a valid file: each door, its
//! cameras, its windows in local time, the MQTT topics it will use, and a
//! warning for each window a clock change will skip or repeat in the coming
//! year.

use std::fmt::Write;

use crate::config::{Config, duration::show};
use crate::core::schedule::{Schedule, WARNING_HORIZON};
use crate::redact;

/// A short, human summary of a valid config as of `now` (which only
/// decides which clock changes are ahead). Never contains a secret: URLs
/// go through [`redact::text`] and passwords are only said to exist.
pub fn render(cfg: &Config, now: jiff::Timestamp) -> String {
    let mut out = String::new();
    let m = &cfg.mqtt;
    if let Some(instance) = &cfg.instance {
        let _ = writeln!(
            out,
            "Instance `{instance}`: unique ids and device ids start with doorwarden_{instance}_"
        );
    }
    let _ = writeln!(
        out,
        "MQTT broker {} as client `{}`",
        redact::text(&m.url),
        m.client_id
    );
    if let Some(user) = &m.username {
        let how = match (&m.password, &m.password_file) {
            (Some(_), _) => "password in the config file".to_string(),
            (None, Some(f)) => format!("password from {}", f.display()),
            (None, None) => "no password".to_string(),
        };
        let _ = writeln!(out, "  user `{user}`, {how}");
    }
    let base = &m.base_topic;
    let _ = writeln!(
        out,
        "  discovery under {}/…, bridge availability on {base}/bridge/availability, Home Assistant status on {}",
        m.discovery_prefix, m.ha_status_topic
    );

    let _ = writeln!(out, "\nCameras ({}):", cfg.cameras.len());
    for (key, cam) in &cfg.cameras {
        let _ = writeln!(
            out,
            "  {key} \"{}\": {} over {}; stalled after {}, frozen after {}, live after {} warm-up; state on {base}/camera/{key}/state",
            cfg.camera_name(key),
            redact::text(&cam.url),
            match cam.transport {
                crate::config::Transport::Tcp => "TCP",
                crate::config::Transport::Udp => "UDP",
            },
            show(cam.stall_after),
            show(cam.freeze_after),
            show(cam.warmup),
        );
        let why = match cam.picture_check {
            Some(_) => "",
            None if cam.picture_default == crate::core::picture::PicturePolicy::Required => {
                " (the default for a camera a door names: not live until its picture is checked)"
            }
            None => " (the default for a camera no door names)",
        };
        let _ = writeln!(out, "    picture check: {}{why}", cam.picture_policy());
        if let Some(sub) = &cam.picture_url {
            let _ = writeln!(
                out,
                "    pictures checked on its substream {}; live only while both streams are",
                redact::text(sub)
            );
        }
    }

    let _ = writeln!(out, "\nDoors ({}):", cfg.locks.len());
    for (key, door) in &cfg.locks {
        let lock = match (&door.zigbee2mqtt, &door.zwave_js, &door.zwave_js_server) {
            (Some(z), _, _) => format!("Zigbee2MQTT lock `{}`", z.topic),
            (None, Some(z), _) => format!("Z-Wave JS UI lock `{}`", z.node_topic()),
            (None, None, Some(s)) => format!(
                "Z-Wave JS server lock, node {} on `{}`",
                s.node,
                crate::redact::text(&s.url)
            ),
            (None, None, None) => "no lock".to_string(),
        };
        let contact = match &door.contact {
            Some(c) => match (&c.zigbee2mqtt, &c.zwave_js, &c.zwave_js_server) {
                (Some(z), _, _) => format!(", contact sensor `{}`", z.topic),
                (None, Some(z), _) => format!(", contact sensor `{}`", z.node_topic()),
                (None, None, Some(s)) => format!(
                    ", contact sensor node {} on `{}`",
                    s.node,
                    crate::redact::text(&s.url)
                ),
                (None, None, None) => String::new(),
            },
            None => ", no contact sensor".to_string(),
        };
        let _ = writeln!(out, "  {key} \"{}\": {lock}{contact}", cfg.door_name(key));
        let cams = if door.cameras.is_empty() {
            "none".to_string()
        } else {
            door.cameras.join(", ")
        };
        let _ = writeln!(out, "    cameras that must be live: {cams}");
        match cfg.deliveries.get(key) {
            Some(d) => {
                let windows = match &d.zone {
                    Ok(tz) => Schedule::new(tz.clone(), &d.windows).describe(),
                    Err(e) => vec![e.clone()],
                };
                if windows.is_empty() {
                    let _ = writeln!(
                        out,
                        "    delivery windows: none weekly (granted from Home Assistant only)"
                    );
                }
                for w in windows {
                    let _ = writeln!(out, "    delivery window: {w}");
                }
                let slot = d
                    .code_slot
                    .map(|s| format!(", keypad code slot {s}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "    unlocked at most {}, relocked {} after the door shuts, {} entr{} per window, on camera loss: {}{slot}",
                    show(d.max_unlocked),
                    show(d.relock_after_close),
                    d.entries_per_window,
                    if d.entries_per_window == 1 {
                        "y"
                    } else {
                        "ies"
                    },
                    match d.on_camera_loss {
                        crate::config::OnCameraLoss::Relock => "relock",
                        crate::config::OnCameraLoss::AlertOnly => "alert only",
                    },
                );
            }
            None => {
                let _ = writeln!(out, "    deliveries: off (no `deliveries.{key}` section)");
            }
        }
        let _ = writeln!(
            out,
            "    topics: {base}/{key}/state, {base}/{key}/lock/set, {base}/{key}/delivery/request -> {base}/{key}/delivery/response"
        );
    }
    let warnings = schedule_warnings(cfg, now);
    if !warnings.is_empty() {
        // Warnings, not problems: the file is valid and the bridge starts.
        let _ = writeln!(
            out,
            "\nWarnings ({}): windows a clock change touches in the coming year",
            warnings.len()
        );
        for w in &warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
    }
    out
}

/// Every weekly window occurrence, up to a year after `now`, that falls
/// wholly or partly in an hour its door's time zone skips or repeats, as
/// `door: what will happen`, door by door, soonest first. The running
/// bridge logs the same lines at start.
pub fn schedule_warnings(cfg: &Config, now: jiff::Timestamp) -> Vec<String> {
    let mut lines = Vec::new();
    for (key, d) in &cfg.deliveries {
        // A zone that cannot be found is already a config error.
        let Ok(tz) = &d.zone else {
            continue;
        };
        let schedule = Schedule::new(tz.clone(), &d.windows);
        for w in schedule.clock_change_warnings(now, WARNING_HORIZON) {
            lines.push(format!("{key}: {w}"));
        }
    }
    lines
}
