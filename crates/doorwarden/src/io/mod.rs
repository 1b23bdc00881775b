//! io
pub mod mqtt;
pub mod outbox;
pub mod picture;
pub mod record;
pub mod rtsp;
pub mod snapshot;
pub mod store;
pub mod zwave_server;
