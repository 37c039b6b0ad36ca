//! `timeout` means what it says in every opmap mode: in `async` mode a late attempt is dropped,
//! fails as `TimedOut` and is retried on the exact schedule; `thread` and `rayon` cannot stop a
//! blocking call, so they refuse the setting when the opmap is built (it used to be accepted and
//! ignored: 300 ms items returned `Ok` under a 10 ms timeout).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opero::{opmap, AttemptError, Jitter, Mode, NoCache, OpmapBuilder, OpmapConfig};

#[tokio::test(start_paused = true)]
async fn async_attempts_are_bounded_and_retried_on_the_exact_schedule() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let map = opmap()
        .mode(Mode::Async)
        .workers(3)
        .retries(2)
        .min_delay(Duration::from_millis(50))
        .max_delay(Duration::from_millis(50))
        .jitter(Jitter::None)
        .timeout(Duration::from_millis(100))
        .progress(false)
        .wrap_async(move |item: u32| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let took = match item {
                    0 => 10,           // fast
                    1 => 300,          // always late
                    _ if n < 3 => 300, // late on its first attempt only
                    _ => 10,
                };
                tokio::time::sleep(Duration::from_millis(took)).await;
                Ok::<_, String>(item)
            }
        })
        .unwrap();
    let start = tokio::time::Instant::now();
    let out = map.call([0u32, 1, 2]).await;
    assert_eq!(out[0], Ok(0));
    assert_eq!(out[2], Ok(2), "slow only once: the retry succeeded");
    let err = out[1].as_ref().unwrap_err();
    assert_eq!(err.len(), 3, "retries + 1 attempts");
    for attempt in err.attempts() {
        assert_eq!(
            attempt.error,
            AttemptError::TimedOut(Duration::from_millis(100))
        );
    }
    // Item 1: three 100 ms attempts and two 50 ms waits, all on the paused clock.
    assert_eq!(start.elapsed(), Duration::from_millis(3 * 100 + 2 * 50));
}

#[tokio::test(start_paused = true)]
async fn without_a_timeout_slow_attempts_finish() {
    let map = opmap()
        .mode(Mode::Async)
        .progress(false)
        .wrap_async(|x: u32| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, String>(x)
        })
        .unwrap();
    assert_eq!(map.call([7]).await, [Ok(7)]);
}

#[test]
fn blocking_modes_refuse_a_timeout_by_name() {
    for mode in [Mode::Thread, Mode::Rayon] {
        let err = opmap()
            .mode(mode)
            .timeout(Duration::from_millis(10))
            .progress(false)
            .wrap(|x: &u32| Ok::<_, String>(*x))
            .unwrap_err();
        assert_eq!(err.field(), Some("timeout"), "{mode}");
        assert!(err.to_string().contains("process"), "{err}");

        let cfg =
            OpmapConfig::from_json(&format!(r#"{{"mode": "{mode}", "timeout": "10ms"}}"#)).unwrap();
        let err = OpmapBuilder::<NoCache>::from_config(cfg)
            .wrap(|x: &u32| Ok::<_, String>(*x))
            .unwrap_err();
        assert_eq!(err.field(), Some("timeout"), "{mode} from a config");
    }
}
