//! io
pub mod mqtt;
pub mod outbox;
pub mod picture;
pub mod rtsp;
pub mod store;
