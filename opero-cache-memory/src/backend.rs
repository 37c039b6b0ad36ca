//! [`MemoryCache`]: a sharded S3-FIFO store (quick_cache) holding values as they are, with
//! per-entry TTL and namespaces.
//!
//! A hit is the hot path of a cached pipeline, so the layout is chosen for it: an entry is its
//! 128-bit key hash plus one 40-byte slot (the value inline when it fits in 16 bytes, else behind
//! an `Arc`), so a hit takes one shard read lock, one type check and one clone, and storing a
//! small value allocates nothing beyond the table. A thread that reads a small plain value again
//! is answered from its own front (see `front.rs`) without the lock, until the cache next changes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use opero_core::{BuildCache, CacheBackend, CacheConfig, CacheKey, CacheValue, OperoError};
use quick_cache::sync::Cache;
use quick_cache::UnitWeighter;

use crate::erased::Stored;
use crate::front::Generation;

/// The default bound on the number of entries.
pub const DEFAULT_MAX_CAPACITY: u64 = 10_000;

/// Keys are already 128-bit hashes, so hashing them again is wasted work; folding the halves is
/// enough for the shard and bucket choice. Shared with `MokaCache`.
#[derive(Default)]
pub(crate) struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word)).rotate_left(29);
        }
    }

    fn write_u128(&mut self, i: u128) {
        self.0 ^= (i as u64) ^ ((i >> 64) as u64);
    }
}

/// What the store keeps under a key hash.
#[derive(Clone)]
struct Slot {
    value: Stored,
    /// Nanoseconds since the cache's epoch; [`NEVER`] when the entry does not expire.
    expires_at: u64,
    /// The namespace, interned: [`MemoryCache::clear`] needs it; a lookup does not (the hash
    /// covers the namespace).
    namespace: u32,
}

const NEVER: u64 = u64::MAX;

type Store = Cache<u128, Slot, UnitWeighter, BuildHasherDefault<FoldHasher>>;

struct Inner {
    store: Store,
    clock: quanta::Clock,
    epoch: quanta::Instant,
    namespaces: RwLock<HashMap<Arc<str>, u32>>,
    /// Outdates the threads' fronts on every change of `store`.
    generation: Generation,
}

/// An in-memory cache: per-entry TTL, namespaces, a capacity bound, and hits that clone the
/// stored value without serializing it.
///
/// The store is sharded and evicts by S3-FIFO (quick_cache): a key read again soon after it was
/// written stays, one-off keys leave first. An expired entry is a miss and is removed when read;
/// one never read again leaves when the capacity bound evicts it.
///
/// A lookup keys on the 128-bit hash alone, which covers the namespace, the function and the
/// arguments (see [`CacheKey`]); each entry also records its namespace for
/// [`clear`](CacheBackend::clear).
///
/// Clones share the same store. [`MokaCache`](crate::MokaCache) (feature `moka`) is the same
/// backend on moka's TinyLFU.
///
/// # Default
///
/// [`DEFAULT_MAX_CAPACITY`] (10,000) entries. From a [`CacheConfig`], the backend option
/// `max_capacity` sets it.
///
/// # Examples
///
/// ```
/// use opero_cache_memory::MemoryCache;
/// use opero_core::{CacheBackend, CacheKey, FunctionLabel};
///
/// let cache = MemoryCache::default();
/// let key = CacheKey { namespace: "ns", function: FunctionLabel::Named("f"), hash: 7 };
/// cache.set(&key, &vec![1, 2, 3], None).unwrap();
/// assert_eq!(cache.get::<Vec<i32>>(&key).unwrap(), Some(vec![1, 2, 3]));
/// assert_eq!(cache.get::<String>(&key).unwrap(), None); // another type: a miss
/// cache.clear("ns").unwrap();
/// assert_eq!(cache.get::<Vec<i32>>(&key).unwrap(), None);
/// ```
#[derive(Clone)]
pub struct MemoryCache {
    inner: Arc<Inner>,
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_MAX_CAPACITY)
    }
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.inner.store.len())
            .field("max_capacity", &self.inner.store.capacity())
            .finish()
    }
}

impl MemoryCache {
    /// A cache holding at most `max_capacity` entries (at least 1).
    pub fn with_capacity(max_capacity: u64) -> Self {
        let max_capacity = max_capacity.max(1);
        let clock = quanta::Clock::new();
        MemoryCache {
            inner: Arc::new(Inner {
                store: Cache::with(
                    usize::try_from(max_capacity).unwrap_or(usize::MAX),
                    max_capacity,
                    UnitWeighter,
                    BuildHasherDefault::default(),
                    Default::default(),
                ),
                epoch: clock.now(),
                clock,
                namespaces: RwLock::new(HashMap::new()),
                generation: Generation::new(),
            }),
        }
    }

