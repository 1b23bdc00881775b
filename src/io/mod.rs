//! io
pub mod rtsp;
