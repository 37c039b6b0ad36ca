//! What is stored in a cache cannot crash the process or answer for another key: an entry nested
//! deep enough to overflow the decoder's stack is a miss (counted), and an entry copied under
//! another key (another tenant's) is a miss too, on disk and on a real Redis.

use std::sync::Arc;

use opero::{
    CacheBackend, CacheKey, Codec, Decoded, DiskCache, ErrorKind, FunctionId, Opero, RedisCache,
    RedisOptions, HEADER_LEN, MAX_DECODE_DEPTH,
};
use opero_tests::{cached, RedisServer};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Tree {
    Leaf(u8),
    Node(Box<Tree>),
}

fn tree(levels: usize) -> Tree {
    (0..levels).fold(Tree::Leaf(7), |t, _| Tree::Node(Box::new(t)))
}

/// postcard bytes of a tree `levels` deep, written by hand: building the value itself would
/// recurse as deep as the decoder does.
fn nested_payload(levels: usize) -> Vec<u8> {
    let mut bytes = vec![1u8; levels];
    bytes.extend_from_slice(&[0, 7]);
    bytes
}

/// A well-formed entry for `key` (right type, layout, key and checksum) around `payload`.
fn entry(key: &CacheKey<'_>, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Codec::Postcard.encode(key, &Tree::Leaf(0), None).unwrap();
    bytes.truncate(HEADER_LEN);
    bytes[30..38].copy_from_slice(&xxhash_rust::xxh3::xxh3_64(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

fn pipeline<C: CacheBackend>(cache: C) -> Opero<C> {
    cached(cache).named("tree")
}

fn key_of<'k, C: opero::KeyScope>(opero: &'k Opero<C>, arg: &u32) -> CacheKey<'k> {
    opero.key(&FUNCTION, arg).unwrap()
}

/// The function the pipeline's name gives its calls (a key borrows its function).
static FUNCTION: std::sync::LazyLock<FunctionId<'static>> =
    std::sync::LazyLock::new(|| FunctionId::named("tree"));

#[test]
fn the_codec_decodes_shallow_trees_and_refuses_deep_ones() {
    let key = CacheKey {
        namespace: "ns",
        function: opero::FunctionLabel::Named("tree"),
        hash: 9,
    };
    let shallow = Codec::Postcard
        .decode::<Tree>(&key, &entry(&key, &nested_payload(10)))
        .unwrap();
    assert_eq!(shallow, Decoded::Value(tree(10)));
    for levels in [1_000, 1_000_000] {
        let err = Codec::Postcard
            .decode::<Tree>(&key, &entry(&key, &nested_payload(levels)))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Codec, "{levels}");
    }
    // JSON stops at the same depth.
    let deep = tree(MAX_DECODE_DEPTH + 10);
    let bytes = Codec::Json.encode(&key, &deep, None).unwrap();
    assert_eq!(
        Codec::Json.decode::<Tree>(&key, &bytes).unwrap_err().kind(),
        ErrorKind::Codec
    );
}

/// Plants `bytes` under the key of `call(&arg)`, then calls: a shallow tree is served, a deep one
/// is a counted miss that runs the work.
fn planted_entries_are_served_or_missed<C: CacheBackend>(
    opero: &Opero<C>,
    plant: impl Fn(&CacheKey<'_>, Vec<u8>),
) {
    for (arg, levels) in [(10u32, 10usize), (1_000, 1_000), (1_000_000, 1_000_000)] {
        let key = key_of(opero, &arg);
        plant(&key, entry(&key, &nested_payload(levels)));
        let errors_before = opero.metrics().cache_errors;
        let got = opero
            .call(&arg, |_: &u32| Ok::<_, String>(Tree::Leaf(1)))
            .unwrap();
        if levels == 10 {
            assert_eq!(got, tree(10), "a shallow planted entry is a hit");
        } else {
            assert_eq!(got, Tree::Leaf(1), "{levels} levels: a miss, the work ran");
            assert_eq!(
                opero.metrics().cache_errors,
                errors_before + 1,
                "and it was counted"
            );
            // The work's value replaced it.
            let again = opero
                .call(&arg, |_: &u32| Ok::<_, String>(Tree::Leaf(2)))
                .unwrap();
            assert_eq!(again, Tree::Leaf(1));
        }
    }
}

/// Caches tenant A's value, copies its raw entry under tenant B's key, and asks for B.
fn a_copied_entry_is_a_miss<C: CacheBackend>(
    opero: &Opero<C>,
    copy: impl Fn(&CacheKey<'_>, &CacheKey<'_>),
) {
    let profile = |tenant: &u32| Ok::<_, String>(Tree::Leaf(*tenant as u8));
    assert_eq!(opero.call(&1u32, profile).unwrap(), Tree::Leaf(1));
    copy(&key_of(opero, &1), &key_of(opero, &2));
    assert_eq!(
        opero.call(&2u32, profile).unwrap(),
        Tree::Leaf(2),
        "B got B's own value"
    );
    assert_eq!(opero.call(&1u32, profile).unwrap(), Tree::Leaf(1));
    assert_eq!(
        opero.metrics().cache_hits,
        1,
        "only A's own entry was a hit"
    );
}

#[test]
fn on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let opero = pipeline(DiskCache::new(&path));
    planted_entries_are_served_or_missed(&opero, |key, bytes| {
        cacache::write_sync(&path, key.to_string(), bytes).unwrap();
    });
    let opero = pipeline(DiskCache::new(&path));
    a_copied_entry_is_a_miss(&opero, |from, to| {
        let bytes = cacache::read_sync(&path, from.to_string()).unwrap();
        cacache::write_sync(&path, to.to_string(), bytes).unwrap();
    });
}

#[test]
fn on_redis() {
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let cache = Arc::new(RedisCache::new(RedisOptions::url(server.url())).unwrap());
    let opero = pipeline(Arc::clone(&cache));
    planted_entries_are_served_or_missed(&opero, |key, bytes| {
        let mut c = client.get_connection().unwrap();
        redis::cmd("SET")
            .arg(key.to_string())
            .arg(bytes)
            .query::<()>(&mut c)
            .unwrap();
    });
    let opero = pipeline(cache);
    a_copied_entry_is_a_miss(&opero, |from, to| {
        let mut c = client.get_connection().unwrap();
        redis::cmd("COPY")
            .arg(from.to_string())
            .arg(to.to_string())
            .query::<()>(&mut c)
            .unwrap();
    });
}
