//! Which stored batches' offsets may be committed: strictly in the order the batches were
//! taken off Kafka, however their stores finish. With two batches stored at once, a later
//! batch may be stored first; its offsets then wait until every batch before it is stored,
//! or a crash would skip the earlier batch's records for good. Pure bookkeeping, no I/O.

use std::collections::{BTreeMap, VecDeque};

/// The next offset to commit, per partition.
pub type Offsets = BTreeMap<i32, i64>;

/// A batch's place in the order, handed out when it is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// Batches taken off Kafka whose offsets are not yet released for commit, oldest first.
#[derive(Debug, Default)]
pub struct CommitOrder {
    /// The ticket of the oldest batch in `pending`.
    oldest: u64,
    /// The ticket the next batch taken gets.
    next: u64,
    pending: VecDeque<Pending>,
}

#[derive(Debug)]
struct Pending {
    offsets: Offsets,
    stored: bool,
}

impl CommitOrder {
    /// Batches taken whose offsets are not yet released: the pipeline's depth.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Registers a batch just taken off Kafka, after every batch taken before it.
    pub fn taken(&mut self, offsets: Offsets) -> Ticket {
        let ticket = Ticket(self.next);
        self.next += 1;
        self.pending.push_back(Pending {
            offsets,
            stored: false,
        });
        ticket
    }

    /// Marks the batch of `ticket` stored. Returns the offsets it is now safe to commit: those
    /// of every stored batch with no unstored batch before it, merged per partition; empty
    /// while an earlier batch is still being stored.
    pub fn stored(&mut self, ticket: Ticket) -> Offsets {
        let index = ticket
            .0
            .checked_sub(self.oldest)
            .and_then(|i| usize::try_from(i).ok());
        if let Some(batch) = index.and_then(|i| self.pending.get_mut(i)) {
            batch.stored = true;
        }
        self.release()
    }

    /// Takes the stored batches off the front of the order, as far as the first unstored one.
    fn release(&mut self) -> Offsets {
        let mut ready = Offsets::new();
        while self.pending.front().is_some_and(|b| b.stored) {
            if let Some(batch) = self.pending.pop_front() {
                merge(&mut ready, batch.offsets);
            }
            self.oldest += 1;
        }
        ready
    }
}

/// Adds `from` to `into`, keeping the furthest offset per partition.
pub fn merge(into: &mut Offsets, from: Offsets) {
    for (partition, offset) in from {
        let e = into.entry(partition).or_insert(offset);
        *e = (*e).max(offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(pairs: &[(i32, i64)]) -> Offsets {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_batch_stored_alone_is_released_at_once() {
        let mut order = CommitOrder::default();
        let a = order.taken(offsets(&[(0, 10)]));
        assert_eq!(order.in_flight(), 1);
        assert_eq!(order.stored(a), offsets(&[(0, 10)]));
        assert_eq!(order.in_flight(), 0);
    }

    #[test]
    fn a_later_batch_stored_first_waits_for_the_earlier_one() {
        let mut order = CommitOrder::default();
        let a = order.taken(offsets(&[(0, 10), (1, 5)]));
        let b = order.taken(offsets(&[(0, 20)]));
        assert!(
            order.stored(b).is_empty(),
            "released before batch a was stored"
        );
        assert_eq!(order.in_flight(), 2, "b still holds its place");
        assert_eq!(order.stored(a), offsets(&[(0, 20), (1, 5)]));
        assert_eq!(order.in_flight(), 0);
    }

    #[test]
    fn batches_stored_in_order_are_released_one_by_one() {
        let mut order = CommitOrder::default();
        let a = order.taken(offsets(&[(0, 10)]));
        let b = order.taken(offsets(&[(1, 3)]));
        assert_eq!(order.stored(a), offsets(&[(0, 10)]));
        let c = order.taken(offsets(&[(0, 12)]));
        assert_eq!(order.stored(b), offsets(&[(1, 3)]));
        assert_eq!(order.stored(c), offsets(&[(0, 12)]));
    }

    #[test]
    fn an_unstored_batch_holds_back_everything_after_it() {
        let mut order = CommitOrder::default();
        let a = order.taken(offsets(&[(0, 10)]));
        assert_eq!(order.stored(a), offsets(&[(0, 10)]));
        let _b = order.taken(offsets(&[(0, 20)]));
        let c = order.taken(offsets(&[(0, 30)]));
        let d = order.taken(offsets(&[(2, 1)]));
        assert!(order.stored(d).is_empty());
        assert!(order.stored(c).is_empty());
        assert_eq!(
            order.in_flight(),
            3,
            "nothing after the unstored batch b is released"
        );
    }

    #[test]
    fn a_ticket_already_released_or_unknown_releases_nothing() {
        let mut order = CommitOrder::default();
        let a = order.taken(offsets(&[(0, 10)]));
        assert_eq!(order.stored(a), offsets(&[(0, 10)]));
        assert!(order.stored(a).is_empty());
        assert!(order.stored(Ticket(7)).is_empty());
        let b = order.taken(offsets(&[(0, 11)]));
        assert_eq!(order.stored(b), offsets(&[(0, 11)]));
    }

    #[test]
    fn merging_keeps_the_furthest_offset_per_partition() {
        let mut into = offsets(&[(0, 10), (1, 7)]);
        merge(&mut into, offsets(&[(0, 4), (1, 9), (2, 1)]));
        assert_eq!(into, offsets(&[(0, 10), (1, 9), (2, 1)]));
    }
}
