//! The key function on its own: `StableKey` gives one key per namespace, function and
//! arguments, whatever their size; functions identify themselves by name, or by type and call
//! site, and two callables that cannot be told apart are refused rather than made to share.

use std::panic::Location;

use serde::Serialize;

use crate::{
    namespace_fingerprint, CacheKey, ErrorKind, FunctionId, FunctionLabel, KeyFn, OperoError,
    StableKey,
};

fn key<A: Serialize + ?Sized>(namespace: &str, function: &FunctionId<'_>, args: &A) -> u128 {
    StableKey.hash(namespace, function, args).unwrap()
}

#[track_caller]
fn here() -> &'static Location<'static> {
    Location::caller()
}

#[test]
fn equal_inputs_give_equal_keys_and_any_difference_another() {
    let f = FunctionId::named("f");
    let base = key("ns", &f, &(1u32, "a"));
    assert_eq!(base, key("ns", &f, &(1u32, "a")));
    assert_ne!(base, key("ns", &f, &(2u32, "a")));
    assert_ne!(base, key("other", &f, &(1u32, "a")));
    assert_ne!(base, key("ns", &FunctionId::named("g"), &(1u32, "a")));
    assert_ne!(namespace_fingerprint("a"), namespace_fingerprint("b"));
    assert_eq!(
        StableKey
            .hash_prepared("ns", namespace_fingerprint("ns"), &f, &(1u32, "a"))
            .unwrap(),
        base
    );
    // Behind a reference or an Arc, the same key.
    assert_eq!(
        <&StableKey as KeyFn>::hash(&&StableKey, "ns", &f, &(1u32, "a")).unwrap(),
        base
    );
    let shared = std::sync::Arc::new(StableKey);
    assert_eq!(
        shared
            .hash_prepared("ns", namespace_fingerprint("ns"), &f, &(1u32, "a"))
            .unwrap(),
        base
    );
}

#[test]
fn large_arguments_hash_as_the_same_bytes_would_in_one_piece() {
    let f = FunctionId::named("big");
    for len in [0usize, 10, 100, 1_000, 100_000] {
        let args: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut bytes = namespace_fingerprint("ns").to_le_bytes().to_vec();
        bytes.extend_from_slice(&f.fingerprint_bytes());
        bytes.extend_from_slice(&postcard::to_allocvec(&args).unwrap());
        assert_eq!(
            key("ns", &f, &args),
            xxhash_rust::xxh3::xxh3_128(&bytes),
            "{len} bytes"
        );
        if len > 0 {
            let mut last = args.clone();
            *last.last_mut().unwrap() ^= 1;
            assert_ne!(key("ns", &f, &args), key("ns", &f, &last));
        }
    }
}

/// A key function of a user's that implements only `hash`: the prepared form asks it.
struct Constant;

impl KeyFn for Constant {
    fn hash<A: Serialize + ?Sized>(
        &self,
        namespace: &str,
        _function: &FunctionId<'_>,
        _args: &A,
    ) -> Result<u128, OperoError> {
        Ok(namespace.len() as u128 + 7)
    }
}

#[test]
fn a_user_s_key_function_decides_the_prepared_key_too() {
    let f = FunctionId::named("f");
    assert_eq!(Constant.hash_prepared("abc", 99, &f, &1u8).unwrap(), 10);
}

/// A key function of a user's that keys on the arguments' JSON form alone.
struct JsonOnly;

impl KeyFn for JsonOnly {
    fn hash<A: Serialize + ?Sized>(
        &self,
        namespace: &str,
        function: &FunctionId<'_>,
        args: &A,
    ) -> Result<u128, OperoError> {
        let json = serde_json::to_string(args).unwrap();
        StableKey.hash(namespace, function, &json)
    }
}

#[test]
fn a_user_s_key_function_decides_the_in_process_key_too() {
    // A memory cache keys on `hash_local`: a key function that implements only `hash` must
    // keep its distinctions there, or two arguments would share one cached value.
    let f = FunctionId::named("f");
    let ns = namespace_fingerprint("ns");
    let local = |args: &(u32, &str)| JsonOnly.hash_local("ns", ns, &f, args).unwrap();
    assert_eq!(
        local(&(1, "a")),
        JsonOnly.hash("ns", &f, &(1u32, "a")).unwrap()
    );
    assert_ne!(local(&(1, "a")), local(&(2, "a")));
    assert_eq!(Constant.hash_local("abc", 99, &f, &1u8).unwrap(), 10);
}

