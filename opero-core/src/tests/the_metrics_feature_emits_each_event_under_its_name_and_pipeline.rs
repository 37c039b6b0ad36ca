//! With the `metrics` feature each event of a pipeline reaches the installed recorder (here
//! metrics-util's debugging recorder, installed for the test's thread) under its documented name,
//! labelled with the pipeline's name when it has one, a breaker transition with its fallback
//! index and new state, and one latency sample per attempt.

use std::collections::BTreeMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};

use super::a_pipeline_caches_falls_back_retries_and_limits_on_an_exact_schedule::MapCache;
use crate::{metric_names as n, BreakerConfig, Fallbacks, Jitter, NoCache, Opero};

/// (name, labels sorted) → counter value, or the number of histogram samples.
type Series = BTreeMap<(String, Vec<(String, String)>), u64>;

/// Runs `script` with a recorder of its own and returns what it recorded.
fn recorded(script: impl FnOnce()) -> Series {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, script);
    let mut out = Series::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let mut labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        labels.sort();
        let v = match value {
            DebugValue::Counter(c) => c,
            DebugValue::Histogram(samples) => samples.len() as u64,
            DebugValue::Gauge(_) => panic!("opero emits no gauge"),
        };
        *out.entry((key.name().to_owned(), labels)).or_default() += v;
    }
    out
}

fn pipeline(name: &str) -> Vec<(String, String)> {
    vec![(n::PIPELINE_LABEL.to_owned(), name.to_owned())]
}

fn at(series: &Series, name: &str, labels: Vec<(String, String)>) -> u64 {
    series.get(&(name.to_owned(), labels)).copied().unwrap_or(0)
}

#[test]
fn retries_failures_and_switches_are_counted_under_the_pipeline_s_name() {
    let series = recorded(|| {
        let opero = Opero::<NoCache>::builder()
            .name("mirrors")
            .retries(1)
            .min_delay(Duration::ZERO)
            .jitter(Jitter::None)
            .build()
            .unwrap();
        let values = Fallbacks::new(vec!["down", "up"]).unwrap();
        let got = opero.run_fallback(
            &values,
            |m: &&str| {
                if *m == "up" {
                    Ok(1)
                } else {
                    Err("refused")
                }
            },
        );
        assert_eq!(got.unwrap(), 1);
        assert!(opero.run(|| Err::<(), _>("no")).is_err());
    });
    let p = || pipeline("mirrors");
    assert_eq!(at(&series, n::CALLS, p()), 2);
    assert_eq!(at(&series, n::ATTEMPTS, p()), 5);
    assert_eq!(at(&series, n::ATTEMPT_DURATION, p()), 5);
    assert_eq!(at(&series, n::ATTEMPT_FAILURES, p()), 4);
    assert_eq!(at(&series, n::RETRIES, p()), 2);
    assert_eq!(at(&series, n::FALLBACK_SWITCHES, p()), 1);
    assert_eq!(at(&series, n::FAILED_CALLS, p()), 1);
    assert!(
        series.keys().all(|(_, labels)| *labels == p()),
        "every series is the pipeline's: {series:?}"
    );
}

#[test]
fn an_unnamed_pipeline_s_events_carry_no_label() {
    let series = recorded(|| {
        let opero = Opero::<NoCache>::builder().retries(0).build().unwrap();
        assert!(opero.run(|| Err::<(), _>("no")).is_err());
    });
    assert_eq!(at(&series, n::CALLS, vec![]), 1);
    assert_eq!(at(&series, n::ATTEMPTS, vec![]), 1);
    assert_eq!(at(&series, n::ATTEMPT_FAILURES, vec![]), 1);
    assert_eq!(at(&series, n::FAILED_CALLS, vec![]), 1);
    assert_eq!(series.len(), 5, "{series:?}");
}

#[test]
fn cache_events_are_counted_by_kind() {
    let series = recorded(|| {
        let opero = Opero::<MapCache>::builder()
            .cache_backend(MapCache::default())
            .name("cached")
            .retries(0)
            .build_with_given_cache()
            .unwrap();
        for _ in 0..2 {
            assert_eq!(
                opero.call(&3u32, |x: &u32| Ok::<_, String>(x * 2)).unwrap(),
                6
            );
        }
        let offset = 1;
        // Captures state and has no name of its own: run uncached.
        let unnamed = Opero::<MapCache>::builder()
            .cache_backend(MapCache::default())
            .retries(0)
            .build_with_given_cache()
            .unwrap();
        assert_eq!(
            unnamed
                .call(&3u32, |x: &u32| Ok::<_, String>(x + offset))
                .unwrap(),
            4
        );
    });
    let p = || pipeline("cached");
    assert_eq!(at(&series, n::CALLS, p()), 2);
    assert_eq!(at(&series, n::CACHE_MISSES, p()), 1);
    assert_eq!(at(&series, n::CACHE_HITS, p()), 1);
    assert_eq!(at(&series, n::ATTEMPTS, p()), 1, "a hit runs no attempt");
    assert_eq!(at(&series, n::CACHE_UNIDENTIFIED, vec![]), 1);
}

