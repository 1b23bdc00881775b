//! What the door does with what its lock says, and the relock a delivery
//! may leave owed.
//!
//! Owns: the lock's auto-relock backstop ([`Backstop`]: the owner's value,
//! and the value doorwarden asked for until the lock reads it back). Reads
//! the lock tracker's notes (confirmed, moved by someone else, jammed,
//! refused, silent) and turns each into what the delivery does next: carry
//! on, relock, end, or leave the relock owed and send it again once the
//! lock talks. May not change the windows, the entries or the code itself
//! (it reads the open window): a keypad entry is held to `refusal.rs` and
//! started by the door's `begin`, like any other request.

use std::time::{Duration, Instant};

use serde_json::json;

use super::session::{Delivery, OwedRelock, Phase};
use super::words::lock_word;
use super::{Ctx, Door, all_live};
use crate::core::lock::{LockNote, Want};
use crate::core::{
    Action, Decision, DeliveryEventKind, LockCommand, LockState, MoveSource, RequestChannel,
};

/// The lock's own auto-relock, used as a backstop while a delivery is
/// unlocked.
#[derive(Debug, Clone, Default)]
pub(super) struct Backstop {
    /// The lock's own auto-relock as the owner set it; `Some` also means
    /// the lock has one (it reported it).
    pub(super) owner: Option<u32>,
    /// The auto-relock value doorwarden last sent, until the lock reads it
    /// back: the backstop is armed only then, and readbacks of any other
    /// value meanwhile are stale.
    pub(super) asked: Option<u32>,
}

/// More reported moves than this within [`MOVES_WINDOW`] are more than a
/// bolt (and the hand on it) makes: someone else is publishing them.
const MOVES_PLAUSIBLE: usize = 6;
const MOVES_WINDOW: Duration = Duration::from_secs(10);
/// How often moves taken as not credible are summed up in the audit log.
const FLAPPING_SUMMARY: Duration = Duration::from_secs(60);

/// The lock's reported moves that nobody asked for, as a rate: anyone on
/// the broker can publish them on the lock's own topic, and each one
/// otherwise costs an audit record and a Home Assistant event. Fixed
/// size; no allocation.
#[derive(Debug, Clone, Default)]
pub(super) struct ReportedMoves {
    /// The instants of the last few moves, oldest overwritten first.
    times: [Option<Instant>; MOVES_PLAUSIBLE],
    next: usize,
    /// Moves not taken one by one since the last summary.
    unsaid: u32,
    said_at: Option<Instant>,
    /// When the reports will have been calm for [`MOVES_WINDOW`]: the last
    /// one believed may have been spoofed, so the lock is asked again.
    refresh_at: Option<Instant>,
}

impl ReportedMoves {
    /// Count a move at `now`; `false` when it is one more than a bolt
    /// makes in [`MOVES_WINDOW`].
    fn credible(&mut self, now: Instant) -> bool {
        let oldest = self.times[self.next];
        self.times[self.next] = Some(now);
        self.next = (self.next + 1) % MOVES_PLAUSIBLE;
        oldest.is_none_or(|t| now.saturating_duration_since(t) >= MOVES_WINDOW)
    }

    pub(super) fn refresh_at(&self) -> Option<Instant> {
        self.refresh_at
    }

    /// Whether the calm after a flapping spell has come (once).
    pub(super) fn refresh_due(&mut self, now: Instant) -> bool {
        let due = self.refresh_at.is_some_and(|t| t <= now);
        if due {
            self.refresh_at = None;
        }
        due
    }

    /// Take one not-credible move; `Some(count)` when it is time to say how
    /// many there were (the first at once, then at most once a minute).
    fn unsaid(&mut self, now: Instant) -> Option<u32> {
        self.unsaid = self.unsaid.saturating_add(1);
        self.refresh_at = Some(now + MOVES_WINDOW);
        let due = self
            .said_at
            .is_none_or(|t| now.saturating_duration_since(t) >= FLAPPING_SUMMARY);
        if !due {
            return None;
        }
        self.said_at = Some(now);
        Some(std::mem::take(&mut self.unsaid))
    }
}

