//! The sync path (retries with backoff, rate limit, cache, fallbacks) runs on a plain thread with
//! no tokio runtime anywhere.

use std::time::Duration;

use opero::{Fallbacks, MemoryCache, Opero};

#[test]
fn every_layer_works_without_a_runtime() {
    assert!(tokio::runtime::Handle::try_current().is_err());
    let opero = Opero::<MemoryCache>::builder()
        .retries(2)
        .min_delay(Duration::from_millis(5))
        .rate_limit(100.0)
        .cache(true)
        .name("answer")
        .build()
        .unwrap();
    let keys = Fallbacks::new(vec!["bad", "good"]).unwrap();
    let mut calls = 0;
    for _ in 0..3 {
        let out = opero.call_fallback(&"q", &keys, |q: &&str, key: &&str| {
            calls += 1;
            if *key == "bad" {
                Err("refused")
            } else {
                Ok(format!("{q}:{key}"))
            }
        });
        assert_eq!(out.unwrap(), "q:good");
    }
    assert_eq!(calls, 4);
    let m = opero.metrics();
    assert_eq!((m.retries, m.fallback_switches, m.cache_hits), (2, 1, 2));
}

#[test]
fn a_blocking_limiter_paces_a_plain_thread() {
    let start = std::time::Instant::now();
    let opero = Opero::<MemoryCache>::builder()
        .rate_limit(50.0)
        .build()
        .unwrap();
    for i in 0..6 {
        opero.run(|| Ok::<_, String>(i)).unwrap();
    }
    // Five intervals of 20 ms at least; never an exact wall time.
    assert!(start.elapsed() >= Duration::from_millis(100));
}
