//! Simulated devices, clearly named as such: used by the test suite and by
//! `doorwarden demo` where no real lock or camera is present.
//!
//! - `camera`: an in-process RTSP camera serving a bundled H.264 clip, able to
//!   freeze, stall and drop on cue.
//! - `zigbee2mqtt_lock`, `zwave_js_lock`: locks and contact sensors that
//!   answer on MQTT the way Zigbee2MQTT and Z-Wave JS UI do.
pub mod camera;
pub mod zigbee2mqtt_lock;
pub mod zwave_js_lock;
