//! The pipeline of `Opero` on its own, with a cache backend written as a user would (a map of
//! encoded entries) and tokio's paused clock: what runs, how often, in which order and when.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::{
    AttemptError, BuildCache, CacheBackend, CacheConfig, CacheKey, CacheValue, Codec, Decoded,
    Fallbacks, FlightLease, FlightStart, Header, Jitter, NoCache, Opero, OperoBuilder, OperoError,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A user's backend: entries encoded by the codec in a map keyed by the key's text.
#[derive(Default)]
pub(super) struct MapCache {
    entries: Mutex<HashMap<String, Vec<u8>>>,
}

impl MapCache {
    pub(super) fn entry(&self, prefix: &str) -> Option<Vec<u8>> {
        let entries = self.entries.lock().unwrap();
        entries
            .iter()
            .find(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
    }

    pub(super) fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

impl BuildCache for MapCache {
    fn build(_config: &CacheConfig) -> Result<Self, OperoError> {
        Ok(MapCache::default())
    }
}

impl CacheBackend for MapCache {
    fn get<V: CacheValue>(&self, key: &CacheKey<'_>) -> Result<Option<V>, OperoError> {
        let entries = self.entries.lock().unwrap();
        let Some(bytes) = entries.get(&key.to_string()) else {
            return Ok(None);
        };
        Ok(match Codec::Postcard.decode(key, bytes)? {
            Decoded::Value(v) => Some(v),
            Decoded::Expired | Decoded::Foreign => None,
        })
    }

    fn set<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<(), OperoError> {
        let bytes = Codec::Postcard.encode_with_ttl(key, value, ttl)?;
        self.entries.lock().unwrap().insert(key.to_string(), bytes);
        Ok(())
    }

    fn delete(&self, key: &CacheKey<'_>) -> Result<(), OperoError> {
        self.entries.lock().unwrap().remove(&key.to_string());
        Ok(())
    }

    fn clear(&self, namespace: &str) -> Result<(), OperoError> {
        let prefix = format!("{namespace}:");
        self.entries
            .lock()
            .unwrap()
            .retain(|k, _| !k.starts_with(&prefix));
        Ok(())
    }
}

fn exact() -> OperoBuilder<NoCache> {
    Opero::<NoCache>::builder()
        .retries(2)
        .min_delay(ms(100))
        .backoff_factor(2.0)
        .jitter(Jitter::None)
}

fn cached() -> Opero<MapCache> {
    Opero::<MapCache>::builder()
        .cache_backend(MapCache::default())
        .cache_namespace("tests")
        .min_delay(Duration::ZERO)
        .build_with_given_cache()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn async_retries_wait_exactly_the_backoff_between_attempts() {
    let opero = exact().build().unwrap();
    let start = Instant::now();
    let mut at = Vec::new();
    let out = opero
        .run_async(|| {
            at.push(start.elapsed());
            let n = at.len();
            async move {
                if n < 3 {
                    Err(format!("attempt {n}"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
    assert_eq!(out.unwrap(), 3);
    assert_eq!(at, [ms(0), ms(100), ms(300)]);
}

#[tokio::test(start_paused = true)]
async fn every_attempt_failing_ends_with_each_attempt_recorded() {
    let opero = exact().build().unwrap();
    let start = Instant::now();
    let err = opero
        .run_async(|| async { Err::<(), _>("down") })
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), ms(300));
    assert_eq!((err.len(), err.fallbacks_tried()), (3, 1));
    let numbers: Vec<u32> = err.attempts().iter().map(|a| a.attempt).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(err.last_error(), Some(&"down"));
}

#[test]
fn sync_fallbacks_are_tried_in_order_each_with_every_retry() {
    let opero = exact().min_delay(Duration::ZERO).build().unwrap();
    let mirrors = Fallbacks::new(vec!["a", "b", "c"]).unwrap();
    let mut log = Vec::new();
    let out = opero.run_fallback(&mirrors, |m: &&str| {
        log.push(*m);
        if *m == "c" {
            Ok(*m)
        } else {
            Err("down")
        }
    });
    assert_eq!(out.unwrap(), "c");
    assert_eq!(log, ["a", "a", "a", "b", "b", "b", "c"]);
    let err = opero
        .run_fallback(&mirrors, |_: &&str| Err::<(), _>("down"))
        .unwrap_err();
    assert_eq!((err.len(), err.fallbacks_tried()), (9, 3));
    let first = &err.attempts()[0];
    assert_eq!((first.fallback_index, first.attempt), (0, 1));
    let last = err.last().unwrap();
    assert_eq!((last.fallback_index, last.attempt), (2, 3));
    assert!(Fallbacks::<u8>::new(Vec::new()).is_err());
    assert_eq!(mirrors.len(), 3);
    assert_eq!(mirrors.as_slice(), ["a", "b", "c"]);
}

#[test]
fn an_error_retry_on_rejects_moves_straight_to_the_next_fallback() {
    let opero = exact()
        .min_delay(Duration::ZERO)
        .retry_on(|e: &&str| *e != "fatal")
        .build()
        .unwrap();
    let keys = Fallbacks::new(vec![1, 2]).unwrap();
    let mut log = Vec::new();
    let err = opero
        .run_fallback(&keys, |k: &i32| {
            log.push(*k);
            Err::<(), _>(if *k == 1 { "fatal" } else { "busy" })
        })
        .unwrap_err();
    assert_eq!(log, [1, 2, 2, 2]);
    assert_eq!(err.len(), 4);
}

#[test]
fn an_ok_value_rejected_by_retry_if_ok_is_retried_and_kept() {
    let opero = exact()
        .min_delay(Duration::ZERO)
        .retry_if_ok(|v: u32| {
            if v < 10 {
                Err(format!("only {v}"))
            } else {
                Ok(v)
            }
        })
        .build()
        .unwrap();
    let mut n = 0;
    assert_eq!(
        opero
            .run(|| {
                n += 5;
                Ok::<_, String>(n)
            })
            .unwrap(),
        10
    );
    let err = opero.run(|| Ok::<u32, String>(1)).unwrap_err();
    assert_eq!(err.len(), 3);
    assert_eq!(
        err.last().unwrap().error,
        AttemptError::RejectedOk("only 1".to_string())
    );
}

#[test]
fn a_cached_value_is_served_without_running_the_function_again() {
    let opero = cached();
    let runs = AtomicU32::new(0);
    let square = |x: &u32| {
        runs.fetch_add(1, Ordering::Relaxed);
        Ok::<_, String>(x * x)
    };
    assert_eq!(opero.named("square").call(&4u32, square).unwrap(), 16);
    assert_eq!(opero.named("square").call(&4u32, square).unwrap(), 16);
    assert_eq!(runs.load(Ordering::Relaxed), 1, "the second call is a hit");
    assert_eq!(opero.named("square").call(&5u32, square).unwrap(), 25);
    assert_eq!(
        runs.load(Ordering::Relaxed),
        2,
        "other arguments, another entry"
    );
    // Another function name is another entry, even for the same arguments.
    assert_eq!(opero.named("cube").call(&4u32, square).unwrap(), 16);
    assert_eq!(runs.load(Ordering::Relaxed), 3);
    let m = opero.metrics();
    assert_eq!((m.cache_hits, m.cache_misses, m.cache_errors), (1, 3, 0));
    let cache = opero.cache().unwrap();
    assert_eq!(cache.len(), 3);
    assert!(cache.entry("tests:square:").is_some());
}

#[test]
fn errors_are_never_cached() {
    let opero = cached();
    let mut runs = 0;
    for _ in 0..2 {
        let _ = opero.named("f").call(&1u8, |_: &u8| {
            runs += 1;
            Err::<u8, _>("down")
        });
    }
    assert_eq!(runs, 8, "two calls of four attempts, nothing stored");
    assert_eq!(opero.cache().unwrap().len(), 0);
}

#[test]
fn the_cache_ttl_is_written_into_the_entry() {
    let opero = Opero::<MapCache>::builder()
        .cache_backend(MapCache::default())
        .cache_namespace("ttl")
        .cache_ttl(Duration::from_secs(3600))
        .build_with_given_cache()
        .unwrap();
    let before = SystemTime::now();
    opero
        .named("f")
        .call(&1u8, |x: &u8| Ok::<_, String>(*x))
        .unwrap();
    let bytes = opero.cache().unwrap().entry("ttl:f:").unwrap();
    let expires = Header::parse(&bytes).unwrap().expires_at_ms;
    let from = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    assert!(expires >= from(before) + 3_600_000, "{expires}");
    assert!(expires <= from(SystemTime::now()) + 3_600_000, "{expires}");
}

#[tokio::test(start_paused = true)]
async fn calls_share_the_rate_limit_at_its_exact_spacing_and_hits_take_no_permit() {
    let opero = Opero::<MapCache>::builder()
        .cache_backend(MapCache::default())
        .rate_limit(10.0)
        .build_with_given_cache()
        .unwrap();
    let start = Instant::now();
    let mut at = Vec::new();
    for x in 0..3u32 {
        let v = opero
            .named("f")
            .call_async(x, |x| async move { Ok::<_, String>(x) })
            .await
            .unwrap();
        assert_eq!(v, x);
        at.push(start.elapsed());
    }
    assert_eq!(at, [ms(0), ms(100), ms(200)]);
    // Hits, however many, wait for no permit.
    for x in 0..3u32 {
        opero
            .named("f")
            .call_async(x, |_| async { Err::<u32, _>("not called") })
            .await
            .unwrap();
    }
    assert_eq!(start.elapsed(), ms(200));
    let limiter = opero.rate_limiter().unwrap();
    assert_eq!(
        limiter.reserve(),
        ms(100),
        "the next permit is one interval on"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deadline_cuts_the_retries_and_says_so() {
    let opero = exact()
        .retries(10)
        .backoff_factor(1.0)
        .deadline(ms(250))
        .build()
        .unwrap();
    assert_eq!(opero.deadline(), Some(ms(250)));
    let start = Instant::now();
    let mut calls = 0;
    let err = opero
        .run_async(|| {
            calls += 1;
            async { Err::<(), _>("down") }
        })
        .await
        .unwrap_err();
    assert_eq!(
        calls, 3,
        "at 0, 100 and 200 ms; the next would start past 250 ms"
    );
    assert_eq!(err.ended_by_deadline(), Some(ms(250)));
    assert!(start.elapsed() <= ms(250), "{:?}", start.elapsed());
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_cuts_a_late_attempt_and_the_backoff_retries_it() {
    let opero = exact().attempt_timeout(ms(50)).build().unwrap();
    assert_eq!(opero.attempt_timeout(), Some(ms(50)));
    let start = Instant::now();
    let mut calls = 0;
    let out = opero
        .run_async(|| {
            calls += 1;
            let late = calls < 3;
            async move {
                if late {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ok::<_, String>(start.elapsed())
            }
        })
        .await;
    // 50 ms cut, 100 ms backoff, 50 ms cut, 200 ms backoff, then on time.
    assert_eq!(out.unwrap(), ms(400));
    // The sync forms cannot cut a blocking call: refused by name.
    let err = opero.run(|| Ok::<_, String>(1)).unwrap_err();
    assert!(matches!(
        err.last().unwrap().error,
        AttemptError::Unsupported {
            field: "retry.attempt_timeout",
            ..
        }
    ));
}

#[test]
fn cache_true_builds_the_backend_from_the_config_and_caches() {
    let opero = Opero::<MapCache>::builder().cache(true).build().unwrap();
    let mut runs = 0;
    for _ in 0..2 {
        opero
            .named("f")
            .call(&1u8, |x: &u8| {
                runs += 1;
                Ok::<_, String>(*x)
            })
            .unwrap();
    }
    assert_eq!(runs, 1);
    let off = Opero::<MapCache>::builder().cache(false).build().unwrap();
    assert!(off.cache().is_none());
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_of_one_key_run_the_work_once_and_share_its_value() {
    let opero = cached();
    let runs = AtomicU32::new(0);
    let slow = |x: u32| {
        runs.fetch_add(1, Ordering::Relaxed);
        async move {
            tokio::time::sleep(ms(100)).await;
            Ok::<_, String>(x * 10)
        }
    };
    let f = opero.named("slow");
    let (a, b, c) = tokio::join!(
        f.call_async(7u32, slow),
        f.call_async(7u32, slow),
        f.call_async(8u32, slow)
    );
    assert_eq!((a.unwrap(), b.unwrap(), c.unwrap()), (70, 70, 80));
    assert_eq!(runs.load(Ordering::Relaxed), 2, "once per key");
}

/// A backend that takes part in single flight across processes: it leads every miss and
/// records the leases the pipeline ends.
#[derive(Default)]
struct LeasingCache {
    map: MapCache,
    ended: Mutex<Vec<String>>,
}

impl BuildCache for LeasingCache {
    fn build(_config: &CacheConfig) -> Result<Self, OperoError> {
        Ok(LeasingCache::default())
    }
}

impl CacheBackend for LeasingCache {
    fn get<V: CacheValue>(&self, key: &CacheKey<'_>) -> Result<Option<V>, OperoError> {
        self.map.get(key)
    }
    fn set<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<(), OperoError> {
        self.map.set(key, value, ttl)
    }
    fn delete(&self, key: &CacheKey<'_>) -> Result<(), OperoError> {
        self.map.delete(key)
    }
    fn clear(&self, namespace: &str) -> Result<(), OperoError> {
        self.map.clear(namespace)
    }
    fn flight_begin(&self, key: &CacheKey<'_>) -> Result<FlightStart, OperoError> {
        Ok(FlightStart::Lead(FlightLease::new(key.to_string())))
    }
    fn flight_end(&self, key: &CacheKey<'_>, lease: FlightLease) -> Result<(), OperoError> {
        assert_eq!(lease.token(), key.to_string());
        self.ended.lock().unwrap().push(lease.token().to_owned());
        Ok(())
    }
}

#[test]
fn a_backend_s_flight_lease_is_ended_once_the_miss_is_resolved() {
    let opero = Opero::<LeasingCache>::builder()
        .cache_backend(LeasingCache::default())
        .build_with_given_cache()
        .unwrap();
    let f = opero.named("leased");
    assert_eq!(f.call(&3u8, |x: &u8| Ok::<_, String>(*x)).unwrap(), 3);
    let ended = opero.cache().unwrap().ended.lock().unwrap().clone();
    assert_eq!(ended.len(), 1);
    assert!(ended[0].contains(":leased:"), "{ended:?}");
    // A hit needs no flight.
    assert_eq!(
        f.call(&3u8, |_: &u8| Err::<u8, _>("not called")).unwrap(),
        3
    );
    assert_eq!(opero.cache().unwrap().ended.lock().unwrap().len(), 1);
}
