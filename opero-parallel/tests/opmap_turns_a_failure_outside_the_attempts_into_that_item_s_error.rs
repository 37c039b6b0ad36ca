//! A panic outside the item's attempts (here in the key function of its cache) fails that item
//! alone, as one attempt that panicked with the panic's message; the other items come back as
//! usual, in both blocking modes and the async one.

use opero_core::{
    AttemptError, BuildCache, CacheBackend, CacheConfig, CacheKey, CacheValue, FunctionId, KeyFn,
    OperoError, StableKey,
};
use opero_parallel::{Mode, OpmapBuilder};
use serde::Serialize;

/// Keys as usual, but panics on the argument 3.
#[derive(Clone, Copy, Default)]
struct PanicsOnThree;

impl KeyFn for PanicsOnThree {
    fn hash<A: Serialize + ?Sized>(
        &self,
        namespace: &str,
        function: &FunctionId<'_>,
        args: &A,
    ) -> Result<u128, OperoError> {
        if serde_json::to_string(args).unwrap() == "3" {
            panic!("no key for three");
        }
        StableKey.hash(namespace, function, args)
    }
}

/// A cache that never holds anything, so that every item is keyed and run.
#[derive(Clone, Copy, Default)]
struct Forgetful;

impl CacheBackend for Forgetful {
    fn get<V: CacheValue>(&self, _: &CacheKey<'_>) -> Result<Option<V>, OperoError> {
        Ok(None)
    }
    fn set<V: CacheValue>(
        &self,
        _: &CacheKey<'_>,
        _: &V,
        _: Option<std::time::Duration>,
    ) -> Result<(), OperoError> {
        Ok(())
    }
    fn delete(&self, _: &CacheKey<'_>) -> Result<(), OperoError> {
        Ok(())
    }
    fn clear(&self, _: &str) -> Result<(), OperoError> {
        Ok(())
    }
}

impl BuildCache for Forgetful {
    fn build(_: &CacheConfig) -> Result<Self, OperoError> {
        Ok(Forgetful)
    }
}

fn check(out: &[Result<u32, opero_core::AllFailedError<String>>]) {
    assert_eq!(out.len(), 6);
    for (i, r) in out.iter().enumerate() {
        if i == 3 {
            let err = r.as_ref().unwrap_err();
            assert_eq!(err.len(), 1);
            assert_eq!(
                err.attempts()[0].error,
                AttemptError::Panicked("no key for three".to_string())
            );
        } else {
            assert_eq!(r.as_ref().unwrap(), &(i as u32 * 10));
        }
    }
}

#[test]
fn a_blocking_item_whose_key_panics_fails_alone() {
    for mode in [Mode::Thread, Mode::Rayon] {
        let map = OpmapBuilder::<Forgetful>::new()
            .mode(mode)
            .workers(2)
            .progress(false)
            .cache_backend(Forgetful)
            .key_fn(PanicsOnThree)
            .wrap(|x: &u32| Ok::<_, String>(x * 10))
            .unwrap();
        check(&map.call(0..6u32));
    }
}

#[tokio::test]
async fn an_async_item_whose_key_panics_fails_alone() {
    let map = OpmapBuilder::<Forgetful>::new()
        .workers(2)
        .progress(false)
        .cache_backend(Forgetful)
        .key_fn(PanicsOnThree)
        .wrap_async(|x: u32| async move { Ok::<_, String>(x * 10) })
        .unwrap();
    check(&map.call(0..6u32).await);
}
