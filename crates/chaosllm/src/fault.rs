//! Which fault (if any) a request gets: one roll against the configured
//! percentages, in a fixed order, with bursts replacing the 429/529 shares.

use rand::Rng;

use crate::config::ErrorInjection;

/// What the server does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    None,
    RateLimit,
    Capacity529,
    ServiceUnavailable,
    InternalError,
    BadGateway,
    GatewayTimeout,
    Forbidden,
    NotFound,
    Timeout,
    ConnectionReset,
    SlowResponse,
    InvalidJson,
    Truncated,
    EmptyBody,
    MissingFields,
    WrongContentType,
}

impl Fault {
    /// The name used in `/admin/stats`.
    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "success",
            Fault::RateLimit => "rate_limit",
            Fault::Capacity529 => "capacity_529",
            Fault::ServiceUnavailable => "service_unavailable",
            Fault::InternalError => "internal_error",
            Fault::BadGateway => "bad_gateway",
            Fault::GatewayTimeout => "gateway_timeout",
            Fault::Forbidden => "forbidden",
            Fault::NotFound => "not_found",
            Fault::Timeout => "timeout",
            Fault::ConnectionReset => "connection_reset",
            Fault::SlowResponse => "slow_response",
            Fault::InvalidJson => "invalid_json",
            Fault::Truncated => "truncated",
            Fault::EmptyBody => "empty_body",
            Fault::MissingFields => "missing_fields",
            Fault::WrongContentType => "wrong_content_type",
        }
    }

    /// The HTTP status of an error answer, for the faults that are one.
    pub fn status(self) -> Option<u16> {
        match self {
            Fault::RateLimit => Some(429),
            Fault::Capacity529 => Some(529),
            Fault::ServiceUnavailable => Some(503),
            Fault::InternalError => Some(500),
            Fault::BadGateway => Some(502),
            Fault::GatewayTimeout | Fault::Timeout => Some(504),
            Fault::Forbidden => Some(403),
            Fault::NotFound => Some(404),
            Fault::None
            | Fault::ConnectionReset
            | Fault::SlowResponse
            | Fault::InvalidJson
            | Fault::Truncated
            | Fault::EmptyBody
            | Fault::MissingFields
            | Fault::WrongContentType => None,
        }
    }
}

/// Picks the fault for one request; `in_burst` swaps in the burst shares.
pub fn choose(injection: &ErrorInjection, in_burst: bool, rng: &mut impl Rng) -> Fault {
    let (rate_limit, capacity) = if in_burst && injection.burst.enabled {
        (injection.burst.rate_limit_pct, injection.burst.capacity_pct)
    } else {
        (injection.rate_limit_pct, injection.capacity_529_pct)
    };
    let shares = [
        (Fault::RateLimit, rate_limit),
        (Fault::Capacity529, capacity),
        (Fault::ServiceUnavailable, injection.service_unavailable_pct),
        (Fault::InternalError, injection.internal_error_pct),
        (Fault::BadGateway, injection.bad_gateway_pct),
        (Fault::GatewayTimeout, injection.gateway_timeout_pct),
        (Fault::Forbidden, injection.forbidden_pct),
        (Fault::NotFound, injection.not_found_pct),
        (Fault::Timeout, injection.timeout_pct),
        (Fault::ConnectionReset, injection.connection_reset_pct),
        (Fault::SlowResponse, injection.slow_response_pct),
        (Fault::InvalidJson, injection.invalid_json_pct),
        (Fault::Truncated, injection.truncated_pct),
        (Fault::EmptyBody, injection.empty_body_pct),
        (Fault::MissingFields, injection.missing_fields_pct),
        (Fault::WrongContentType, injection.wrong_content_type_pct),
    ];
    let total: f64 = shares.iter().map(|(_, pct)| pct).sum();
    if total <= 0.0 {
        return Fault::None;
    }
    let roll = rng.random_range(0.0..100.0_f64.max(total));
    let mut upto = 0.0;
    for (fault, pct) in shares {
        upto += pct;
        if roll < upto {
            return fault;
        }
    }
    Fault::None
}

/// Whether `elapsed_secs` since the server started falls in a burst: the
/// first one starts after one interval, then one every interval.
pub fn in_burst(injection: &ErrorInjection, elapsed_secs: f64) -> bool {
    let burst = &injection.burst;
    burst.enabled
        && burst.interval_sec > 0.0
        && elapsed_secs >= burst.interval_sec
        && elapsed_secs % burst.interval_sec < burst.duration_sec
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn shares_are_honoured_over_many_rolls() {
        let injection = ErrorInjection { rate_limit_pct: 15.0, internal_error_pct: 5.0, ..ErrorInjection::default() };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..20_000 {
            *counts.entry(choose(&injection, false, &mut rng)).or_insert(0_u32) += 1;
        }
        let share = |fault| f64::from(counts.get(&fault).copied().unwrap_or(0)) / 200.0;
        assert!((share(Fault::RateLimit) - 15.0).abs() < 1.5, "{counts:?}");
        assert!((share(Fault::InternalError) - 5.0).abs() < 1.0, "{counts:?}");
        assert!((share(Fault::None) - 80.0).abs() < 2.0, "{counts:?}");
        assert_eq!(counts.len(), 3, "no other fault was configured: {counts:?}");
    }

    #[test]
    fn bursts_replace_the_capacity_shares() {
        let burst = crate::config::Burst {
            enabled: true,
            interval_sec: 30.0,
            duration_sec: 5.0,
            rate_limit_pct: 100.0,
            capacity_pct: 0.0,
        };
        let injection = ErrorInjection { burst, ..ErrorInjection::default() };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert!(!in_burst(&injection, 2.0), "the first burst comes after one interval");
        assert!(in_burst(&injection, 31.0));
        assert!(!in_burst(&injection, 36.0));
        assert_eq!(choose(&injection, true, &mut rng), Fault::RateLimit);
        assert_eq!(choose(&injection, false, &mut rng), Fault::None);
    }
}
