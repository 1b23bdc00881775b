//! Durations written the humantime way (`90s`, `2m 30s`, `500ms`).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); write it like \"90s\", \"2m 30s\" or \"500ms\""
        ))
    })
}

/// Format a duration the way the config file writes them.
pub fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
