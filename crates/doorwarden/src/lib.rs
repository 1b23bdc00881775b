//! doorwarden: smart locks and RTSP cameras in Home Assistant over MQTT, and
//! a delivery interlock that only lets a courier in while the door's cameras
//! are verifiably live.
//!
//! # Layout
//!
//! - [`config`]: the YAML file, its validation and `file:line:col` errors.
//! - [`core`]: every decision, with no I/O and no clock (sans-IO).
//! - [`devices`]: pure translators between Zigbee2MQTT / Z-Wave JS UI
//!   payloads and the core's lock reports and commands.
//! - [`ha`]: Home Assistant discovery and state payloads.
//! - [`io`]: the shell: MQTT link, RTSP camera tasks, persisted state.
//! - [`intake`]: rate limits on what anyone on the broker sends, and the
//!   counts behind the bridge's problem entity.
//! - [`runtime`]: the one task that owns the core and carries out its
//!   actions (`doorwarden run`).
//! - [`redact`]: the one place secrets are scrubbed from text.
//! - [`summary`]: what `doorwarden check-config` prints.
//! - [`addon`]: the Home Assistant add-on's config, from the Supervisor's
//!   options and MQTT service (built in [`config::addon`]; the
//!   `addon-config` command writes it).
//!
//! The simulated camera, locks and door sensor and `doorwarden demo` live in
//! the `doorwarden-sim` crate (crates/doorwarden-sim), so this library pulls
//! in neither the demo's MQTT broker nor MD5.

#![warn(clippy::print_stdout, clippy::print_stderr)]

/// The add-on's translation lives with the config it writes; this path is
/// kept for the add-on's callers.
pub mod addon {
    pub use crate::config::addon::*;
}
pub mod config;
pub mod core;
pub mod devices;
pub mod ha;
pub mod intake;
pub mod io;
pub mod redact;
pub mod runtime;
pub mod summary;
