//! A backend that takes part in single flight across processes (as the Redis backend does) decides,
//! when a miss begins its flight, whether this process leads or waited for another; the pipeline
//! then serves another process's stored value without running the work, skips the lookup the
//! backend says is useless, and a failing flight never fails the call. "Another process" here is
//! the backend storing a value during `flight_begin`, as a peer finishing its work would.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::a_pipeline_caches_falls_back_retries_and_limits_on_an_exact_schedule::MapCache;
use crate::{
    BuildCache, CacheBackend, CacheConfig, CacheKey, CacheValue, FlightLease, FlightStart, Opero,
    OperoError,
};

/// What the backend's flight answers when a miss begins it.
#[derive(Clone, Copy, PartialEq)]
enum Peer {
    /// Another process led and stored `OTHERS`; this one waited for it.
    StoredWhileWeWaited,
    /// Another process stored `OTHERS` and released its lock just before this one took it.
    StoredJustBeforeOurLease,
    /// This process leads, and the backend saw no entry when it took the lock.
    NoneAndTheEntryIsAbsent,
    /// This process leads; releasing the lock fails (the server went away meanwhile).
    LeadButTheReleaseFails,
    /// The backend is down: every operation fails.
    Down,
}

/// The value the other process computed.
const OTHERS: u32 = 99;

struct ProcessesCache {
    map: MapCache,
    peer: Peer,
    gets: AtomicU32,
    begins: AtomicU32,
    ended: Mutex<Vec<String>>,
}

impl ProcessesCache {
    fn new(peer: Peer) -> Self {
        ProcessesCache {
            map: MapCache::default(),
            peer,
            gets: AtomicU32::new(0),
            begins: AtomicU32::new(0),
            ended: Mutex::new(Vec::new()),
        }
    }

    fn down() -> OperoError {
        OperoError::backend("connection refused", std::io::Error::other("down"))
    }
}

impl BuildCache for ProcessesCache {
    fn build(_config: &CacheConfig) -> Result<Self, OperoError> {
        Ok(ProcessesCache::new(Peer::Down))
    }
}

impl CacheBackend for ProcessesCache {
    fn get<V: CacheValue>(&self, key: &CacheKey<'_>) -> Result<Option<V>, OperoError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        if self.peer == Peer::Down {
            return Err(Self::down());
        }
        self.map.get(key)
    }
    fn set<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<(), OperoError> {
        if self.peer == Peer::Down {
            return Err(Self::down());
        }
        self.map.set(key, value, ttl)
    }
    fn delete(&self, key: &CacheKey<'_>) -> Result<(), OperoError> {
        self.map.delete(key)
    }
    fn clear(&self, namespace: &str) -> Result<(), OperoError> {
        self.map.clear(namespace)
    }
    fn flight_begin(&self, key: &CacheKey<'_>) -> Result<FlightStart, OperoError> {
        self.begins.fetch_add(1, Ordering::SeqCst);
        let lease = FlightLease::new(key.to_string());
        Ok(match self.peer {
            Peer::StoredWhileWeWaited => {
                self.map.set(key, &OTHERS, None)?;
                FlightStart::Waited
            }
            Peer::StoredJustBeforeOurLease => {
                self.map.set(key, &OTHERS, None)?;
                FlightStart::Lead(lease)
            }
            Peer::NoneAndTheEntryIsAbsent => FlightStart::Lead(lease.with_entry_absent()),
            Peer::LeadButTheReleaseFails => FlightStart::Lead(lease),
            Peer::Down => return Err(Self::down()),
        })
    }
    fn flight_end(&self, key: &CacheKey<'_>, lease: FlightLease) -> Result<(), OperoError> {
        assert_eq!(lease.token(), key.to_string(), "the lease of this key");
        self.ended.lock().unwrap().push(lease.token().to_owned());
        if self.peer == Peer::LeadButTheReleaseFails {
            return Err(Self::down());
        }
        Ok(())
    }
}

fn pipeline(peer: Peer) -> Opero<ProcessesCache> {
    Opero::<ProcessesCache>::builder()
        .cache_backend(ProcessesCache::new(peer))
        .retries(0)
        .build_with_given_cache()
        .unwrap()
        .named("square")
}

fn cache(opero: &Opero<ProcessesCache>) -> &ProcessesCache {
    opero.cache().unwrap()
}

fn square(runs: &AtomicU32) -> impl Fn(&u32) -> Result<u32, String> + '_ {
    move |x: &u32| {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok(x * x)
    }
}

#[test]
fn a_flight_that_waited_for_another_process_serves_its_value_without_running_the_work() {
    let opero = pipeline(Peer::StoredWhileWeWaited);
    let runs = AtomicU32::new(0);
    assert_eq!(opero.call(&3u32, square(&runs)).unwrap(), OTHERS);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "the other process's work is not run again"
    );
    assert_eq!(opero.metrics().cache_coalesced, 1);
    assert!(
        cache(&opero).ended.lock().unwrap().is_empty(),
        "a waiter holds no lease to end"
    );
}

