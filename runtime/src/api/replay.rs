//! The replay guard: one signed webhook is accepted at most once by this process.
//!
//! A signature is only valid while its timestamp is within the tolerance `T` of the clock, so a
//! replay can only succeed while `now <= timestamp + T` (its *expiry*). After the signature is
//! verified, the handler [`ReplayGuard::reserve`]s its key (a 64-bit prefix of the MAC, mixed
//! with the device): a second request with the same key is refused while the first is in
//! flight or once it was accepted. Only [`Reservation::confirm`] (called right before the 202)
//! makes the key *remembered*; dropping the reservation (any refusal: Kafka down, 422, a
//! client that went away) releases it, so the sender's retry of the very same request is
//! accepted: nothing is lost.
//!
//! Memory: remembered keys are filed by the window of `T` seconds their expiry falls in. The
//! verifier admits timestamps within `[now - T, now + T]`, so expiries are within
//! `[now, now + 2T]`: three windows, three slots, reused in turn. A slot whose window has
//! fully passed is dropped (its keys are stale: the verifier refuses them anyway). On top,
//! a hard cap on remembered keys: at the cap the oldest slot is dropped early (counted), so
//! under extreme load the protection window shrinks instead of memory growing.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Slots of remembered keys, one per tolerance window of expiries (see the module docs).
const SLOTS: usize = 3;

/// A compact identity of one signed request: the first 8 bytes of its (verified) MAC, mixed
/// with the device. Without the secret nobody can choose or predict it. 64 bits keep the table
/// small; the chance that a new request collides with one of `n` remembered keys (and is
/// wrongly refused) is `n / 2^64`, about 5e-14 per request at a million keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayKey(u64);

impl ReplayKey {
    /// `mac` is the verified HMAC-SHA256 (32 bytes); `device_code` tells devices apart.
    pub fn new(device_code: u8, mac: &[u8]) -> ReplayKey {
        let mut prefix = [0u8; 8];
        for (to, from) in prefix.iter_mut().zip(mac) {
            *to = *from;
        }
        ReplayKey(u64::from_be_bytes(prefix) ^ u64::from(device_code))
    }
}

/// Why a request was refused as a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Replayed {
    #[error(
        "this signed request was already accepted; a replay is not stored again (sign a new request to send new data)"
    )]
    Accepted,
    #[error(
        "this signed request is already being handled; retry it only if that attempt is refused"
    )]
    InFlight,
}

/// What [`Reservation::confirm`] changed, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmed {
    /// Keys remembered now.
    pub remembered: usize,
    /// When the cap forced an early rotation: how many there have been so far (1 = the first).
    pub early_rotation: Option<u64>,
}

#[derive(Debug, Default)]
struct Slot {
    /// `expiry.div_euclid(T)` of every key in `keys`.
    window: i64,
    keys: HashSet<ReplayKey>,
}

#[derive(Debug, Default)]
struct Inner {
    in_flight: HashSet<ReplayKey>,
    slots: [Slot; SLOTS],
    early_rotations: u64,
}

impl Inner {
    fn remembered(&self) -> usize {
        self.slots.iter().map(|s| s.keys.len()).sum()
    }

    fn contains(&self, key: &ReplayKey) -> bool {
        self.slots.iter().any(|s| s.keys.contains(key))
    }

    /// Frees the slots whose whole window of expiries has passed.
    fn forget_expired(&mut self, now_window: i64) {
        for slot in &mut self.slots {
            if slot.window < now_window && !slot.keys.is_empty() {
                slot.keys = HashSet::new(); // frees the table, unlike clear()
            }
        }
    }

    /// At the cap: drops the slot with the oldest window. Returns the rotation count.
    fn rotate_early(&mut self) -> u64 {
        if let Some(oldest) = self
            .slots
            .iter_mut()
            .filter(|s| !s.keys.is_empty())
            .min_by_key(|s| s.window)
        {
            oldest.keys = HashSet::new();
        }
        self.early_rotations += 1;
        self.early_rotations
    }
}

/// Remembers the signed requests this process accepted, bounded in time and in memory.
#[derive(Debug)]
pub struct ReplayGuard {
    inner: Mutex<Inner>,
    tolerance_secs: i64,
    capacity: usize,
}

