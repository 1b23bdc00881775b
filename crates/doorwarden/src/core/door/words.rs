//! What a door says: its state for Home Assistant, its delivery events and
//! its audit records, in the owner's words and on the door's clock.
//!
//! Owns no state: it reads the door's and renders it. May not decide
//! anything or change the door; every rule lives with the part that owns
//! its state.

use std::fmt;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{CameraSnapshot, Ctx, Door, Phase};
use crate::core::schedule::OpenWindow;
use crate::core::text;
use crate::core::{
    Action, AuditRecord, Decision, DeliveryEvent, DeliveryEventKind, DeliveryState, DoorStatus,
    LockState, MoveSource, RequestChannel,
};

impl Door {
    /// What Home Assistant should show for this door.
    pub fn status(&self, cameras: &[CameraSnapshot], storage_problem: Option<&str>) -> DoorStatus {
        DoorStatus {
            door: self.name.clone(),
            interlock_blocking: self.refusal(cameras, storage_problem, false),
            schedule_warning: self.entries.clock_warning().map(|w| w.to_string()),
            ..self.plain_status()
        }
    }

    /// Whether [`Door::status`] would return exactly `shown`. Asked on
    /// every event (each camera frame among them), so it renders the
    /// sentences into a comparison instead of building them.
    pub fn status_is(
        &self,
        shown: &DoorStatus,
        cameras: &[CameraSnapshot],
        storage_problem: Option<&str>,
    ) -> bool {
        let plain = self.plain_status();
        shown.door == self.name
            && shown.lock == plain.lock
            && shown.lock_source == plain.lock_source
            && shown.door_open == plain.door_open
            && shown.delivery == plain.delivery
            && shown.window_ends == plain.window_ends
            && shown.entries_left == plain.entries_left
            && shown.compromised == plain.compromised
            && shown.backstop_armed == plain.backstop_armed
            && shown.grant_minutes == plain.grant_minutes
            && text::displays_as(
                shown.schedule_warning.as_deref(),
                self.entries.clock_warning().map(|w| w as &dyn fmt::Display),
            )
            && text::same(shown.interlock_blocking.as_deref(), |w| {
                self.write_refusal(w, cameras, storage_problem, false)
            })
    }

    /// Every field of the status that holds no text (those are left empty).
    fn plain_status(&self) -> DoorStatus {
        let delivery = match self.delivery.session() {
            Some(s) if s.compromised => DeliveryState::Tripped,
            Some(s) if matches!(s.phase, Phase::Unlocking | Phase::Unlocked) && !s.opened_ever => {
                DeliveryState::Unlocked
            }
            Some(_) => DeliveryState::Watching,
            None => match (self.last_outcome, self.entries.window) {
                (Some(outcome), _) => outcome,
                (None, Some(_)) => DeliveryState::WindowOpen,
                (None, None) => DeliveryState::Idle,
            },
        };
        DoorStatus {
            door: String::new(),
            lock: self.lock.display(),
            lock_source: self.lock.source(),
            door_open: self.door_open,
            interlock_blocking: None,
            delivery,
            window_ends: self.entries.window.map(|w| w.ends),
            entries_left: match self.entries.window {
                Some(_) => self
                    .rules
                    .entries_per_window
                    .saturating_sub(self.entries.used),
                None => 0,
            },
            compromised: self.delivery.session().is_some_and(|s| s.compromised),
            backstop_armed: self.backstop.asked.is_none()
                && self
                    .delivery
                    .session()
                    .is_some_and(|s| s.record.restore_auto_relock.is_some()),
            grant_minutes: u32::try_from(self.entries.grant_duration.as_secs() / 60)
                .unwrap_or(u32::MAX),
            schedule_warning: None,
        }
    }

    /// "camera porch frozen since 14:02:11 (12 identical frames)", the time
    /// on the door's clock.
    pub(super) fn describe_camera(&self, c: &CameraSnapshot) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_camera(&mut text, c);
        text
    }

    pub(super) fn write_camera(&self, w: &mut dyn fmt::Write, c: &CameraSnapshot) -> fmt::Result {
        let since = c.since.to_zoned_datetime(self.tz.clone());
        write!(
            w,
            "camera {} {} since {}",
            c.name,
            c.kind.as_str(),
            since.strftime("%H:%M:%S")
        )?;
        match &c.reason {
            Some(reason) => write!(w, " ({reason})"),
            None => Ok(()),
        }
    }

    pub(super) fn local_time(&self, t: Timestamp) -> String {
        t.to_zoned_datetime(self.tz.clone())
            .strftime("%H:%M:%S")
            .to_string()
    }

    /// [`Door::local_time`], with the zone's abbreviation when the clock
    /// shows that time twice that night (`01:00:00 EST`), so a window end
    /// in a repeated hour is not read as the first pass.
    pub(super) fn local_time_once(&self, t: Timestamp) -> String {
        let local = t.to_zoned_datetime(self.tz.clone());
        let shows_twice = matches!(
            self.tz.to_ambiguous_timestamp(local.datetime()).offset(),
            jiff::tz::AmbiguousOffset::Fold { .. }
        );
        if shows_twice {
            local.strftime("%H:%M:%S %Z").to_string()
        } else {
            local.strftime("%H:%M:%S").to_string()
        }
    }

    pub(super) fn delivery_event(&self, kind: DeliveryEventKind, reason: &str) -> DeliveryEvent {
        DeliveryEvent {
            door: self.name.clone(),
            kind,
            reason: reason.to_string(),
            camera: None,
            source: None,
            duration_s: None,
            entries: None,
            compromised: None,
            clip: None,
        }
    }

    pub(super) fn event(
        &self,
        ctx: &mut Ctx,
        kind: DeliveryEventKind,
        reason: &str,
        source: Option<MoveSource>,
        duration_s: Option<u64>,
    ) {
        let mut ev = self.delivery_event(kind, reason);
        ev.source = source;
        ev.duration_s = duration_s;
        ctx.out.push(Action::DeliveryEvent(ev));
    }

    /// Every decision goes to the audit log with the cameras' states.
    pub(super) fn audit(
        &self,
        ctx: &mut Ctx,
        decision: Decision,
        reason: &str,
        mut details: Value,
    ) {
        if let Value::Object(map) = &mut details {
            map.insert("cameras_now".into(), cameras_json(ctx.cameras));
            map.insert("lock".into(), json!(lock_word(self.lock.state())));
            map.insert("door_open".into(), json!(self.door_open));
        }
        ctx.out.push(Action::Audit(AuditRecord {
            at: ctx.now.wall,
            door: Some(self.name.clone()),
            decision: decision.as_str().to_string(),
            reason: reason.to_string(),
            details,
        }));
    }
}

pub(super) fn cameras_json(cameras: &[CameraSnapshot]) -> Value {
    let map: serde_json::Map<String, Value> = cameras
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                json!({ "state": c.kind.as_str(), "since": c.since.to_string(), "reason": c.reason }),
            )
        })
        .collect();
    Value::Object(map)
}

pub(super) fn window_json(w: &OpenWindow) -> Value {
    json!({ "starts": w.starts.to_string(), "ends": w.ends.to_string(), "granted": w.granted })
}

pub(super) fn via_str(via: RequestChannel) -> &'static str {
    match via {
        RequestChannel::Mqtt => "mqtt",
        RequestChannel::Button => "button",
        RequestChannel::Keypad => "keypad",
    }
}

pub(super) fn lock_word(state: LockState) -> &'static str {
    match state {
        LockState::Locked => "locked",
        LockState::Unlocked => "unlocked",
        LockState::Unknown => "unknown",
    }
}
