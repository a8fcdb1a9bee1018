//! When an aggregation's batch flushes: on arrival (count reached, or the
//! condition turned true), on a timer (timeout, or a condition on the
//! batch's age), or at the end of the source. The condition sees
//! `batch_count` and `batch_age_seconds`.

use std::time::Duration;

use contracts::{Finite, Row, TriggerType, Value};

use crate::expression::Condition;
use crate::settings::TriggerSettings;

/// What a trigger sees of a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchView {
    pub(crate) count: usize,
    pub(crate) age: Duration,
}

/// A trigger that fired, with the reason recorded on the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fired {
    pub(crate) trigger_type: TriggerType,
    pub(crate) reason: String,
}

/// The trigger settings with the condition parsed.
#[derive(Debug, Clone)]
pub(crate) struct Trigger {
    pub(crate) settings: TriggerSettings,
    pub(crate) condition: Option<Condition>,
}

impl Trigger {
    /// Parses the condition once per node.
    pub(crate) fn new(settings: &TriggerSettings) -> Result<Trigger, String> {
        let condition = settings.condition.as_deref().map(Condition::parse).transpose().map_err(|e| e.to_string())?;
        Ok(Trigger { settings: settings.clone(), condition })
    }

    /// After a row joined the batch: the count, then the condition.
    pub(crate) fn on_arrival(&self, batch: BatchView) -> Result<Option<Fired>, String> {
        if let Some(limit) = self.settings.count {
            if u64::try_from(batch.count).unwrap_or(u64::MAX) >= limit {
                return Ok(Some(Fired { trigger_type: TriggerType::Count, reason: format!("count reached {limit}") }));
            }
        }
        self.condition_fired(batch)
    }

    /// On a timer (and before a row joins): the timeout, then the condition,
    /// for a non-empty batch.
    pub(crate) fn on_timer(&self, batch: BatchView) -> Result<Option<Fired>, String> {
        if batch.count == 0 {
            return Ok(None);
        }
        if let Some(timeout) = self.settings.timeout_seconds {
            if batch.age.as_secs_f64() >= timeout {
                return Ok(Some(Fired { trigger_type: TriggerType::Timeout, reason: format!("timeout after {timeout} s") }));
            }
        }
        self.condition_fired(batch)
    }

    /// The end of the source flushes whatever is buffered.
    pub(crate) fn at_end(batch: BatchView) -> Fired {
        Fired { trigger_type: TriggerType::EndOfSource, reason: format!("end of source with {} buffered rows", batch.count) }
    }

    /// How long after the batch's first row a timer may next fire: its
    /// timeout, or `poll` for a condition that may turn true with age.
    pub(crate) fn next_timer(&self, age: Duration, poll: Duration) -> Option<Duration> {
        let timeout = self.settings.timeout_seconds.map(|t| Duration::from_secs_f64(t.max(0.0)));
        let condition = self.condition.as_ref().map(|_| age + poll);
        [timeout, condition].into_iter().flatten().min()
    }

    fn condition_fired(&self, batch: BatchView) -> Result<Option<Fired>, String> {
        let Some(condition) = &self.condition else { return Ok(None) };
        if batch.count == 0 {
            return Ok(None);
        }
        let fired = condition.evaluate(&trigger_row(batch)).map_err(|e| format!("trigger condition: {e}"))?;
        Ok(fired.truthy().then(|| Fired {
            trigger_type: TriggerType::Condition,
            reason: format!("condition {} became true", condition.source),
        }))
    }
}

/// The row a trigger condition reads: `{batch_count, batch_age_seconds}`.
fn trigger_row(batch: BatchView) -> Row {
    let mut row = Row::new();
    row.insert("batch_count".into(), Value::Integer(i64::try_from(batch.count).unwrap_or(i64::MAX)));
    row.insert("batch_age_seconds".into(), Finite::new(batch.age.as_secs_f64()).map_or(Value::Null, Value::Float));
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(count: Option<u64>, timeout: Option<f64>, condition: Option<&str>) -> Trigger {
        Trigger::new(&TriggerSettings { count, timeout_seconds: timeout, condition: condition.map(str::to_owned) })
            .expect("trigger")
    }

    fn batch(count: usize, age_seconds: u64) -> BatchView {
        BatchView { count, age: Duration::from_secs(age_seconds) }
    }

    #[test]
    fn count_fires_on_the_arrival_that_reaches_it() {
        let t = trigger(Some(3), None, None);
        assert_eq!(t.on_arrival(batch(2, 0)), Ok(None));
        let fired = t.on_arrival(batch(3, 0)).expect("evaluates").expect("fires");
        assert_eq!(fired, Fired { trigger_type: TriggerType::Count, reason: "count reached 3".into() });
    }

    #[test]
    fn timeout_fires_on_a_timer_once_the_batch_is_old_enough() {
        let t = trigger(None, Some(5.0), None);
        assert_eq!(t.on_timer(batch(1, 4)), Ok(None));
        let fired = t.on_timer(batch(1, 5)).expect("evaluates").expect("fires");
        assert_eq!(fired.trigger_type, TriggerType::Timeout);
        assert_eq!(fired.reason, "timeout after 5 s");
        assert_eq!(t.on_timer(batch(0, 100)), Ok(None), "an empty batch never times out");
    }

    #[test]
    fn condition_sees_count_and_age() {
        let t = trigger(None, None, Some("row['batch_count'] >= 2 and row['batch_age_seconds'] > 10"));
        assert_eq!(t.on_arrival(batch(2, 3)), Ok(None));
        assert_eq!(t.on_timer(batch(1, 30)), Ok(None));
        let fired = t.on_timer(batch(2, 11)).expect("evaluates").expect("fires");
        assert_eq!(fired.trigger_type, TriggerType::Condition);
        assert!(fired.reason.starts_with("condition row['batch_count'] >= 2"), "{}", fired.reason);
    }

    #[test]
    fn count_wins_over_a_condition_on_arrival() {
        let t = trigger(Some(2), None, Some("row['batch_count'] >= 1"));
        assert_eq!(t.on_arrival(batch(2, 0)).expect("evaluates").map(|f| f.trigger_type), Some(TriggerType::Count));
        assert_eq!(t.on_arrival(batch(1, 0)).expect("evaluates").map(|f| f.trigger_type), Some(TriggerType::Condition));
    }

    #[test]
    fn end_of_source_names_the_buffer_size() {
        let fired = Trigger::at_end(batch(7, 0));
        assert_eq!(fired, Fired { trigger_type: TriggerType::EndOfSource, reason: "end of source with 7 buffered rows".into() });
    }

    #[test]
    fn a_condition_that_cannot_be_evaluated_is_an_error() {
        let t = trigger(None, None, Some("row['batch_count'] > 'x'"));
        assert!(t.on_arrival(batch(1, 0)).is_err());
    }

    #[test]
    fn next_timer_is_the_timeout_or_a_condition_poll() {
        let poll = Duration::from_millis(100);
        assert_eq!(trigger(None, Some(5.0), None).next_timer(Duration::from_secs(1), poll), Some(Duration::from_secs(5)));
        assert_eq!(
            trigger(None, None, Some("row['batch_count'] > 1")).next_timer(Duration::from_secs(1), poll),
            Some(Duration::from_millis(1100))
        );
        assert_eq!(trigger(Some(3), None, None).next_timer(Duration::ZERO, poll), None);
    }
}