impl Door {
    /// A move nobody asked for, reported by the lock (or by someone on the
    /// broker in its name). `false` when it came faster than a bolt moves:
    /// then it is summed up (at most once a minute) instead of taken one
    /// by one, and a delivery in progress is tripped and relocked: nobody
    /// can say where this door's bolt is.
    fn move_credible(&mut self, ctx: &mut Ctx) -> bool {
        if self.moves.credible(ctx.now.mono) {
            return true;
        }
        if let Some(count) = self.moves.unsaid(ctx.now.mono) {
            let reason = format!(
                "lock reports flapping: {count} reported moves faster than a bolt moves \
                 (more than {MOVES_PLAUSIBLE} in {} s); they may be spoofed",
                MOVES_WINDOW.as_secs()
            );
            self.audit(
                ctx,
                Decision::LockReportsFlapping,
                &reason,
                json!({ "moves": count }),
            );
        }
        if let Some(s) = self.delivery.session_mut()
            && !s.compromised
        {
            s.compromised = true;
            let reason = "lock reports flapping faster than a bolt moves during a delivery";
            let mut ev = self.delivery_event(DeliveryEventKind::InterlockTripped, reason);
            ev.compromised = Some(true);
            ctx.out.push(Action::DeliveryEvent(ev));
            self.audit(ctx, Decision::Tripped, reason, json!({}));
            self.relock_when_shut(ctx, "the lock's reports are not credible");
        }
        false
    }

    /// The shell could not hand `command` to the broker link (`why`: for
    /// the owner). A relock is held by the shell until the reconnect: it
    /// is pending, not a lock fault, so no deadline runs. An unlock is
    /// dropped by the shell: a delivery waiting for it relocks instead.
    pub fn handle_unsent(&mut self, ctx: &mut Ctx, command: &LockCommand, why: &str) {
        match command {
            LockCommand::Lock => {
                if !self.lock.not_sent(Want::Locked, why) {
                    return;
                }
                let reason = format!("relock pending: {why}");
                self.event(ctx, DeliveryEventKind::RelockPending, &reason, None, None);
                self.audit(ctx, Decision::RelockPending, &reason, json!({}));
            }
            LockCommand::Unlock => {
                if !self.lock.not_sent(Want::Unlocked, why) {
                    return;
                }
                self.lock.abandon();
                let reason = format!("unlock not sent: {why}");
                self.audit(ctx, Decision::UnlockNotSent, &reason, json!({}));
                if self
                    .delivery
                    .session()
                    .is_some_and(|s| s.phase == Phase::Unlocking)
                {
                    self.relock(ctx, &reason);
                }
            }
            // Keypad slots are put right on the next connect; a refresh is
            // asked on every connect anyway; an auto-relock value that did
            // not arrive is never read back, so the backstop is not shown
            // armed.
            LockCommand::Refresh
            | LockCommand::SetAutoRelock(_)
            | LockCommand::SetCode { .. }
            | LockCommand::ClearCode { .. } => {}
        }
    }

    /// A relock held back by the shell has gone out now: from here the
    /// lock is waited for as for any command.
    pub fn handle_sent(&mut self, ctx: &mut Ctx, command: &LockCommand) {
        if *command != LockCommand::Lock {
            return;
        }
        self.lock.sent(ctx.now.mono, Want::Locked);
        self.audit(
            ctx,
            Decision::RelockSent,
            "the relock held back while the broker was unreachable was sent",
            json!({}),
        );
    }

