//! The JSON on doorwarden's state, event and response topics
//! (`docs/mqtt.md`). Field order follows the document; absent values are
//! `null` in states (so templates can test them) and left out of events.
//!
//! Every free-text reason goes through [`crate::redact::text`] once more on
//! its way out: the core builds reasons without secrets, and this makes a
//! URL with credentials that slipped in harmless anyway.

use serde::Serialize;

use crate::core::{
    CameraStatus, DeliveryEvent, DoorStatus, LockDisplay, MoveSource, liveness::LivenessKind,
};
use crate::redact;

/// An ISO 8601 time with an explicit `+00:00` offset, which Home
/// Assistant's timestamp sensors require.
pub fn timestamp(t: jiff::Timestamp) -> String {
    t.display_with_offset(jiff::tz::Offset::UTC).to_string()
}

/// `online` / `offline`, as every availability topic carries.
pub fn availability(online: bool) -> &'static str {
    if online { "online" } else { "offline" }
}

pub fn lock_display(lock: LockDisplay) -> &'static str {
    match lock {
        LockDisplay::Locked => "LOCKED",
        LockDisplay::Unlocked => "UNLOCKED",
        LockDisplay::Locking => "LOCKING",
        LockDisplay::Unlocking => "UNLOCKING",
        LockDisplay::Jammed => "JAMMED",
    }
}

/// The source words of `lock_source`.
pub fn move_source(source: MoveSource) -> &'static str {
    source.as_str()
}

#[derive(Serialize)]
struct DoorStateJson {
    lock: Option<&'static str>,
    lock_source: Option<&'static str>,
    door: Option<&'static str>,
    interlock: &'static str,
    interlock_reason: Option<String>,
    delivery: &'static str,
    window_ends: Option<String>,
    entries_left: u32,
    compromised: bool,
    backstop_armed: bool,
    grant_minutes: u32,
    schedule_warning: Option<String>,
}

/// `<base>/<door>/state`.
pub fn door_state(s: &DoorStatus) -> String {
    let json = DoorStateJson {
        lock: s.lock.map(lock_display),
        lock_source: s.lock_source.map(move_source),
        door: s.door_open.map(|open| if open { "open" } else { "closed" }),
        interlock: if s.interlock_blocking.is_some() {
            "blocking"
        } else {
            "clear"
        },
        interlock_reason: s.interlock_blocking.as_deref().map(redact::text),
        delivery: s.delivery.as_str(),
        window_ends: s.window_ends.map(timestamp),
        entries_left: s.entries_left,
        compromised: s.compromised,
        backstop_armed: s.backstop_armed,
        grant_minutes: s.grant_minutes,
        schedule_warning: s.schedule_warning.clone(),
    };
    to_json(&json)
}

#[derive(Serialize)]
struct CameraStateJson {
    state: &'static str,
    live: bool,
    frozen: bool,
    reason: Option<String>,
    since: String,
    fps: f64,
    bitrate_kbps: f64,
    last_frame: Option<String>,
}

/// `<base>/camera/<camera>/state`. Rates are rounded (fps to 0.01, bitrate
/// to 0.1 kbit/s) so that noise below what anyone reads does not make a
/// new retained state.
pub fn camera_state(s: &CameraStatus) -> String {
    let json = CameraStateJson {
        state: s.state.as_str(),
        live: s.state == LivenessKind::Live,
        frozen: s.state == LivenessKind::Frozen,
        reason: s.reason.as_deref().map(redact::text),
        since: timestamp(s.since),
        fps: round(s.fps, 100.0),
        bitrate_kbps: round(s.bitrate_kbps, 10.0),
        last_frame: s.last_frame.map(timestamp),
    };
    to_json(&json)
}

/// Finite and rounded; a NaN or infinite rate (a bug upstream) shows as 0
/// rather than as JSON `null`, which a numeric sensor would reject.
fn round(value: f64, scale: f64) -> f64 {
    if value.is_finite() {
        (value * scale).round() / scale
    } else {
        0.0
    }
}

