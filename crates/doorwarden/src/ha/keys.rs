//! Which Home Assistant release reads each key doorwarden puts in a
//! discovery payload ([`super::discovery`]).
//!
//! Home Assistant's MQTT discovery drops keys a release does not know
//! (its discovery schemas remove extra keys) instead of refusing the
//! entity, so a payload can carry a key that only newer releases use: the
//! entity still appears on older ones, without that feature. This table
//! says, for every top-level key, the oldest release that reads it and
//! where that was checked, so the claim "works on 2024.3" stays true key by
//! key. A test renders every entity and fails on a key missing here, and
//! another compares this table with the one in `docs/mqtt.md`.

/// A Home Assistant release, `year.month`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release {
    pub year: u16,
    pub month: u8,
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.year, self.month)
    }
}

const fn release(year: u16, month: u8) -> Release {
    Release { year, month }
}

/// The oldest Home Assistant release doorwarden supports: every key it
/// sends is read there, except those listed with a later release.
pub const OLDEST_SUPPORTED: Release = release(2024, 3);

/// One key of a discovery payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    /// The platforms doorwarden sends it on (`*`: every entity).
    pub on: &'static str,
    /// The oldest release that reads it on those platforms.
    pub since: Release,
    /// Where `since` comes from, or what an older release does without it.
    pub note: &'static str,
}

const fn key(name: &'static str, on: &'static str, since: Release, note: &'static str) -> Key {
    Key {
        name,
        on,
        since,
        note,
    }
}

/// Releases before 2024.3 are not supported at all; a key marked with it
/// is older than that (when exactly does not matter to anyone).
const OLD: Release = OLDEST_SUPPORTED;

/// Every top-level key doorwarden sends, in the order `render` adds them.
pub const KEYS: &[Key] = &[
    key(
        "name",
        "*",
        OLD,
        "`null` (entity named after its device) read since 2023.8",
    ),
    key("unique_id", "*", OLD, ""),
    key(
        "device",
        "*",
        OLD,
        "identifiers, name, manufacturer, model, sw_version, via_device",
    ),
    key(
        "origin",
        "*",
        OLD,
        "read since 2023.9 (core PR 98782); older releases drop it",
    ),
    key("availability", "*", OLD, "a list of topics"),
    key("availability_mode", "*", OLD, "`all`"),
    key("qos", "*", OLD, ""),
    key("state_topic", "*", OLD, ""),
    key("value_template", "*", OLD, ""),
    key("command_topic", "button, lock, number, text", OLD, ""),
    key(
        "retain",
        "button, lock, number, text",
        OLD,
        "always `false`",
    ),
    key("json_attributes_topic", "*", OLD, ""),
    key("json_attributes_template", "*", OLD, ""),
    key(
        "device_class",
        "binary_sensor, sensor",
        OLD,
        "sensor `enum` read since 2023.4 (core PR 89391)",
    ),
    key("entity_category", "*", OLD, ""),
    key("icon", "*", OLD, ""),
    key("payload_lock", "lock", OLD, ""),
    key("payload_unlock", "lock", OLD, ""),
    key("state_locked", "lock", OLD, ""),
    key("state_unlocked", "lock", OLD, ""),
    key("state_locking", "lock", OLD, "since 2023.2 (core PR 85779)"),
    key(
        "state_unlocking",
        "lock",
        OLD,
        "since 2023.2 (core PR 85779)",
    ),
    key("state_jammed", "lock", OLD, "since 2023.2 (core PR 86010)"),
    key("optimistic", "lock", OLD, ""),
    key("payload_on", "binary_sensor", OLD, ""),
    key("payload_off", "binary_sensor", OLD, ""),
    key(
        "options",
        "sensor (enum)",
        release(2024, 9),
        "core PR 123248 (merged 2024-08); 2024.3 to 2024.8 drop it: the enum sensor works, without the list of states in its editors",
    ),
    key(
        "event_types",
        "event",
        OLD,
        "the event platform, since 2023.8",
    ),
    key("payload_press", "button", OLD, ""),
    key("min", "number, text", OLD, ""),
    key("max", "number, text", OLD, ""),
    key("step", "number", OLD, ""),
    key("mode", "number, text", OLD, "number `box`; text `password`"),
    key("unit_of_measurement", "number, sensor", OLD, ""),
    key("pattern", "text", OLD, ""),
    key("state_class", "sensor", OLD, ""),
    key(
        "suggested_display_precision",
        "sensor",
        OLD,
        "since 2023.3 (core PR 87129)",
    ),
    key(
        "image_topic",
        "image",
        OLD,
        "the image platform, since 2023.7",
    ),
    key("content_type", "image", OLD, "`image/jpeg`; since 2023.7"),
];

/// The row for `name`, if doorwarden sends that key.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_listed_once_and_none_is_older_than_the_floor() {
        let mut names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KEYS.len(), "a key listed twice");
        assert!(KEYS.iter().all(|k| k.since >= OLDEST_SUPPORTED));
        assert_eq!(
            find("options").map(|k| k.since.to_string()),
            Some("2024.9".into())
        );
    }
}
