//! Fault injection for tests and demos (off unless set): a fraction of webhook requests fail
//! with 500, and/or every webhook request is delayed. It reports itself in `/health`.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    pub error_rate: f64,
    pub latency: Duration,
}

impl Faults {
    pub fn is_active(&self) -> bool {
        self.error_rate > 0.0 || !self.latency.is_zero()
    }

    /// Whether this request is one of the injected failures.
    pub fn should_fail(&self) -> bool {
        self.error_rate > 0.0 && rand::rng().random_bool(self.error_rate.clamp(0.0, 1.0))
    }

    pub fn describe(&self) -> String {
        format!(
            "fault injection on: error_rate={} latency_ms={}",
            self.error_rate,
            self.latency.as_millis()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_rate_is_honoured() {
        let f = Faults {
            error_rate: 0.2,
            latency: Duration::ZERO,
        };
        let failed = (0..20_000).filter(|_| f.should_fail()).count();
        assert!((3_400..4_600).contains(&failed), "{failed}");
        let off = Faults {
            error_rate: 0.0,
            latency: Duration::ZERO,
        };
        assert!(!off.is_active() && !off.should_fail());
    }
}
