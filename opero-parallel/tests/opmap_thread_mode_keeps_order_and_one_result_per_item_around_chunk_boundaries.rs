//! Thread mode claims items in chunks (up to 1,024 at once): whatever the count, around and
//! across chunk boundaries, every item gets exactly one result, in input order, also from an
//! iterator that gives no size hint and in the unordered and streamed forms.

use opero_parallel::{opmap, Mode};

/// Sizes at and around the chunk limit (1,024) and its shares, plus odd counts.
const SIZES: [usize; 16] = [
    0, 1, 2, 3, 5, 511, 512, 513, 1023, 1024, 1025, 2047, 2049, 4097, 10_007, 100_003,
];

/// An iterator that says nothing of its length.
struct NoHint(std::ops::Range<u64>);

impl Iterator for NoHint {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        self.0.next()
    }
}

#[test]
fn every_size_around_a_chunk_boundary_keeps_order_and_one_result_per_item() {
    for workers in [1, 2, 3] {
        let map = opmap()
            .mode(Mode::Thread)
            .workers(workers)
            .progress(false)
            // The failing items fail at once: this test is about where results land, not retries.
            .retries(0)
            .wrap(|x: &u64| {
                if x % 7 == 3 {
                    Err(format!("{x} fails"))
                } else {
                    Ok(x * 2)
                }
            })
            .unwrap();
        let expected = |n: usize| -> Vec<Result<u64, String>> {
            (0..n as u64)
                .map(|x| {
                    if x % 7 == 3 {
                        Err(format!("{x} fails"))
                    } else {
                        Ok(x * 2)
                    }
                })
                .collect()
        };
        let plain =
            |out: Vec<Result<u64, opero_core::AllFailedError<String>>>| -> Vec<Result<u64, String>> {
                out.into_iter()
                    .map(|r| r.map_err(|e| e.last_error().cloned().unwrap()))
                    .collect()
            };
        for n in SIZES {
            let want = expected(n);
            assert_eq!(
                plain(map.call(0..n as u64)),
                want,
                "{workers} workers, {n} items"
            );
            assert_eq!(
                plain(map.call(NoHint(0..n as u64))),
                want,
                "{workers} workers, {n} items without a size hint"
            );
        }
    }
}

#[test]
fn unordered_and_streamed_forms_give_each_index_once_without_a_size_hint() {
    for ordered in [true, false] {
        let map = opmap()
            .mode(Mode::Thread)
            .workers(2)
            .ordered(ordered)
            .progress(false)
            .wrap(|x: &u64| Ok::<_, String>(x + 1))
            .unwrap();
        for n in [0usize, 1, 1023, 1024, 1025, 4099] {
            for streamed in [false, true] {
                let out: Vec<_> = if streamed {
                    map.iter(NoHint(0..n as u64)).unwrap().collect()
                } else {
                    map.call_indexed(NoHint(0..n as u64))
                };
                assert_eq!(out.len(), n, "ordered={ordered} streamed={streamed} n={n}");
                let mut seen = vec![false; n];
                for (pos, (index, result)) in out.into_iter().enumerate() {
                    assert!(!seen[index], "index {index} twice");
                    seen[index] = true;
                    assert_eq!(result, Ok(index as u64 + 1));
                    if ordered {
                        assert_eq!(pos, index);
                    }
                }
            }
        }
    }
}
