//! Looking up time zones, while the config is loaded.
//!
//! This is the one place doorwarden reads the time-zone database (and, for
//! the system's zone, `TZ` and `/etc/localtime`), as each `deliveries` entry
//! is read. The core gets the zones resolved inside
//! [`Deliveries`](super::Deliveries) and touches no file; a zone that cannot
//! be found is a config error with its line and column.

use jiff::tz::TimeZone;

/// The time zone for a door's windows: the IANA name from the config, or the
/// system's zone when `None`. The error is a sentence for the owner.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        Some(name) => TimeZone::get(name).map_err(|_| {
            if jiff::tz::db().is_definitively_empty() {
                return format!(
                    "cannot look up time zone `{name}`: this system has no time zone \
                     database (install the `tzdata` package)"
                );
            }
            format!(
                "unknown time zone `{name}`: use an IANA name such as \"Europe/Berlin\" \
                 or \"America/New_York\""
            )
        }),
        // Falling back to UTC would move every window by hours without a
        // word; refusing makes the owner say which zone they mean.
        None => TimeZone::try_system().map_err(|e| {
            format!(
                "cannot tell this system's time zone ({e}); set `time_zone` to an IANA \
                 name such as \"Europe/Berlin\""
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_zone_names_are_refused_with_a_hint() {
        let err = time_zone(Some("Europe/Berln")).expect_err("typo must be refused");
        assert_eq!(
            err,
            "unknown time zone `Europe/Berln`: use an IANA name such as \"Europe/Berlin\" \
             or \"America/New_York\""
        );
        assert!(time_zone(Some("America/New_York")).is_ok());
    }
}
