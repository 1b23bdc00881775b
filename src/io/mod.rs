//! io
pub mod mqtt;
pub mod rtsp;
pub mod store;
