//! io
pub mod mqtt;
pub mod outbox;
pub mod rtsp;
pub mod store;
pub mod zwave_server;
