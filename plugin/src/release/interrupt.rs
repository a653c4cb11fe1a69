//! A request to stop: the command line turns SIGINT and SIGTERM into one, the engine stops
//! waiting when it sees it. The engine never learns which signal it was.

use tokio_util::sync::CancellationToken;

/// Cloned freely; every clone sees the same request.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(CancellationToken);

impl Interrupt {
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// Asks every holder to stop.
    pub fn raise(&self) {
        self.0.cancel();
    }

    pub fn raised(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Completes once the interrupt is raised.
    pub async fn wait(&self) {
        self.0.cancelled().await
    }
}
