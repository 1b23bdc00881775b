//! What a Z-Wave lock's values mean, whichever way they reach doorwarden:
//! Z-Wave JS UI's MQTT gateway ([`super::zwave_js`]) or the Z-Wave JS
//! server's WebSocket API ([`super::zwave_server`]). Both carry the same
//! zwave-js values; only the addressing differs (topic segments there, a
//! value id here), so each transport finds the value and this module says
//! what it means for the core.
//!
//! - Door Lock CC (98) `currentMode`: 255 secured, 254 unknown, anything
//!   else some kind of unsecured.
//! - Notification CC (113) Access Control (type 6): the state variable
//!   "Lock state" (11 = jammed, 0 = idle), "Door state" (22 open, 23
//!   closed), and the stateless events by number ([`access_event`]).
//! - User Code CC (99) `userIdStatus`: 0 available, 1 enabled.

use serde_json::Value;

use super::zigbee2mqtt::whole_number;
use crate::core::{DoorReport, LockState, MoveSource};

/// Door Lock mode that means "secured".
pub(crate) const MODE_SECURED: u64 = 255;
/// Door Lock mode that means "unsecured" (what doorwarden sends to unlock).
pub(crate) const MODE_UNSECURED: u64 = 0;
/// Door Lock mode that means "unknown".
const MODE_UNKNOWN: u64 = 254;
/// Access Control "Lock state": jammed.
const LOCK_STATE_JAMMED: u64 = 11;
/// Access Control "Door state": closed.
const DOOR_STATE_CLOSED: u64 = 23;

/// Access Control events by number (Z-Wave Alliance notification registry).
pub(crate) mod event {
    pub const MANUAL_LOCK: u64 = 0x01;
    pub const MANUAL_UNLOCK: u64 = 0x02;
    pub const RF_LOCK: u64 = 0x03;
    pub const RF_UNLOCK: u64 = 0x04;
    pub const KEYPAD_LOCK: u64 = 0x05;
    pub const KEYPAD_UNLOCK: u64 = 0x06;
    pub const MANUAL_NOT_FULLY_LOCKED: u64 = 0x07;
    pub const RF_NOT_FULLY_LOCKED: u64 = 0x08;
    pub const AUTO_LOCKED: u64 = 0x09;
    pub const AUTO_NOT_FULLY_LOCKED: u64 = 0x0a;
    pub const USER_CODE_DELETED: u64 = 0x0d;
    pub const USER_CODE_ADDED: u64 = 0x0e;
    pub const LOCK_WITH_USER_CODE: u64 = 0x21;
    pub const UNLOCK_WITH_USER_CODE: u64 = 0x22;
}

/// A whole number no larger than `max`.
pub(crate) fn uint(v: &Value, max: u64) -> Result<u64, String> {
    match whole_number(v) {
        Some(n) if n <= max => Ok(n),
        Some(_) => Err("number out of range".into()),
        None => Err("not a whole number".into()),
    }
}

/// Door Lock `currentMode`.
pub(crate) fn current_mode(v: &Value) -> Result<LockState, String> {
    Ok(mode_state(uint(v, 255)?))
}

pub(crate) fn mode_state(mode: u64) -> LockState {
    match mode {
        MODE_SECURED => LockState::Locked,
        MODE_UNKNOWN => LockState::Unknown,
        _ => LockState::Unlocked,
    }
}

/// Access Control "Lock state": a jam, or nothing (idle).
pub(crate) fn lock_state(v: &Value) -> Result<Vec<DoorReport>, String> {
    match uint(v, u64::MAX)? {
        LOCK_STATE_JAMMED => Ok(vec![DoorReport::Jammed]),
        0 => Ok(Vec::new()),
        _ => Err("unknown lock state".into()),
    }
}