#[derive(Serialize)]
struct DeliveryEventJson {
    event_type: &'static str,
    reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    camera: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compromised: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clip_duration_s: Option<f64>,
    /// Present (null before the first) when the door has a camera with a
    /// snapshot entity.
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot_at: Option<Option<String>>,
    /// Present with `snapshot_at`; null when no picture of the moment will
    /// follow (none of those cameras is live).
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot_due: Option<Option<String>>,
}

/// The pictures a delivery event of a door with snapshot cameras points
/// to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSnapshots {
    /// When the newest verified snapshot already shown was taken (`None`
    /// before the first): older than the event, for a notification that
    /// cannot wait.
    pub at: Option<jiff::Timestamp>,
    /// The event's picture is asked for at this time: a verified snapshot
    /// taken at or after it follows, a few seconds later (its hold), unless
    /// the camera stops being live. `None` when no camera of the door is
    /// live, so none will.
    pub due: Option<jiff::Timestamp>,
}

/// `<base>/<door>/delivery/event`: what Home Assistant's `event` entity
/// reads (`event_type` plus attributes). `snapshot`: for a door with
/// snapshot cameras, the pictures a notification can attach.
pub fn delivery_event(e: &DeliveryEvent, snapshot: Option<EventSnapshots>) -> String {
    let json = DeliveryEventJson {
        event_type: e.kind.as_str(),
        reason: redact::text(&e.reason),
        camera: e.camera.clone(),
        source: e.source.map(move_source),
        duration_s: e.duration_s,
        entries: e.entries,
        compromised: e.compromised,
        clip: e.clip.as_ref().map(|c| c.file.clone()),
        clip_duration_s: e.clip.as_ref().map(|c| round(c.duration_s, 10.0)),
        snapshot_at: snapshot.map(|s| s.at.map(timestamp)),
        snapshot_due: snapshot.map(|s| s.due.map(timestamp)),
    };
    to_json(&json)
}

#[derive(Serialize)]
struct DeliveryResponseJson<'a> {
    granted: bool,
    reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    carrier: Option<&'a str>,
}

/// `<base>/<door>/delivery/response`: the answer to a courier's request.
pub fn delivery_response(granted: bool, reason: &str, carrier: Option<&str>) -> String {
    to_json(&DeliveryResponseJson {
        granted,
        reason: redact::text(reason),
        carrier,
    })
}

#[derive(Serialize)]
struct BridgeInfoJson {
    version: &'static str,
    doors: usize,
    cameras: usize,
}

/// `<base>/bridge/info`.
pub fn bridge_info(doors: usize, cameras: usize) -> String {
    to_json(&BridgeInfoJson {
        version: env!("CARGO_PKG_VERSION"),
        doors,
        cameras,
    })
}

/// `<base>/bridge/health`: the bridge's problem entity and its counts.
pub fn health(health: &crate::intake::Health) -> String {
    to_json(health)
}

