//! A memory cache keys on a process-local hash (`KeyFn::hash_local`), cheaper than the stable one
//! that disk and Redis keep across restarts. The local key must keep every distinction the
//! stable key makes (namespace, function, arguments), `Opero::key` must give the key the calls
//! use, and a key function of one's own must apply to memory keys unchanged.

use std::collections::HashSet;

use opero::{
    namespace_fingerprint, CacheBackend, DiskCache, FunctionId, KeyFn, MemoryCache, MokaCache,
    OperoError, StableKey,
};
use opero_tests::cached_in;
use serde::Serialize;

fn square(x: &u64) -> Result<u64, String> {
    Ok(x * x)
}

#[test]
fn opero_key_is_the_key_a_memory_call_stores_under() {
    let opero = cached_in(MemoryCache::default(), "local-keys");
    let f = FunctionId::named("square");
    opero.named("square").call(&12u64, square).unwrap();
    let key = opero.key(&f, &12u64).unwrap();
    assert_eq!(opero.cache().unwrap().get::<u64>(&key).unwrap(), Some(144));
    let stable = StableKey.hash("local-keys", &f, &12u64).unwrap();
    assert_ne!(key.hash, stable, "memory keys take the local hash");
    assert_eq!(
        key.hash,
        StableKey
            .hash_local(
                "local-keys",
                namespace_fingerprint("local-keys"),
                &f,
                &12u64
            )
            .unwrap()
    );
}

#[test]
fn disk_keys_stay_the_stable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let opero = cached_in(DiskCache::new(dir.path()), "stable-keys");
    let f = FunctionId::named("square");
    let key = opero.key(&f, &12u64).unwrap();
    assert_eq!(key.hash, StableKey.hash("stable-keys", &f, &12u64).unwrap());
    opero.named("square").call(&12u64, square).unwrap();
    assert_eq!(opero.cache().unwrap().get::<u64>(&key).unwrap(), Some(144));
}

#[derive(Serialize)]
enum Shape {
    Dot,
    Line(u8),
    Box { w: u8, h: u8 },
}

/// Every (namespace, function, value) of one argument type: all their local keys differ. (Values
/// of two types may share bytes, as they do in the stable key's postcard: one function takes one
/// argument type.)
fn all_distinct<A: Serialize>(values: &[A]) {
    let names = ["a", "b", "ab", ""];
    let functions = [
        FunctionId::named("f"),
        FunctionId::named("g"),
        FunctionId::named("a"),
    ];
    let mut seen = HashSet::new();
    for ns in names {
        let ns_fp = namespace_fingerprint(ns);
        for f in &functions {
            for (i, value) in values.iter().enumerate() {
                let hash = StableKey.hash_local(ns, ns_fp, f, value).unwrap();
                assert!(
                    seen.insert(hash),
                    "a repeated key: {ns:?}, {f:?}, value {i}"
                );
            }
        }
    }
}

#[test]
fn distinct_namespaces_functions_and_arguments_get_distinct_local_keys() {
    all_distinct(&[0u64, 1, 255, 256, u64::MAX]);
    all_distinct(&[("ab", "c"), ("a", "bc"), ("", "abc"), ("abc", "")]);
    all_distinct(&[None, Some(0u8), Some(1)]);
    all_distinct(&[vec![], vec![0u8], vec![0, 0], vec![1; 500], vec![1; 501]]);
    all_distinct(&[
        Shape::Dot,
        Shape::Line(0),
        Shape::Box { w: 0, h: 0 },
        Shape::Box { w: 1, h: 0 },
        Shape::Box { w: 0, h: 1 },
    ]);
}

#[test]
fn long_arguments_hit_and_miss_as_short_ones_do() {
    let opero = cached_in(MokaCache::default(), "long-args");
    let mut runs = 0;
    let long = "z".repeat(10_000);
    let mut other = long.clone();
    other.push('!');
    for text in [&long, &other, &long, &other] {
        let got = opero
            .named("len")
            .call(text.as_str(), |s: &str| {
                runs += 1;
                Ok::<_, String>(s.len())
            })
            .unwrap();
        assert_eq!(got, text.len());
    }
    assert_eq!(runs, 2);
}

/// A key function that ignores the second field of a pair: a user's own rule.
struct FirstOnly;

impl KeyFn for FirstOnly {
    fn hash<A: Serialize + ?Sized>(
        &self,
        ns: &str,
        f: &FunctionId<'_>,
        args: &A,
    ) -> Result<u128, OperoError> {
        let value = serde_json::to_value(args).unwrap();
        StableKey.hash(ns, f, &value[0])
    }
}

#[test]
fn a_key_function_of_ones_own_keys_memory_entries_too() {
    let opero = opero::Opero::<MemoryCache>::builder()
        .cache(true)
        .key_fn(FirstOnly)
        .build()
        .unwrap();
    let mut runs = 0;
    for pair in [(1u32, 10u32), (1, 20), (2, 10)] {
        opero
            .named("first")
            .call(&pair, |p: &(u32, u32)| {
                runs += 1;
                Ok::<_, String>(p.0)
            })
            .unwrap();
    }
    assert_eq!(runs, 2, "(1, 20) is a hit under the user's key");
}
