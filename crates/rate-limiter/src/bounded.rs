//! A `DashMap` with a hard cap on keys and CLOCK (second-chance) eviction,
//! so a flood of new ids cannot grow memory without limit.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::error::LimitKey;

use dashmap::DashMap;
use dashmap::mapref::one::{Ref, RefMut};
use foldhash::fast::RandomState;

/// A value with its CLOCK bookkeeping.
#[derive(Debug)]
pub(crate) struct Slot<V> {
    pub(crate) value: V,
    referenced: bool,
    generation: u32,
}

/// Keys capped at `cap`. Inserting a new key at the cap evicts one entry in
/// CLOCK order: entries are visited oldest-inserted first; one used since
/// the last visit (or pinned) gets a second chance and goes to the back. The
/// result approximates least-recently-used at O(1) amortized cost. Pinned
/// entries are never evicted, so the map exceeds `cap` only by entries that
/// stay pinned.
#[derive(Debug)]
pub(crate) struct BoundedMap<V> {
    /// Keys are shared with the order queue, not copied.
    /// Values are boxed so the table stays small (24-byte entries) and
    /// mostly cached even with many keys.
    map: DashMap<LimitKey, Box<Slot<V>>, RandomState>,
    /// Keys in CLOCK order with the generation they were inserted under;
    /// entries for removed or re-inserted keys are skipped lazily.
    order: Mutex<VecDeque<(LimitKey, u32)>>,
    next_generation: AtomicU32,
    cap: usize,
    evicted: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<V> BoundedMap<V> {
    pub(crate) fn new(cap: usize) -> Self {
        BoundedMap {
            // More shards than DashMap's default (4 per core): decisions
            // take a shard's write lock, so threads on different users
            // collide less often.
            map: DashMap::with_hasher_and_shard_amount(
                RandomState::default(),
                (std::thread::available_parallelism().map_or(4, |n| n.get()) * 32)
                    .next_power_of_two(),
            ),
            order: Mutex::new(VecDeque::new()),
            next_generation: AtomicU32::new(0),
            cap: cap.max(1),
            evicted: AtomicU64::new(0),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    pub(crate) fn get(&self, key: &str) -> Option<Ref<'_, LimitKey, Box<Slot<V>>>> {
        self.map.get(key)
    }

    /// The entry for `key`, marked as used.
    pub(crate) fn get_mut(&self, key: &str) -> Option<RefMut<'_, LimitKey, Box<Slot<V>>>> {
        let mut slot = self.map.get_mut(key)?;
        slot.referenced = true;
        Some(slot)
    }

    /// The entry for `key`, inserting `make()` (after evicting one entry if
    /// at the cap) when absent. `pinned` tells which values must not be
    /// evicted.
    pub(crate) fn get_or_insert(
        &self,
        key: &str,
        make: impl Fn() -> V,
        pinned: impl Fn(&V) -> bool,
    ) -> RefMut<'_, LimitKey, Box<Slot<V>>> {
        loop {
            if let Some(slot) = self.get_mut(key) {
                return slot;
            }
            if self.map.len() >= self.cap {
                self.evict_one(&pinned);
            }
            let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
            let shared: LimitKey = LimitKey::from(key);
            let inserted = {
                let slot = self.map.entry(shared.clone()).or_insert_with(|| {
                    Box::new(Slot {
                        value: make(),
                        referenced: true,
                        generation,
                    })
                });
                slot.generation == generation
            };
            // The shard lock is released before taking the order lock:
            // eviction takes them in the other order.
            if inserted {
                lock(&self.order).push_back((shared, generation));
            }
            // Loop: a concurrent eviction may (very rarely) have removed the
            // entry in between; the next pass finds or re-creates it.
        }
    }

    fn evict_one(&self, pinned: &impl Fn(&V) -> bool) {
        let mut budget = self.map.len().saturating_mul(2).saturating_add(8);
        while budget > 0 {
            budget -= 1;
            let Some((key, generation)) = lock(&self.order).pop_front() else {
                return;
            };
            let verdict = match self.map.get_mut(&key) {
                Some(mut slot) if slot.generation == generation => {
                    if slot.referenced || pinned(&slot.value) {
                        slot.referenced = false;
                        Some(false)
                    } else {
                        Some(true)
                    }
                }
                _ => None, // stale entry
            };
            match verdict {
                Some(true) => {
                    let removed = self
                        .map
                        .remove_if(&key, |_, s| {
                            s.generation == generation && !s.referenced && !pinned(&s.value)
                        })
                        .is_some();
                    if removed {
                        self.evicted.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    lock(&self.order).push_back((key, generation));
                }
                Some(false) => lock(&self.order).push_back((key, generation)),
                None => {}
            }
        }
    }

    /// Keeps only the entries for which `keep` returns true; returns how
    /// many it removed.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&str, &mut V) -> bool) -> usize {
        let mut removed = 0;
        self.map.retain(|k, slot| {
            let k_keep = keep(k, &mut slot.value);
            removed += usize::from(!k_keep);
            k_keep
        });
        if removed > 0 {
            let old = std::mem::take(&mut *lock(&self.order));
            let live: VecDeque<(LimitKey, u32)> = old
                .into_iter()
                .filter(|(k, g)| self.map.get(k).is_some_and(|s| s.generation == *g))
                .collect();
            let mut order = lock(&self.order);
            let pushed_meanwhile = std::mem::replace(&mut *order, live);
            order.extend(pushed_meanwhile);
        }
        removed
    }

    /// Removes `key`; returns whether it was present.
    pub(crate) fn remove(&self, key: &str) -> bool {
        self.map.remove(key).is_some()
    }

    /// Approximate heap bytes of the map's table and order queue (not of
    /// the values' own heap data).
    pub(crate) fn table_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(LimitKey, Box<Slot<V>>)>() + 1;
        self.map.capacity() * entry
            + self.map.len() * std::mem::size_of::<Slot<V>>()
            + lock(&self.order).capacity() * std::mem::size_of::<(LimitKey, u32)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_holds_and_recently_used_survive() {
        let m: BoundedMap<u32> = BoundedMap::new(3);
        for k in ["a", "b", "c"] {
            m.get_or_insert(k, || 1, |_| false);
        }
        // First visit clears every referenced bit; "a" then goes first.
        m.get_or_insert("d", || 1, |_| false);
        assert_eq!(m.len(), 3);
        assert!(m.get("a").is_none());
        // "b" is used again, so "c" goes next.
        m.get_mut("b");
        m.get_or_insert("e", || 1, |_| false);
        assert!(m.get("b").is_some() && m.get("c").is_none());
        assert_eq!(m.evicted(), 2);
    }

    #[test]
    fn pinned_entries_are_never_evicted() {
        let m: BoundedMap<u32> = BoundedMap::new(2);
        m.get_or_insert("p1", || 7, |v| *v == 7);
        m.get_or_insert("p2", || 7, |v| *v == 7);
        m.get_or_insert("x", || 1, |v| *v == 7);
        assert!(m.get("p1").is_some() && m.get("p2").is_some());
        assert_eq!(m.len(), 3, "only pinned entries exceed the cap");
    }

    #[test]
    fn retain_prunes_the_order_queue() {
        let m: BoundedMap<u32> = BoundedMap::new(10);
        for i in 0..10u32 {
            m.get_or_insert(&i.to_string(), || i, |_| false);
        }
        assert_eq!(m.retain(|_, v| *v % 2 == 0), 5);
        assert_eq!(lock(&m.order).len(), 5);
    }
}
