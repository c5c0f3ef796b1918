//! The one place presence timers live (STYLE.md: "Timers live in one place (a deadline
//! queue), not spread over handlers"). Each key (typically a user) has at most one deadline,
//! usually the `next_change_at` of its effective presence; a single task sleeps until
//! [`DeadlineQueue::next_deadline`] and then recomputes the keys [`DeadlineQueue::pop_due`] hands
//! back.
//!
//! Rescheduling does not search the heap: the old entry is left in place and recognised as stale
//! by its sequence number when it surfaces (lazy invalidation). A tick therefore costs
//! O(due · log n) plus the stale entries it meets, each of which was paid for by the schedule or
//! cancel that made it stale. When stale entries outnumber live ones more than two to one the
//! heap is rebuilt, so memory stays within 3× the live keys.

use std::cmp::Ordering;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;

/// One scheduled deadline; `seq` is unique per `schedule` call and tells live from stale.
#[derive(Debug)]
struct Slot<K> {
    at: i64,
    seq: u64,
    key: K,
}

// Ordered as `Reverse((at, seq))` so the max-heap pops the earliest deadline first, and keys
// with equal deadlines in the order they were scheduled. `key` takes no part, so `K` needs no
// `Ord`.
impl<K> Ord for Slot<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<K> PartialOrd for Slot<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> PartialEq for Slot<K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<K> Eq for Slot<K> {}

/// Keys with one deadline each (ms since the epoch), popped when due.
#[derive(Debug)]
pub struct DeadlineQueue<K> {
    heap: BinaryHeap<Slot<K>>,
    /// The current `(at, seq)` of every scheduled key; heap entries that disagree are stale.
    current: HashMap<K, (i64, u64)>,
    next_seq: u64,
}

impl<K> Default for DeadlineQueue<K> {
    fn default() -> Self {
        DeadlineQueue { heap: BinaryHeap::new(), current: HashMap::new(), next_seq: 0 }
    }
}

