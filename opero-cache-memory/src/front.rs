//! A per-thread front for [`MemoryCache`](crate::MemoryCache) hits of small plain values.
//!
//! The shared store takes a shard's read lock on every hit: two atomic read-modify-writes, which
//! cost more than the rest of a hit together. A thread that reads the same keys again keeps its
//! last hits here, in a few thread-local slots, and answers them with plain loads.
//!
//! A front entry is valid only while its cache's *generation* is the one it was read under.
//! Every change to the store (set, delete, clear, removal of an expired entry, and so every
//! eviction, which only an insert causes) bumps the generation once the change is made, so no
//! thread answers from the front a value older than a change that has returned. An entry also
//! keeps its expiry and is checked against the clock as the store's entries are.
//!
//! Only values the front can hold without owning anything are kept: at most two words, and
//! without drop glue (numbers, `bool`, `char`, small tuples and arrays of them). A slot is
//! overwritten without running a destructor, so a value that owns memory, a file or a count
//! (a `String`, an `Arc`) is never put here and is always read from the store.
#![allow(unsafe_code)]

use std::any::TypeId;
use std::cell::Cell;
use std::mem::{align_of, needs_drop, size_of, MaybeUninit};
use std::sync::atomic::{AtomicU64, Ordering};

use opero_core::CacheValue;

/// Room for a value: two words, as in the store's inline slots.
type Data = MaybeUninit<[u64; 2]>;

/// Slots per thread, for all memory caches of the process together (a power of two).
const SLOTS: usize = 16;

/// Whether the front may hold a `V`: it fits in a slot and owns nothing a drop would release.
pub(crate) const fn holds<V>() -> bool {
    size_of::<V>() <= size_of::<Data>()
        && align_of::<V>() <= align_of::<Data>()
        && !needs_drop::<V>()
}

/// One remembered hit.
#[derive(Clone, Copy)]
struct Slot {
    /// The cache it came from ([`Generation::owner`]); zero when the slot is empty.
    owner: u64,
    /// The cache's generation when the value was read from the store.
    generation: u64,
    hash: u128,
    /// Set whenever `owner` is not zero.
    type_id: MaybeUninit<TypeId>,
    /// As in the store: nanoseconds since the cache's epoch, `u64::MAX` for never.
    expires_at: u64,
    /// A `V` of `type_id`, written by [`Generation::remember`].
    data: Data,
}

const EMPTY: Slot = Slot {
    owner: 0,
    generation: 0,
    hash: 0,
    type_id: MaybeUninit::uninit(),
    expires_at: 0,
    data: MaybeUninit::uninit(),
};

thread_local! {
    static FRONT: [Cell<Slot>; SLOTS] = const { [const { Cell::new(EMPTY) }; SLOTS] };
}

/// Gives every cache its own owner number, so that a cache made where a dropped one lived never
/// reads that one's slots.
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// A cache's identity and change count, on a cache line of its own: it is written on every
/// change and read on every hit.
#[repr(align(64))]
pub(crate) struct Generation {
    owner: u64,
    count: AtomicU64,
}

impl Generation {
    pub(crate) fn new() -> Self {
        Generation {
            owner: NEXT_OWNER.fetch_add(1, Ordering::Relaxed),
            count: AtomicU64::new(0),
        }
    }

