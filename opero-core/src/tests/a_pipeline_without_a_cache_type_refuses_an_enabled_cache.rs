//! `NoCache` stores nothing, so a config that enables the cache on it is refused by name rather
//! than silently not caching; the single-flight lease a backend hands out reads back as given.

use crate::{CacheConfig, FlightLease, NoCache, Opero, OperoConfig};

#[test]
fn an_enabled_cache_on_a_no_cache_pipeline_is_refused_by_name() {
    let config = OperoConfig {
        cache: CacheConfig::enabled("memory"),
        ..Default::default()
    };
    let err = Opero::<NoCache>::new(config).unwrap_err();
    assert_eq!(err.field(), Some("cache.enabled"));
    assert_eq!(err.value(), Some("true"));
    assert!(Opero::<NoCache>::new(OperoConfig::default()).is_ok());
}

#[test]
fn a_flight_lease_keeps_its_token_and_whether_the_entry_was_absent() {
    let lease = FlightLease::new("token-1");
    assert_eq!(lease.token(), "token-1");
    assert!(!lease.entry_absent());
    let absent = lease.with_entry_absent();
    assert!(absent.entry_absent());
    assert_eq!(absent.token(), "token-1");
}