    /// The number of entries now, expired ones not yet read included.
    pub fn entry_count(&self) -> u64 {
        self.inner.store.len() as u64
    }

    /// The bound on the number of entries.
    pub fn max_capacity(&self) -> u64 {
        self.inner.store.capacity()
    }

    /// Whether the store holds `hash`, read without counting as a read.
    #[cfg(test)]
    pub(crate) fn holds(&self, hash: u128) -> bool {
        self.inner.store.peek(&hash).is_some()
    }

    fn now(&self) -> u64 {
        let elapsed = self.inner.clock.now().duration_since(self.inner.epoch);
        u64::try_from(elapsed.as_nanos()).unwrap_or(NEVER - 1)
    }

    fn namespace_id(&self, namespace: &str) -> Option<u32> {
        // A poisoned lock only means a panic elsewhere while inserting; the map is whole.
        let map = self
            .inner
            .namespaces
            .read()
            .unwrap_or_else(|p| p.into_inner());
        map.get(namespace).copied()
    }

    fn intern(&self, namespace: &str) -> u32 {
        if let Some(id) = self.namespace_id(namespace) {
            return id;
        }
        let mut map = self
            .inner
            .namespaces
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let next = u32::try_from(map.len()).unwrap_or(u32::MAX);
        *map.entry(Arc::from(namespace)).or_insert(next)
    }
}

impl CacheBackend for MemoryCache {
    // Entries die with the process: keys need not survive a rebuild.
    const LOCAL_KEYS: bool = true;

    #[inline]
    fn get<V: CacheValue>(&self, key: &CacheKey<'_>) -> Result<Option<V>, OperoError> {
        let generation = self.inner.generation.current();
        if let Some(value) = self
            .inner
            .generation
            .recall(generation, key.hash, || self.now())
        {
            return Ok(Some(value));
        }
        let Some(slot) = self.inner.store.get(&key.hash) else {
            return Ok(None);
        };
        if slot.expires_at != NEVER && self.now() >= slot.expires_at {
            self.inner.store.remove(&key.hash);
            self.inner.generation.bump();
            return Ok(None);
        }
        let expires_at = slot.expires_at;
        let value = slot.value.take::<V>();
        if let Some(value) = &value {
            // Read again soon, the value is answered from this thread's front; the store still
            // sees one read per change of the cache (each change outdates the front), which is
            // as often as its eviction, run by inserts, can use them.
            self.inner
                .generation
                .remember(generation, key.hash, expires_at, value);
        }
        Ok(value)
    }

    fn set<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<(), OperoError> {
        // A TTL past the clock's end means never expiring.
        let expires_at = match ttl {
            None => NEVER,
            Some(ttl) => u64::try_from(ttl.as_nanos())
                .ok()
                .and_then(|ttl| self.now().checked_add(ttl))
                .filter(|&at| at != NEVER)
                .unwrap_or(NEVER),
        };
        self.inner.store.insert(
            key.hash,
            Slot {
                value: Stored::new(value),
                expires_at,
                namespace: self.intern(key.namespace),
            },
        );
        self.inner.generation.bump();
        Ok(())
    }

    fn delete(&self, key: &CacheKey<'_>) -> Result<(), OperoError> {
        self.inner.store.remove(&key.hash);
        self.inner.generation.bump();
        Ok(())
    }

    fn clear(&self, namespace: &str) -> Result<(), OperoError> {
        if let Some(id) = self.namespace_id(namespace) {
            self.inner.store.retain(|_, slot| slot.namespace != id);
            self.inner.generation.bump();
        }
        Ok(())
    }
}

impl BuildCache for MemoryCache {
    fn build(config: &CacheConfig) -> Result<Self, OperoError> {
        Ok(Self::with_capacity(max_capacity_option(config)?))
    }
}

