//! A cache entry belongs to one function: two different functions called with equal arguments
//! never read each other's values, on memory, disk and a real Redis.
//!
//! opero identifies a callable automatically only when its type is the whole function (a `fn`
//! item, a closure that captures nothing). A `fn` pointer, a `dyn Fn` or a closure that captures
//! state needs a name: a call of one without a name runs uncached (counted, warned once), and a
//! cached wrapper of one is refused with an error naming `name`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use opero::{CacheBackend, DiskCache, ErrorKind, MemoryCache, Opero, RedisCache, RedisOptions};
use opero_tests::{cached, cached_in, conformance::fresh_namespace, RedisServer};
use proptest::prelude::*;

type Op = fn(&u32) -> Result<u32, String>;
type DynOp = Box<dyn Fn(&u32) -> Result<u32, String>>;

fn double(x: &u32) -> Result<u32, String> {
    Ok(x * 2)
}

fn triple(x: &u32) -> Result<u32, String> {
    Ok(x * 3)
}

fn pipeline<C: CacheBackend>(cache: C) -> Opero<C> {
    cached(cache)
}

fn pipeline_in<C: CacheBackend>(cache: C, namespace: &str) -> Opero<C> {
    cached_in(cache, namespace)
}

// ===== the five cases, written once for every backend =====

/// Two `fn` pointers of one signature at two call sites.
fn two_fn_pointers_at_two_call_sites<C: CacheBackend>(opero: &Opero<C>) {
    let (f, g): (Op, Op) = (double, triple);
    let a = opero.call(&7, f).unwrap();
    let b = opero.call(&7, g).unwrap();
    assert_eq!((a, b), (14, 21));
    let m = opero.metrics();
    assert_eq!(
        m.cache_hits, 0,
        "nothing was cached under a guessed identity"
    );
    assert_eq!(m.cache_unidentified, 2, "each uncached call is counted");

    // Named, they are cached, each under its own name.
    for _ in 0..2 {
        assert_eq!(opero.named("double").call(&7, f).unwrap(), 14);
        assert_eq!(opero.named("triple").call(&7, g).unwrap(), 21);
    }
    assert_eq!(opero.metrics().cache_hits, 2);
}

/// Two `fn` pointers taken from a dispatch table, one call site.
fn fn_pointers_from_a_dispatch_table<C: CacheBackend>(opero: &Opero<C>) {
    let table: [Op; 2] = [double, triple];
    let mut got = Vec::new();
    for _ in 0..2 {
        got.clear();
        for f in table {
            got.push(opero.call(&7, f).unwrap());
        }
        assert_eq!(got, [14, 21]);
    }
    assert_eq!(opero.metrics().cache_hits, 0);
}

/// Two boxed `dyn Fn` of one signature.
fn two_boxed_dyn_fns<C: CacheBackend>(opero: &Opero<C>) {
    let boxes: Vec<DynOp> = vec![Box::new(|x| Ok(x * 2)), Box::new(|x| Ok(x * 3))];
    for _ in 0..2 {
        let got: Vec<u32> = boxes.iter().map(|f| opero.call(&1, f).unwrap()).collect();
        assert_eq!(got, [2, 3]);
    }
    assert_eq!(opero.metrics().cache_hits, 0);
}

/// Two wrapped `fn` pointers: refused without a name, separate entries with one.
fn two_wrapped_fn_pointers<C: CacheBackend>(opero: &Opero<C>) {
    let (f, g): (Op, Op) = (double, triple);
    let err = opero
        .wrap(f)
        .err()
        .expect("an unnamed fn pointer is refused");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert_eq!(err.field(), Some("name"));
    assert!(
        err.to_string().contains(".name("),
        "the error names the fix: {err}"
    );

    let wrapped_double = opero.named("double").wrap(f).unwrap();
    let wrapped_triple = opero.named("triple").wrap(g).unwrap();
    for _ in 0..2 {
        assert_eq!(wrapped_double.call(&7).unwrap(), 14);
        assert_eq!(wrapped_triple.call(&7).unwrap(), 21);
    }
    assert_eq!(opero.metrics().cache_hits, 2);

    // One name on one pipeline wraps one function.
    let err = opero.named("double").wrap(g).err().expect("a taken name");
    assert_eq!(err.field(), Some("name"));
    assert!(
        err.to_string().contains("already names another function"),
        "{err}"
    );
}