/// Access Control "Door state": `Some(open)`, or `None` for the idle value 0.
pub(crate) fn door_state(v: &Value) -> Result<Option<bool>, String> {
    match uint(v, u64::from(u32::MAX))? {
        0 => Ok(None),
        DOOR_STATE_CLOSED => Ok(Some(false)),
        // 22 "open", and 22 with a regular/tilt parameter (0x1600, 0x1601).
        22 | 0x1600 | 0x1601 => Ok(Some(true)),
        _ => Err("unknown door state".into()),
    }
}

/// The user slot a keypad event names: `{"userId":3}` (zwave-js's reading
/// of the event parameters), or a bare id. Anything else the parameters
/// hold (zwave-js may add the slot's PIN) is never looked at.
pub(crate) fn event_user(v: &Value) -> Option<u16> {
    let id = match v {
        Value::Object(map) => ["userId", "user ID", "userID"]
            .iter()
            .find_map(|k| map.get(*k))
            .and_then(whole_number),
        other => whole_number(other),
    };
    id.and_then(|n| u16::try_from(n).ok())
}

/// One Access Control event, by number, with its parameters (`null` when
/// it has none).
pub(crate) fn access_event(number: u64, params: &Value) -> Vec<DoorReport> {
    use LockState::{Locked, Unlocked};
    let lock = |state, source| {
        vec![DoorReport::Lock {
            state,
            source: Some(source),
        }]
    };
    let keypad = MoveSource::Keypad {
        slot: event_user(params),
    };
    match number {
        event::MANUAL_LOCK => lock(Locked, MoveSource::Manual),
        event::MANUAL_UNLOCK => lock(Unlocked, MoveSource::Manual),
        event::RF_LOCK => lock(Locked, MoveSource::Rf),
        event::RF_UNLOCK => lock(Unlocked, MoveSource::Rf),
        event::KEYPAD_LOCK | event::LOCK_WITH_USER_CODE => lock(Locked, keypad),
        event::KEYPAD_UNLOCK | event::UNLOCK_WITH_USER_CODE => lock(Unlocked, keypad),
        event::AUTO_LOCKED => lock(Locked, MoveSource::Auto),
        event::MANUAL_NOT_FULLY_LOCKED
        | event::RF_NOT_FULLY_LOCKED
        | event::AUTO_NOT_FULLY_LOCKED => vec![DoorReport::Jammed],
        event::USER_CODE_ADDED => event_user(params)
            .map(|slot| DoorReport::CodeSlot { slot, set: true })
            .into_iter()
            .collect(),
        event::USER_CODE_DELETED => event_user(params)
            .map(|slot| DoorReport::CodeSlot { slot, set: false })
            .into_iter()
            .collect(),
        // Keypad state, door handle state, invalid-code attempts…: nothing
        // the core acts on.
        _ => Vec::new(),
    }
}

/// User Code `userIdStatus` of one slot.
pub(crate) fn user_id_status(slot: u16, v: &Value) -> Result<Vec<DoorReport>, String> {
    match uint(v, 255)? {
        0 => Ok(vec![DoorReport::CodeSlot { slot, set: false }]),
        1 => Ok(vec![DoorReport::CodeSlot { slot, set: true }]),
        // Disabled, messaging, passage mode, status not available: the slot
        // holds no code a courier could use, but nothing to confirm either.
        2 | 3 | 4 | 254 => Ok(Vec::new()),
        _ => Err("unknown user id status".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keypad_events_name_the_slot_and_never_need_the_pin() {
        let params = json!({"userId": 3, "userCode": "1234"});
        assert_eq!(
            access_event(event::KEYPAD_UNLOCK, &params),
            vec![DoorReport::Lock {
                state: LockState::Unlocked,
                source: Some(MoveSource::Keypad { slot: Some(3) }),
            }]
        );
    }

    #[test]
    fn not_fully_locked_is_a_jam_and_lock_state_eleven_too() {
        assert_eq!(
            access_event(event::RF_NOT_FULLY_LOCKED, &Value::Null),
            vec![DoorReport::Jammed]
        );
        assert_eq!(lock_state(&json!(11)), Ok(vec![DoorReport::Jammed]));
        assert_eq!(lock_state(&json!(0)), Ok(vec![]));
    }
}