/// The backend option `max_capacity` of both memory backends: a positive count, by default
/// [`DEFAULT_MAX_CAPACITY`].
pub(crate) fn max_capacity_option(config: &CacheConfig) -> Result<u64, OperoError> {
    let capacity = config
        .option::<u64>("max_capacity")?
        .unwrap_or(DEFAULT_MAX_CAPACITY);
    if capacity == 0 {
        return Err(OperoError::invalid_config(
            "max_capacity",
            0,
            "must be at least 1",
        ));
    }
    Ok(capacity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opero_core::FunctionLabel;

    fn key(ns: &str, hash: u128) -> CacheKey<'_> {
        CacheKey {
            namespace: ns,
            function: FunctionLabel::Named("f"),
            hash,
        }
    }

    #[test]
    fn ttl_is_per_entry() {
        let cache = MemoryCache::default();
        cache
            .set(&key("a", 1), &1u8, Some(Duration::from_millis(30)))
            .unwrap();
        cache.set(&key("a", 2), &2u8, None).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get::<u8>(&key("a", 1)).unwrap(), None);
        assert_eq!(cache.get::<u8>(&key("a", 2)).unwrap(), Some(2));
        assert_eq!(
            cache.entry_count(),
            1,
            "the expired entry was removed when read"
        );
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = MemoryCache::with_capacity(100);
        for i in 0..1_000u128 {
            cache.set(&key("a", i), &i, None).unwrap();
        }
        assert!(cache.entry_count() <= 100, "{}", cache.entry_count());
        assert_eq!(cache.max_capacity(), 100);
    }

    #[test]
    fn small_and_large_values_come_back_whole_and_are_dropped_once() {
        let cache = MemoryCache::default();
        let big = (vec![1u8; 100], "x".repeat(50), [7u64; 4]);
        cache.set(&key("a", 1), &big, None).unwrap();
        cache.set(&key("a", 2), &(3u64, 4u64), None).unwrap();
        cache
            .set(&key("a", 3), &String::from("inline?"), None)
            .unwrap();
        for _ in 0..3 {
            assert_eq!(cache.get(&key("a", 1)).unwrap(), Some(big.clone()));
            assert_eq!(cache.get(&key("a", 2)).unwrap(), Some((3u64, 4u64)));
            assert_eq!(
                cache.get::<String>(&key("a", 3)).unwrap().as_deref(),
                Some("inline?")
            );
        }
        // The same bytes read as another type of the same size: a miss, not a reinterpretation.
        assert_eq!(cache.get::<(i64, i64)>(&key("a", 2)).unwrap(), None);
        assert_eq!(cache.get::<Vec<u8>>(&key("a", 3)).unwrap(), None);
        // A value that counts its clones and drops: none leak, none drop twice.
        let tracked = Arc::new(());
        #[derive(Clone, serde::Serialize, serde::Deserialize)]
        struct Tracked {
            // Held only for its reference count.
            #[allow(dead_code)]
            #[serde(skip)]
            count: Option<Arc<()>>,
        }
        cache
            .set(
                &key("a", 4),
                &Tracked {
                    count: Some(Arc::clone(&tracked)),
                },
                None,
            )
            .unwrap();
        let got = cache.get::<Tracked>(&key("a", 4)).unwrap().unwrap();
        assert_eq!(Arc::strong_count(&tracked), 3);
        drop(got);
        cache.delete(&key("a", 4)).unwrap();
        assert_eq!(Arc::strong_count(&tracked), 1);
    }

    #[test]
    fn a_ttl_past_the_clock_s_end_never_expires() {
        let cache = MemoryCache::default();
        cache.set(&key("a", 1), &1u8, Some(Duration::MAX)).unwrap();
        cache
            .set(&key("a", 2), &2u8, Some(Duration::from_secs(u64::MAX / 2)))
            .unwrap();
        assert_eq!(cache.get::<u8>(&key("a", 1)).unwrap(), Some(1));
        assert_eq!(cache.get::<u8>(&key("a", 2)).unwrap(), Some(2));
    }

    #[test]
    fn clear_removes_one_namespace_only() {
        let cache = MemoryCache::default();
        cache.set(&key("a", 1), &1u8, None).unwrap();
        cache.set(&key("b", 2), &2u8, None).unwrap();
        cache.clear("a").unwrap();
        cache.clear("never-used").unwrap();
        assert_eq!(cache.get::<u8>(&key("a", 1)).unwrap(), None);
        assert_eq!(cache.get::<u8>(&key("b", 2)).unwrap(), Some(2));
    }

    #[test]
    fn a_zero_capacity_option_is_refused_by_name() {
        let mut cfg = CacheConfig::enabled("memory");
        cfg.backend_options
            .insert("max_capacity".into(), "0".into());
        assert_eq!(
            MemoryCache::build(&cfg).unwrap_err().field(),
            Some("max_capacity")
        );
        cfg.backend_options
            .insert("max_capacity".into(), "lots".into());
        assert_eq!(MemoryCache::build(&cfg).unwrap_err().value(), Some("lots"));
    }
}
