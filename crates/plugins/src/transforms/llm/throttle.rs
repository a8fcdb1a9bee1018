//! AIMD pacing shared by every row in flight at one `llm` node (the
//! reference's pool parameters and semantics): a capacity error
//! (429/503/529) raises the node's back-off delay (from 0 to
//! `recovery_step_ms`, then times `backoff_multiplier`, capped at
//! `max_dispatch_delay_ms`) and the refused request waits that long (or its
//! `Retry-After`, if longer) before it is sent again; each success lowers
//! the delay by `recovery_step_ms`, down to `min_dispatch_delay_ms`. The
//! delay is one value for the node, so a burst of refusals slows every
//! retry; consecutive dispatches are at least `min_dispatch_delay_ms` apart.
//!
//! Measured (`cargo xtask bench`): spacing *every* dispatch by the back-off
//! delay instead cost 90% of the throughput at 15% random 429s.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Pace {
    delay_ms: f64,
    next_dispatch: Option<Instant>,
    /// When the delay last grew: refusals within one delay of that are
    /// the same signal (requests already in flight), not a new one.
    grew_at: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct Throttle {
    min_ms: f64,
    max_ms: f64,
    multiplier: f64,
    step_ms: f64,
    pace: Mutex<Pace>,
}

impl Throttle {
    pub(crate) fn new(min_ms: u64, max_ms: u64, multiplier: f64, step_ms: u64) -> Throttle {
        #[allow(clippy::cast_precision_loss, reason = "milliseconds far below 2^52")]
        let (min_ms, max_ms, step_ms) = (min_ms as f64, max_ms as f64, step_ms as f64);
        Throttle {
            min_ms,
            max_ms,
            multiplier,
            step_ms,
            pace: Mutex::new(Pace { delay_ms: min_ms, next_dispatch: None, grew_at: None }),
        }
    }

    fn pace(&self) -> std::sync::MutexGuard<'_, Pace> {
        self.pace.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long the next dispatch must wait for its turn; takes the turn.
    fn take_turn(&self, now: Instant) -> Duration {
        let mut pace = self.pace();
        let gap = Duration::from_secs_f64(self.min_ms / 1000.0);
        let at = pace.next_dispatch.filter(|t| *t > now).unwrap_or(now);
        pace.next_dispatch = Some(at + gap);
        at - now
    }

    /// Waits for this request's turn at the node's gate.
    pub(crate) fn wait_turn(&self) {
        let wait = self.take_turn(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// A capacity error: the back-off delay grows (once per delay: the
    /// other requests refused meanwhile were sent before it grew); returns it.
    pub(crate) fn on_capacity(&self) -> Duration {
        self.on_capacity_at(Instant::now())
    }

    fn on_capacity_at(&self, now: Instant) -> Duration {
        let mut pace = self.pace();
        let current = Duration::from_secs_f64(pace.delay_ms / 1000.0);
        let same_signal = pace.grew_at.is_some_and(|at| now.saturating_duration_since(at) < current);
        if !same_signal {
            let grown = if pace.delay_ms <= 0.0 { self.step_ms.max(self.min_ms) } else { pace.delay_ms * self.multiplier };
            pace.delay_ms = grown.min(self.max_ms);
            pace.grew_at = Some(now);
        }
        Duration::from_secs_f64(pace.delay_ms / 1000.0)
    }

    /// A success: the back-off delay shrinks.
    pub(crate) fn on_success(&self) {
        let mut pace = self.pace();
        pace.delay_ms = (pace.delay_ms - self.step_ms).max(self.min_ms);
    }

    #[cfg(test)]
    fn delay_ms(&self) -> f64 {
        self.pace().delay_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_errors_grow_the_gap_and_successes_shrink_it() {
        let throttle = Throttle::new(0, 400, 2.0, 50);
        assert!((throttle.delay_ms() - 0.0).abs() < f64::EPSILON);
        let start = Instant::now();
        let steps: Vec<u128> = (0..5_u64).map(|i| throttle.on_capacity_at(start + Duration::from_secs(i)).as_millis()).collect();
        assert_eq!(steps, vec![50, 100, 200, 400, 400], "additive start, multiplicative growth, capped");
        throttle.on_success();
        assert!((throttle.delay_ms() - 350.0).abs() < f64::EPSILON);
        for _ in 0..20 {
            throttle.on_success();
        }
        assert!((throttle.delay_ms() - 0.0).abs() < f64::EPSILON, "never below the minimum");
    }

    #[test]
    fn refusals_within_one_delay_are_one_signal() {
        let throttle = Throttle::new(0, 5000, 2.0, 50);
        let start = Instant::now();
        assert_eq!(throttle.on_capacity_at(start).as_millis(), 50);
        assert_eq!(throttle.on_capacity_at(start + Duration::from_millis(10)).as_millis(), 50, "already in flight");
        assert_eq!(throttle.on_capacity_at(start + Duration::from_millis(60)).as_millis(), 100, "a new signal");
    }

    #[test]
    fn the_gate_spaces_dispatches_by_the_minimum_delay() {
        let throttle = Throttle::new(20, 5000, 2.0, 100);
        let now = Instant::now();
        assert_eq!(throttle.take_turn(now), Duration::ZERO, "the first dispatch goes at once");
        assert_eq!(throttle.take_turn(now), Duration::from_millis(20));
        assert_eq!(throttle.take_turn(now), Duration::from_millis(40));
        throttle.on_capacity();
        assert_eq!(throttle.take_turn(now), Duration::from_millis(60), "refusals delay the refused request, not the gate");
        let free = Throttle::new(0, 5000, 2.0, 100);
        assert!((0..5).all(|_| free.take_turn(now).is_zero()), "no minimum, no wait");
    }
}
