//! An async sleep, and a timeout built on it, that work under any executor: tokio's timer inside a
//! tokio runtime (so tests on a paused clock see exact schedules), a timer thread everywhere else.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Completes after a duration, whatever executor polls it.
///
/// The timer is chosen on the first poll, where the executor's context is known: a future built
/// outside a runtime and polled inside one still uses tokio's (paused) clock.
#[derive(Debug)]
#[must_use = "a sleep does nothing unless awaited"]
pub(crate) struct Sleep {
    wait: Duration,
    timer: Option<Timer>,
}

#[derive(Debug)]
enum Timer {
    Tokio(Pin<Box<tokio::time::Sleep>>),
    // Not tokio: futures-timer's global thread wakes the task, with no reactor needed.
    Thread(futures_timer::Delay),
}

/// The longest wait a timer is asked for: a century reads as "forever" and stays clear of the
/// overflow of adding a larger duration to the clock.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A sleep of `wait`.
pub(crate) fn sleep(wait: Duration) -> Sleep {
    Sleep {
        wait: wait.min(LONGEST),
        timer: None,
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.wait.is_zero() {
            return Poll::Ready(());
        }
        let wait = self.wait;
        let timer = self.timer.get_or_insert_with(|| {
            if tokio::runtime::Handle::try_current().is_ok() {
                Timer::Tokio(Box::pin(tokio::time::sleep(wait)))
            } else {
                Timer::Thread(futures_timer::Delay::new(wait))
            }
        });
        match timer {
            Timer::Tokio(sleep) => sleep.as_mut().poll(cx),
            Timer::Thread(delay) => Pin::new(delay).poll(cx),
        }
    }
}

/// The error of [`timeout`]: the future did not complete within the duration, which it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(pub Duration);

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "deadline of {:?} elapsed", self.0)
    }
}

impl std::error::Error for Elapsed {}

/// Runs `fut` for at most `duration`: its output, or [`Elapsed`] when the duration passes first,
/// in which case `fut` is dropped (cancelled at its current `.await`).
///
/// Unlike `tokio::time::timeout` it works under any executor, as opero's async forms do: inside a
/// tokio runtime it uses tokio's timer (so a paused clock gives exact schedules), elsewhere a timer
/// thread. The future is polled before the timer, so one that is ready wins over a deadline that
/// has also passed.
///
/// # Examples
///
/// ```
/// use opero_core::{timeout, Elapsed};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let slow = tokio::time::sleep(Duration::from_secs(3));
/// assert_eq!(timeout(Duration::from_secs(1), slow).await, Err(Elapsed(Duration::from_secs(1))));
/// assert_eq!(timeout(Duration::from_secs(1), async { 7 }).await, Ok(7));
/// # }
/// ```
pub async fn timeout<F: Future>(duration: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = std::pin::pin!(fut);
    let mut deadline = sleep(duration);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        Pin::new(&mut deadline)
            .poll(cx)
            .map(|()| Err(Elapsed(duration)))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_under_an_executor_that_is_not_tokio() {
        let start = std::time::Instant::now();
        futures_executor_block_on(sleep(Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn inside_tokio_it_follows_the_paused_clock() {
        let start = tokio::time::Instant::now();
        sleep(Duration::from_secs(3600)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3600));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_follows_the_paused_clock() {
        let start = tokio::time::Instant::now();
        let late = timeout(
            Duration::from_millis(100),
            sleep(Duration::from_millis(300)),
        )
        .await;
        assert_eq!(late, Err(Elapsed(Duration::from_millis(100))));
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        let early = timeout(Duration::from_millis(100), async {
            sleep(Duration::from_millis(40)).await;
            5
        })
        .await;
        assert_eq!(early, Ok(5));
        assert_eq!(start.elapsed(), Duration::from_millis(140));
    }

    #[test]
    fn a_timeout_fires_under_an_executor_that_is_not_tokio() {
        let start = std::time::Instant::now();
        let late = futures_executor_block_on(timeout(
            Duration::from_millis(20),
            std::future::pending::<()>(),
        ));
        assert_eq!(late, Err(Elapsed(Duration::from_millis(20))));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    /// A minimal executor: polls on the current thread, parked until woken.
    fn futures_executor_block_on<F: Future>(fut: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }
}
