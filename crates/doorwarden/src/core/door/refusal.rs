//! Why a delivery request is refused, and the rules it is held to.
//!
//! Owns: the door's delivery [`Rules`] as configured (`locks.<door>`,
//! `deliveries.<door>`), and the order in which a request is checked
//! against them: wrong-code lockout, a relock not yet sent, storage, the
//! window and its entries, a delivery already in progress, the lock, the
//! cameras, then the code. May not touch: any state of its own beyond the
//! rules; it reads the door's windows, lock, session and code, and a
//! refused request only ever leaves an audit record, an event and a reply
//! (a granted one is handed to the door's `begin`).

use std::fmt;
use std::time::Duration;

use serde_json::json;

use super::code::CODE_UNREADABLE;
use super::words::via_str;
use super::{CameraSnapshot, Ctx, Door};
use crate::config::{self, OnCameraLoss, Secret};
use crate::core::liveness::LivenessKind;
use crate::core::text;
use crate::core::{Action, Decision, DeliveryEventKind, DeliveryState, RequestChannel};

/// A door's delivery rules, from `locks.<door>` and `deliveries.<door>`.
#[derive(Debug, Clone)]
pub struct Rules {
    pub max_unlocked: Duration,
    pub relock_after_close: Duration,
    pub entries_per_window: u32,
    pub on_camera_loss: OnCameraLoss,
    pub code_slot: Option<u16>,
    pub owner_unlock_requires_cameras: bool,
    pub grant_duration: Duration,
}

impl Rules {
    pub fn new(door: &config::Door, deliveries: &config::Deliveries) -> Rules {
        Rules {
            max_unlocked: deliveries.max_unlocked,
            relock_after_close: deliveries.relock_after_close,
            entries_per_window: deliveries.entries_per_window,
            on_camera_loss: deliveries.on_camera_loss,
            code_slot: deliveries.code_slot,
            owner_unlock_requires_cameras: door.owner_unlock_requires_cameras,
            grant_duration: deliveries.grant_duration,
        }
    }
}

impl Door {
    /// Why a delivery request would be refused now (before looking at any
    /// code), or `None` when it would be granted. `keypad` skips the lock
    /// check: a keypad entry has already moved the bolt.
    pub(super) fn refusal(
        &self,
        cameras: &[CameraSnapshot],
        storage: Option<&str>,
        keypad: bool,
    ) -> Option<String> {
        text::owned(|w| self.write_refusal(w, cameras, storage, keypad))
    }

    /// [`Door::refusal`], written into `w`; `Ok(false)` when there is none.
    /// The door's state compares it with what Home Assistant shows on every
    /// event, so it is rendered, never built, until it changes.
    pub(super) fn write_refusal(
        &self,
        w: &mut dyn fmt::Write,
        cameras: &[CameraSnapshot],
        storage: Option<&str>,
        keypad: bool,
    ) -> text::Said {
        // A relock that has not left is the first thing the owner must know
        // about this door, whatever else holds deliveries back.
        if self.lock.unsent().is_some() {
            return self.lock.write_blocking_reason(w);
        }
        if let Some(problem) = storage {
            write!(w, "storage unavailable: {problem}")?;
            return Ok(true);
        }
        if self.entries.window.is_none() {
            w.write_str("no delivery window is open")?;
            return Ok(true);
        }
        if self.entries.spent(self.rules.entries_per_window) {
            write!(
                w,
                "this window's entries are used up ({} of {})",
                self.entries.used, self.rules.entries_per_window
            )?;
            return Ok(true);
        }
        if self.in_session() {
            w.write_str("a delivery is already in progress")?;
            return Ok(true);
        }
        if !keypad && self.lock.write_blocking_reason(w)? {
            return Ok(true);
        }
        if cameras.is_empty() {
            w.write_str("no camera watches this door")?;
            return Ok(true);
        }
        self.write_cameras_not_live(w, cameras)
    }

    /// Every camera that is not Live, described for the owner; `None` when
    /// all are.
    pub(super) fn cameras_not_live(&self, cameras: &[CameraSnapshot]) -> Option<String> {
        text::owned(|w| self.write_cameras_not_live(w, cameras))
    }

    fn write_cameras_not_live(
        &self,
        w: &mut dyn fmt::Write,
        cameras: &[CameraSnapshot],
    ) -> text::Said {
        let mut said = false;
        for c in cameras.iter().filter(|c| c.kind != LivenessKind::Live) {
            if said {
                w.write_str("; ")?;
            }
            self.write_camera(w, c)?;
            said = true;
        }
        Ok(said)
    }

    pub(super) fn courier_request(
        &mut self,
        ctx: &mut Ctx,
        code: Option<Secret>,
        carrier: Option<String>,
        via: RequestChannel,
    ) {
        if let Some(wait) = self.codes.failures.locked_out(ctx.now.mono) {
            let reason = format!("too many wrong codes; try again in {wait} s");
            return self.deny(ctx, via, carrier, &reason);
        }
        if let Some(reason) = self.refusal(ctx.cameras, ctx.storage_problem, false) {
            return self.deny(ctx, via, carrier, &reason);
        }
        let mut code_used = false;
        if let Some(stored) = &self.codes.current {
            match code {
                _ if stored.check.is_none() && via == RequestChannel::Mqtt => {
                    return self.deny(ctx, via, carrier, CODE_UNREADABLE);
                }
                Some(given) if stored.matches(&given) => code_used = true,
                Some(_) => {
                    let count = self.codes.failures.record(ctx.now);
                    // A restart must not hand the minute's tries back. At
                    // most five writes a minute: the lockout stops the rest
                    // before they get here.
                    self.persist_if_changed(ctx);
                    let reason = "wrong delivery code".to_string();
                    self.audit(
                        ctx,
                        Decision::WrongCode,
                        &reason,
                        json!({
                            "failures_this_minute": count,
                            "carrier": carrier,
                        }),
                    );
                    return self.deny(ctx, via, carrier, &reason);
                }
                // The owner's own button and the lock's keypad (which checked
                // the PIN itself) need no code here.
                None if matches!(via, RequestChannel::Button | RequestChannel::Keypad) => {}
                None => return self.deny(ctx, via, carrier, "a delivery code is required"),
            }
        }
        self.begin(ctx, carrier, via, false, code_used);
    }

    pub(super) fn deny(
        &mut self,
        ctx: &mut Ctx,
        via: RequestChannel,
        carrier: Option<String>,
        reason: &str,
    ) {
        self.last_outcome = Some(DeliveryState::Denied);
        self.event(ctx, DeliveryEventKind::Denied, reason, None, None);
        if via == RequestChannel::Mqtt {
            ctx.out.push(Action::DeliveryResponse {
                door: self.name.clone(),
                granted: false,
                reason: reason.to_string(),
                carrier: carrier.clone(),
            });
        }
        self.audit(
            ctx,
            Decision::Denied,
            reason,
            json!({ "carrier": carrier, "via": via_str(via) }),
        );
    }
}

/// At least one camera, and every one of them Live: a door without a
/// camera is never "watched".
pub(super) fn all_live(cameras: &[CameraSnapshot]) -> bool {
    !cameras.is_empty() && cameras.iter().all(|c| c.kind == LivenessKind::Live)
}