#[test]
fn a_callable_that_does_not_identify_itself_gets_no_key() {
    let pointer = FunctionId::of::<fn(u8) -> u8>(here());
    assert!(!pointer.identifies());
    assert_eq!(pointer.type_name(), "fn(u8) -> u8");
    assert!(
        pointer.location().is_some(),
        "kept to name the place to fix"
    );
    let err = StableKey.hash("ns", &pointer, &1u8).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert_eq!(err.field(), Some("name"));
    // Given a name, it does.
    let named = pointer.or_named(Some("double"));
    assert!(named.identifies());
    assert_eq!(named.name(), Some("double"));
    assert_eq!(named.label(), FunctionLabel::Named("double"));
    assert_eq!(pointer.or_named(None), pointer);
    assert!(key("ns", &named, &1u8) != 0);
}

fn id_of<F>(_: &F, at: &'static Location<'static>) -> FunctionId<'static> {
    FunctionId::of::<F>(at)
}

#[test]
fn a_closure_is_identified_by_its_type_and_call_site() {
    let add = |x: u8| x + 1;
    let site = here();
    let a = id_of(&add, site);
    assert!(a.identifies());
    assert_eq!(a.name(), None);
    assert!(a.type_name().ends_with("{{closure}}"), "{}", a.type_name());
    assert_eq!(a.location(), Some(site));
    assert_eq!(a.label(), FunctionLabel::Anonymous(&a));
    // Again at the same site: the same identity (the repeated lookup is served from a cache).
    assert_eq!(id_of(&add, site), a);
    assert_eq!(id_of(&add, site), a);
    // The same closure called from two places on two lines, in the same column: two identities.
    let (other, again) = (
        here(), // one line...
        here(), // ...and the next, in the same column
    );
    assert_ne!(other.line(), again.line());
    let x = id_of(&add, other);
    let y = id_of(&add, again);
    assert!(x.identifies() && y.identifies());
    assert_ne!(x.fingerprint_bytes(), y.fingerprint_bytes());
    assert_ne!(key("ns", &x, &1u8), key("ns", &y, &1u8));
    assert_ne!(x.fingerprint_bytes(), [0; 16]);
}

#[test]
fn two_closures_that_share_a_type_name_and_a_site_are_refused_not_merged() {
    let site = here();
    let first = |x: u8| x;
    let second = |x: u8| x.wrapping_mul(2);
    let a = id_of(&first, site);
    let b = id_of(&second, site);
    assert_eq!(a.type_name(), b.type_name(), "closures of one function");
    assert!(a.identifies());
    assert!(
        !b.identifies(),
        "the second would share the first's entries"
    );
    assert!(StableKey.hash("ns", &b, &1u8).is_err());
    // The first keeps its identity, whichever was asked last.
    assert_eq!(id_of(&first, site), a);
    assert!(!id_of(&second, site).identifies());
}

#[test]
fn a_cache_key_reads_as_namespace_function_and_hash() {
    let key = CacheKey {
        namespace: "ns",
        function: FunctionLabel::Named("f"),
        hash: 0xab,
    };
    assert_eq!(key.to_string(), format!("ns:f:{:032x}", 0xab));
    let add = |x: u8| x + 1;
    let id = id_of(&add, here());
    let fingerprint = u128::from_le_bytes(id.fingerprint_bytes());
    assert_eq!(
        FunctionLabel::Anonymous(&id).to_string(),
        format!("fn-{:016x}", fingerprint as u64)
    );
}

fn double<T: std::ops::Add<Output = T> + Copy>(x: T) -> T {
    x + x
}

#[test]
fn a_function_keeps_one_identity_wherever_it_is_called_from() {
    let (one, two) = (
        here(), // one line...
        here(), // ...and the next
    );
    // A generic function's type name ends in its parameters (`double<u8>`): still a function.
    let a = id_of(&double::<u8>, one);
    let b = id_of(&double::<u8>, two);
    assert!(a.identifies());
    assert_eq!(a.fingerprint_bytes(), b.fingerprint_bytes());
    assert_eq!(
        a.location(),
        None,
        "a function's identity needs no call site"
    );
    assert_ne!(
        a.fingerprint_bytes(),
        id_of(&double::<u16>, one).fingerprint_bytes()
    );
}
