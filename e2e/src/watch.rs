//! Back-off of the node side's watches (node agent and Service proxy).

use std::time::Duration;

use kube::runtime::utils::Backoff;

const FIRST: Duration = Duration::from_millis(250);
const MAX: Duration = Duration::from_secs(2);

/// Doubles from 250 ms to at most 2 s; any event resets it. The API server is on loopback,
/// so retrying often costs nothing. With kube-rs's default (0.8 s doubling to 30 s) every retry
/// while the API server was down doubled the wait, and the 410 Gone that each watch gets once
/// it is back doubled it again: the proxy kept routing to endpoints that had gone for ~20 s
/// after an API server restart.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let wait = self.next;
        self.next = (wait * 2).min(MAX);
        Some(wait)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_two_seconds_and_resets() {
        let mut b = WatchBackoff::default();
        let waits: Vec<u128> = b.by_ref().take(6).map(|d| d.as_millis()).collect();
        assert_eq!(waits, vec![250, 500, 1000, 2000, 2000, 2000]);
        b.reset();
        assert_eq!(b.next(), Some(FIRST));
    }
}
