//! The lock's keypad slot, and the code the owner sets for it.
//!
//! Owns: whether the door's keypad slot may hold the delivery PIN and
//! whether the lock has confirmed what doorwarden last asked of the slot
//! ([`Keypad`]); setting and restoring the one-time code, which decides
//! what the slot should hold. May not touch: the session, the lock's bolt
//! or the windows (it reads the open window and the entries made); the
//! code's hash and the wrong-code count stay in `code.rs`.

use serde_json::json;

use super::code::{self, CODE_UNREADABLE, DeliveryCode};
use super::{Ctx, Door, all_live};
use crate::config::Secret;
use crate::core::{CodeRecord, Decision, LockCommand};

/// What doorwarden knows of the keypad slot.
#[derive(Debug, Clone, Default)]
pub(super) struct Keypad {
    /// The keypad slot may hold the delivery PIN.
    pub(super) in_lock: bool,
    /// The lock has not yet reported the keypad slot as doorwarden last
    /// asked (empty, or holding the delivery PIN): asked again on every
    /// connect of the broker link until it does.
    pub(super) unconfirmed: bool,
}

impl Keypad {
    /// `slot` when it may hold the PIN (what a restart must clear).
    pub(super) fn holding(&self, slot: Option<u16>) -> Option<u16> {
        slot.filter(|_| self.in_lock)
    }

    /// The slot was asked to be cleared; the lock has yet to say so.
    fn asked_empty(&mut self) {
        self.in_lock = false;
        self.unconfirmed = true;
    }
}

impl Door {
    /// Before any event: clear the delivery slot (a crash may have left a
    /// code in it).
    pub(super) fn clear_slot_on_start(&mut self, ctx: &mut Ctx) {
        if let Some(slot) = self.rules.code_slot {
            ctx.out
                .push(self.lock_action(LockCommand::ClearCode { slot }));
            self.keypad.asked_empty();
        }
    }

    /// The lock reported what keypad slot `slot` holds.
    pub(super) fn code_slot_reported(&mut self, ctx: &mut Ctx, slot: u16, set: bool) {
        if Some(slot) != self.rules.code_slot {
            return;
        }
        // As asked: done. Otherwise the next connect asks again.
        self.keypad.unconfirmed = set != self.keypad.in_lock;
        let reason = format!("keypad slot {slot} {}", if set { "set" } else { "cleared" });
        self.audit(
            ctx,
            Decision::CodeSlot,
            &reason,
            json!({ "slot": slot, "set": set }),
        );
    }

    /// The broker link is up (again). A keypad slot the lock has not
    /// confirmed is put right: cleared, or, while a delivery code is in it
    /// on purpose, given the PIN again (setting the same PIN twice is
    /// harmless; clearing it would lock the courier out of an open window).
    pub fn handle_link_up(&mut self, ctx: &mut Ctx) {
        let Some(slot) = self.rules.code_slot else {
            return;
        };
        if !self.keypad.unconfirmed {
            return;
        }
        let pin = self
            .codes
            .current
            .as_ref()
            .and_then(|c| c.plain.clone())
            .filter(|_| self.keypad.in_lock);
        let reason = match pin {
            Some(code) => {
                ctx.out
                    .push(self.lock_action(LockCommand::SetCode { slot, code }));
                format!(
                    "keypad slot {slot} not confirmed by the lock; setting the delivery code again"
                )
            }
            None => {
                ctx.out
                    .push(self.lock_action(LockCommand::ClearCode { slot }));
                format!("keypad slot {slot} not confirmed empty by the lock; clearing it again")
            }
        };
        self.audit(
            ctx,
            Decision::CodeSlotRetry,
            &reason,
            json!({ "slot": slot }),
        );
    }

