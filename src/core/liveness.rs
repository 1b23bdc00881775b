//! Camera liveness: one state machine per camera, fed with frame summaries.

/// The five states a camera can be in, without their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LivenessKind {
    Connecting,
    Live,
    Stalled,
    Frozen,
    Offline,
}

impl LivenessKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LivenessKind::Connecting => "connecting",
            LivenessKind::Live => "live",
            LivenessKind::Stalled => "stalled",
            LivenessKind::Frozen => "frozen",
            LivenessKind::Offline => "offline",
        }
    }
}