/// Closures handed to opero by a generic helper of the user's that lacks `#[track_caller]`: one
/// call site and one type name for two functions.
fn closures_through_a_generic_helper<C: CacheBackend>(opero: &Opero<C>) {
    fn helper<C: CacheBackend, F: Fn(&u32) -> Result<u32, String>>(
        opero: &Opero<C>,
        x: u32,
        f: F,
    ) -> u32 {
        opero.call(&x, f).unwrap()
    }
    for _ in 0..2 {
        let a = helper(opero, 3, |x| Ok(x * 2));
        let b = helper(opero, 3, |x| Ok(x + 47));
        assert_eq!((a, b), (6, 50));
    }
    // Closures that capture state share one type whatever they captured.
    fn times(k: u32) -> impl Fn(&u32) -> Result<u32, String> {
        move |x| Ok(x * k)
    }
    for _ in 0..2 {
        let a = helper(opero, 3, times(2));
        let b = helper(opero, 3, times(9));
        assert_eq!((a, b), (6, 27));
    }
}

fn every_case<C: CacheBackend + Clone>(cache: C) {
    two_fn_pointers_at_two_call_sites(&pipeline(cache.clone()));
    fn_pointers_from_a_dispatch_table(&pipeline(cache.clone()));
    two_boxed_dyn_fns(&pipeline(cache.clone()));
    two_wrapped_fn_pointers(&pipeline(cache.clone()));
    closures_through_a_generic_helper(&pipeline(cache));
}

#[test]
fn on_the_memory_cache() {
    every_case(Arc::new(MemoryCache::default()));
}

#[test]
fn on_the_disk_cache() {
    let dir = tempfile::tempdir().unwrap();
    every_case(Arc::new(DiskCache::new(dir.path())));
}

#[test]
fn on_redis() {
    let server = RedisServer::start();
    let cache = RedisCache::new(RedisOptions::url(server.url())).unwrap();
    every_case(Arc::new(cache));
}

/// Two pipelines on one disk directory, as two processes would have: each named wrapper reads
/// only its own entries, and a later pipeline finds them.
#[test]
fn named_wrappers_on_one_disk_directory_keep_their_entries_apart() {
    let dir = tempfile::tempdir().unwrap();
    let ns = fresh_namespace();
    let (f, g): (Op, Op) = (double, triple);
    let first = pipeline_in(DiskCache::new(dir.path()), &ns);
    let second = pipeline_in(DiskCache::new(dir.path()), &ns);
    assert_eq!(first.named("double").wrap(f).unwrap().call(&7).unwrap(), 14);
    assert_eq!(
        second.named("triple").wrap(g).unwrap().call(&7).unwrap(),
        21
    );
    let later = pipeline_in(DiskCache::new(dir.path()), &ns);
    let runs = AtomicU32::new(0);
    let counted = |x: &u32| {
        runs.fetch_add(1, Ordering::Relaxed);
        Ok::<_, String>(x * 1000)
    };
    assert_eq!(later.named("double").call(&7, counted).unwrap(), 14);
    assert_eq!(later.named("triple").call(&7, counted).unwrap(), 21);
    assert_eq!(runs.load(Ordering::Relaxed), 0, "both were hits");
}

/// Functions that identify themselves keep being cached without a name.
#[test]
fn fn_items_and_closures_that_capture_nothing_are_cached_without_a_name() {
    let opero = pipeline(MemoryCache::default());
    for _ in 0..2 {
        assert_eq!(opero.call(&7, double).unwrap(), 14);
        assert_eq!(opero.call(&7, triple).unwrap(), 21);
        assert_eq!(opero.call(&7, |x: &u32| Ok::<_, String>(x + 1)).unwrap(), 8);
    }
    let m = opero.metrics();
    assert_eq!(
        (m.cache_hits, m.cache_misses, m.cache_unidentified),
        (3, 3, 0)
    );
    // A fn item is its path: wrapped anywhere, it shares its entries.
    assert_eq!(opero.wrap(double).unwrap().call(&7).unwrap(), 14);
    assert_eq!(opero.metrics().cache_hits, 4);
}

