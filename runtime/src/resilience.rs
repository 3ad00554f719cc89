//! Bounded exponential backoff with jitter, and a circuit breaker.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

/// Exponential backoff: `base * 2^attempt`, capped, with full jitter in [delay/2, delay].
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub const STARTUP: Backoff = Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(5),
    };

    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.min(16));
        let delay = exp.min(self.cap);
        let half = delay / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }
}

/// State of a [`CircuitBreaker`], exported as a gauge (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    pub fn as_gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }
}

#[derive(Debug)]
struct BreakerInner {
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

/// Opens after `threshold` consecutive failures; after `cooldown` lets one probe through
/// (half-open); a success closes it, a failure opens it again.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<BreakerInner>,
}

/// What the breaker says about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// The breaker was open long enough: this call is the one probe of the half-open state.
    Probe,
    /// The breaker is open: fail fast and tell the client when to retry.
    Rejected {
        retry_after: Duration,
    },
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        let inner = BreakerInner {
            consecutive_failures: 0,
            opened_at: None,
            probe_in_flight: false,
        };
        CircuitBreaker {
            threshold,
            cooldown,
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        self.state_at(Instant::now())
    }

    fn state_at(&self, now: Instant) -> BreakerState {
        let inner = self.lock();
        match inner.opened_at {
            None => BreakerState::Closed,
            Some(at) if now.duration_since(at) >= self.cooldown => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }

    pub fn admit(&self) -> Admission {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Admission {
        let mut inner = self.lock();
        let Some(opened_at) = inner.opened_at else {
            return Admission::Allowed;
        };
        let waited = now.duration_since(opened_at);
        if waited >= self.cooldown && !inner.probe_in_flight {
            inner.probe_in_flight = true;
            return Admission::Probe;
        }
        let retry_after = self
            .cooldown
            .saturating_sub(waited)
            .max(Duration::from_secs(1));
        Admission::Rejected { retry_after }
    }

    pub fn record_success(&self) {
        let mut inner = self.lock();
        inner.consecutive_failures = 0;
        inner.opened_at = None;
        inner.probe_in_flight = false;
    }

    pub fn record_failure(&self) {
        self.record_failure_at(Instant::now());
    }

    fn record_failure_at(&self, now: Instant) {
        let mut inner = self.lock();
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        if inner.probe_in_flight || inner.consecutive_failures >= self.threshold {
            inner.opened_at = Some(now);
        }
        inner.probe_in_flight = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        };
        for attempt in 0..40 {
            let d = b.delay(attempt);
            let ceiling = (Duration::from_millis(100) * 2u32.pow(attempt.min(16))).min(b.cap);
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let b = CircuitBreaker::new(3, Duration::from_secs(1));
        let t0 = Instant::now();
        for _ in 0..2 {
            b.record_failure_at(t0);
        }
        assert_eq!(b.state_at(t0), BreakerState::Closed);
        b.record_failure_at(t0);
        assert_eq!(b.state_at(t0), BreakerState::Open);
        assert!(matches!(b.admit_at(t0), Admission::Rejected { .. }));
        let later = t0 + Duration::from_millis(1100);
        assert_eq!(b.state_at(later), BreakerState::HalfOpen);
        assert_eq!(
            b.admit_at(later),
            Admission::Probe,
            "one probe goes through"
        );
        assert!(
            matches!(b.admit_at(later), Admission::Rejected { .. }),
            "only one probe"
        );
        b.record_failure_at(later);
        assert_eq!(
            b.state_at(later),
            BreakerState::Open,
            "a failed probe reopens"
        );
        let again = later + Duration::from_millis(1100);
        assert_eq!(b.admit_at(again), Admission::Probe);
        b.record_success();
        assert_eq!(b.state_at(again), BreakerState::Closed);
        assert_eq!(b.admit_at(again), Admission::Allowed);
    }
}