fn to_json(value: &impl Serialize) -> String {
    // These structs hold only strings, numbers, booleans and options, which
    // serde_json always serializes; the fallback is never taken.
    serde_json::to_string(value).unwrap_or_else(|_| String::from("{}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{DeliveryEventKind, DeliveryState};

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().expect("test timestamp")
    }

    #[test]
    fn door_state_matches_the_documented_shape() {
        let s = DoorStatus {
            door: "front".into(),
            lock: Some(LockDisplay::Locked),
            lock_source: Some(MoveSource::Keypad { slot: Some(3) }),
            door_open: Some(false),
            interlock_blocking: Some(
                "camera porch frozen since 14:02:11 (12 identical frames)".into(),
            ),
            delivery: DeliveryState::Idle,
            window_ends: Some(ts("2026-11-28T16:00:00Z")),
            entries_left: 1,
            compromised: false,
            backstop_armed: false,
            grant_minutes: 30,
            schedule_warning: Some(
                "window Sun 02:00-03:00 on 2027-03-28 falls in the hour Europe/Berlin skips \
                 (clocks go 02:00 -> 03:00): it will not open that day"
                    .into(),
            ),
        };
        assert_eq!(
            door_state(&s),
            r#"{"lock":"LOCKED","lock_source":"keypad","door":"closed","interlock":"blocking","interlock_reason":"camera porch frozen since 14:02:11 (12 identical frames)","delivery":"idle","window_ends":"2026-11-28T16:00:00+00:00","entries_left":1,"compromised":false,"backstop_armed":false,"grant_minutes":30,"schedule_warning":"window Sun 02:00-03:00 on 2027-03-28 falls in the hour Europe/Berlin skips (clocks go 02:00 -> 03:00): it will not open that day"}"#
        );
    }

    #[test]
    fn unknown_lock_and_door_are_null() {
        let s = DoorStatus {
            door: "front".into(),
            lock: None,
            lock_source: None,
            door_open: None,
            interlock_blocking: None,
            delivery: DeliveryState::WindowOpen,
            window_ends: None,
            entries_left: 0,
            compromised: true,
            backstop_armed: true,
            grant_minutes: 5,
            schedule_warning: None,
        };
        let v: serde_json::Value = serde_json::from_str(&door_state(&s)).expect("json");
        assert!(v["lock"].is_null());
        assert!(v["door"].is_null());
        assert!(v["schedule_warning"].is_null());
        assert_eq!(v["interlock"], "clear");
        assert_eq!(v["delivery"], "window_open");
    }

    #[test]
    fn camera_state_flags_follow_the_liveness() {
        let s = CameraStatus {
            camera: "porch".into(),
            state: LivenessKind::Frozen,
            reason: Some("14 identical frames".into()),
            since: ts("2026-11-28T14:02:11Z"),
            fps: 14.996,
            bitrate_kbps: 1980.54,
            last_frame: Some(ts("2026-11-28T14:02:10.933Z")),
        };
        assert_eq!(
            camera_state(&s),
            r#"{"state":"frozen","live":false,"frozen":true,"reason":"14 identical frames","since":"2026-11-28T14:02:11+00:00","fps":15.0,"bitrate_kbps":1980.5,"last_frame":"2026-11-28T14:02:10.933+00:00"}"#
        );
    }

    #[test]
    fn event_leaves_out_what_does_not_apply_and_redacts_urls() {
        let e = DeliveryEvent {
            door: "front".into(),
            kind: DeliveryEventKind::InterlockTripped,
            reason: "camera rtsp://admin:hunter2@porch-camera.local/stream went offline".into(),
            camera: Some("porch".into()),
            source: None,
            duration_s: None,
            entries: None,
            compromised: Some(true),
            clip: None,
        };
        assert_eq!(
            delivery_event(&e, None),
            r#"{"event_type":"interlock_tripped","reason":"camera rtsp://***@porch-camera.local/stream went offline","camera":"porch","compromised":true}"#
        );
        // A door with snapshot cameras: null before the first verified
        // snapshot, then its time; and when the event's own picture was
        // asked for, null when no camera is live to take it.
        let none = EventSnapshots {
            at: None,
            due: None,
        };
        assert!(
            delivery_event(&e, Some(none))
                .ends_with(r#""compromised":true,"snapshot_at":null,"snapshot_due":null}"#)
        );
        let both = EventSnapshots {
            at: Some(ts("2026-11-28T14:02:05Z")),
            due: Some(ts("2026-11-28T14:02:09.25Z")),
        };
        assert!(delivery_event(&e, Some(both)).ends_with(
            r#""snapshot_at":"2026-11-28T14:02:05+00:00","snapshot_due":"2026-11-28T14:02:09.25+00:00"}"#
        ));
    }

    #[test]
    fn rates_that_are_not_numbers_show_as_zero() {
        assert_eq!(round(f64::NAN, 10.0), 0.0);
        assert_eq!(round(f64::INFINITY, 10.0), 0.0);
    }
}
