//! The one clock every time-based decision reads: aggregation timeouts and
//! batch-age conditions, pending-flush polls and `max_pending_seconds`,
//! coalesce timeouts and transform retry delays. Tests inject a
//! [`ManualClock`], which moves on when the engine would wait.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The time the engine's decisions see, and how it waits for them.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;

    /// Waits `duration` of this clock's time (a retry delay, a pending job's
    /// poll interval).
    fn sleep(&self, duration: Duration);
}

/// The real monotonic clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, duration: Duration) {
        // A real wait for external work or a retry delay, not synchronisation.
        std::thread::sleep(duration);
    }
}

/// A clock that runs with real time plus whatever a test advanced it by; a
/// wait advances it instead of sleeping.
#[derive(Debug, Default)]
pub struct ManualClock {
    offset: Mutex<Duration>,
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        if let Ok(mut offset) = self.offset.lock() {
            *offset += by;
        }
    }

    /// How far the clock was moved on, by tests and by waits.
    pub fn advanced(&self) -> Duration {
        self.offset.lock().map_or(Duration::ZERO, |o| *o)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::now() + self.advanced()
    }

    fn sleep(&self, duration: Duration) {
        self.advance(duration);
    }
}