/// With the cache off nothing needs a name.
#[test]
fn without_a_cache_nothing_needs_a_name() {
    let opero = Opero::<MemoryCache>::builder().retries(0).build().unwrap();
    let k = 5;
    let f: Op = double;
    assert_eq!(opero.wrap(f).unwrap().call(&1).unwrap(), 2);
    assert_eq!(
        opero
            .wrap(move |x: &u32| Ok::<_, String>(x + k))
            .unwrap()
            .call(&1)
            .unwrap(),
        6
    );
    assert_eq!(opero.metrics().cache_unidentified, 0);
}

/// The builders refuse a cached callable without identity, naming the fix.
#[test]
fn builders_refuse_an_unnamed_cached_closure_that_captures_state() {
    let k = 5;
    let err = Opero::<MemoryCache>::builder()
        .cache(true)
        .wrap(move |x: &u32| Ok::<_, String>(x + k))
        .err()
        .expect("refused");
    assert_eq!(err.field(), Some("name"));
    let named = Opero::<MemoryCache>::builder()
        .cache(true)
        .name("plus_k")
        .wrap(move |x: &u32| Ok::<_, String>(x + k))
        .unwrap();
    assert_eq!(named.call(&1).unwrap(), 6);
    assert_eq!(named.call(&1).unwrap(), 6);
    assert_eq!(named.opero().metrics().cache_hits, 1);

    let err = opero::opmap()
        .cache(true)
        .progress(false)
        .wrap(move |x: &u32| Ok::<_, String>(x + k))
        .expect_err("refused");
    assert_eq!(err.field(), Some("name"));
    let map = opero::opmap()
        .cache(true)
        .progress(false)
        .name("plus_k")
        .wrap(move |x: &u32| Ok::<_, String>(x + k))
        .unwrap();
    let out: Vec<u32> = map.call([1, 2]).into_iter().map(Result::unwrap).collect();
    assert_eq!(out, [6, 7]);
}

// ===== property: distinct names never read each other's entries =====

fn named_pairs_never_share<C: CacheBackend>(opero: &Opero<C>, a: &str, b: &str, arg: u64) {
    // Each function's answer depends on its name, so a shared entry would show.
    let answer = |name: &str, x: u64| x.wrapping_mul(31) ^ name.len() as u64 ^ hash(name);
    for name in [a, b, a, b] {
        let got = opero
            .named(name.to_owned())
            .call(&arg, |x: &u64| Ok::<_, String>(answer(name, *x)))
            .unwrap();
        assert_eq!(
            got,
            answer(name, arg),
            "{name} read another function's entry"
        );
    }
}

fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn distinct_names() -> impl Strategy<Value = (String, String)> {
    ("[a-z_]{1,12}", "[a-z_]{1,12}").prop_filter("distinct", |(a, b)| a != b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn distinct_named_functions_never_share_on_memory((a, b) in distinct_names(), arg: u64) {
        named_pairs_never_share(&pipeline(MemoryCache::default()), &a, &b, arg);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn distinct_named_functions_never_share_on_disk((a, b) in distinct_names(), arg: u64) {
        let dir = tempfile::tempdir().unwrap();
        named_pairs_never_share(&pipeline(DiskCache::new(dir.path())), &a, &b, arg);
    }
}

#[test]
fn distinct_named_functions_never_share_on_redis() {
    let server = RedisServer::start();
    let cache = Arc::new(RedisCache::new(RedisOptions::url(server.url())).unwrap());
    let opero = pipeline(cache);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(32));
    runner
        .run(&(distinct_names(), any::<u64>()), |((a, b), arg)| {
            named_pairs_never_share(&opero, &a, &b, arg);
            Ok(())
        })
        .unwrap();
}
