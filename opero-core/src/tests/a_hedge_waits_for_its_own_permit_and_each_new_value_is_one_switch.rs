//! In a hedged call each attempt, a hedge included, takes its own rate-limit permit and starts
//! only once it is valid; every move to a value not started yet is one fallback switch, the
//! first value none. On tokio's paused clock.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Fallbacks, NoCache, Opero};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn a_hedge_due_before_its_permit_starts_when_the_permit_is_valid() {
    let opero = Opero::<NoCache>::builder()
        .hedge(ms(50), 1)
        .rate_limit(10.0)
        .retries(0)
        .build()
        .unwrap();
    let start = Instant::now();
    let starts = Mutex::new(Vec::new());
    let got = opero
        .run_async(|| async {
            // The attempt's own time starts when it is first polled, after its permit wait.
            let first = {
                let mut starts = starts.lock().unwrap();
                starts.push(start.elapsed());
                starts.len() == 1
            };
            if first {
                tokio::time::sleep(ms(1_000)).await;
            }
            Ok::<_, String>(first)
        })
        .await;
    assert!(!got.unwrap(), "the hedge answered");
    // Due at 50 ms, the hedge waits for the second permit, valid at 100 ms.
    assert_eq!(*starts.lock().unwrap(), [ms(0), ms(100)]);
    assert_eq!(start.elapsed(), ms(100));
    let m = opero.metrics();
    assert_eq!((m.hedges, m.rate_limit_waits), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn each_new_value_of_a_hedged_call_is_one_switch() {
    let opero = Opero::<NoCache>::builder()
        .hedge(ms(50), 1)
        .retries(0)
        .build()
        .unwrap();
    let values = Fallbacks::new(vec!["a", "b", "c"]).unwrap();
    let tried = Mutex::new(Vec::new());
    let got = opero
        .run_fallback_async(&values, |v: &str| {
            tried.lock().unwrap().push(v);
            async move {
                if v == "c" {
                    Ok(v)
                } else {
                    Err("refused")
                }
            }
        })
        .await;
    assert_eq!(got.unwrap(), "c");
    assert_eq!(*tried.lock().unwrap(), ["a", "b", "c"]);
    assert_eq!(opero.metrics().fallback_switches, 2);
}
