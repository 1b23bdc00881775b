//! The one task that owns the core and drives it from the real world.

use std::future::Future;

/// Why the bridge stopped.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("the bridge runtime is not wired to the core yet")]
    NotWired,
}

/// Run the bridge until `shutdown` completes.
pub async fn run(
    _cfg: crate::config::Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RuntimeError> {
    shutdown.await;
    Err(RuntimeError::NotWired)
}
