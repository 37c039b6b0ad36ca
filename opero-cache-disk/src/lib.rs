//! On-disk cache backend for [opero](https://docs.rs/opero), on [cacache](https://docs.rs/cacache).
//!
//! Entries survive restarts and rebuilds (keys are stable hashes, see `opero_core::StableKey`).
//! cacache writes content to a temporary file and renames it into place under its hash, and
//! appends index lines that carry their own checksum, so several processes can share a directory:
//! none loses the others' entries or reads a torn one. cacache has no expiry of its own, so the TTL
//! travels in each entry's header ([`opero_core::Codec`]).
//!
//! The blocking methods do blocking file I/O; the async ones use tokio's file API (cacache's
//! `tokio-runtime` feature) and never block the executor.
//!
//! # Examples
//!
//! ```
//! use opero_cache_disk::DiskCache;
//! use opero_core::{CacheConfig, Opero, OperoConfig};
//! use std::time::Duration;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let cfg = OperoConfig {
//!     cache: CacheConfig { ttl: Some(Duration::from_secs(60)), ..CacheConfig::enabled("disk") },
//!     ..Default::default()
//! };
//! let opero = Opero::with_cache(cfg, DiskCache::new(dir.path())).unwrap();
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

pub use backend::DiskCache;
