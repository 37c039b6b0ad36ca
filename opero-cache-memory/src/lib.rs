//! In-memory cache backends for [opero](https://docs.rs/opero): [`MemoryCache`] on a sharded
//! S3-FIFO store ([quick_cache](https://docs.rs/quick_cache)), and `MokaCache` on
//! [moka](https://docs.rs/moka) (feature `moka`).
//!
//! Values are kept as they are, so a hit clones the value and never serializes it. Each entry
//! carries its own TTL; the cache holds at most `max_capacity` entries, evicting the least useful
//! ones past that.
//!
//! # Examples
//!
//! ```
//! use opero_cache_memory::MemoryCache;
//! use opero_core::{CacheConfig, Opero, OperoConfig};
//! use std::time::Duration;
//!
//! let cache = MemoryCache::with_capacity(1_000);
//! let cfg = OperoConfig {
//!     cache: CacheConfig { ttl: Some(Duration::from_secs(60)), ..CacheConfig::enabled("memory") },
//!     ..Default::default()
//! };
//! let opero = Opero::with_cache(cfg, cache).unwrap();
//! let mut runs = 0;
//! for _ in 0..3 {
//!     // The closure captures `runs`, so it needs a name to be cached.
//!     let v = opero.named("name_length").call("Oslo", |city: &str| { runs += 1; Ok::<_, String>(city.len()) }).unwrap();
//!     assert_eq!(v, 4);
//! }
//! assert_eq!(runs, 1);
//! assert_eq!(opero.metrics().cache_hits, 2);
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod erased;
mod front;
#[cfg(feature = "moka")]
mod moka_backend;

pub use backend::{MemoryCache, DEFAULT_MAX_CAPACITY};
#[cfg(feature = "moka")]
#[cfg_attr(docsrs, doc(cfg(feature = "moka")))]
pub use moka_backend::MokaCache;
