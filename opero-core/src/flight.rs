//! Single-flight: concurrent cache misses of one key in one process run the work once.
//!
//! The first caller to miss becomes the leader of a [`Flight`] for that key; later callers that
//! miss while it runs follow it and take a clone of its value. Sync followers block on a condvar,
//! async followers await a `Notify`, so either kind can follow either kind of leader. A leader
//! that fails, panics or is cancelled publishes no value: its followers then run the work
//! themselves, each getting its own result or error (errors are never shared).

use std::any::Any;
use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

type Shared = Arc<dyn Any + Send + Sync>;

/// What a flight ended with: the leader's value, or `None` when it produced none.
type Outcome = Option<Shared>;

/// The flights in progress of one pipeline, by key hash.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<u128, Arc<Flight>>>,
}

/// One run of the work that several callers wait for.
#[derive(Default)]
pub(crate) struct Flight {
    /// `None` while the leader runs.
    outcome: Mutex<Option<Outcome>>,
    cond: Condvar,
    notify: Notify,
}

pub(crate) enum Join<'a> {
    Leader(LeaderGuard<'a>),
    Follower(Arc<Flight>),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks, but a poisoned lock must not wedge every caller.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Flights {
    /// Leads a new flight for `hash`, or follows the one in progress.
    pub(crate) fn join(&self, hash: u128) -> Join<'_> {
        let mut map = lock(&self.map);
        if let Some(flight) = map.get(&hash) {
            return Join::Follower(Arc::clone(flight));
        }
        let flight = Arc::new(Flight::default());
        map.insert(hash, Arc::clone(&flight));
        Join::Leader(LeaderGuard {
            flights: self,
            hash,
            flight,
            finished: false,
        })
    }
}

impl Flight {
    /// Blocks until the leader is done.
    pub(crate) fn wait(&self) -> Outcome {
        let mut outcome = lock(&self.outcome);
        loop {
            if let Some(done) = &*outcome {
                return done.clone();
            }
            outcome = self
                .cond
                .wait(outcome)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Waits for the leader without blocking the executor.
    pub(crate) async fn wait_async(&self) -> Outcome {
        loop {
            // Registering before checking means a completion between the check and the await
            // still wakes us.
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if let Some(done) = &*lock(&self.outcome) {
                return done.clone();
            }
            notified.await;
        }
    }
}

/// The leader's duty to end its flight; dropping it unfinished (an error, a panic, a cancelled
/// future) ends the flight without a value so followers never wait forever.
pub(crate) struct LeaderGuard<'a> {
    flights: &'a Flights,
    hash: u128,
    flight: Arc<Flight>,
    finished: bool,
}

impl LeaderGuard<'_> {
    /// Ends the flight with `value` (cloned only when someone follows).
    #[cfg(test)]
    pub(crate) fn finish<T: Clone + Send + Sync + 'static>(self, value: Option<&T>) {
        self.finish_with(|| value.map(|v| Arc::new(v.clone()) as Shared));
    }

    /// Ends the flight with the value `share` makes, called only when someone follows.
    pub(crate) fn finish_with(mut self, share: impl FnOnce() -> Outcome) {
        self.end(share);
    }

    fn end(&mut self, value: impl FnOnce() -> Outcome) {
        self.finished = true;
        {
            let mut map = lock(&self.flights.map);
            if map
                .get(&self.hash)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                map.remove(&self.hash);
            }
        }
        // Out of the map, nobody new can join: the count now only falls, so 1 means no follower.
        let outcome = if Arc::strong_count(&self.flight) > 1 {
            value()
        } else {
            None
        };
        *lock(&self.flight.outcome) = Some(outcome);
        self.flight.cond.notify_all();
        self.flight.notify.notify_waiters();
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.end(|| None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn followers_get_the_leaders_value() {
        let flights = Flights::default();
        let Join::Leader(guard) = flights.join(1) else {
            panic!("first caller leads")
        };
        let Join::Follower(flight) = flights.join(1) else {
            panic!("second caller follows")
        };
        std::thread::scope(|s| {
            let waiter = s.spawn(|| flight.wait());
            std::thread::sleep(Duration::from_millis(10));
            guard.finish(Some(&42u32));
            let got = waiter.join().unwrap().unwrap();
            assert_eq!(got.downcast_ref::<u32>(), Some(&42));
        });
        assert!(matches!(flights.join(1), Join::Leader(_)));
    }

    #[test]
    fn a_dropped_leader_releases_followers_without_a_value() {
        let flights = Flights::default();
        let leader = flights.join(7);
        let Join::Follower(flight) = flights.join(7) else {
            panic!("follows")
        };
        drop(leader);
        assert!(flight.wait().is_none());
    }

    #[tokio::test]
    async fn async_followers_wake() {
        let flights = Arc::new(Flights::default());
        let Join::Leader(guard) = flights.join(3) else {
            panic!()
        };
        let Join::Follower(flight) = flights.join(3) else {
            panic!()
        };
        let waiter = async { flight.wait_async().await };
        let finisher = async {
            tokio::task::yield_now().await;
            guard.finish(Some(&"v".to_string()));
        };
        let (got, ()) = tokio::join!(waiter, finisher);
        assert_eq!(got.unwrap().downcast_ref::<String>().unwrap(), "v");
    }
}
