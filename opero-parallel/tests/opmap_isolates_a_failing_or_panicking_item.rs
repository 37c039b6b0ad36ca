//! Isolation: one item that always fails, or panics, takes its own place as an error; every other
//! result is there.

use opero_core::{AttemptError, Jitter};
use opero_parallel::{opmap, Mode};
use std::time::Duration;

#[test]
fn one_item_that_always_fails_leaves_every_other_result_in_place() {
    for mode in [Mode::Thread, Mode::Rayon] {
        let map = opmap()
            .mode(mode)
            .workers(3)
            .retries(2)
            .min_delay(Duration::ZERO)
            .jitter(Jitter::None)
            .progress(false)
            .wrap(|x: &u32| {
                if *x == 7 {
                    Err(format!("{x} is cursed"))
                } else {
                    Ok(*x)
                }
            })
            .unwrap();
        let out = map.call(0..20);
        assert_eq!(out.len(), 20);
        for (i, r) in out.iter().enumerate() {
            if i == 7 {
                let err = r.as_ref().unwrap_err();
                assert_eq!(err.len(), 3, "{mode}: every attempt recorded");
                assert_eq!(err.last_error(), Some(&"7 is cursed".to_string()));
            } else {
                assert_eq!(r, &Ok(i as u32), "{mode}");
            }
        }
    }
}

#[test]
fn a_panic_becomes_that_items_error_with_its_message_and_is_not_retried() {
    for mode in [Mode::Thread, Mode::Rayon] {
        let map = opmap()
            .mode(mode)
            .workers(2)
            .retries(3)
            .progress(false)
            .wrap(|x: &u32| {
                if *x == 2 {
                    panic!("item {x} exploded");
                }
                Ok::<_, String>(x + 1)
            })
            .unwrap();
        let out = map.call(0..5);
        assert_eq!(out[0], Ok(1));
        assert_eq!(out[4], Ok(5));
        let err = out[2].as_ref().unwrap_err();
        assert_eq!(err.len(), 1, "{mode}: a panic is not retried");
        assert_eq!(
            err.attempts()[0].error,
            AttemptError::Panicked("item 2 exploded".to_string())
        );
        // The pool survives: the next map runs on it as usual.
        assert_eq!(map.call([9]), [Ok(10)]);
    }
}

#[tokio::test]
async fn an_async_panic_becomes_that_items_error_and_others_finish() {
    let map = opmap()
        .workers(4)
        .progress(false)
        .wrap_async(|x: u32| async move {
            tokio::task::yield_now().await;
            if x == 1 {
                panic!("async item {x} exploded");
            }
            Ok::<_, String>(x)
        })
        .unwrap();
    let out = map.call(0..4).await;
    assert_eq!(out[0], Ok(0));
    assert_eq!(out[3], Ok(3));
    let err = out[1].as_ref().unwrap_err();
    assert_eq!(
        err.attempts()[0].error,
        AttemptError::Panicked("async item 1 exploded".to_string())
    );
}

#[tokio::test]
async fn one_async_item_that_always_fails_leaves_the_others_in_place() {
    let map = opmap()
        .workers(3)
        .retries(1)
        .min_delay(Duration::ZERO)
        .progress(false)
        .wrap_async(|x: u32| async move {
            if x == 0 {
                Err("no")
            } else {
                Ok(x)
            }
        })
        .unwrap();
    let out = map.call(0..6).await;
    assert_eq!(out[0].as_ref().unwrap_err().len(), 2);
    assert_eq!(&out[1..], &[Ok(1), Ok(2), Ok(3), Ok(4), Ok(5)]);
}
