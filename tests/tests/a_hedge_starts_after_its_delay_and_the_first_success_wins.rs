//! Hedging through the facade: blocking forms refuse a hedged pipeline by name, and an async
//! opmap hedges each item. The pipeline's own hedging (the delay, the bound, the first success
//! winning) is tested in opero-core's test of the same name.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opero::{opero, opmap, AttemptError, Mode};
use tokio::time::Instant;

const HEDGE: Duration = Duration::from_millis(100);

#[test]
fn every_blocking_form_refuses_a_hedged_pipeline_by_name() {
    let pipeline = opero().retries(0).hedge(HEDGE, 1).build().unwrap();
    let mut called = false;
    let err = pipeline
        .run(|| {
            called = true;
            Ok::<_, String>(())
        })
        .unwrap_err();
    assert!(!called);
    assert!(matches!(
        err.attempts()[0].error,
        AttemptError::Unsupported { field: "hedge", .. }
    ));

    let err = pipeline
        .wrap(|x: &u32| Ok::<_, String>(*x))
        .err()
        .expect("a sync wrapper of a hedged pipeline is refused");
    assert_eq!(err.field(), Some("hedge"));
    let err = opero()
        .hedge(HEDGE, 1)
        .wrap(|x: &u32| Ok::<_, String>(*x))
        .err()
        .unwrap();
    assert_eq!(err.field(), Some("hedge"));

    for mode in [Mode::Thread, Mode::Rayon] {
        let err = opmap()
            .mode(mode)
            .hedge(HEDGE, 1)
            .progress(false)
            .wrap(|x: &u32| Ok::<_, String>(*x))
            .err()
            .unwrap();
        assert_eq!(err.field(), Some("hedge"), "{mode:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_async_opmap_hedges_each_item() {
    let map = opmap()
        .mode(Mode::Async)
        .workers(2)
        .retries(0)
        .progress(false)
        .hedge(HEDGE, 1)
        .wrap_async({
            let seen = Arc::new(AtomicU32::new(0));
            move |item: u64| {
                // The first attempt of each item hangs; its hedge answers in 10 ms.
                let first = seen.fetch_add(1, Ordering::SeqCst) < 2;
                async move {
                    let wait = if first { 10_000 } else { 10 };
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    Ok::<_, String>(item * 10)
                }
            }
        })
        .unwrap();
    let start = Instant::now();
    assert_eq!(map.call([1u64, 2]).await, [Ok(10), Ok(20)]);
    assert_eq!(start.elapsed(), HEDGE + Duration::from_millis(10));
    assert_eq!(map.opero().metrics().hedges, 2);
}
