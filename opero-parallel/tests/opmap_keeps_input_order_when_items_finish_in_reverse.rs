//! `ordered`: items that finish in reverse order still come back in input order; unordered
//! results come in completion order, each with its input index.

use opero_parallel::{opmap, Mode};
use std::time::Duration;

#[test]
fn blocking_items_finishing_in_reverse_come_back_in_input_order() {
    for mode in [Mode::Thread, Mode::Rayon] {
        let map = opmap()
            .mode(mode)
            .workers(4)
            .progress(false)
            .wrap(|x: &u64| {
                std::thread::sleep(Duration::from_millis(10 * (4 - x)));
                Ok::<_, String>(*x)
            })
            .unwrap();
        assert_eq!(
            map.call([0, 1, 2, 3]),
            [Ok(0), Ok(1), Ok(2), Ok(3)],
            "{mode}"
        );
        let streamed: Vec<_> = map.iter([0, 1, 2, 3]).unwrap().map(|(i, _)| i).collect();
        assert_eq!(streamed, [0, 1, 2, 3], "{mode}");
    }
}

#[test]
fn unordered_blocking_results_come_in_completion_order_with_their_index() {
    let map = opmap()
        .workers(4)
        .ordered(false)
        .progress(false)
        .wrap(|x: &u64| {
            std::thread::sleep(Duration::from_millis(40 * (4 - x)));
            Ok::<_, String>(x * 2)
        })
        .unwrap();
    let out = map.call_indexed([0, 1, 2, 3]);
    assert_eq!(
        out.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [3, 2, 1, 0]
    );
    assert!(out.iter().all(|(i, r)| r == &Ok(*i as u64 * 2)));
    let plain = map.call([0, 1, 2, 3]);
    assert_eq!(plain, [Ok(6), Ok(4), Ok(2), Ok(0)]);
}

#[tokio::test(start_paused = true)]
async fn async_items_finishing_in_reverse_come_back_in_input_order_on_an_exact_schedule() {
    let map = opmap()
        .workers(5)
        .progress(false)
        .wrap_async(|x: u64| async move {
            tokio::time::sleep(Duration::from_millis(10 * (5 - x))).await;
            Ok::<_, String>(x)
        })
        .unwrap();
    let start = tokio::time::Instant::now();
    assert_eq!(map.call(0..5).await, (0..5).map(Ok).collect::<Vec<_>>());
    // All five run at once; the slowest (item 0) takes 50 ms.
    assert_eq!(start.elapsed(), Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn unordered_async_results_come_in_completion_order_at_exact_times() {
    let start = tokio::time::Instant::now();
    let map = opmap()
        .workers(5)
        .ordered(false)
        .progress(false)
        .wrap_async(move |x: u64| async move {
            tokio::time::sleep(Duration::from_millis(10 * (5 - x))).await;
            Ok::<_, String>((tokio::time::Instant::now() - start).as_millis() as u64)
        })
        .unwrap();
    let out = map.call_indexed(0..5).await;
    assert_eq!(
        out.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [4, 3, 2, 1, 0]
    );
    for (i, r) in out {
        assert_eq!(r, Ok(10 * (5 - i as u64)));
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_item_does_not_keep_later_items_from_starting() {
    // Two workers; item 0 takes 100 ms, the others 10 ms each: the other worker runs items 1..=9
    // back to back while item 0 runs, so the whole map takes 100 ms, not 100 + 90.
    let map = opmap()
        .workers(2)
        .progress(false)
        .wrap_async(|x: u64| async move {
            let ms = if x == 0 { 100 } else { 10 };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, String>(x)
        })
        .unwrap();
    let start = tokio::time::Instant::now();
    let out = map.call(0..10).await;
    assert_eq!(out, (0..10).map(Ok).collect::<Vec<_>>());
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}
