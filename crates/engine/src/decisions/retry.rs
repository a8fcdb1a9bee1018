//! How long a transform waits before its next attempt: exponential backoff
//! from the `retry` settings, capped at `max_delay_seconds`.

use std::time::Duration;

use crate::settings::RetrySettings;

/// The wait after failed attempt number `attempt` (0 for the first).
pub(crate) fn delay(retry: &RetrySettings, attempt: u32) -> Duration {
    let delay = retry.initial_delay_seconds * retry.exponential_base.powi(i32::try_from(attempt).unwrap_or(i32::MAX));
    let capped = delay.min(retry.max_delay_seconds).max(0.0);
    if capped.is_finite() {
        Duration::from_secs_f64(capped)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(initial: f64, base: f64, max: f64) -> RetrySettings {
        RetrySettings { max_attempts: 5, initial_delay_seconds: initial, max_delay_seconds: max, exponential_base: base }
    }

    #[test]
    fn delays_grow_by_the_base_and_stop_at_the_cap() {
        let retry = settings(0.5, 3.0, 10.0);
        let delays: Vec<f64> = (0..5).map(|a| delay(&retry, a).as_secs_f64()).collect();
        assert_eq!(delays, vec![0.5, 1.5, 4.5, 10.0, 10.0]);
    }

    #[test]
    fn every_field_changes_the_delay() {
        let base = delay(&settings(1.0, 2.0, 60.0), 2);
        assert_ne!(base, delay(&settings(2.0, 2.0, 60.0), 2));
        assert_ne!(base, delay(&settings(1.0, 3.0, 60.0), 2));
        assert_ne!(base, delay(&settings(1.0, 2.0, 3.0), 2));
    }
}
