//! A pipeline's bulkhead bounds its sync calls as it bounds async ones: a call past
//! `max_concurrent` waits in the queue (blocking its thread) and runs once a slot frees, a call
//! past the queue too is refused at once with both limits, its function never called.

use std::sync::mpsc;
use std::time::Duration;

use crate::{AttemptError, NoCache, Opero};

/// Runs one call of `opero` on a thread that holds its slot until `release` is sent to.
fn hold_a_slot(
    opero: &Opero<NoCache>,
) -> (
    std::thread::JoinHandle<Result<&'static str, crate::AllFailedError<String>>>,
    mpsc::Sender<()>,
) {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let holder = opero.clone();
    let handle = std::thread::spawn(move || {
        holder.run(|| {
            entered_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            Ok::<_, String>("holder")
        })
    });
    entered.recv().unwrap();
    (handle, release)
}

#[test]
fn a_sync_call_past_every_slot_and_the_queue_is_refused_without_running() {
    let opero = Opero::<NoCache>::builder()
        .bulkhead(1, 0)
        .retries(0)
        .build()
        .unwrap();
    let (holder, release) = hold_a_slot(&opero);
    let mut ran = false;
    let err = opero
        .run(|| {
            ran = true;
            Ok::<_, String>("refused")
        })
        .unwrap_err();
    assert!(!ran);
    assert_eq!(err.len(), 1);
    assert!(
        matches!(
            err.attempts()[0].error,
            AttemptError::BulkheadFull {
                max_concurrent: 1,
                max_queue: 0
            }
        ),
        "{err:?}"
    );
    assert_eq!(opero.metrics().bulkhead_rejections, 1);
    release.send(()).unwrap();
    assert_eq!(holder.join().unwrap().unwrap(), "holder");
    assert_eq!(opero.run(|| Ok::<_, String>("after")).unwrap(), "after");
}

#[test]
fn a_sync_call_in_the_queue_waits_for_a_slot_and_then_runs() {
    let opero = Opero::<NoCache>::builder()
        .bulkhead(1, 1)
        .retries(0)
        .build()
        .unwrap();
    let (holder, release) = hold_a_slot(&opero);
    let queued = {
        let opero = opero.clone();
        std::thread::spawn(move || opero.run(|| Ok::<_, String>("queued")))
    };
    // The queued call waits as long as the slot is held.
    while opero.bulkhead().unwrap().queued() < 1 {
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(50));
    assert!(!queued.is_finished(), "it waits for the slot");
    release.send(()).unwrap();
    assert_eq!(holder.join().unwrap().unwrap(), "holder");
    assert_eq!(queued.join().unwrap().unwrap(), "queued");
}
