//! The streaming forms pull items only as workers free up, so an endless input is fine and the
//! items taken but not yet handed out stay bounded by the number of workers.

use futures_util::StreamExt;
use opero_parallel::{opmap, Mode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_blocking_stream_over_an_endless_input_takes_only_a_window_of_items() {
    for mode in [Mode::Thread, Mode::Rayon] {
        for ordered in [true, false] {
            let started = Arc::new(AtomicUsize::new(0));
            let counter = started.clone();
            let map = opmap()
                .mode(mode)
                .workers(2)
                .ordered(ordered)
                .progress(false)
                .wrap(move |x: &u64| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, String>(x * 2)
                })
                .unwrap();
            let mut results = map.iter(0u64..).unwrap();
            let first: Vec<_> = results.by_ref().take(10).collect();
            assert_eq!(first.len(), 10);
            if ordered {
                assert!(first
                    .iter()
                    .enumerate()
                    .all(|(i, (j, r))| i == *j && r == &Ok(2 * i as u64)));
            }
            std::thread::sleep(Duration::from_millis(50));
            // At most 2 × workers items are out beyond the ten handed over.
            let taken = started.load(Ordering::SeqCst);
            assert!(
                taken <= 14,
                "{mode} ordered={ordered}: {taken} items started"
            );
            drop(results);
            std::thread::sleep(Duration::from_millis(50));
            assert!(started.load(Ordering::SeqCst) <= 14);
        }
    }
}

#[tokio::test]
async fn an_async_stream_over_an_endless_input_starts_only_workers_items_ahead() {
    for ordered in [true, false] {
        let started = Arc::new(AtomicUsize::new(0));
        let counter = started.clone();
        let map = opmap()
            .workers(3)
            .ordered(ordered)
            .progress(false)
            .wrap_async(move |x: u64| {
                counter.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, String>(x + 1) }
            })
            .unwrap();
        let first: Vec<_> = map.stream(0u64..).take(10).collect().await;
        assert_eq!(first.len(), 10);
        if ordered {
            assert_eq!(first[9], (9, Ok(10)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(started.load(Ordering::SeqCst) <= 13, "ordered={ordered}");
    }
}

/// Dropped (with the map's function) when the map's last owner lets go of it; its receiver then
/// disconnects.
struct Dropped(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

#[test]
fn dropping_a_blocking_stream_stops_its_workers_and_lets_go_of_the_function() {
    for mode in [Mode::Thread, Mode::Rayon] {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let guard = Dropped(tx);
        let map = opmap()
            .mode(mode)
            .workers(2)
            .progress(false)
            .wrap(move |x: &u64| {
                let _held = &guard;
                Ok::<_, String>(*x)
            })
            .unwrap();
        let mut results = map.iter(0u64..).unwrap();
        assert_eq!(results.next(), Some((0, Ok(0))));
        // The workers now wait for their turn past the window; dropping the iterator must wake
        // them so that the stream's thread ends and drops its share of the map.
        drop(results);
        drop(map);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
            "{mode}: the stream's workers still hold the function"
        );
    }
}

#[test]
fn a_thread_mode_stream_runs_its_items_on_every_worker_at_once() {
    // Two items that each wait (up to 10 s) for the other to start: they meet only when both
    // workers run at once, as a stream of a known length must let them.
    let arrived = Arc::new((std::sync::Mutex::new(0usize), std::sync::Condvar::new()));
    let shared = Arc::clone(&arrived);
    let map = opmap()
        .mode(Mode::Thread)
        .workers(2)
        .progress(false)
        .wrap(move |_: &u64| {
            let (count, changed) = &*shared;
            let mut n = count.lock().unwrap();
            *n += 1;
            changed.notify_all();
            let (n, _) = changed
                .wait_timeout_while(n, Duration::from_secs(10), |n| *n < 2)
                .unwrap();
            Ok::<_, String>(*n >= 2)
        })
        .unwrap();
    let met: Vec<_> = map
        .iter(0u64..2)
        .unwrap()
        .map(|(_, r)| r.unwrap())
        .collect();
    assert_eq!(met, [true, true]);
}