    /// A code the store held from before the restart (call after
    /// [`Door::start`] and [`Door::restore`]). It is in force again only
    /// for the window occurrence it was set for, or, set before any window
    /// opened, for the next occurrence if that has not come and gone.
    pub fn restore_code(&mut self, ctx: &mut Ctx, record: CodeRecord) {
        // What the store holds now, so that dropping it gets persisted.
        self.codes.saved = Some(record.clone());
        // `start` cleared the configured slot; a slot from an older config
        // may still hold the PIN.
        if let Some(slot) = record.keypad_slot
            && Some(slot) != self.rules.code_slot
        {
            ctx.out
                .push(self.lock_action(LockCommand::ClearCode { slot }));
        }
        let now = ctx.now.wall;
        let open = self.entries.open_window(now);
        let first_edge = self.entries.schedule().next_change(record.set_at);
        let in_force = match (record.window, open) {
            (Some(starts), Some(w)) => starts == w.starts,
            (Some(_), None) => false,
            (None, Some(w)) => w.starts <= record.set_at || first_edge == Some(w.starts),
            (None, None) => first_edge.is_none_or(|edge| edge > now),
        };
        if !in_force {
            self.codes.current = None;
            self.audit(
                ctx,
                Decision::CodeDropped,
                "the delivery code's window ended while doorwarden was stopped; code dropped",
                json!({}),
            );
            return;
        }
        let check = code::read_back(&record);
        if let (Some(starts), Some(w)) = (record.window, open)
            && starts == w.starts
        {
            self.entries.at_least(starts, record.entries_used);
        }
        let readable = check.is_some();
        self.codes.current = Some(DeliveryCode {
            check,
            plain: None,
            window: record.window,
            set_at: record.set_at,
        });
        let mut reason = if readable {
            "the one-time delivery code was restored after a restart; requests must still carry it"
                .to_string()
        } else {
            CODE_UNREADABLE.to_string()
        };
        if let Some(slot) = self.rules.code_slot {
            reason.push_str(&format!(
                "; keypad slot {slot} was cleared and stays empty (doorwarden keeps no copy of \
                 the PIN): set the code again to use the keypad"
            ));
        }
        let decision = if readable {
            Decision::CodeRestored
        } else {
            Decision::CodeUnreadable
        };
        self.audit(ctx, decision, &reason, json!({}));
    }

    pub(super) fn set_code(&mut self, ctx: &mut Ctx, code: Secret) {
        // A new code replaces the old one everywhere, the keypad included.
        if let (true, Some(slot)) = (self.keypad.in_lock, self.rules.code_slot) {
            ctx.out
                .push(self.lock_action(LockCommand::ClearCode { slot }));
            self.keypad.asked_empty();
        }
        if code.expose().is_empty() {
            self.codes.current = None;
            self.persist_code_if_changed(ctx);
            self.audit(
                ctx,
                Decision::CodeCleared,
                "delivery code removed",
                json!({}),
            );
            return;
        }
        let check = self.codes.hash_new(&self.name, &code);
        self.codes.current = Some(DeliveryCode {
            check: Some(check),
            plain: self.rules.code_slot.map(|_| code),
            window: self.entries.window.map(|w| w.starts),
            set_at: ctx.now.wall,
        });
        // On disk before anyone is told it is set: a restart must not
        // forget it.
        self.persist_code_if_changed(ctx);
        self.audit(
            ctx,
            Decision::CodeSet,
            "a one-time delivery code was set",
            json!({}),
        );
        self.sync_code_slot(ctx);
    }

    /// Put the delivery PIN in the keypad slot while it may be used, take
    /// it out as soon as it may not.
    pub(super) fn sync_code_slot(&mut self, ctx: &mut Ctx) {
        let Some(slot) = self.rules.code_slot else {
            return;
        };
        let plain = self.codes.current.as_ref().and_then(|c| c.plain.as_ref());
        let usable = plain.is_some()
            && self.entries.window.is_some()
            && !self.entries.spent(self.rules.entries_per_window)
            && ctx.storage_problem.is_none()
            && all_live(ctx.cameras);
        match (usable, self.keypad.in_lock, plain) {
            (true, false, Some(code)) => {
                let code = code.clone();
                // The store learns the slot may hold the PIN before the
                // lock does, so that a restart clears it.
                self.keypad.in_lock = true;
                self.keypad.unconfirmed = true;
                self.persist_code_if_changed(ctx);
                ctx.out
                    .push(self.lock_action(LockCommand::SetCode { slot, code }));
                self.audit(
                    ctx,
                    Decision::CodeSlotSet,
                    &format!("delivery code put in keypad slot {slot}"),
                    json!({}),
                );
            }
            (false, true, _) => {
                ctx.out
                    .push(self.lock_action(LockCommand::ClearCode { slot }));
                self.keypad.asked_empty();
                self.persist_code_if_changed(ctx);
                self.audit(
                    ctx,
                    Decision::CodeSlotCleared,
                    &format!("keypad slot {slot} cleared"),
                    json!({}),
                );
            }
            _ => {}
        }
    }
}