    /// The generation to read under: taken before the store is read, so that a change made
    /// meanwhile leaves the remembered value already outdated.
    #[inline]
    pub(crate) fn current(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Outdates every thread's remembered values of this cache; called after the change.
    #[inline]
    pub(crate) fn bump(&self) {
        self.count.fetch_add(1, Ordering::Release);
    }

    fn index(&self, hash: u128) -> usize {
        (hash as usize ^ self.owner as usize) & (SLOTS - 1)
    }

    /// The value this thread remembered for `hash` under `generation`, when it is a `V` that has
    /// not expired by `now` (called only for an entry that expires).
    #[inline]
    pub(crate) fn recall<V: CacheValue>(
        &self,
        generation: u64,
        hash: u128,
        now: impl FnOnce() -> u64,
    ) -> Option<V> {
        if !holds::<V>() {
            return None;
        }
        let slot = FRONT.try_with(|front| front[self.index(hash)].get()).ok()?;
        if slot.owner != self.owner || slot.generation != generation || slot.hash != hash {
            return None;
        }
        // SAFETY: a slot with an owner has its type written (see `remember`).
        if unsafe { slot.type_id.assume_init() } != TypeId::of::<V>() {
            return None;
        }
        if slot.expires_at != u64::MAX && now() >= slot.expires_at {
            return None;
        }
        // SAFETY: the type check above: `data` holds a `V`, written whole by `remember`. `V` has
        // no drop glue, so this copy and the slot's own bytes never release anything twice.
        let value = unsafe { &*slot.data.as_ptr().cast::<V>() };
        Some(value.clone())
    }

    /// Remembers `value`, read from the store under `generation`, for this thread.
    #[inline]
    pub(crate) fn remember<V: CacheValue>(
        &self,
        generation: u64,
        hash: u128,
        expires_at: u64,
        value: &V,
    ) {
        if !holds::<V>() {
            return;
        }
        let mut data = Data::uninit();
        // SAFETY: `V` fits in `Data` in size and alignment (`holds`).
        unsafe { data.as_mut_ptr().cast::<V>().write(value.clone()) };
        let slot = Slot {
            owner: self.owner,
            generation,
            hash,
            type_id: MaybeUninit::new(TypeId::of::<V>()),
            expires_at,
            data,
        };
        // A thread being torn down has no front: the store answers.
        let _ = FRONT.try_with(|front| front[self.index(hash)].set(slot));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use opero_core::{CacheBackend, CacheKey, FunctionLabel};

    use super::holds;
    use crate::MemoryCache;

    fn key(ns: &str, hash: u128) -> CacheKey<'_> {
        CacheKey {
            namespace: ns,
            function: FunctionLabel::Named("f"),
            hash,
        }
    }

    #[test]
    fn only_small_values_that_own_nothing_are_remembered() {
        assert!(holds::<u64>());
        assert!(holds::<(u64, u64)>());
        assert!(holds::<Option<f64>>());
        assert!(holds::<[u32; 4]>());
        assert!(!holds::<[u64; 3]>(), "larger than a slot");
        assert!(!holds::<String>(), "owns memory");
        assert!(!holds::<Option<Arc<()>>>(), "owns a count");
    }

    #[test]
    fn a_change_made_on_another_thread_is_read_at_once() {
        let cache = MemoryCache::default();
        cache.set(&key("a", 1), &1u64, None).unwrap();
        for _ in 0..3 {
            assert_eq!(cache.get::<u64>(&key("a", 1)).unwrap(), Some(1));
        }
        let other = cache.clone();
        std::thread::spawn(move || other.set(&key("a", 1), &2u64, None).unwrap())
            .join()
            .unwrap();
        assert_eq!(cache.get::<u64>(&key("a", 1)).unwrap(), Some(2));
        let other = cache.clone();
        std::thread::spawn(move || other.delete(&key("a", 1)).unwrap())
            .join()
            .unwrap();
        assert_eq!(cache.get::<u64>(&key("a", 1)).unwrap(), None);
    }

    #[test]
    fn delete_and_clear_end_a_remembered_value() {
        let cache = MemoryCache::default();
        cache.set(&key("a", 1), &1u64, None).unwrap();
        assert_eq!(cache.get::<u64>(&key("a", 1)).unwrap(), Some(1));
        cache.delete(&key("a", 1)).unwrap();
        assert_eq!(cache.get::<u64>(&key("a", 1)).unwrap(), None);
        cache.set(&key("a", 1), &1u64, None).unwrap();
        assert_eq!(cache.get::<u64>(&key("a", 1)).unwrap(), Some(1));
        cache.clear("a").unwrap();
        assert_eq!(cache.get::<u64>(&key("a", 1)).unwrap(), None);
    }

    #[test]
    fn a_remembered_value_expires_with_its_entry() {
        let cache = MemoryCache::default();
        cache
            .set(&key("a", 1), &1u64, Some(Duration::from_millis(40)))
            .unwrap();
        assert_eq!(cache.get::<u64>(&key("a", 1)).unwrap(), Some(1));
        assert_eq!(cache.get::<u64>(&key("a", 1)).unwrap(), Some(1));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(cache.get::<u64>(&key("a", 1)).unwrap(), None);
    }

    #[test]
    fn two_caches_and_two_types_never_answer_for_each_other() {
        let (a, b) = (MemoryCache::default(), MemoryCache::default());
        a.set(&key("n", 5), &1u64, None).unwrap();
        b.set(&key("n", 5), &2u64, None).unwrap();
        for _ in 0..3 {
            assert_eq!(a.get::<u64>(&key("n", 5)).unwrap(), Some(1));
            assert_eq!(b.get::<u64>(&key("n", 5)).unwrap(), Some(2));
        }
        // The same bytes asked for as another type: a miss, from the front as from the store.
        assert_eq!(a.get::<i64>(&key("n", 5)).unwrap(), None);
        assert_eq!(a.get::<u64>(&key("n", 5)).unwrap(), Some(1));
        // A cache made after another was dropped does not read the dropped one's values.
        drop(a);
        let c = MemoryCache::default();
        assert_eq!(c.get::<u64>(&key("n", 5)).unwrap(), None);
    }

    #[test]
    fn a_key_read_between_inserts_stays_as_it_would_in_the_store_alone() {
        // The store decides evictions by its reads; the front must leave it one read of a hot
        // key per change, or the hot key would look unread and be evicted.
        let cache = MemoryCache::with_capacity(100);
        cache.set(&key("a", 0), &0u64, None).unwrap();
        for i in 1..2_000u128 {
            assert_eq!(
                cache.get::<u64>(&key("a", 0)).unwrap(),
                Some(0),
                "after {i}"
            );
            assert_eq!(
                cache.get::<u64>(&key("a", 0)).unwrap(),
                Some(0),
                "after {i}"
            );
            cache.set(&key("a", i), &1u64, None).unwrap();
        }
    }

    #[test]
    fn an_evicted_key_is_not_answered_from_the_front() {
        let cache = MemoryCache::with_capacity(100);
        cache.set(&key("b", 7), &7u64, None).unwrap();
        assert_eq!(cache.get::<u64>(&key("b", 7)).unwrap(), Some(7));
        // Keys read as often as it was push it out of the store.
        let evicted = (10_000..200_000u128).any(|i| {
            cache.set(&key("a", i), &1u64, None).unwrap();
            cache.get::<u64>(&key("a", i)).unwrap();
            !cache.holds(7)
        });
        assert!(evicted, "the store never evicted the key");
        assert_eq!(cache.get::<u64>(&key("b", 7)).unwrap(), None);
    }
}