impl<K: Eq + Hash + Clone> DeadlineQueue<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`'s deadline to `at_ms`, replacing any earlier or later one it had.
    pub fn schedule(&mut self, key: K, at_ms: i64) {
        let seq = self.next_seq;
        match self.current.entry(key.clone()) {
            MapEntry::Occupied(mut e) => {
                if e.get().0 == at_ms {
                    return;
                }
                e.insert((at_ms, seq));
            }
            MapEntry::Vacant(e) => {
                e.insert((at_ms, seq));
            }
        }
        self.next_seq += 1;
        self.heap.push(Slot { at: at_ms, seq, key });
        self.tidy();
    }

    /// Removes `key`'s deadline; returns it if there was one.
    pub fn cancel(&mut self, key: &K) -> Option<i64> {
        let (at, _) = self.current.remove(key)?;
        self.tidy();
        Some(at)
    }

    /// The current deadline of `key`.
    pub fn deadline(&self, key: &K) -> Option<i64> {
        self.current.get(key).map(|&(at, _)| at)
    }

    /// The earliest deadline of any key.
    pub fn next_deadline(&self) -> Option<i64> {
        // `tidy` keeps the top of the heap live after every change.
        self.heap.peek().map(|slot| slot.at)
    }

    /// Removes and returns every key whose current deadline is `<= now_ms`, earliest first
    /// (equal deadlines in scheduling order). Each key appears at most once.
    pub fn pop_due(&mut self, now_ms: i64) -> Vec<K> {
        let mut due = Vec::new();
        while self.heap.peek().is_some_and(|slot| slot.at <= now_ms) {
            let Some(slot) = self.heap.pop() else { break };
            if self.current.get(&slot.key).map(|&(_, seq)| seq) == Some(slot.seq) {
                self.current.remove(&slot.key);
                due.push(slot.key);
            }
        }
        self.tidy();
        due
    }

    /// How many keys have a deadline.
    pub fn len(&self) -> usize {
        self.current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    /// Drops stale entries from the top so `next_deadline` can peek, and rebuilds the heap when
    /// stale entries exceed twice the live ones.
    fn tidy(&mut self) {
        let DeadlineQueue { heap, current, .. } = self;
        let is_live = |slot: &Slot<K>| current.get(&slot.key).map(|&(_, seq)| seq) == Some(slot.seq);
        while heap.peek().is_some_and(|slot| !is_live(slot)) {
            heap.pop();
        }
        let stale = heap.len() - current.len();
        if stale > 2 * current.len() {
            heap.retain(is_live);
        }
    }

    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn queue(entries: &[(&'static str, i64)]) -> DeadlineQueue<&'static str> {
        let mut q = DeadlineQueue::new();
        for &(k, at) in entries {
            q.schedule(k, at);
        }
        q
    }

    #[test]
    fn empty_queue_has_nothing_due() {
        let mut q: DeadlineQueue<u32> = DeadlineQueue::new();
        assert!(q.is_empty());
        assert_eq!(q.next_deadline(), None);
        assert!(q.pop_due(i64::MAX).is_empty());
    }

    #[test]
    fn pops_due_keys_in_deadline_order() {
        let mut q = queue(&[("c", 30), ("a", 10), ("b", 20), ("d", 40)]);
        assert_eq!(q.len(), 4);
        assert_eq!(q.next_deadline(), Some(10));
        assert!(q.pop_due(9).is_empty());
        assert_eq!(q.pop_due(30), vec!["a", "b", "c"], "deadline == now is due");
        assert_eq!(q.next_deadline(), Some(40));
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_due(100), vec!["d"]);
        assert!(q.is_empty());
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn equal_deadlines_pop_in_scheduling_order() {
        let mut q = queue(&[("x", 5), ("y", 5), ("z", 5)]);
        assert_eq!(q.pop_due(5), vec!["x", "y", "z"]);
    }

    #[test]
    fn rescheduling_later_moves_the_deadline() {
        let mut q = queue(&[("a", 10), ("b", 20)]);
        q.schedule("a", 30);
        assert_eq!(q.deadline(&"a"), Some(30));
        assert_eq!(q.next_deadline(), Some(20), "stale entry for a@10 is not reported");
        assert_eq!(q.pop_due(15), Vec::<&str>::new());
        assert_eq!(q.pop_due(25), vec!["b"]);
        assert_eq!(q.pop_due(30), vec!["a"]);
        assert!(q.is_empty());
    }

    #[test]
    fn rescheduling_earlier_moves_the_deadline() {
        let mut q = queue(&[("a", 50), ("b", 20)]);
        q.schedule("a", 10);
        assert_eq!(q.next_deadline(), Some(10));
        assert_eq!(q.pop_due(10), vec!["a"]);
        assert_eq!(q.pop_due(100), vec!["b"], "a's old deadline at 50 is gone");
    }

    #[test]
    fn rescheduling_to_the_same_deadline_adds_no_entry() {
        let mut q = queue(&[("a", 10)]);
        q.schedule("a", 10);
        q.schedule("a", 10);
        assert_eq!(q.heap_len(), 1);
        assert_eq!(q.pop_due(10), vec!["a"]);
    }

    #[test]
    fn each_key_pops_at_most_once() {
        let mut q = DeadlineQueue::new();
        for at in [5, 3, 9, 1, 7, 3] {
            q.schedule("k", at);
        }
        q.schedule("j", 2);
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop_due(100), vec!["j", "k"]);
        assert!(q.pop_due(1000).is_empty());
    }

    #[test]
    fn cancel_removes_the_key() {
        let mut q = queue(&[("a", 10), ("b", 20)]);
        assert_eq!(q.cancel(&"a"), Some(10));
        assert_eq!(q.cancel(&"a"), None);
        assert_eq!(q.cancel(&"nobody"), None);
        assert_eq!(q.next_deadline(), Some(20));
        assert_eq!(q.pop_due(100), vec!["b"]);
    }

    #[test]
    fn cancel_then_schedule_again() {
        let mut q = queue(&[("a", 10)]);
        q.cancel(&"a");
        q.schedule("a", 10);
        assert_eq!(q.pop_due(10), vec!["a"]);
        assert!(q.pop_due(10).is_empty());
    }

    #[test]
    fn popped_key_can_be_scheduled_again() {
        let mut q = queue(&[("a", 10)]);
        assert_eq!(q.pop_due(10), vec!["a"]);
        q.schedule("a", 10);
        assert_eq!(q.pop_due(10), vec!["a"]);
    }

    #[test]
    fn many_keys_pop_in_order_in_batches() {
        let mut q = DeadlineQueue::new();
        // A fixed permutation of 0..10_000 as deadlines, scheduled twice (second one wins).
        let n: i64 = 10_000;
        for k in 0..n {
            q.schedule(k, (k * 7_919) % n + n);
        }
        for k in 0..n {
            q.schedule(k, (k * 7_919) % n);
        }
        assert_eq!(q.len(), n as usize);
        let mut seen = Vec::new();
        for now in (0..n).step_by(100) {
            let batch = q.pop_due(now + 99);
            assert_eq!(batch.len(), 100);
            seen.extend(batch.into_iter().map(|k| (k * 7_919) % n));
        }
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
        assert!(q.is_empty());
        assert!(q.pop_due(i64::MAX).is_empty());
    }

    #[test]
    fn heap_is_compacted_when_stale_entries_pile_up() {
        let mut q = DeadlineQueue::new();
        for k in 0..100u32 {
            q.schedule(k, 1_000_000);
        }
        for round in 0..1_000 {
            for k in 0..100u32 {
                q.schedule(k, 1_000 + round + i64::from(k));
            }
            assert!(q.heap_len() <= 3 * q.len(), "heap {} live {}", q.heap_len(), q.len());
        }
        for k in 0..100u32 {
            q.cancel(&k);
        }
        assert_eq!(q.heap_len(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Schedule(u8, i64),
        Cancel(u8),
        PopDue(i64),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..12, 0i64..100).prop_map(|(k, at)| Op::Schedule(k, at)),
            1 => (0u8..12).prop_map(Op::Cancel),
            2 => (0i64..100).prop_map(Op::PopDue),
        ]
    }

    proptest! {
        /// The queue behaves like a plain map from key to deadline.
        #[test]
        fn prop_matches_a_map_model(ops in prop::collection::vec(arb_op(), 0..200)) {
            let mut q = DeadlineQueue::new();
            let mut model: HashMap<u8, i64> = HashMap::new();
            for op in ops {
                match op {
                    Op::Schedule(k, at) => {
                        q.schedule(k, at);
                        model.insert(k, at);
                    }
                    Op::Cancel(k) => {
                        prop_assert_eq!(q.cancel(&k), model.remove(&k));
                    }
                    Op::PopDue(now) => {
                        let popped = q.pop_due(now);
                        let expected: BTreeSet<u8> =
                            model.iter().filter(|&(_, &at)| at <= now).map(|(&k, _)| k).collect();
                        let got: BTreeSet<u8> = popped.iter().copied().collect();
                        prop_assert_eq!(got.len(), popped.len(), "a key popped twice");
                        prop_assert_eq!(&got, &expected);
                        let ats: Vec<i64> = popped.iter().map(|k| model[k]).collect();
                        prop_assert!(ats.windows(2).all(|w| w[0] <= w[1]), "not in order: {:?}", ats);
                        model.retain(|_, at| *at > now);
                    }
                }
                prop_assert_eq!(q.len(), model.len());
                prop_assert_eq!(q.next_deadline(), model.values().min().copied());
                for (k, at) in &model {
                    prop_assert_eq!(q.deadline(k), Some(*at));
                }
                prop_assert!(q.heap_len() <= 3 * q.len());
            }
        }
    }
}
