//! Loopback address pools.
//!
//! Address plan (all inside 127.0.0.0/8, which Linux routes to `lo`, so every
//! address can be bound without configuration):
//! - real pods:   127.0.1.1 – 127.0.1.254 ([`POD_POOL`])
//! - services:    127.0.2.1 – 127.0.2.254 ([`SERVICE_POOL`])
//! - fake pods:   127.0.16.1 – 127.0.31.254 ([`FAKE_POD_POOL`]; bound only by the
//!   agent's in-process responder, see `agent::responder`)

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// An inclusive address range; `.0` and `.255` hosts are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

pub const POD_POOL: Range = Range {
    first: Ipv4Addr::new(127, 0, 1, 1),
    last: Ipv4Addr::new(127, 0, 1, 254),
};
pub const SERVICE_POOL: Range = Range {
    first: Ipv4Addr::new(127, 0, 2, 1),
    last: Ipv4Addr::new(127, 0, 2, 254),
};
pub const FAKE_POD_POOL: Range = Range {
    first: Ipv4Addr::new(127, 0, 16, 1),
    last: Ipv4Addr::new(127, 0, 31, 254),
};

impl Range {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        v >= u32::from(self.first) && v <= u32::from(self.last) && usable(ip)
    }
}

fn usable(ip: Ipv4Addr) -> bool {
    let last = ip.octets()[3];
    last != 0 && last != 255
}

/// Hands out the lowest free address of a range to a key, stable per key.
#[derive(Debug, Clone)]
pub struct Pool {
    range: Range,
    by_key: BTreeMap<String, Ipv4Addr>,
}

impl Pool {
    pub fn new(range: Range) -> Self {
        Self {
            range,
            by_key: BTreeMap::new(),
        }
    }

    /// The address of `key`, allocating the lowest free one if it has none.
    pub fn allocate(&mut self, key: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_key.get(key) {
            return Some(*ip);
        }
        let ip = self.lowest_free()?;
        self.by_key.insert(key.to_owned(), ip);
        Some(ip)
    }

    /// Gives `key` a specific address (e.g. one already in a pod's status).
    /// Returns false when the address is outside the range or taken by another key.
    pub fn reserve(&mut self, key: &str, ip: Ipv4Addr) -> bool {
        if !self.range.contains(ip) {
            return false;
        }
        match self.by_key.iter().find(|(_, v)| **v == ip) {
            Some((owner, _)) => owner == key,
            None => {
                self.by_key.insert(key.to_owned(), ip);
                true
            }
        }
    }

    pub fn release(&mut self, key: &str) {
        self.by_key.remove(key);
    }

    fn lowest_free(&self) -> Option<Ipv4Addr> {
        let used: std::collections::BTreeSet<u32> =
            self.by_key.values().map(|ip| u32::from(*ip)).collect();
        (u32::from(self.range.first)..=u32::from(self.range.last))
            .map(Ipv4Addr::from)
            .find(|ip| usable(*ip) && !used.contains(&u32::from(*ip)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_lowest_free_and_is_stable_per_key() {
        let mut pool = Pool::new(POD_POOL);
        assert_eq!(pool.allocate("a"), Some(Ipv4Addr::new(127, 0, 1, 1)));
        assert_eq!(pool.allocate("b"), Some(Ipv4Addr::new(127, 0, 1, 2)));
        assert_eq!(pool.allocate("a"), Some(Ipv4Addr::new(127, 0, 1, 1)));
        pool.release("a");
        assert_eq!(pool.allocate("c"), Some(Ipv4Addr::new(127, 0, 1, 1)));
    }

    #[test]
    fn skips_network_and_broadcast_hosts_and_exhausts() {
        let range = Range {
            first: Ipv4Addr::new(127, 0, 3, 254),
            last: Ipv4Addr::new(127, 0, 4, 1),
        };
        let mut pool = Pool::new(range);
        assert_eq!(pool.allocate("a"), Some(Ipv4Addr::new(127, 0, 3, 254)));
        assert_eq!(pool.allocate("b"), Some(Ipv4Addr::new(127, 0, 4, 1)));
        assert_eq!(pool.allocate("c"), None);
    }

    #[test]
    fn reserve_respects_range_and_owners() {
        let mut pool = Pool::new(POD_POOL);
        assert!(pool.reserve("a", Ipv4Addr::new(127, 0, 1, 7)));
        assert!(pool.reserve("a", Ipv4Addr::new(127, 0, 1, 7)));
        assert!(!pool.reserve("b", Ipv4Addr::new(127, 0, 1, 7)));
        assert!(!pool.reserve("b", Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(pool.allocate("a"), Some(Ipv4Addr::new(127, 0, 1, 7)));
    }
}
