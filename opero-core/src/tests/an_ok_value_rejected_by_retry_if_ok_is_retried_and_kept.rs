//! `retry_if_ok` turns an `Ok` that is really a failure (a 503 page returned as `Ok`) into a
//! retried attempt; `retry_on`, server hints, fallbacks and the deadline treat it as any other
//! failure, and when every attempt ends so the error keeps the last rejected value.

use std::sync::Mutex;
use std::time::Duration;

use crate::{AttemptError, Fallbacks, Jitter, NoCache, Opero};
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq)]
struct Page {
    status: u16,
    retry_after: Option<Duration>,
    body: String,
}

fn page(status: u16, body: &str) -> Page {
    Page {
        status,
        retry_after: None,
        body: body.to_owned(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Error {
    /// A page that came back `Ok` with a status that means "not now".
    Unavailable(Page),
    /// A page that came back `Ok` with a status that will not change.
    Refused(Page),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Unavailable(p) | Error::Refused(p) => write!(f, "HTTP {}", p.status),
        }
    }
}

fn by_status(p: Page) -> Result<Page, Error> {
    match p.status {
        503 => Err(Error::Unavailable(p)),
        400..=499 => Err(Error::Refused(p)),
        _ => Ok(p),
    }
}

fn builder() -> crate::OperoBuilder<NoCache> {
    Opero::<NoCache>::builder()
        .retries(3)
        .min_delay(Duration::ZERO)
        .jitter(Jitter::None)
}

#[test]
fn a_rejected_ok_is_retried_until_an_accepted_one() {
    let opero = builder().retry_if_ok(by_status).build().unwrap();
    let mut calls = 0;
    let got = opero.run(|| {
        calls += 1;
        Ok::<_, Error>(if calls < 3 {
            page(503, "busy")
        } else {
            page(200, "hello")
        })
    });
    assert_eq!(got.unwrap().body, "hello");
    assert_eq!(calls, 3);
    assert_eq!(opero.metrics().retries, 2);
}

#[test]
fn when_every_attempt_is_rejected_the_last_value_is_kept() {
    let opero = builder().retry_if_ok(by_status).build().unwrap();
    let mut calls = 0;
    let err = opero
        .run(|| {
            calls += 1;
            Ok::<_, Error>(page(503, &format!("busy #{calls}")))
        })
        .unwrap_err();
    assert_eq!(err.len(), 4);
    assert!(err
        .attempts()
        .iter()
        .all(|a| matches!(a.error, AttemptError::RejectedOk(Error::Unavailable(_)))));
    assert!(
        err.to_string()
            .contains("Ok value rejected by retry_if_ok: HTTP 503"),
        "{err}"
    );
    assert_eq!(
        err.into_last_error(),
        Some(Error::Unavailable(page(503, "busy #4")))
    );
}

#[test]
fn retry_on_sees_the_error_a_rejected_ok_became() {
    let opero = builder()
        .retry_on(|e: &Error| matches!(e, Error::Unavailable(_)))
        .retry_if_ok(by_status)
        .build()
        .unwrap();
    let mut calls = 0;
    let err = opero
        .run(|| {
            calls += 1;
            Ok::<_, Error>(page(404, "gone"))
        })
        .unwrap_err();
    assert_eq!(calls, 1, "a 404 is rejected and not retried");
    assert_eq!(err.last_error(), Some(&Error::Refused(page(404, "gone"))));
}

#[tokio::test(start_paused = true)]
async fn a_rejected_ok_s_server_hint_sets_the_delay() {
    let opero = builder()
        .min_delay(Duration::from_millis(100))
        .retry_if_ok(by_status)
        .retry_after(|e: &Error| match e {
            Error::Unavailable(p) | Error::Refused(p) => p.retry_after,
        })
        .build()
        .unwrap();
    let start = Instant::now();
    let times = Mutex::new(Vec::new());
    let got = opero
        .run_async(|| {
            let mut t = times.lock().unwrap();
            t.push(start.elapsed().as_millis());
            let n = t.len();
            async move {
                Ok::<_, Error>(if n == 1 {
                    Page {
                        retry_after: Some(Duration::from_secs(2)),
                        ..page(503, "later")
                    }
                } else {
                    page(200, "now")
                })
            }
        })
        .await;
    assert_eq!(got.unwrap().body, "now");
    assert_eq!(times.into_inner().unwrap(), [0, 2_000]);
}

#[tokio::test(start_paused = true)]
async fn rejected_oks_move_on_to_the_next_fallback_value_within_the_deadline() {
    let opero = builder()
        .retries(1)
        .retry_if_ok(by_status)
        .deadline(Duration::from_secs(10))
        .build()
        .unwrap();
    let mirrors = Fallbacks::new(vec!["down", "up"]).unwrap();
    let got = opero
        .call_fallback_async(7u32, &mirrors, |n, m| async move {
            Ok::<_, Error>(if m == "down" {
                page(503, "no")
            } else {
                page(200, &format!("{n} from {m}"))
            })
        })
        .await;
    assert_eq!(got.unwrap().body, "7 from up");
    assert_eq!(opero.metrics().fallback_switches, 1);
}

#[test]
fn wrapped_functions_apply_the_check() {
    let double = builder()
        .retries(1)
        .retry_if_ok(|n: u32| {
            if n % 2 == 1 {
                Err(format!("odd {n}"))
            } else {
                Ok(n)
            }
        })
        .wrap(|n: &u32| Ok::<_, String>(n * 2 + u32::from(*n > 100)))
        .unwrap();
    assert_eq!(double.call(&21).unwrap(), 42);
    let err = double.call(&101).unwrap_err();
    assert_eq!(err.last_error().map(String::as_str), Some("odd 203"));
    assert_eq!(err.len(), 2);
}
