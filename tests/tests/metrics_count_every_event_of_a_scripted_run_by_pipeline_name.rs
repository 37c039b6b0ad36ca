//! With the `metrics` feature, a scripted run through named pipelines shows exact counts on a real
//! recorder (metrics-util's debugging recorder): calls, attempts, failures, retries, fallback
//! switches, cache hits, misses and errors, circuit-breaker transitions (by fallback index and
//! state), bulkhead rejections and hedges, and one latency sample per attempt, each under its
//! pipeline's name; an unnamed pipeline's metrics carry no label.

use std::collections::BTreeMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use opero::{
    metric_names as n, AttemptError, BreakerConfig, Fallbacks, Jitter, MemoryCache, NoCache, Opero,
};
use serde::{Serialize, Serializer};

/// (metric name, every label sorted) → counter value, or number of histogram samples.
type Counts = BTreeMap<(String, Vec<(String, String)>), u64>;

fn counts(snapshot: metrics_util::debugging::Snapshot) -> Counts {
    let mut out = Counts::new();
    for (key, _, _, value) in snapshot.into_vec() {
        let key = key.key();
        let mut labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect();
        labels.sort();
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
        *out.entry((key.name().to_string(), labels)).or_default() += v;
    }
    out
}

/// The sum of `name` over the series of `pipeline` (`None`: the series without the label).
fn get(c: &Counts, name: &str, pipeline: Option<&str>) -> u64 {
    c.iter()
        .filter(|((metric, labels), _)| {
            metric == name
                && labels
                    .iter()
                    .find(|(k, _)| k == n::PIPELINE_LABEL)
                    .map(|(_, v)| v.as_str())
                    == pipeline
        })
        .map(|(_, v)| v)
        .sum()
}

/// Every series of `name`: its labels other than the pipeline's, and its value.
fn series(c: &Counts, name: &str, pipeline: &str) -> Vec<(Vec<(String, String)>, u64)> {
    c.iter()
        .filter(|((metric, labels), _)| {
            metric == name
                && labels
                    .iter()
                    .any(|(k, v)| k == n::PIPELINE_LABEL && v == pipeline)
        })
        .map(|((_, labels), v)| {
            let rest = labels
                .iter()
                .filter(|(k, _)| k != n::PIPELINE_LABEL)
                .cloned()
                .collect();
            (rest, *v)
        })
        .collect()
}

/// The labels of one breaker transition.
fn transition(index: usize, state: &str) -> Vec<(String, String)> {
    vec![
        (n::FALLBACK_INDEX_LABEL.to_string(), index.to_string()),
        (n::STATE_LABEL.to_string(), state.to_string()),
    ]
}

/// The breaker transitions of the scripted runs below, in the order the labels sort.
fn scripted_transitions() -> Vec<(Vec<(String, String)>, u64)> {
    vec![
        (transition(0, "closed"), 1),
        (transition(0, "half_open"), 2),
        (transition(0, "open"), 2),
        (transition(1, "closed"), 1),
        (transition(1, "half_open"), 1),
        (transition(1, "open"), 1),
    ]
}