impl ReplayGuard {
    /// `tolerance_secs` is the verifier's tolerance; `capacity` the most keys remembered
    /// (at least 1).
    pub fn new(tolerance_secs: u64, capacity: usize) -> Arc<ReplayGuard> {
        Arc::new(ReplayGuard {
            inner: Mutex::default(),
            tolerance_secs: i64::try_from(tolerance_secs.max(1)).unwrap_or(i64::MAX),
            capacity: capacity.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing here can leave the sets half-updated, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn window(&self, unix: i64) -> i64 {
        unix.div_euclid(self.tolerance_secs)
    }

    /// Claims `key` for a request signed at `timestamp` (already verified). Refused while the
    /// same key is in flight or remembered.
    pub fn reserve(
        self: &Arc<Self>,
        key: ReplayKey,
        timestamp: i64,
    ) -> Result<Reservation, Replayed> {
        let mut inner = self.lock();
        if inner.contains(&key) {
            return Err(Replayed::Accepted);
        }
        if !inner.in_flight.insert(key) {
            return Err(Replayed::InFlight);
        }
        Ok(Reservation {
            guard: Arc::clone(self),
            key,
            expires_at: timestamp.saturating_add(self.tolerance_secs),
            settled: false,
        })
    }

    fn release(&self, key: &ReplayKey) {
        self.lock().in_flight.remove(key);
    }

    fn remember(&self, key: ReplayKey, expires_at: i64, now: i64) -> Confirmed {
        let window = self.window(expires_at);
        let mut inner = self.lock();
        inner.in_flight.remove(&key);
        inner.forget_expired(self.window(now));
        // Keys are added one at a time, so dropping any non-empty slot gets below the cap.
        let early_rotation = (inner.remembered() >= self.capacity).then(|| inner.rotate_early());
        let slot = &mut inner.slots[slot_of(window)];
        if slot.window != window {
            // The slot held an older window (expired) or, after the clock went back, a later
            // one: either way its keys make room.
            slot.keys = HashSet::new();
            slot.window = window;
        }
        slot.keys.insert(key);
        Confirmed {
            remembered: inner.remembered(),
            early_rotation,
        }
    }

    /// Keys remembered at `now` (expired windows are freed first).
    pub fn remembered(&self, now: i64) -> usize {
        let mut inner = self.lock();
        inner.forget_expired(self.window(now));
        inner.remembered()
    }

    /// Requests holding a reservation right now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight.len()
    }
}

fn slot_of(window: i64) -> usize {
    // rem_euclid(3) is in 0..3, so the conversion cannot fail.
    usize::try_from(window.rem_euclid(SLOTS as i64)).unwrap_or(0)
}

/// A claim on one signed request. [`Reservation::confirm`] it once the request is accepted;
/// dropping it unconfirmed (any refusal, a cancelled request) frees the key for a retry.
#[derive(Debug)]
pub struct Reservation {
    guard: Arc<ReplayGuard>,
    key: ReplayKey,
    expires_at: i64,
    settled: bool,
}

impl Reservation {
    /// The request was accepted: remember its key until its signature expires.
    pub fn confirm(mut self, now: i64) -> Confirmed {
        self.settled = true;
        self.guard.remember(self.key, self.expires_at, now)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.guard.release(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 300;
    const NOW: i64 = 1_795_000_000;

    fn key(n: u64) -> ReplayKey {
        ReplayKey(n)
    }

    #[test]
    fn a_confirmed_key_is_refused_until_released_ones_are_free_again() {
        let g = ReplayGuard::new(T, 100);
        let first = g.reserve(key(1), NOW).unwrap();
        assert_eq!(g.reserve(key(1), NOW).unwrap_err(), Replayed::InFlight);
        assert_eq!(g.in_flight(), 1);
        // Refused (e.g. Kafka down): dropping the reservation frees the key for the retry.
        drop(first);
        assert_eq!(g.in_flight(), 0);
        let retry = g.reserve(key(1), NOW).unwrap();
        let done = retry.confirm(NOW);
        assert_eq!(
            done,
            Confirmed {
                remembered: 1,
                early_rotation: None
            }
        );
        assert_eq!(g.in_flight(), 0);
        let refused = g.reserve(key(1), NOW + 10).unwrap_err();
        assert_eq!(refused, Replayed::Accepted);
        assert!(
            refused.to_string().contains("already accepted"),
            "{refused}"
        );
        // Other keys are unaffected.
        g.reserve(key(2), NOW).unwrap().confirm(NOW);
        assert_eq!(g.remembered(NOW), 2);
    }

    #[test]
    fn the_device_is_part_of_the_key() {
        let mac = [7u8; 32];
        assert_ne!(ReplayKey::new(0, &mac), ReplayKey::new(1, &mac));
        assert_eq!(ReplayKey::new(3, &mac), ReplayKey::new(3, &mac));
        let mut other = mac;
        other[7] ^= 1;
        assert_ne!(ReplayKey::new(0, &mac), ReplayKey::new(0, &other));
    }

    #[test]
    fn keys_are_remembered_while_the_signature_is_valid_then_freed() {
        let t = T as i64;
        for skew in [-t, -1, 0, 1, t] {
            let g = ReplayGuard::new(T, 100);
            let ts = NOW + skew;
            g.reserve(key(9), ts).unwrap().confirm(NOW);
            // Refused for as long as the verifier would still accept the timestamp...
            let mut at = NOW;
            while at <= ts + t {
                assert!(
                    g.reserve(key(9), ts).is_err(),
                    "skew {skew}, at +{}",
                    at - NOW
                );
                g.remembered(at);
                at += 7;
            }
            assert!(g.reserve(key(9), ts).is_err(), "skew {skew}, at the expiry");
            // ...and freed at most one window after it expired.
            assert_eq!(g.remembered(ts + 2 * t + 1), 0, "skew {skew}");
        }
    }

    #[test]
    fn slots_rotate_with_time_and_memory_is_freed() {
        let g = ReplayGuard::new(T, 1_000);
        let t = T as i64;
        for n in 0..10 {
            g.reserve(key(n), NOW).unwrap().confirm(NOW);
        }
        for n in 10..20 {
            g.reserve(key(n), NOW + t).unwrap().confirm(NOW + t);
        }
        assert_eq!(g.remembered(NOW + t), 20);
        // The first ten expire at NOW + T; their window is over by NOW + 2T.
        assert_eq!(g.remembered(NOW + 2 * t), 10);
        assert!(g.reserve(key(15), NOW + t).is_err());
        assert_eq!(g.remembered(NOW + 4 * t), 0);
        // A slot reused for a later window starts empty.
        g.reserve(key(1), NOW + 4 * t).unwrap().confirm(NOW + 4 * t);
        assert_eq!(g.remembered(NOW + 4 * t), 1);
    }

    #[test]
    fn at_the_cap_the_oldest_slot_is_dropped_early_and_counted() {
        let t = T as i64;
        let g = ReplayGuard::new(T, 10);
        // Six keys expiring in one window, four in the next.
        for n in 0..6 {
            g.reserve(key(n), NOW).unwrap().confirm(NOW);
        }
        for n in 6..10 {
            let c = g.reserve(key(n), NOW + t).unwrap().confirm(NOW);
            assert_eq!(c.early_rotation, None);
        }
        assert_eq!(g.remembered(NOW), 10);
        // The eleventh drops the oldest window (the first six), not the newest.
        let c = g.reserve(key(10), NOW + t).unwrap().confirm(NOW);
        assert_eq!(
            c,
            Confirmed {
                remembered: 5,
                early_rotation: Some(1)
            }
        );
        assert!(
            g.reserve(key(0), NOW).is_ok(),
            "the dropped keys are forgotten"
        );
        assert!(
            g.reserve(key(7), NOW + t).is_err(),
            "the newer ones are kept"
        );
        // All in one window: at the cap that window is dropped; memory never exceeds the cap.
        let g = ReplayGuard::new(T, 4);
        let mut rotations = Vec::new();
        for n in 0..9 {
            let c = g.reserve(key(n), NOW).unwrap().confirm(NOW);
            assert!(c.remembered <= 4);
            rotations.extend(c.early_rotation);
        }
        assert_eq!(rotations, vec![1, 2]);
    }

    #[test]
    fn a_cancelled_request_releases_its_key() {
        let g = ReplayGuard::new(T, 10);
        let held = g.reserve(key(5), NOW).unwrap();
        let g2 = Arc::clone(&g);
        std::thread::spawn(move || drop(held)).join().unwrap();
        assert!(g2.reserve(key(5), NOW).is_ok());
    }
}
