//! The rate limit is one limiter for all workers of a map: more workers never means more calls
//! per second.

use opero::{opmap, Mode};
use std::time::{Duration, Instant};

#[test]
fn blocking_workers_together_stay_under_the_rate() {
    for mode in [Mode::Thread, Mode::Rayon] {
        let map = opmap()
            .mode(mode)
            .workers(8)
            .rate_limit(50.0)
            .progress(false)
            .wrap(|x: &u32| Ok::<_, String>(*x))
            .unwrap();
        let start = Instant::now();
        let out = map.call(0..20);
        let elapsed = start.elapsed();
        assert_eq!(out.len(), 20);
        // 20 permits at 50/s with a burst of 1: the last one is due 19 / 50 = 380 ms in. Eight
        // limiters of their own would have let the map finish in about 40 ms.
        assert!(elapsed >= Duration::from_millis(370), "{mode}: {elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{mode}: {elapsed:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn async_workers_take_permits_on_the_exact_schedule_of_one_limiter() {
    let start = tokio::time::Instant::now();
    let map = opmap()
        .workers(4)
        .rate_limit(10.0)
        .progress(false)
        .wrap_async(move |_: u32| async move {
            Ok::<_, String>((tokio::time::Instant::now() - start).as_millis() as u64)
        })
        .unwrap();
    let mut times: Vec<u64> = map
        .call(0..6)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    times.sort();
    let expected: Vec<u64> = (0..6).map(|n| 100 * n).collect();
    assert_eq!(times, expected);
    assert_eq!(map.opero().metrics().rate_limit_waits, 5);
}
