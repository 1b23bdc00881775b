//! The configuration file: its model, loading, and validation, and the
//! add-on's translation of its options into one (`addon`).
//!
//! Loading never stops at the first problem: the file is parsed once for its
//! structure, every section is deserialized on its own, and every rule is
//! checked, so the owner sees all that is wrong in one run, each as
//! `file:line:col: message`.

pub mod addon;
pub mod duration;
mod model;
mod positions;
pub mod size;
mod validate;
pub mod zone;

use std::path::Path;

pub use model::*;
pub use validate::{MIN_STALL_AFTER, suggest};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Every problem found in a config file, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Read and check the config file at `path`.
///
/// # Errors
/// Every problem found, each with the file, line and column; a file that
/// cannot be read is one error at 1:1.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: shown.clone(),
            line: 1,
            col: 1,
            message: format!("cannot read the file: {e}"),
        }])
    })?;
    load_str(&text, &shown)
}

/// Check config `text`, naming it `file` in messages.
///
/// # Errors
/// As [`load`].
pub fn load_str(text: &str, file: &str) -> Result<Config, ConfigErrors> {
    validate::check(text, file)
}

impl Config {
    /// A door's display name: its `name`, else its key.
    pub fn door_name<'a>(&'a self, door: &'a str) -> &'a str {
        self.locks
            .get(door)
            .and_then(|d| d.name.as_deref())
            .unwrap_or(door)
    }

    /// The delivery rules of `door`: its `deliveries` entry, or the
    /// defaults when it has none.
    pub fn delivery_rules(&self, door: &str) -> &Deliveries {
        self.deliveries
            .get(door)
            .unwrap_or(&self.default_deliveries)
    }

    /// A camera's display name: its `name`, else its key.
    pub fn camera_name<'a>(&'a self, camera: &'a str) -> &'a str {
        self.cameras
            .get(camera)
            .and_then(|c| c.name.as_deref())
            .unwrap_or(camera)
    }
}
