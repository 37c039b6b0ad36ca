//! Property: for random inputs, worker counts, modes and failure patterns, exactly one result per
//! input, in input order when ordered, none lost, none duplicated.

use opero_core::Jitter;
use opero_parallel::{opmap, Mode};
use proptest::prelude::*;
use std::time::Duration;

/// Fails items divisible by `fail_every` always, and odd items on their first attempt.
fn outcome(x: u16, attempt_is_first: bool, fail_every: u16) -> Result<u32, String> {
    if fail_every > 0 && x.is_multiple_of(fail_every) {
        Err(format!("{x} always fails"))
    } else if x % 2 == 1 && attempt_is_first {
        Err(format!("{x} fails once"))
    } else {
        Ok(u32::from(x) * 3)
    }
}

fn check(
    items: &[u16],
    fail_every: u16,
    ordered: bool,
    out: Vec<(usize, Result<u32, opero_core::AllFailedError<String>>)>,
) {
    assert_eq!(out.len(), items.len());
    let mut seen = vec![false; items.len()];
    for (pos, (index, result)) in out.iter().enumerate() {
        assert!(!seen[*index], "index {index} twice");
        seen[*index] = true;
        if ordered {
            assert_eq!(pos, *index);
        }
        let x = items[*index];
        match result {
            Ok(v) => assert_eq!(*v, u32::from(x) * 3),
            Err(e) => {
                assert!(
                    fail_every > 0 && x.is_multiple_of(fail_every),
                    "{x} failed: {e}"
                );
                assert_eq!(e.len(), 2);
            }
        }
    }
}

fn modes() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Thread), Just(Mode::Rayon), Just(Mode::Async)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_input_gets_exactly_one_result(
        items in proptest::collection::vec(any::<u16>(), 0..40),
        workers in 1usize..9,
        mode in modes(),
        ordered in any::<bool>(),
        fail_every in 0u16..6,
        streamed in any::<bool>(),
    ) {
        let builder = opmap()
            .mode(mode)
            .workers(workers)
            .ordered(ordered)
            .progress(false)
            .retries(1)
            .min_delay(Duration::ZERO)
            .max_delay(Duration::ZERO)
            .jitter(Jitter::None);
        // Each item's first attempt is told apart by the attempt counter of its own call.
        let out = if mode == Mode::Async {
            let tried = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
            let map = builder
                .wrap_async(move |(i, x): (usize, u16)| {
                    let first = tried.lock().unwrap().insert(i);
                    async move { outcome(x, first, fail_every) }
                })
                .unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let pairs: Vec<(usize, u16)> = items.iter().copied().enumerate().collect();
            rt.block_on(async {
                if streamed {
                    futures_util::StreamExt::collect::<Vec<_>>(map.stream(pairs)).await
                } else {
                    map.call_indexed(pairs).await
                }
            })
        } else {
            let tried = std::sync::Mutex::new(std::collections::HashSet::new());
            let map = builder
                .wrap(move |(i, x): &(usize, u16)| {
                    let first = tried.lock().unwrap().insert(*i);
                    outcome(*x, first, fail_every)
                })
                .unwrap();
            let pairs: Vec<(usize, u16)> = items.iter().copied().enumerate().collect();
            if streamed {
                map.iter(pairs).unwrap().collect()
            } else {
                map.call_indexed(pairs)
            }
        };
        check(&items, fail_every, ordered, out);
    }
}
