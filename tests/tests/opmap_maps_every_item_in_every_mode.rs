//! The original's basic opmap cases, in every mode: `[1, 2, 3]` with 2 workers, `[]`, `[5]`,
//! 20 workers over 50 items, async functions.

use opero::{opmap, Mode, OpmapBuilder};
use opero::{AnyCache, NoCache};
use std::time::Duration;

fn quiet(mode: Mode, workers: usize) -> OpmapBuilder<NoCache<AnyCache>> {
    opmap()
        .mode(mode)
        .workers(workers)
        .progress(false)
        .min_delay(Duration::ZERO)
}

fn double(x: &i64) -> Result<i64, String> {
    Ok(x * 2)
}

#[test]
fn blocking_modes_double_one_two_three_with_two_workers() {
    for mode in [Mode::Thread, Mode::Rayon] {
        let map = quiet(mode, 2).wrap(double).unwrap();
        assert_eq!(map.call([1, 2, 3]), [Ok(2), Ok(4), Ok(6)], "{mode}");
    }
}

#[tokio::test]
async fn async_mode_doubles_one_two_three_with_two_workers() {
    let map = quiet(Mode::Async, 2)
        .wrap_async(|x: i64| async move {
            tokio::task::yield_now().await;
            Ok::<_, String>(x * 2)
        })
        .unwrap();
    assert_eq!(map.call([1, 2, 3]).await, [Ok(2), Ok(4), Ok(6)]);
}

#[test]
fn an_empty_input_gives_an_empty_output_and_a_single_item_one_result() {
    for mode in [Mode::Thread, Mode::Rayon] {
        let map = quiet(mode, 4).wrap(double).unwrap();
        assert!(map.call(Vec::<i64>::new()).is_empty());
        assert!(map.call_indexed(Vec::<i64>::new()).is_empty());
        assert_eq!(map.iter(Vec::<i64>::new()).unwrap().count(), 0);
        assert_eq!(map.call([5]), [Ok(10)]);
    }
}

#[tokio::test]
async fn async_mode_maps_empty_and_single_inputs() {
    let map = quiet(Mode::Async, 4)
        .wrap_async(|x: i64| async move { Ok::<_, String>(x * 2) })
        .unwrap();
    assert!(map.call(Vec::<i64>::new()).await.is_empty());
    assert_eq!(map.call([5]).await, [Ok(10)]);
}

#[test]
fn twenty_workers_map_fifty_items() {
    let items: Vec<i64> = (0..50).collect();
    let expected: Vec<Result<i64, _>> = items.iter().map(|x| Ok(x * 2)).collect();
    for mode in [Mode::Thread, Mode::Rayon] {
        let map = quiet(mode, 20).wrap(double).unwrap();
        assert_eq!(map.call(items.clone()), expected, "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_async_workers_map_fifty_items_on_a_multi_thread_runtime() {
    let map = quiet(Mode::Async, 20)
        .wrap_async(|x: i64| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<_, String>(x * 2)
        })
        .unwrap();
    let out = map.call(0..50).await;
    assert_eq!(out.len(), 50);
    assert!(out.iter().enumerate().all(|(i, r)| r == &Ok(i as i64 * 2)));
}

#[test]
fn async_mode_is_also_the_default_for_async_functions_and_blocking_ones_need_a_blocking_mode() {
    let err = quiet(Mode::Async, 2).wrap(double).unwrap_err();
    assert_eq!(err.field(), Some("mode"));
    let err = quiet(Mode::Rayon, 2)
        .wrap_async(|x: i64| async move { Ok::<_, String>(x) })
        .unwrap_err();
    assert_eq!(err.field(), Some("mode"));
    assert!(opmap()
        .wrap_async(|x: i64| async move { Ok::<_, String>(x) })
        .is_ok());
}