fn breaker_pipeline(open: Duration) -> Opero<NoCache> {
    Opero::<NoCache>::builder()
        .name("breaker")
        .retries(0)
        .circuit_breaker(BreakerConfig {
            failure_threshold: Some(1),
            open_duration: open,
            ..Default::default()
        })
        .build()
        .unwrap()
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

#[test]
fn breaker_transitions_and_bulkhead_rejections_reach_the_recorder() {
    // Long enough that a thread descheduled on a loaded machine does not see a breaker half-open
    // before the script says so.
    const OPEN: Duration = Duration::from_millis(500);
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (breaker, bulkhead) = metrics::with_local_recorder(&recorder, || {
        // Two mirrors, one breaker each, opened by a single failure.
        let breaker = breaker_pipeline(OPEN);
        let mirrors = Fallbacks::new(vec![0usize, 1]).unwrap();
        let run = |up: [bool; 2]| {
            breaker.run_fallback(
                &mirrors,
                |&i: &usize| if up[i] { Ok(i) } else { Err("down") },
            )
        };
        // Both fail: both breakers open.
        assert!(run([false, false]).is_err());
        // Both open: both refused without a call.
        let err = run([true, true]).unwrap_err();
        assert!(err
            .attempts()
            .iter()
            .all(|a| a.error == AttemptError::BreakerOpen));
        std::thread::sleep(OPEN + Duration::from_millis(50));
        // Both half-open: mirror 0's probe fails (open again), mirror 1's answers (closed).
        assert_eq!(run([false, true]).unwrap(), 1);
        std::thread::sleep(OPEN + Duration::from_millis(50));
        // Mirror 0 half-open again; its probe answers (closed).
        assert_eq!(run([true, true]).unwrap(), 0);

        // One slot, no queue: a call nested in a running one overflows the bulkhead.
        let bulkhead = Opero::<NoCache>::builder()
            .name("bulkhead")
            .retries(0)
            .bulkhead(1, 0)
            .build()
            .unwrap();
        let got = bulkhead.run(|| {
            let inner = bulkhead.run(|| Ok::<_, &str>(0)).unwrap_err();
            assert_eq!(
                inner.attempts()[0].error,
                AttemptError::BulkheadFull {
                    max_concurrent: 1,
                    max_queue: 0
                }
            );
            Ok::<_, &str>(1)
        });
        assert_eq!(got.unwrap(), 1);
        (breaker, bulkhead)
    });
    let c = counts(snapshotter.snapshot());
    assert_eq!(
        series(&c, n::BREAKER_TRANSITIONS, "breaker"),
        scripted_transitions(),
        "{c:#?}"
    );
    assert_eq!(get(&c, n::BULKHEAD_REJECTIONS, Some("bulkhead")), 1);
    assert_eq!(get(&c, n::FAILED_CALLS, Some("bulkhead")), 1);
    assert_eq!(get(&c, n::BULKHEAD_REJECTIONS, Some("breaker")), 0);
    assert_eq!(get(&c, n::BREAKER_TRANSITIONS, Some("bulkhead")), 0);
    // The pipeline's own counters saw the same transitions.
    let m = breaker.metrics();
    assert_eq!(
        (m.breaker_opened, m.breaker_half_opened, m.breaker_closed),
        (3, 3, 2)
    );
    assert_eq!(m.breaker_rejections, 2);
    assert_eq!(bulkhead.metrics().bulkhead_rejections, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_async_forms_emit_breaker_bulkhead_and_hedge_events() {
    const OPEN: Duration = Duration::from_secs(10);
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let breaker = breaker_pipeline(OPEN);
    let mirrors = Fallbacks::new(vec![0usize, 1]).unwrap();
    let run = |up: [bool; 2]| {
        breaker.run_fallback_async(&mirrors, move |i: usize| async move {
            if up[i] {
                Ok(i)
            } else {
                Err("down")
            }
        })
    };
    assert!(run([false, false]).await.is_err());
    assert!(run([true, true]).await.is_err());
    // One nanosecond short of the open duration, both breakers still refuse.
    tokio::time::advance(OPEN - Duration::from_nanos(1)).await;
    assert!(run([true, true]).await.is_err());
    // Half-open is emitted when a call asks for a probe, not before: so far only openings.
    // (A snapshot drains the counters; the final check adds this one back.)
    let early = counts(snapshotter.snapshot());
    assert_eq!(
        series(&early, n::BREAKER_TRANSITIONS, "breaker"),
        [(transition(0, "open"), 1), (transition(1, "open"), 1)]
    );
    tokio::time::advance(Duration::from_nanos(1)).await;
    assert_eq!(run([false, true]).await.unwrap(), 1);
    tokio::time::advance(OPEN).await;
    assert_eq!(run([true, true]).await.unwrap(), 0);

    let bulkhead = Opero::<NoCache>::builder()
        .name("bulkhead")
        .retries(0)
        .bulkhead(1, 0)
        .build()
        .unwrap();
    let b = &bulkhead;
    let got = b
        .run_async(move || async move {
            let inner = b.run_async(|| async { Ok::<_, &str>(0) }).await;
            assert_eq!(
                inner.unwrap_err().attempts()[0].error,
                AttemptError::BulkheadFull {
                    max_concurrent: 1,
                    max_queue: 0
                }
            );
            Ok::<_, &str>(1)
        })
        .await;
    assert_eq!(got.unwrap(), 1);

    // Every attempt takes 250 ms: hedges start at 100 and 200 ms, the first attempt wins.
    let hedged = Opero::<NoCache>::builder()
        .name("hedged")
        .retries(0)
        .hedge(Duration::from_millis(100), 2)
        .build()
        .unwrap();
    let got = hedged
        .run_async(|| async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            Ok::<_, &str>(1)
        })
        .await;
    assert_eq!(got.unwrap(), 1);

    let mut c = counts(snapshotter.snapshot());
    for (key, v) in early {
        *c.entry(key).or_default() += v;
    }
    assert_eq!(
        series(&c, n::BREAKER_TRANSITIONS, "breaker"),
        scripted_transitions(),
        "{c:#?}"
    );
    assert_eq!(get(&c, n::BULKHEAD_REJECTIONS, Some("bulkhead")), 1);
    assert_eq!(get(&c, n::FAILED_CALLS, Some("bulkhead")), 1);
    assert_eq!(get(&c, n::HEDGES, Some("hedged")), 2);
    assert_eq!(get(&c, n::CALLS, Some("hedged")), 1);
    // The winner's attempt is timed; the dropped hedges never finished.
    assert_eq!(get(&c, n::ATTEMPTS, Some("hedged")), 1);
    assert_eq!(get(&c, n::ATTEMPT_DURATION, Some("hedged")), 1);
    assert_eq!(hedged.metrics().hedges, 2);
}
