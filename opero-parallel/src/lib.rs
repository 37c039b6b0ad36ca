//! Executors and `opmap` for [opero](https://docs.rs/opero): one resilience pipeline (cache,
//! fallback, retry, rate limit) applied to every item of an iterable, `workers` at a time, with
//! one result per item.
//!
//! | mode | executor | for |
//! |---|---|---|
//! | [`Mode::Thread`] (default) | [`ThreadExecutor`]: `workers` OS threads | blocking work |
//! | [`Mode::Rayon`] | [`RayonExecutor`]: a rayon pool of `workers` threads | CPU-bound work |
//! | [`Mode::Async`] | [`TokioExecutor`]: tokio tasks, `workers` in flight | async functions |
//! | [`Mode::Process`], [`Mode::AsyncProcess`] | worker processes (procspawn), built with [`OpmapBuilder::wrap_process`] and [`OpmapBuilder::wrap_process_async`]; needs [`init_workers`] first in `main` | isolation from crashes and non-thread-safe code (cargo feature `process`, on by default) |
//!
//! Every item gets its own retries, fallback values and cache entry (namespace
//! `"opero_opmap_item"` unless set), and every attempt of every worker takes its permit from the
//! one rate limiter of the map (or, with [`RateLimitScope::PerWorker`], from its worker's own). A failing item, or one whose function panicked, becomes that
//! item's [`AllFailedError`](opero_core::AllFailedError); the other items are not affected.
//!
//! # Progress bar and logs
//!
//! With `progress` on (the default) and stderr a terminal, a bar shows position, rate, ETA and
//! failures so far. A library never installs a tracing subscriber, so to keep log lines from
//! tearing the bar, the application installs tracing-indicatif's layer and writes its logs
//! through the layer's writer; opmap then draws its bar through that layer:
//!
//! ```no_run
//! use tracing_indicatif::IndicatifLayer;
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//!
//! let indicatif = IndicatifLayer::new();
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer().with_writer(indicatif.get_stderr_writer()))
//!     .with(indicatif)
//!     .init();
//! ```
//!
//! # Examples
//!
//! ```
//! use opero_core::Fallbacks;
//! use opero_parallel::opmap;
//! use std::time::Duration;
//!
//! let mirrors = Fallbacks::new(vec!["down.example", "up.example"]).unwrap();
//! let fetch = opmap()
//!     .workers(2)
//!     .retries(1)
//!     .min_delay(Duration::ZERO)
//!     .progress(false)
//!     .wrap_fallback(mirrors, |page: &u32, mirror: &&str| {
//!         if mirror.starts_with("down") { Err("unreachable") } else { Ok(format!("{mirror}/{page}")) }
//!     })
//!     .unwrap();
//! let pages = fetch.call([1, 2, 3]);
//! assert_eq!(pages[2], Ok("up.example/3".to_string()));
//! assert_eq!(fetch.opero().metrics().fallback_switches, 3);
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod claims;
mod config;
mod executor;
#[cfg(feature = "process")]
mod last_words;
mod opmap;
#[cfg(feature = "process")]
mod process;
#[cfg(feature = "process")]
mod process_map;
mod progress;
mod slots;

pub use builder::OpmapBuilder;
pub use config::{
    Mode, OpmapConfig, RateLimitScope, DEFAULT_IN_FLIGHT_PER_WORKER, DEFAULT_NAMESPACE,
    DEFAULT_WORKERS,
};
pub use executor::{AnyAsyncExecutor, AnyExecutor, RayonExecutor, ThreadExecutor, TokioExecutor};
pub use opmap::{ItemResult, Opmap, OpmapAsync, OpmapIter};
#[cfg(feature = "process")]
pub use process::init_workers;
// Reached by `enable_process_test_support!` through `$crate`; not part of the documented API.
#[cfg(feature = "process")]
#[doc(hidden)]
pub use process::{__mark_workers_ready, __procspawn};
#[cfg(feature = "process")]
pub use process_map::{OpmapProcess, OpmapProcessAsync};

use opero_core::NoCache;

/// Starts an opmap builder without a cache backend (the facade's `opero::opmap()` picks one by
/// name; [`OpmapBuilder::<C>::new`](OpmapBuilder::new) takes any other): end the chain with
/// `.wrap(f)` or `.wrap_async(f)`.
///
/// # Examples
///
/// ```
/// use opero_parallel::opmap;
///
/// let double = opmap().workers(2).progress(false).wrap(|x: &i32| Ok::<_, String>(x * 2)).unwrap();
/// assert_eq!(double.call([1, 2, 3]), [Ok(2), Ok(4), Ok(6)]);
/// ```
pub fn opmap() -> OpmapBuilder<NoCache> {
    OpmapBuilder::new()
}
