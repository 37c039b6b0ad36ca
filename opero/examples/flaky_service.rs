//! opero's main job on its embedded defaults: a flaky weather service, reached through retries with
//! backoff, a fallback across API keys (one of them revoked), a memory cache and a rate limit.
//!
//! Run it with `cargo run -p opero --example flaky_service` (no server needed). Pass a number to
//! change the random seed of the simulated failures: `... --example flaky_service -- 42`.
#![allow(clippy::print_stdout)] // an example talks to its reader

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opero::{Fallbacks, Jitter, RetryOn};

/// What the simulated service can answer besides a forecast.
#[derive(Debug, Clone, PartialEq)]
enum ServiceError {
    /// The key was revoked: retrying with it is pointless.
    Unauthorized,
    /// The service is overloaded: worth another try.
    Unavailable,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::Unauthorized => f.write_str("401 unauthorized"),
            ServiceError::Unavailable => f.write_str("503 unavailable"),
        }
    }
}

/// The API keys, as a deployment would hold them. They are secrets: only their index is shown.
const KEYS: [&str; 3] = ["sk-revoked-7f3a", "sk-primary-91cc", "sk-backup-04be"];
const REVOKED: usize = 0;

/// The simulated service: revokes key 0, fails 45% of all other calls, answers in 5 ms.
struct WeatherService {
    rng: Mutex<fastrand::Rng>,
    calls: AtomicU32,
}

impl WeatherService {
    fn forecast(&self, city: &str, key: &str) -> Result<Forecast, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
        if key == KEYS[REVOKED] {
            return Err(ServiceError::Unauthorized);
        }
        if self.rng.lock().expect("rng lock").f64() < 0.45 {
            return Err(ServiceError::Unavailable);
        }
        let served_by = KEYS.iter().position(|k| *k == key).unwrap_or(usize::MAX);
        let degrees = city.bytes().map(u32::from).sum::<u32>() % 35;
        Ok(Forecast {
            city: city.to_owned(),
            degrees,
            served_by,
        })
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Forecast {
    city: String,
    degrees: u32,
    served_by: usize,
}

fn main() -> Result<(), opero::OperoError> {
    let seed = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let service = WeatherService {
        rng: Mutex::new(fastrand::Rng::with_seed(seed)),
        calls: AtomicU32::new(0),
    };

    let keys = Fallbacks::new(KEYS.to_vec())?;
    let forecast = opero::opero()
        .name("forecast")
        .retries(2)
        .min_delay(Duration::from_millis(20))
        .backoff_factor(2.0)
        .jitter(Jitter::None)
        // A revoked key is not retried: the pipeline moves straight on to the next key.
        .retry_on(RetryOn::when(|e: &ServiceError| {
            *e == ServiceError::Unavailable
        }))
        .cache(true)
        .cache_ttl(Duration::from_secs(60))
        .rate_limit(20.0)
        .burst(5)
        .wrap_fallback(keys, |city: &str, key: &&str| service.forecast(city, key))?;

    println!("opero example: a flaky weather service (seed {seed})");
    println!("pipeline: memory cache (60 s) -> 3 API keys (#0 revoked) -> 2 retries, 20/40 ms backoff -> 20 calls/s");
    println!();
    println!(
        "{:<4} {:<10} {:>6} {:>8} {:>9}  outcome",
        "#", "city", "calls", "ms", "source"
    );

    let cities = [
        "Oslo", "Lisbon", "Oslo", "Nairobi", "Lima", "Lisbon", "Osaka", "Oslo", "Quito", "Lima",
        "Nairobi", "Perth",
    ];
    let start = Instant::now();
    let mut failed = 0;
    for (i, city) in cities.iter().enumerate() {
        let calls_before = service.calls.load(Ordering::SeqCst);
        let hits_before = forecast.opero().metrics().cache_hits;
        let t = Instant::now();
        let result = forecast.call(*city);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let calls = service.calls.load(Ordering::SeqCst) - calls_before;
        let source = if forecast.opero().metrics().cache_hits > hits_before {
            "cache"
        } else {
            "service"
        };
        let outcome = match result {
            Ok(f) => format!("{} {}°C, served by key #{}", f.city, f.degrees, f.served_by),
            Err(e) => {
                failed += 1;
                format!("FAILED: {e}")
            }
        };
        println!(
            "{:<4} {:<10} {:>6} {:>8.1} {:>9}  {outcome}",
            i + 1,
            city,
            calls,
            ms,
            source
        );
    }

    let m = forecast.opero().metrics();
    println!();
    println!(
        "{} requests in {:.0} ms: {} answered, {} failed",
        cities.len(),
        start.elapsed().as_secs_f64() * 1e3,
        cities.len() - failed,
        failed
    );
    println!(
        "service calls {} | failed attempts {} | retries {} | key switches {} | cache hits {} / misses {} | rate-limit waits {}",
        service.calls.load(Ordering::SeqCst),
        m.failed_attempts,
        m.retries,
        m.fallback_switches,
        m.cache_hits,
        m.cache_misses,
        m.rate_limit_waits
    );
    Ok(())
}
