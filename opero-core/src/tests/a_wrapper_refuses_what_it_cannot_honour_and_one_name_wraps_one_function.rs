//! Wrapping a function checks what the call could not honour later, as a typed error naming the
//! setting: a sync wrapper refuses an attempt timeout and hedging (a blocking call can be neither
//! preempted nor raced), while the async wrappers take both; on a cached pipeline one name wraps
//! one function, and a function that does not identify itself runs uncached and is counted.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::a_pipeline_caches_falls_back_retries_and_limits_on_an_exact_schedule::MapCache;
use crate::{Fallbacks, FunctionId, NoCache, Opero};

fn cached() -> Opero<MapCache> {
    Opero::<MapCache>::builder()
        .cache_backend(MapCache::default())
        .retries(0)
        .build_with_given_cache()
        .unwrap()
}

fn double(x: &u32) -> Result<u32, String> {
    Ok(x * 2)
}

fn triple(x: &u32) -> Result<u32, String> {
    Ok(x * 3)
}

#[test]
fn sync_wrappers_refuse_an_attempt_timeout_by_name_and_async_ones_take_it() {
    let opero = Opero::<NoCache>::builder()
        .attempt_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let refused = opero.wrap(double).err().unwrap();
    assert_eq!(refused.field(), Some("retry.attempt_timeout"));
    assert_eq!(refused.value(), Some("300ms"));
    let keys = Fallbacks::new(vec![1u32]).unwrap();
    let refused = opero
        .wrap_fallback(keys.clone(), |x: &u32, k: &u32| Ok::<_, String>(x + k))
        .err()
        .unwrap();
    assert_eq!(refused.field(), Some("retry.attempt_timeout"));
    assert!(opero.check_sync().is_err());
    assert!(opero
        .wrap_async(|x: u32| async move { Ok::<_, String>(x) })
        .is_ok());
    assert!(opero
        .wrap_fallback_async(keys, |x: u32, k: u32| async move { Ok::<_, String>(x + k) })
        .is_ok());
    // Without the setting, the sync forms take the function.
    let plain = Opero::<NoCache>::builder().build().unwrap();
    assert!(plain.check_sync().is_ok());
    assert_eq!(plain.wrap(double).unwrap().call(&4).unwrap(), 8);
}

#[test]
fn sync_wrappers_of_a_hedged_pipeline_are_refused_by_name_and_async_ones_are_not() {
    let opero = Opero::<NoCache>::builder()
        .hedge(Duration::from_millis(50), 1)
        .build()
        .unwrap();
    let refused = opero.wrap(double).err().unwrap();
    assert_eq!(refused.field(), Some("hedge"));
    let keys = Fallbacks::new(vec![1u32]).unwrap();
    let refused = opero
        .wrap_fallback(keys, |x: &u32, k: &u32| Ok::<_, String>(x + k))
        .err()
        .unwrap();
    assert_eq!(refused.field(), Some("hedge"));
    assert!(opero
        .wrap_async(|x: u32| async move { Ok::<_, String>(x) })
        .is_ok());
}

#[test]
fn one_name_wraps_one_function_and_the_same_function_again() {
    let opero = cached().named("scale");
    let first = opero.wrap(double).unwrap();
    assert_eq!(first.call(&5).unwrap(), 10);
    // The same function under its name again (another wrapper of it, elsewhere): accepted, and
    // it shares the entry.
    let again = opero.wrap(double).unwrap();
    assert_eq!(again.call(&5).unwrap(), 10);
    assert_eq!(opero.metrics().cache_hits, 1);
    // Another function under that name would read the first one's entries: refused by name.
    let refused = opero.wrap(triple).err().unwrap();
    assert_eq!(refused.field(), Some("name"));
    assert_eq!(refused.value(), Some("scale"));
    // Under a name of its own it is taken.
    assert_eq!(
        opero
            .named("scale3")
            .wrap(triple)
            .unwrap()
            .call(&5)
            .unwrap(),
        15
    );
}

#[test]
fn a_function_that_does_not_identify_itself_runs_uncached_and_is_counted() {
    let opero = cached();
    let runs = AtomicU32::new(0);
    let offset = 1;
    // Captures state: no identity of its own and no name.
    let add = |x: &u32| {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, String>(x + offset)
    };
    assert_eq!(opero.call(&1u32, add).unwrap(), 2);
    assert_eq!(opero.call(&1u32, add).unwrap(), 2);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "never cached");
    let m = opero.metrics();
    assert_eq!(
        (m.cache_unidentified, m.cache_hits, m.cache_misses),
        (2, 0, 0)
    );
    assert_eq!(opero.cache().unwrap().len(), 0);
    // A wrapper of it is refused at once, naming what to set.
    assert_eq!(opero.wrap(add).err().unwrap().field(), Some("name"));
}

#[test]
fn the_key_a_pipeline_reports_is_the_one_its_calls_store_under() {
    let opero = cached();
    let f = FunctionId::named("double");
    let key = opero.key(&f, &21u32).expect("a named function has a key");
    assert_eq!(key.namespace, opero.cache_config().namespace);
    let named = opero.named("double");
    assert_eq!(named.call(&21u32, double).unwrap(), 42);
    assert!(opero.cache().unwrap().entry(&key.to_string()).is_some());
    // Deleting that key is what invalidates the entry: the next call runs again.
    use crate::CacheBackend;
    opero.cache().unwrap().delete(&key).unwrap();
    let runs = AtomicU32::new(0);
    let counted = |x: &u32| {
        runs.fetch_add(1, Ordering::SeqCst);
        double(x)
    };
    assert_eq!(named.call(&21u32, counted).unwrap(), 42);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // A function without identity has no key.
    let unnamed = FunctionId::of::<fn(&u32) -> Result<u32, String>>(std::panic::Location::caller());
    assert!(opero.key(&unnamed, &21u32).is_none());
}

#[test]
fn fallbacks_read_as_the_slice_of_their_values() {
    let keys = Fallbacks::new(vec!["primary", "mirror"]).unwrap();
    let values: &[&str] = &keys;
    assert_eq!(values, ["primary", "mirror"]);
    assert_eq!(keys.first(), Some(&"primary"));
}