#[test]
fn breaker_transitions_carry_the_fallback_index_and_the_new_state() {
    let series = recorded(|| {
        let opero = Opero::<NoCache>::builder()
            .name("breaker")
            .retries(0)
            .circuit_breaker(BreakerConfig {
                failure_threshold: Some(1),
                open_duration: Duration::from_millis(1),
                ..Default::default()
            })
            .build()
            .unwrap();
        let values = Fallbacks::new(vec![0, 1]).unwrap();
        // Value 0 fails and opens; value 1 answers.
        assert!(opero
            .run_fallback(&values, |v: &i32| if *v == 0 { Err("no") } else { Ok(()) })
            .is_ok());
        // Once the open duration passed, the next call probes value 0, which answers and
        // closes it.
        std::thread::sleep(Duration::from_millis(5));
        assert!(opero
            .run_fallback(&values, |_: &i32| Ok::<_, &str>(()))
            .is_ok());
    });
    let transition = |index: &str, state: &str| {
        let mut labels = vec![
            (n::FALLBACK_INDEX_LABEL.to_owned(), index.to_owned()),
            (n::PIPELINE_LABEL.to_owned(), "breaker".to_owned()),
            (n::STATE_LABEL.to_owned(), state.to_owned()),
        ];
        labels.sort();
        labels
    };
    assert_eq!(
        at(&series, n::BREAKER_TRANSITIONS, transition("0", "open")),
        1
    );
    assert_eq!(
        at(
            &series,
            n::BREAKER_TRANSITIONS,
            transition("0", "half_open")
        ),
        1
    );
    assert_eq!(
        at(&series, n::BREAKER_TRANSITIONS, transition("0", "closed")),
        1
    );
    assert_eq!(
        at(&series, n::BREAKER_TRANSITIONS, transition("1", "open")),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limit_waits_hedges_and_bulkhead_rejections_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _installed = metrics::set_default_local_recorder(&recorder);
    let limited = Opero::<NoCache>::builder()
        .name("limited")
        .rate_limit(10.0)
        .retries(0)
        .build()
        .unwrap();
    for _ in 0..2 {
        assert!(limited
            .run_async(|| async { Ok::<_, String>(()) })
            .await
            .is_ok());
    }
    let hedged = Opero::<NoCache>::builder()
        .name("hedged")
        .hedge(Duration::from_millis(50), 1)
        .retries(0)
        .build()
        .unwrap();
    let mut first = true;
    let got = hedged
        .run_async(|| {
            let slow = std::mem::take(&mut first);
            async move {
                if slow {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ok::<_, String>(slow)
            }
        })
        .await;
    assert!(!got.unwrap(), "the hedge answered first");
    let bounded = Opero::<NoCache>::builder()
        .name("bounded")
        .bulkhead(1, 0)
        .retries(0)
        .build()
        .unwrap();
    let (a, b) = tokio::join!(
        bounded.run_async(|| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, String>(())
        }),
        bounded.run_async(|| async { Ok::<_, String>(()) })
    );
    assert!(a.is_ok() && b.is_err());
    let mut series = Series::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        if let DebugValue::Counter(c) = value {
            series.insert((key.name().to_owned(), labels), c);
        }
    }
    assert_eq!(at(&series, n::RATE_LIMIT_WAITS, pipeline("limited")), 1);
    assert_eq!(at(&series, n::HEDGES, pipeline("hedged")), 1);
    assert_eq!(at(&series, n::BULKHEAD_REJECTIONS, pipeline("bounded")), 1);
}

#[test]
fn an_unnamed_pipeline_s_breaker_transitions_keep_their_index_and_state() {
    let series = recorded(|| {
        let opero = Opero::<NoCache>::builder()
            .retries(0)
            .circuit_breaker(BreakerConfig {
                failure_threshold: Some(1),
                open_duration: Duration::from_secs(60),
                ..Default::default()
            })
            .build()
            .unwrap();
        assert!(opero.run(|| Err::<(), _>("no")).is_err());
    });
    let mut labels = vec![
        (n::FALLBACK_INDEX_LABEL.to_owned(), "0".to_owned()),
        (n::STATE_LABEL.to_owned(), "open".to_owned()),
    ];
    labels.sort();
    assert_eq!(at(&series, n::BREAKER_TRANSITIONS, labels), 1, "{series:?}");
}
