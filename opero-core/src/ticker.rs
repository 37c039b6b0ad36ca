//! When a sync call with a deadline started, without reading a clock on every call.
//!
//! A sync deadline counts the first attempt, which cannot be preempted, so the call's start must
//! be known before that attempt runs. Reading the CPU's timestamp counter for it cost three times
//! a whole no-fault call. Instead a background thread ticks a process clock every
//! [`TICK`], and a call takes the last tick as its start: one load of a shared word. The last
//! tick is never later than the call, so the deadline can only end a call early, by at most a
//! tick (plus however late the ticking thread was scheduled), never late.
//!
//! The thread starts with the first sync call that has a deadline and parks after [`IDLE`]
//! without one; until it ticks again, calls read the precise clock and wake it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::Duration;

/// How often the clock ticks while sync calls with a deadline run.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// How long the clock ticks without a reader before its thread parks.
pub(crate) const IDLE: Duration = Duration::from_millis(100);

/// A call's start on a [`Ticker`]: nanoseconds from its epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Tick(u64);

/// A process clock ticked by a background thread.
pub(crate) struct Ticker {
    /// The instant ticks are counted from, set before the first tick or precise reading.
    epoch: OnceLock<quanta::Instant>,
    /// The last tick ([`Ticker::now`], never zero); zero while the thread is parked.
    last: AtomicU64,
    /// Whether a call read a tick since the thread last looked.
    read: AtomicBool,
    /// The ticking thread, once started; `None` inside when it could not be spawned.
    thread: OnceLock<Option<Thread>>,
}

impl Ticker {
    pub(crate) const fn new() -> Self {
        Ticker {
            epoch: OnceLock::new(),
            last: AtomicU64::new(0),
            read: AtomicBool::new(false),
            thread: OnceLock::new(),
        }
    }

    /// The process's clock, shared by every pipeline.
    #[inline]
    pub(crate) fn global() -> &'static Ticker {
        static GLOBAL: Ticker = Ticker::new();
        &GLOBAL
    }

    /// The start of a call: the last tick, or the precise time while the clock is not ticking
    /// (its thread then starts or wakes).
    #[inline]
    pub(crate) fn start(&'static self) -> Tick {
        let last = self.last.load(Ordering::Acquire);
        if last != 0 {
            // Written once per tick at most, so that readers on other cores share the line.
            if !self.read.load(Ordering::Relaxed) {
                self.read.store(true, Ordering::Relaxed);
            }
            return Tick(last);
        }
        self.start_slow()
    }

    #[cold]
    #[inline(never)]
    fn start_slow(&'static self) -> Tick {
        let now = self.now();
        self.wake();
        now
    }

    /// The precise time since `since`.
    pub(crate) fn elapsed(&self, since: Tick) -> Duration {
        Duration::from_nanos(self.now().0.saturating_sub(since.0))
    }

    /// The precise time now: nanoseconds since the epoch, plus one so that it is never the
    /// zero that marks a parked clock.
    fn now(&self) -> Tick {
        let epoch = *self.epoch.get_or_init(quanta::Instant::now);
        let nanos = quanta::Instant::now()
            .saturating_duration_since(epoch)
            .as_nanos();
        Tick(u64::try_from(nanos).unwrap_or(u64::MAX).saturating_add(1))
    }

    /// Whether the clock is ticking now.
    #[cfg(test)]
    fn ticking(&self) -> bool {
        self.last.load(Ordering::Acquire) != 0
    }

    fn wake(&'static self) {
        let thread = self.thread.get_or_init(|| {
            let spawned = std::thread::Builder::new()
                .name("opero-clock".into())
                .spawn(move || self.tick());
            match spawned {
                Ok(handle) => Some(handle.thread().clone()),
                Err(e) => {
                    // Calls keep reading the precise clock: slower, as exact.
                    tracing::warn!(target: "opero", error = %e, "no thread for the deadline clock");
                    None
                }
            }
        });
        if let Some(thread) = thread {
            thread.unpark();
        }
    }

    fn tick(&self) {
        let idle_ticks = (IDLE.as_nanos() / TICK.as_nanos()).max(1);
        let mut idle = 0;
        loop {
            self.last.store(self.now().0, Ordering::Release);
            std::thread::sleep(TICK);
            if self.read.swap(false, Ordering::Relaxed) {
                idle = 0;
                continue;
            }
            idle += 1;
            if idle >= idle_ticks {
                self.last.store(0, Ordering::Release);
                // A call that read the last tick before this store used a tick at most this
                // old; one that reads zero wakes the thread (an unpark before this park is
                // kept, so the wake-up is not lost).
                std::thread::park();
                idle = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaked() -> &'static Ticker {
        Box::leak(Box::new(Ticker::new()))
    }

    #[test]
    fn a_start_is_never_after_the_call_and_at_most_a_tick_or_so_before() {
        let ticker = leaked();
        for _ in 0..200 {
            let before = ticker.now();
            let start = ticker.start();
            let after = ticker.now();
            assert!(
                start <= after,
                "a start after the call would make deadlines late"
            );
            // A bound, not a timing: the tick is 1 ms; a loaded machine may delay the thread.
            let early = Duration::from_nanos(before.0.saturating_sub(start.0));
            assert!(
                early < Duration::from_millis(500),
                "{early:?} before the call"
            );
            std::thread::sleep(Duration::from_micros(300));
        }
        assert!(ticker.ticking());
        assert!(ticker.elapsed(ticker.start()) < Duration::from_millis(500));
        let start = ticker.now();
        std::thread::sleep(Duration::from_millis(20));
        assert!(ticker.elapsed(start) >= Duration::from_millis(20));
    }

    #[test]
    fn a_start_is_the_last_tick_and_tells_the_clock_it_was_read() {
        // No thread here: the tick is set by hand.
        let ticker = leaked();
        ticker.last.store(1_000, Ordering::Release);
        assert!(!ticker.read.load(Ordering::Relaxed));
        assert_eq!(ticker.start(), Tick(1_000));
        assert!(ticker.read.load(Ordering::Relaxed));
        assert_eq!(ticker.start(), Tick(1_000));
        assert!(ticker.now() > Tick(0), "zero marks a parked clock");
        assert!(
            ticker.thread.get().is_none(),
            "a ticking clock needs no waking"
        );
    }

    #[test]
    fn a_sync_deadline_counts_the_first_attempt() {
        use crate::{Jitter, NoCache, Opero};
        let opero = Opero::<NoCache>::builder()
            .retries(3)
            .min_delay(Duration::from_millis(50))
            .jitter(Jitter::None)
            .deadline(Duration::from_millis(100))
            .build()
            .unwrap();
        let err = opero
            .run(|| {
                std::thread::sleep(Duration::from_millis(60));
                Err::<(), _>("slow and failing")
            })
            .unwrap_err();
        // 60 ms spent, a 50 ms delay would end past 100 ms: no second attempt.
        assert_eq!(err.len(), 1);
        assert_eq!(err.ended_by_deadline(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn the_clock_parks_when_unread_and_wakes_on_the_next_call() {
        let ticker = leaked();
        ticker.start();
        let waited = |ticking: bool| {
            (0..400).any(|_| {
                std::thread::sleep(Duration::from_millis(10));
                ticker.ticking() == ticking
            })
        };
        assert!(waited(true), "the first call starts the clock");
        assert!(waited(false), "unread for {IDLE:?}, the clock parks");
        let before = ticker.now();
        let start = ticker.start();
        assert!(
            start >= before,
            "a parked clock is not read: the precise time is"
        );
        assert!(waited(true), "the call woke the clock");
    }
}