    pub(super) fn on_lock_note(
        &mut self,
        ctx: &mut Ctx,
        note: LockNote,
        source: Option<MoveSource>,
    ) {
        match note {
            LockNote::Confirmed(Want::Unlocked) => {
                let Some(s) = self.delivery.session_mut() else {
                    return;
                };
                if s.phase == Phase::Unlocking {
                    s.phase = Phase::Unlocked;
                }
                s.unlocked_at = Some(ctx.now.wall);
                self.event(
                    ctx,
                    DeliveryEventKind::Unlocked,
                    "lock confirmed the delivery unlock",
                    None,
                    None,
                );
            }
            LockNote::Confirmed(Want::Locked) => self.relock_confirmed(ctx),
            LockNote::Moved { .. } if !self.move_credible(ctx) => {}
            LockNote::Moved {
                state: LockState::Unlocked,
                source,
            } => self.moved_unlocked(ctx, source),
            LockNote::Moved { state, source } => {
                let by = source.map(|s| s.as_str()).unwrap_or("unknown");
                let reason = format!("lock moved to {} by {by}", lock_word(state));
                self.audit(ctx, Decision::LockMoved, &reason, json!({ "source": by }));
                if state == LockState::Locked && self.in_session() && self.door_open == Some(true) {
                    // A bolt thrown with the door open only jams, and the
                    // report may not even be the lock's: the delivery goes
                    // on and doorwarden relocks itself once the door shuts.
                    self.relock_when_shut(ctx, &format!("lock reported locked by {by}"));
                } else if state == LockState::Locked && self.in_session() {
                    self.event(ctx, DeliveryEventKind::Relocked, &reason, None, None);
                    self.finish(ctx, &format!("locked by {by} during the delivery"));
                    // The report is only a claim: anyone on the broker can
                    // publish it. doorwarden's own LOCK costs nothing when
                    // the bolt is already thrown, and throws it when it is
                    // not. Not tracked as pending: an echo of LOCKED is not
                    // owed, and the report that follows says where it is.
                    ctx.out.push(self.lock_action(LockCommand::Lock));
                    self.audit(
                        ctx,
                        Decision::Relocking,
                        "sending LOCK after the delivery ended on a reported lock",
                        json!({ "source": by }),
                    );
                }
            }
            LockNote::Jammed { pending } => self.lock_jammed(ctx, pending, source),
            LockNote::Retry(LockCommand::Unlock) if self.in_session() => {
                self.unlock_not_confirmed(ctx)
            }
            LockNote::Retry(command) => {
                let reason = "lock did not confirm in time; sending the command again".to_string();
                self.audit(ctx, Decision::LockRetry, &reason, json!({}));
                ctx.out.push(self.lock_action(command));
            }
            LockNote::Unresponsive(want) => self.lock_unresponsive(ctx, want),
            LockNote::Refused(want) => self.lock_refused(ctx, want, source),
            LockNote::Availability(up) => {
                let reason = if up {
                    "lock reachable again"
                } else {
                    "lock unreachable"
                };
                self.audit(
                    ctx,
                    Decision::LockAvailability,
                    reason,
                    json!({ "online": up }),
                );
                if up && self.delivery.owed().is_some() {
                    // Its answer decides whether the owed relock is sent.
                    ctx.out.push(self.lock_action(LockCommand::Refresh));
                }
            }
        }
    }

    pub(super) fn relock_confirmed(&mut self, ctx: &mut Ctx) {
        if self.delivery.owed().is_some() {
            self.forget_owed_relock(ctx);
            let reason = "lock confirmed the relock a delivery was owed";
            self.event(ctx, DeliveryEventKind::Relocked, reason, None, None);
            self.audit(ctx, Decision::Relocked, reason, json!({}));
            return;
        }
        let outcome = match self.delivery.session() {
            Some(s) if !matches!(s.phase, Phase::Relocking { .. }) => return,
            None => return,
            Some(s) if s.restarted => "relocked after a restart",
            Some(s) if s.compromised => "relocked after the interlock tripped",
            Some(_) => "completed",
        };
        self.event(
            ctx,
            DeliveryEventKind::Relocked,
            "lock confirmed the relock",
            None,
            None,
        );
        self.finish(ctx, outcome);
    }

    /// A relock the session cannot see through: end it, but remember the
    /// door may still be unlocked. Home Assistant shows the delivery as
    /// tripped, not completed: nobody can vouch for that door.
    pub(super) fn give_up_relock(&mut self, ctx: &mut Ctx, outcome: &str) {
        let Some(mut s) = self.delivery.take_session() else {
            return;
        };
        s.compromised = true;
        self.delivery = Delivery::RelockOwed(OwedRelock {
            why: outcome.to_string(),
            record: s.record.clone(),
        });
        self.wrap_up(ctx, s, outcome);
    }

