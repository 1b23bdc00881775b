//! io
pub mod rtsp;
pub mod store;
