//! The call services the engine lends plugins ([`CallServices`]): one
//! sliding-window rate limiter per service name, shared by every node of
//! the run (the reference's `rate_limit` settings: on by default, 60
//! requests per minute), the fingerprint key for secrets, and in replay
//! mode the source run's recordings (no request is sent, no limit waits).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use std::sync::Arc;

use contracts::plugin::{CallServices, PluginError, Recording, ReplayError};
use contracts::CallType;
use landscape::recorder::RecordedResponse;

use super::recordings::Recordings;

use crate::settings::{RateLimitSettings, SecretPolicy};

/// The window every limit counts requests in.
const WINDOW: Duration = Duration::from_secs(60);

/// At most `limit` requests in any 60 seconds.
#[derive(Debug)]
struct SlidingWindow {
    limit: usize,
    sent: VecDeque<Instant>,
}

impl SlidingWindow {
    /// Takes a slot now, or says how long to wait for one.
    fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        while self.sent.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            self.sent.pop_front();
        }
        if self.sent.len() < self.limit {
            self.sent.push_back(now);
            return Ok(());
        }
        let oldest = self.sent.front().copied().unwrap_or(now);
        Err((oldest + WINDOW).saturating_duration_since(now).max(Duration::from_millis(1)))
    }
}

/// Rate limits and the fingerprint key of one run.
#[derive(Debug)]
pub(crate) struct EngineServices {
    enabled: bool,
    default_limit: usize,
    per_service: HashMap<String, usize>,
    windows: Mutex<HashMap<String, SlidingWindow>>,
    secrets: SecretPolicy,
    /// Replay mode: where every answer comes from.
    replay: Option<Arc<Recordings>>,
}

impl EngineServices {
    pub(crate) fn new(settings: &RateLimitSettings, secrets: SecretPolicy, replay: Option<Arc<Recordings>>) -> EngineServices {
        let per_service = settings
            .services
            .iter()
            .filter_map(|(name, service)| {
                let rpm = service.get("requests_per_minute")?.as_u64()?;
                Some((name.clone(), usize::try_from(rpm).unwrap_or(usize::MAX)))
            })
            .collect();
        EngineServices {
            enabled: settings.enabled,
            default_limit: usize::try_from(settings.default_requests_per_minute).unwrap_or(usize::MAX),
            per_service,
            windows: Mutex::new(HashMap::new()),
            secrets,
            replay,
        }
    }
}

impl CallServices for EngineServices {
    fn acquire(&self, service: &str) {
        if !self.enabled || self.replay.is_some() {
            return;
        }
        loop {
            let wait = {
                let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
                let limit = self.per_service.get(service).copied().unwrap_or(self.default_limit);
                let window = windows.entry(service.to_owned()).or_insert_with(|| SlidingWindow { limit, sent: VecDeque::new() });
                match window.try_take(Instant::now()) {
                    Ok(()) => return,
                    Err(wait) => wait,
                }
            };
            std::thread::sleep(wait);
        }
    }

    fn replay(&self, call_type: CallType, request_hash: &str) -> Option<Result<Recording, ReplayError>> {
        let recordings = self.replay.as_ref()?;
        Some(EngineServices::replayed(recordings, call_type, request_hash))
    }

    fn replaying(&self) -> bool {
        self.replay.is_some()
    }

    fn fingerprint(&self, secret: &str) -> Result<String, PluginError> {
        match &self.secrets.key {
            Some(key) => Ok(crate::settings::fingerprint(key, secret)),
            None => Err(PluginError::Config(
                "this call sends a secret, which the audit trail records as a fingerprint: set ELSPETH_FINGERPRINT_KEY \
                 (secrets are never stored raw)"
                    .to_owned(),
            )),
        }
    }
}

impl EngineServices {
    fn replayed(recordings: &Recordings, call_type: CallType, request_hash: &str) -> Result<Recording, ReplayError> {
        let Some(recorded) = recordings.next(call_type, request_hash) else {
            return Err(ReplayError::Miss { request_hash: request_hash.to_owned() });
        };
        let response = match &recorded.response {
            RecordedResponse::Available(response) => Some(response.clone()),
            RecordedResponse::None => None,
            RecordedResponse::Purged { .. } => {
                return Err(ReplayError::PayloadMissing {
                    request_hash: request_hash.to_owned(),
                    source_call_id: recorded.call_id.clone(),
                });
            }
        };
        Ok(Recording {
            source_call_id: recorded.call_id.clone(),
            status: recorded.status,
            response,
            error: recorded.error.clone(),
            latency_ms: recorded.latency_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_admits_its_limit_then_names_the_wait() {
        let start = Instant::now();
        let mut window = SlidingWindow { limit: 2, sent: VecDeque::new() };
        assert_eq!(window.try_take(start), Ok(()));
        assert_eq!(window.try_take(start + Duration::from_secs(1)), Ok(()));
        assert_eq!(window.try_take(start + Duration::from_secs(2)), Err(Duration::from_secs(58)));
        assert_eq!(window.try_take(start + WINDOW), Ok(()), "the first request has left the window");
    }

    #[test]
    fn services_have_their_own_limits() {
        let settings = RateLimitSettings {
            services: [("fast".to_owned(), serde_json::json!({"requests_per_minute": 1000}))].into_iter().collect(),
            ..RateLimitSettings::default()
        };
        let services = EngineServices::new(&settings, SecretPolicy { key: None }, None);
        assert_eq!(services.per_service.get("fast"), Some(&1000));
        assert_eq!(services.default_limit, 60);
        for _ in 0..100 {
            services.acquire("fast");
        }
        assert!(services.fingerprint("k").is_err(), "no key: a secret cannot be recorded");
    }
}
