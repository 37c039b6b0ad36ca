//! With the `metrics` feature, a scripted run through named pipelines shows exact counts on a real
//! recorder (metrics-util's debugging recorder): calls, attempts, failures, retries, fallback
//! switches, cache hits, misses and errors, and one latency sample per attempt, each under its
//! pipeline's name; an unnamed pipeline's metrics carry no label.

use std::collections::BTreeMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use opero::{metric_names as n, Fallbacks, Jitter, MemoryCache, NoCache, Opero};
use serde::{Serialize, Serializer};

/// (metric name, pipeline label) → counter value, or number of histogram samples.
type Counts = BTreeMap<(String, Option<String>), u64>;

fn counts(snapshot: metrics_util::debugging::Snapshot) -> Counts {
    let mut out = Counts::new();
    for (key, _, _, value) in snapshot.into_vec() {
        let key = key.key();
        let pipeline = key
            .labels()
            .find(|l| l.key() == n::PIPELINE_LABEL)
            .map(|l| l.value().to_string());
        let v = match value {
            DebugValue::Counter(c) => c,
            DebugValue::Histogram(samples) => {
                assert!(
                    samples.iter().all(|s| s.0 >= 0.0),
                    "latency samples are durations"
                );
                samples.len() as u64
            }
            DebugValue::Gauge(_) => unreachable!("opero emits no gauge"),
        };
        *out.entry((key.name().to_string(), pipeline)).or_default() += v;
    }
    out
}

fn get(c: &Counts, name: &str, pipeline: Option<&str>) -> u64 {
    c.get(&(name.to_string(), pipeline.map(str::to_string)))
        .copied()
        .unwrap_or(0)
}

/// Arguments whose serialization fails: the cache key cannot be computed, a cache error.
struct Unhashable;

impl Serialize for Unhashable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("not hashable"))
    }
}

#[test]
fn a_scripted_run_shows_exact_counts_per_pipeline() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        // Two failures then a success.
        let flaky = Opero::<NoCache>::builder()
            .name("flaky")
            .retries(3)
            .min_delay(Duration::ZERO)
            .jitter(Jitter::None)
            .build()
            .unwrap();
        let mut left = 2;
        let got = flaky.run(|| {
            if left > 0 {
                left -= 1;
                Err("busy")
            } else {
                Ok(7)
            }
        });
        assert_eq!(got.unwrap(), 7);

        // The first mirror fails for good, the second answers: one fallback switch.
        let mirrors = Opero::<NoCache>::builder()
            .retries(0)
            .build()
            .unwrap()
            .named("mirrors");
        let values = Fallbacks::new(vec!["down", "up"]).unwrap();
        let got = mirrors.run_fallback(
            &values,
            |m: &&str| if *m == "up" { Ok(1) } else { Err("refused") },
        );
        assert_eq!(got.unwrap(), 1);

        // A miss, a hit, and a key that cannot be computed.
        let cached = Opero::<MemoryCache>::builder()
            .cache(true)
            .name("cached")
            .retries(0)
            .build()
            .unwrap();
        for _ in 0..2 {
            assert_eq!(
                cached
                    .call(&3u32, |x: &u32| Ok::<_, String>(x * 2))
                    .unwrap(),
                6
            );
        }
        assert_eq!(
            cached
                .call(&Unhashable, |_: &Unhashable| Ok::<_, String>(0))
                .unwrap(),
            0
        );

        // No name: no label.
        let plain = Opero::<NoCache>::builder().retries(0).build().unwrap();
        assert!(plain.run(|| Err::<(), _>("no")).is_err());
    });
    let c = counts(snapshotter.snapshot());

    let flaky = Some("flaky");
    assert_eq!(get(&c, n::CALLS, flaky), 1);
    assert_eq!(get(&c, n::ATTEMPTS, flaky), 3);
    assert_eq!(get(&c, n::ATTEMPT_DURATION, flaky), 3);
    assert_eq!(get(&c, n::ATTEMPT_FAILURES, flaky), 2);
    assert_eq!(get(&c, n::RETRIES, flaky), 2);
    assert_eq!(get(&c, n::FALLBACK_SWITCHES, flaky), 0);
    assert_eq!(get(&c, n::FAILED_CALLS, flaky), 0);

    let mirrors = Some("mirrors");
    assert_eq!(get(&c, n::CALLS, mirrors), 1);
    assert_eq!(get(&c, n::ATTEMPTS, mirrors), 2);
    assert_eq!(get(&c, n::ATTEMPT_FAILURES, mirrors), 1);
    assert_eq!(get(&c, n::RETRIES, mirrors), 0);
    assert_eq!(get(&c, n::FALLBACK_SWITCHES, mirrors), 1);

    let cached = Some("cached");
    assert_eq!(get(&c, n::CALLS, cached), 3);
    assert_eq!(get(&c, n::CACHE_MISSES, cached), 1);
    assert_eq!(get(&c, n::CACHE_HITS, cached), 1);
    assert_eq!(get(&c, n::CACHE_ERRORS, cached), 1);
    // The miss and the uncached call ran; the hit did not.
    assert_eq!(get(&c, n::ATTEMPTS, cached), 2);

    assert_eq!(get(&c, n::CALLS, None), 1);
    assert_eq!(get(&c, n::ATTEMPT_FAILURES, None), 1);
    assert_eq!(get(&c, n::ATTEMPTS, None), 1);
    assert_eq!(get(&c, n::ATTEMPT_DURATION, None), 1);
    assert_eq!(get(&c, n::FAILED_CALLS, None), 1);

    // Nothing else was emitted: every series is accounted for above or zero.
    let total: u64 = c.values().sum();
    // flaky 11, mirrors 7, cached 10, unnamed 5.
    assert_eq!(total, 11 + 7 + 10 + 5, "{c:#?}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_async_forms_emit_the_same_events() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The current-thread runtime polls on this thread, so the local recorder sees every event.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let opero = Opero::<NoCache>::builder()
        .name("async")
        .retries(2)
        .min_delay(Duration::from_millis(10))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let mut left = 2;
    let got = opero
        .run_async(|| {
            let fail = left > 0;
            left -= 1;
            async move {
                if fail {
                    Err("busy")
                } else {
                    Ok(1)
                }
            }
        })
        .await;
    assert_eq!(got.unwrap(), 1);
    let c = counts(snapshotter.snapshot());
    let p = Some("async");
    assert_eq!(get(&c, n::CALLS, p), 1);
    assert_eq!(get(&c, n::ATTEMPTS, p), 3);
    assert_eq!(get(&c, n::ATTEMPT_DURATION, p), 3);
    assert_eq!(get(&c, n::RETRIES, p), 2);
}