    /// The owed relock is done with (the bolt is locked, or the owner took
    /// the door over): its record leaves the store.
    pub(super) fn forget_owed_relock(&mut self, ctx: &mut Ctx) {
        if let Delivery::RelockOwed(_) = self.delivery {
            self.delivery = Delivery::Idle;
            self.persist(ctx);
        }
    }

    /// The lock has said something (or the door shut): if a delivery's
    /// relock is still owed, forget it when the bolt is locked, or send it
    /// now that the lock is reachable and free and the door shut (an
    /// unresponsive lock is not talked to until it reports again; a jammed
    /// one until someone frees the bolt).
    pub(super) fn settle_owed_relock(&mut self, ctx: &mut Ctx) {
        let Some(OwedRelock { why, .. }) = self.delivery.owed() else {
            return;
        };
        let lock = &self.lock;
        let talking =
            lock.available() != Some(false) && !lock.is_unresponsive() && !lock.is_jammed();
        if !talking || lock.pending().is_some() {
            return;
        }
        if lock.state() == LockState::Locked {
            self.forget_owed_relock(ctx);
            return;
        }
        // As in a delivery, a bolt thrown into an open doorway only jams:
        // the shut brings this back.
        if self.door_open == Some(true) {
            return;
        }
        let reason = format!("the lock answers again; sending the relock it missed ({why})");
        let cmd = self.lock.command(ctx.now.mono, Want::Locked);
        ctx.out.push(self.lock_action(cmd));
        self.audit(ctx, Decision::Relocking, &reason, json!({}));
    }

    pub(super) fn lock_jammed(
        &mut self,
        ctx: &mut Ctx,
        pending: Option<Want>,
        source: Option<MoveSource>,
    ) {
        let jam = "lock reports a jam";
        self.jammed_because(ctx, jam, "lock jammed while relocking", pending, source);
    }

    /// The lock answered the pending command with the opposite position:
    /// its bolt would not move. A refused relock is a jam and ends the
    /// delivery as `relock_failed` at once; a refused unlock leaves the
    /// door locked (safe), but the courier cannot get in, so the owner
    /// hears it at once too and the delivery relocks as after any jam.
    pub(super) fn lock_refused(&mut self, ctx: &mut Ctx, want: Want, source: Option<MoveSource>) {
        let reason = match want {
            Want::Locked => "lock jammed: reported unlocked after the relock",
            Want::Unlocked => "lock jammed: reported locked after the unlock",
        };
        self.jammed_because(ctx, reason, reason, Some(want), source);
    }

    /// `relock_outcome`: how a delivery whose relock this jam stopped ends.
    pub(super) fn jammed_because(
        &mut self,
        ctx: &mut Ctx,
        reason: &str,
        relock_outcome: &str,
        pending: Option<Want>,
        source: Option<MoveSource>,
    ) {
        let reason = reason.to_string();
        let mut ev = self.delivery_event(DeliveryEventKind::LockJammed, &reason);
        ev.source = source;
        ctx.out.push(Action::DeliveryEvent(ev));
        self.audit(
            ctx,
            Decision::LockJammed,
            &reason,
            json!({ "pending": pending.map(Want::as_str) }),
        );
        match self.delivery.session().map(|s| s.phase.clone()) {
            Some(Phase::Relocking { .. }) => self.give_up_relock(ctx, relock_outcome),
            Some(Phase::Unlocking) => self.relock(ctx, "the lock jammed while unlocking"),
            _ => {}
        }
    }

