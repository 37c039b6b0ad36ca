//! Shared helpers of opero's integration tests: the backend [`conformance`] suite, checks of
//! single-flight across processes ([`flight`]), a real [`RedisServer`] and a real
//! [`RedisCluster`].

pub mod flight;
pub mod http_server;
mod redis_cluster;

/// The backend conformance suite (crate `opero-conformance`, which the backend crates' own tests
/// run too).
pub use opero_conformance as conformance;
pub use opero_conformance::{no_delay, RedisServer};
pub use redis_cluster::RedisCluster;

/// A pipeline with default retries that caches in `cache` under `namespace`.
pub fn cached_in<C: opero::CacheBackend>(cache: C, namespace: &str) -> opero::Opero<C> {
    let config = opero::OperoConfig {
        cache: opero::CacheConfig {
            enabled: true,
            namespace: namespace.to_owned(),
            ..opero::CacheConfig::default()
        },
        ..opero::OperoConfig::default()
    };
    opero::Opero::with_cache(config, cache).expect("a valid config")
}

/// [`cached_in`] a namespace of its own, so tests sharing a store never meet.
pub fn cached<C: opero::CacheBackend>(cache: C) -> opero::Opero<C> {
    cached_in(cache, &conformance::fresh_namespace())
}

/// Processes whose parent is `parent`, zombies included (an unreaped child is left behind too).
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name sits in parentheses and may hold spaces: the fields after it are
        // state, then the parent's pid.
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid = after_name
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}
