//! Restart decisions and crash-loop back-off (pure).

use std::time::Duration;

/// Exponential back-off: `base * 2^(n-1)`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// A run at least this long resets the crash count.
    pub reset_after: Duration,
}

impl Backoff {
    /// Delay before the restart following the `crashes`-th consecutive crash (1-based).
    pub fn delay(&self, crashes: u32) -> Duration {
        let exp = crashes.saturating_sub(1).min(20);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }

    /// How long a container that exited for the `crashes`-th consecutive time waits before
    /// it is started again, as the kubelet does it: the first exit (of a fresh count) is
    /// restarted at once, without a back-off and so without `CrashLoopBackOff`; only a crash
    /// that follows it backs off, `base * 2^(crashes-2)`. `None`: restart now.
    pub fn restart_delay(&self, crashes: u32) -> Option<Duration> {
        (crashes > 1).then(|| self.delay(crashes - 1))
    }

    /// Consecutive crash count after a run of length `ran`.
    pub fn next_crash_count(&self, previous: u32, ran: Duration) -> u32 {
        if ran >= self.reset_after {
            1
        } else {
            previous.saturating_add(1)
        }
    }
}

/// Whether a container that exited with `exit_code` is restarted under `policy`.
pub fn should_restart(policy: Option<&str>, exit_code: i32) -> bool {
    match policy.unwrap_or("Always") {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Backoff {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
            reset_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn delay_doubles_and_caps() {
        assert_eq!(b().delay(1), Duration::from_secs(1));
        assert_eq!(b().delay(2), Duration::from_secs(2));
        assert_eq!(b().delay(4), Duration::from_secs(8));
        assert_eq!(b().delay(5), Duration::from_secs(10));
        assert_eq!(b().delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn only_a_repeated_crash_backs_off() {
        assert_eq!(
            b().restart_delay(1),
            None,
            "the first exit restarts at once"
        );
        assert_eq!(b().restart_delay(2), Some(Duration::from_secs(1)));
        assert_eq!(b().restart_delay(3), Some(Duration::from_secs(2)));
        assert_eq!(b().restart_delay(u32::MAX), Some(Duration::from_secs(10)));
    }

    #[test]
    fn long_runs_reset_the_crash_count() {
        assert_eq!(b().next_crash_count(3, Duration::from_secs(2)), 4);
        assert_eq!(b().next_crash_count(3, Duration::from_secs(61)), 1);
    }

    #[test]
    fn restart_policy() {
        assert!(should_restart(None, 0));
        assert!(should_restart(Some("Always"), 0));
        assert!(should_restart(Some("OnFailure"), 2));
        assert!(!should_restart(Some("OnFailure"), 0));
        assert!(!should_restart(Some("Never"), 1));
    }
}
