//! Sizes written the way people write them (`2GiB`, `500 MB`, `1048576`).

use serde::{Deserialize, Deserializer};

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bytes(n) => Ok(n),
        Raw::Text(text) => parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{text}` is not a size; write it like \"2GiB\", \"500MiB\" or \"1GB\""
            ))
        }),
    }
}

/// Parses `2GiB`, `1.5 GB`, `800MiB`, `4096`. Binary (KiB, MiB, GiB, TiB)
/// and decimal (kB, MB, GB, TB) units; a bare number is bytes.
pub fn parse(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    };
    let bytes = number * factor as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn sizes_in_the_units_people_write() {
        assert_eq!(parse("2GiB"), Some(2 << 30));
        assert_eq!(parse("1.5 GB"), Some(1_500_000_000));
        assert_eq!(parse("800MiB"), Some(800 << 20));
        assert_eq!(parse("4096"), Some(4096));
        assert_eq!(parse("2 gallons"), None);
        assert_eq!(parse("GiB"), None);
    }
}
