//! Fallback values are tried in order, each with its full retry budget, and the fallback value is
//! not part of the cache key.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use opero::{CacheConfig, Fallbacks, MemoryCache, NoCache, Opero, OperoConfig, RetryConfig};
use opero_tests::no_delay;

fn config(retries: u32) -> OperoConfig {
    OperoConfig {
        retry: RetryConfig {
            retries,
            ..no_delay()
        },
        ..Default::default()
    }
}

#[test]
fn each_value_gets_every_retry_in_order() {
    let opero = Opero::<NoCache>::new(config(2)).unwrap();
    let mirrors = Fallbacks::new(vec!["m1", "m2", "m3"]).unwrap();
    let mut log = Vec::new();
    let out = opero.run_fallback(&mirrors, |m: &&str| {
        log.push(*m);
        if *m == "m3" {
            Ok("ok")
        } else {
            Err("down")
        }
    });
    assert_eq!(out.unwrap(), "ok");
    assert_eq!(log, ["m1", "m1", "m1", "m2", "m2", "m2", "m3"]);
    assert_eq!(opero.metrics().fallback_switches, 2);
}

#[test]
fn the_fallback_value_is_not_part_of_the_cache_key() {
    let cfg = OperoConfig {
        cache: CacheConfig::enabled("memory"),
        ..config(0)
    };
    let opero = Opero::<MemoryCache>::new(cfg).unwrap();
    let first_keys = Fallbacks::new(vec!["key-a".to_string()]).unwrap();
    let other_keys = Fallbacks::new(vec!["key-b".to_string()]).unwrap();
    let calls = AtomicU32::new(0);
    let fetch = |keys: &Fallbacks<String>| {
        opero
            .named("fetch_user")
            .call_fallback(&"user-42", keys, |user: &&str, key: &String| {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(format!("{user} via {key}"))
            })
    };
    assert_eq!(fetch(&first_keys).unwrap(), "user-42 via key-a");
    // Another API key, same request: the cached answer serves it.
    assert_eq!(fetch(&other_keys).unwrap(), "user-42 via key-a");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_wrapped_function_with_fallbacks_tries_them_in_order() {
    let seen = Mutex::new(Vec::new());
    let keys = Fallbacks::new(vec![1u8, 2, 3]).unwrap();
    let call = opero::opero()
        .retries(1)
        .min_delay(std::time::Duration::ZERO)
        .wrap_fallback(keys, |x: &u32, key: &u8| {
            seen.lock().unwrap().push(*key);
            if *key < 3 {
                Err(format!("key {key} refused"))
            } else {
                Ok(x * 10)
            }
        })
        .unwrap();
    assert_eq!(call.call(&4).unwrap(), 40);
    assert_eq!(*seen.lock().unwrap(), [1, 1, 2, 2, 3]);
}

#[tokio::test]
async fn the_async_fallback_form_tries_values_in_order() {
    let opero = Opero::<NoCache>::new(config(1)).unwrap();
    let keys = Fallbacks::new(vec!["a".to_string(), "b".to_string()]).unwrap();
    let seen = Mutex::new(Vec::new());
    let out = opero
        .call_fallback_async(7u32, &keys, |x: u32, key: String| {
            seen.lock().unwrap().push(key.clone());
            async move {
                if key == "a" {
                    Err("refused")
                } else {
                    Ok(x + 1)
                }
            }
        })
        .await;
    assert_eq!(out.unwrap(), 8);
    assert_eq!(*seen.lock().unwrap(), ["a", "a", "b"]);
}