#[tokio::test]
async fn an_async_flight_that_waited_for_another_process_serves_its_value_without_running_the_work()
{
    let opero = pipeline(Peer::StoredWhileWeWaited);
    let runs = AtomicU32::new(0);
    let got = opero
        .call_async(3u32, |x: u32| {
            runs.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, String>(x * x) }
        })
        .await;
    assert_eq!(got.unwrap(), OTHERS);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(opero.metrics().cache_coalesced, 1);
}

#[test]
fn a_lease_taken_just_after_another_process_stored_serves_that_value_and_is_ended() {
    let opero = pipeline(Peer::StoredJustBeforeOurLease);
    let runs = AtomicU32::new(0);
    assert_eq!(opero.call(&3u32, square(&runs)).unwrap(), OTHERS);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(
        cache(&opero).ended.lock().unwrap().len(),
        1,
        "the lock is released at once"
    );
}

#[tokio::test]
async fn an_async_lease_taken_just_after_another_process_stored_serves_that_value_and_is_ended() {
    let opero = pipeline(Peer::StoredJustBeforeOurLease);
    let runs = AtomicU32::new(0);
    let got = opero
        .call_async(3u32, |x: u32| {
            runs.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, String>(x * x) }
        })
        .await;
    assert_eq!(got.unwrap(), OTHERS);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(cache(&opero).ended.lock().unwrap().len(), 1);
}

#[test]
fn a_lease_that_found_no_entry_spares_the_backend_a_lookup_and_runs_the_work() {
    let opero = pipeline(Peer::NoneAndTheEntryIsAbsent);
    let runs = AtomicU32::new(0);
    assert_eq!(opero.call(&3u32, square(&runs)).unwrap(), 9);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // The miss, and the leader's check for a caller of this process that just stored: no third
    // lookup after the flight began, since the backend saw no entry under its lock.
    assert_eq!(cache(&opero).gets.load(Ordering::SeqCst), 2);
    assert_eq!(cache(&opero).ended.lock().unwrap().len(), 1);
    // The value was stored before the lease was ended: the next call is a hit.
    assert_eq!(opero.call(&3u32, square(&runs)).unwrap(), 9);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_async_lease_that_found_no_entry_spares_the_backend_a_lookup_and_runs_the_work() {
    let opero = pipeline(Peer::NoneAndTheEntryIsAbsent);
    let runs = AtomicU32::new(0);
    let call = || {
        opero.call_async(3u32, |x: u32| {
            runs.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, String>(x * x) }
        })
    };
    assert_eq!(call().await.unwrap(), 9);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(cache(&opero).gets.load(Ordering::SeqCst), 2);
    assert_eq!(cache(&opero).ended.lock().unwrap().len(), 1);
    assert_eq!(call().await.unwrap(), 9);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn a_lock_that_cannot_be_released_is_counted_and_the_value_still_returned() {
    let opero = pipeline(Peer::LeadButTheReleaseFails);
    let runs = AtomicU32::new(0);
    assert_eq!(opero.call(&4u32, square(&runs)).unwrap(), 16);
    assert_eq!(cache(&opero).ended.lock().unwrap().len(), 1);
    assert_eq!(
        opero.metrics().cache_errors,
        1,
        "the failed release is counted"
    );
}

#[tokio::test]
async fn an_async_lock_that_cannot_be_released_is_counted_and_the_value_still_returned() {
    let opero = pipeline(Peer::LeadButTheReleaseFails);
    let got = opero
        .call_async(4u32, |x: u32| async move { Ok::<_, String>(x * x) })
        .await;
    assert_eq!(got.unwrap(), 16);
    assert_eq!(cache(&opero).ended.lock().unwrap().len(), 1);
    assert_eq!(opero.metrics().cache_errors, 1);
}

#[test]
fn a_backend_that_is_down_is_not_asked_for_a_flight_and_the_call_runs_uncached() {
    let opero = pipeline(Peer::Down);
    let runs = AtomicU32::new(0);
    assert_eq!(opero.call(&5u32, square(&runs)).unwrap(), 25);
    assert_eq!(opero.call(&5u32, square(&runs)).unwrap(), 25);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "nothing could be cached");
    assert_eq!(cache(&opero).begins.load(Ordering::SeqCst), 0);
    // Per call: the failed lookup and the failed store.
    assert_eq!(opero.metrics().cache_errors, 4);
}

#[tokio::test]
async fn an_async_call_on_a_backend_that_is_down_asks_for_no_flight_and_runs_uncached() {
    let opero = pipeline(Peer::Down);
    let runs = AtomicU32::new(0);
    for _ in 0..2 {
        let got = opero
            .call_async(5u32, |x: u32| {
                runs.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, String>(x * x) }
            })
            .await;
        assert_eq!(got.unwrap(), 25);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(cache(&opero).begins.load(Ordering::SeqCst), 0);
    assert_eq!(opero.metrics().cache_errors, 4);
}