    pub(super) fn lock_unresponsive(&mut self, ctx: &mut Ctx, want: Want) {
        let reason = format!(
            "lock did not confirm the {} command, even after a retry",
            want.as_str()
        );
        self.event(
            ctx,
            DeliveryEventKind::LockUnresponsive,
            &reason,
            None,
            None,
        );
        self.audit(
            ctx,
            Decision::LockUnresponsive,
            &reason,
            json!({ "command": want.as_str() }),
        );
        match self.delivery.session().map(|s| s.phase.clone()) {
            Some(Phase::Relocking { .. }) => {
                self.give_up_relock(ctx, "relock not confirmed: lock unresponsive")
            }
            Some(Phase::Unlocking) => self.relock(ctx, "the lock did not confirm the unlock"),
            _ => {}
        }
    }

    /// The delivery unlock's confirmation deadline passed. It is sent again
    /// only while the rules that granted it still hold.
    pub(super) fn unlock_not_confirmed(&mut self, ctx: &mut Ctx) {
        let unlocking = self
            .delivery
            .session()
            .is_some_and(|s| s.phase == Phase::Unlocking);
        let rules_hold = self.entries.window.is_some() && all_live(ctx.cameras);
        if unlocking && rules_hold {
            let reason = "lock did not confirm the unlock in time; sending it again";
            self.audit(ctx, Decision::LockRetry, reason, json!({}));
            ctx.out.push(self.lock_action(LockCommand::Unlock));
        } else if unlocking {
            self.relock(
                ctx,
                "the unlock was not confirmed and may no longer be granted",
            );
        } else {
            // A relock is already due (waiting for the door to shut): stop
            // asking the lock to open.
            self.lock.abandon();
            let reason = "unlock not confirmed; not sent again, a relock is due";
            self.audit(ctx, Decision::UnlockAbandoned, reason, json!({}));
        }
    }

    pub(super) fn moved_unlocked(&mut self, ctx: &mut Ctx, source: Option<MoveSource>) {
        let delivery_slot = matches!(
            (source, self.rules.code_slot),
            (Some(MoveSource::Keypad { slot: Some(s) }), Some(ours)) if s == ours
        );
        if delivery_slot && !self.in_session() {
            // The courier typed the delivery code on the keypad and the lock
            // opened itself: that is a delivery entry, held to the same rules.
            match self.refusal(ctx.cameras, ctx.storage_problem, true) {
                None => self.begin(ctx, None, RequestChannel::Keypad, true, true),
                Some(reason) => {
                    self.deny(ctx, RequestChannel::Keypad, None, &reason);
                    let cmd = self.lock.command(ctx.now.mono, Want::Locked);
                    ctx.out.push(self.lock_action(cmd));
                }
            }
            return;
        }
        let by = source.map(|s| s.as_str()).unwrap_or("unknown");
        if self.in_session() {
            // Late news of the delivery unlock itself, or a hand on the
            // thumb-turn mid-delivery: the session already watches the door.
            let reason = format!("lock reported unlocked by {by} during the delivery");
            self.audit(ctx, Decision::LockMoved, &reason, json!({ "source": by }));
            return;
        }
        let reason = format!("lock unlocked by {by} outside doorwarden");
        let mut ev = self.delivery_event(DeliveryEventKind::ManualUnlock, &reason);
        ev.source = source;
        ctx.out.push(Action::DeliveryEvent(ev));
        self.audit(
            ctx,
            Decision::ManualUnlock,
            &reason,
            json!({ "source": by }),
        );
    }

    /// The lock's auto-relock setting, read back.
    pub(super) fn auto_relock_read(&mut self, secs: u32) {
        match self.backstop.asked {
            Some(asked) if asked == secs => self.backstop.asked = None,
            // Zigbee2MQTT repeats the lock's whole state with every report,
            // so the value from before doorwarden's change can still arrive.
            Some(_) => {}
            // During a backstop the lock shows doorwarden's value; the
            // owner's is the one kept in the session.
            None if self
                .delivery
                .session()
                .is_some_and(|s| s.record.restore_auto_relock.is_some()) => {}
            None => self.backstop.owner = Some(secs),
        }
    }

    pub(super) fn set_auto_relock(&mut self, ctx: &mut Ctx, secs: u32) {
        self.backstop.asked = Some(secs);
        ctx.out
            .push(self.lock_action(LockCommand::SetAutoRelock(secs)));
    }
}
