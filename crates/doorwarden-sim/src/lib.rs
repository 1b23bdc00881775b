//! Simulated devices, clearly named as such: used by the test suite and by
//! `doorwarden demo` where no real lock or camera is present.
//!
//! - `camera`: an in-process RTSP camera encoding a live scene with OpenH264
//!   (or looping a bundled recording), able to freeze, hang, go dark,
//!   replay, stall and drop on cue.
//! - `zigbee2mqtt_lock`, `zwave_js_lock`: locks and contact sensors that
//!   answer on MQTT the way Zigbee2MQTT and Z-Wave JS UI do.
//! - `demo`: `doorwarden demo`, the whole story on one machine.
//!
//! A crate of its own so that the bridge library (`doorwarden`) builds
//! without the test broker (rumqttd) and the camera's digest auth (MD5).
//! It drives the bridge only through its public API, as a user would.

#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod camera;
pub mod demo;
pub mod zigbee2mqtt_lock;
pub mod zwave_js_lock;
