//! AIMD pacing shared by every row in flight at one `llm` node (the
//! reference's pool parameters): a capacity error (429/503/529) raises the
//! gap between dispatches (from 0 to `recovery_step_ms`, then times
//! `backoff_multiplier`, capped at `max_dispatch_delay_ms`); each success
//! lowers it by `recovery_step_ms`, down to `min_dispatch_delay_ms`. Every
//! request waits its turn at one gate, so the whole node slows down, not
//! just the worker that was refused.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Pace {
    delay_ms: f64,
    next_dispatch: Option<Instant>,
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
        Throttle { min_ms, max_ms, multiplier, step_ms, pace: Mutex::new(Pace { delay_ms: min_ms, next_dispatch: None }) }
    }

    fn pace(&self) -> std::sync::MutexGuard<'_, Pace> {
        self.pace.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long the next dispatch must wait for its turn; takes the turn.
    fn take_turn(&self, now: Instant) -> Duration {
        let mut pace = self.pace();
        let gap = Duration::from_secs_f64(pace.delay_ms.max(self.min_ms) / 1000.0);
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

    /// A capacity error: the gap grows; returns it.
    pub(crate) fn on_capacity(&self) -> Duration {
        let mut pace = self.pace();
        let grown = if pace.delay_ms <= 0.0 { self.step_ms.max(self.min_ms) } else { pace.delay_ms * self.multiplier };
        pace.delay_ms = grown.min(self.max_ms);
        Duration::from_secs_f64(pace.delay_ms / 1000.0)
    }

    /// A success: the gap shrinks.
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
        let steps: Vec<u128> = (0..5).map(|_| throttle.on_capacity().as_millis()).collect();
        assert_eq!(steps, vec![50, 100, 200, 400, 400], "additive start, multiplicative growth, capped");
        throttle.on_success();
        assert!((throttle.delay_ms() - 350.0).abs() < f64::EPSILON);
        for _ in 0..20 {
            throttle.on_success();
        }
        assert!((throttle.delay_ms() - 0.0).abs() < f64::EPSILON, "never below the minimum");
    }

    #[test]
    fn the_gate_spaces_dispatches_by_the_current_gap() {
        let throttle = Throttle::new(0, 5000, 2.0, 100);
        let now = Instant::now();
        assert_eq!(throttle.take_turn(now), Duration::ZERO);
        assert_eq!(throttle.take_turn(now), Duration::ZERO, "no gap while nothing was refused");
        throttle.on_capacity();
        assert_eq!(throttle.take_turn(now), Duration::ZERO, "the first turn after a refusal goes at once");
        assert_eq!(throttle.take_turn(now), Duration::from_millis(100));
        assert_eq!(throttle.take_turn(now), Duration::from_millis(200));
    }
}
