//! What a shared store holds is checked before it is served: an entry with a payload byte
//! changed (even one that still decodes, as a different string), a truncated entry, and entries
//! swapped between two keys are misses, the corrupt ones counted; with a signing key, an entry
//! written without the key or with another key is a counted miss, so a process that can write
//! to the store but lacks the key cannot plant values. On disk and on a real Redis.

use opero::{
    CacheBackend, CacheKey, DiskCache, FunctionId, Opero, RedisCache, RedisOptions, SigningKey,
    HEADER_LEN, SIGNED_HEADER_LEN,
};
use opero_tests::{cached_in, conformance, RedisServer};

/// Raw access to the store under a backend: read and write an entry's bytes by key.
trait Raw {
    fn read(&self, key: &CacheKey<'_>) -> Vec<u8>;
    fn write(&self, key: &CacheKey<'_>, bytes: Vec<u8>);
}

struct DiskRaw(std::path::PathBuf);

impl Raw for DiskRaw {
    fn read(&self, key: &CacheKey<'_>) -> Vec<u8> {
        cacache::read_sync(&self.0, key.to_string()).unwrap()
    }
    fn write(&self, key: &CacheKey<'_>, bytes: Vec<u8>) {
        // Through cacache, so its own content hash matches: only the codec can tell.
        cacache::write_sync(&self.0, key.to_string(), bytes).unwrap();
    }
}

struct RedisRaw(redis::Client);

impl Raw for RedisRaw {
    fn read(&self, key: &CacheKey<'_>) -> Vec<u8> {
        let mut c = self.0.get_connection().unwrap();
        redis::cmd("GET")
            .arg(key.to_string())
            .query(&mut c)
            .unwrap()
    }
    fn write(&self, key: &CacheKey<'_>, bytes: Vec<u8>) {
        let mut c = self.0.get_connection().unwrap();
        redis::cmd("SET")
            .arg(key.to_string())
            .arg(bytes)
            .query::<()>(&mut c)
            .unwrap();
    }
}

fn key_of<'k, C: opero::KeyScope>(opero: &'k Opero<C>, arg: &str) -> CacheKey<'k> {
    opero.key(&FUNCTION, arg).unwrap()
}

/// The function the pipeline's name gives its calls (a key borrows its function).
static FUNCTION: std::sync::LazyLock<FunctionId<'static>> =
    std::sync::LazyLock::new(|| FunctionId::named("profile"));

fn profile(user: &str) -> Result<String, String> {
    Ok(format!("profile of {user}"))
}

/// Caches `user`'s value, alters its stored bytes with `alter`, and asks again: the work runs
/// (a miss, never the altered value); `counted` says whether the miss is a counted cache error.
fn altered_is_a_miss<C: CacheBackend>(
    opero: &Opero<C>,
    raw: &dyn Raw,
    user: &str,
    counted: bool,
    alter: impl FnOnce(&mut Vec<u8>),
) {
    assert_eq!(opero.call(user, profile).unwrap(), profile(user).unwrap());
    let key = key_of(opero, user);
    let mut bytes = raw.read(&key);
    alter(&mut bytes);
    raw.write(&key, bytes);
    let before = opero.metrics();
    let runs = std::cell::Cell::new(0);
    let got = opero
        .call(user, |u: &str| {
            runs.set(runs.get() + 1);
            profile(u)
        })
        .unwrap();
    assert_eq!(
        got,
        profile(user).unwrap(),
        "{user}: never the altered value"
    );
    assert_eq!(runs.get(), 1, "{user}: a miss, so the work ran");
    let after = opero.metrics();
    if counted {
        assert_eq!(
            after.cache_errors,
            before.cache_errors + 1,
            "{user}: counted"
        );
    }
    // The work's value replaced the bad entry.
    assert_eq!(
        opero
            .call(user, |_: &str| Err::<String, _>("not run".to_owned()))
            .unwrap(),
        profile(user).unwrap()
    );
}

fn tampering_is_caught<C: CacheBackend>(opero: &Opero<C>, raw: &dyn Raw, payload_at: usize) {
    // One payload byte changed so that it still decodes, as another string: "profile of Bob".
    altered_is_a_miss(opero, raw, "Bob", true, |b| {
        let last = b.len() - 1;
        assert_eq!(b[last], b'b');
        b[last] = b'x';
    });
    // One bit of the first payload byte.
    altered_is_a_miss(opero, raw, "Ann", true, |b| b[payload_at] ^= 0x01);
    // Truncated: one byte short, the header alone, half a header, nothing.
    altered_is_a_miss(opero, raw, "Cid", true, |b| {
        b.pop();
    });
    altered_is_a_miss(opero, raw, "Dee", false, |b| b.truncate(payload_at));
    altered_is_a_miss(opero, raw, "Eve", false, |b| b.truncate(HEADER_LEN / 2));
    altered_is_a_miss(opero, raw, "Fay", false, Vec::clear);
    // A header byte: the key the entry claims to be for.
    altered_is_a_miss(opero, raw, "Gus", false, |b| b[22] ^= 0x80);
    // Two entries swapped: neither answers for the other.
    for user in ["Hal", "Ivy"] {
        opero.call(user, profile).unwrap();
    }
    let (hal, ivy) = (key_of(opero, "Hal"), key_of(opero, "Ivy"));
    let (hal_bytes, ivy_bytes) = (raw.read(&hal), raw.read(&ivy));
    raw.write(&hal, ivy_bytes);
    raw.write(&ivy, hal_bytes);
    let hits = opero.metrics().cache_hits;
    for user in ["Hal", "Ivy"] {
        assert_eq!(opero.call(user, profile).unwrap(), profile(user).unwrap());
    }
    assert_eq!(
        opero.metrics().cache_hits,
        hits,
        "swapped entries are misses"
    );
}

/// A pipeline signing with `mine` and a writer signing with `theirs` (none: unsigned) share one
/// store: what the writer plants is a counted miss; what the pipeline itself wrote is a hit.
fn planted_without_the_key_is_a_counted_miss<C: CacheBackend, W: CacheBackend>(
    opero: &Opero<C>,
    writer: &Opero<W>,
) {
    let planted = |_: &str| Ok::<_, String>("planted".to_owned());
    writer.call("Zed", planted).unwrap();
    let errors = opero.metrics().cache_errors;
    assert_eq!(opero.call("Zed", profile).unwrap(), profile("Zed").unwrap());
    assert_eq!(opero.metrics().cache_errors, errors + 1, "counted");
    // Its own entry, signed with its key, is served.
    let hits = opero.metrics().cache_hits;
    assert_eq!(opero.call("Zed", planted).unwrap(), profile("Zed").unwrap());
    assert_eq!(opero.metrics().cache_hits, hits + 1);
}

fn secret(text: &str) -> SigningKey {
    SigningKey::new(text).unwrap()
}

const MINE: &str = "my signing key, 32 bytes long...";
const THEIRS: &str = "another signing key of 32 bytes.";

#[test]
fn on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let raw = DiskRaw(dir.path().to_owned());
    let ns = conformance::fresh_namespace();
    let plain = cached_in(DiskCache::new(dir.path()), &ns).named("profile");
    tampering_is_caught(&plain, &raw, HEADER_LEN);
    let signed = |key: &str, ns: &str| {
        cached_in(DiskCache::new(dir.path()).with_signing_key(secret(key)), ns).named("profile")
    };
    let ns = conformance::fresh_namespace();
    tampering_is_caught(&signed(MINE, &ns), &raw, SIGNED_HEADER_LEN);
    for writer_key in [None, Some(THEIRS)] {
        let ns = conformance::fresh_namespace();
        let writer = match writer_key {
            None => cached_in(DiskCache::new(dir.path()), &ns).named("profile"),
            Some(k) => signed(k, &ns),
        };
        planted_without_the_key_is_a_counted_miss(&signed(MINE, &ns), &writer);
    }
}

#[test]
fn on_redis() {
    let server = RedisServer::start();
    let raw = RedisRaw(redis::Client::open(server.url()).unwrap());
    let cache = |key: Option<&str>| {
        RedisCache::new(RedisOptions {
            signing_key: key.map(secret),
            ..RedisOptions::url(server.url())
        })
        .unwrap()
    };
    let ns = conformance::fresh_namespace();
    tampering_is_caught(
        &cached_in(cache(None), &ns).named("profile"),
        &raw,
        HEADER_LEN,
    );
    let ns = conformance::fresh_namespace();
    tampering_is_caught(
        &cached_in(cache(Some(MINE)), &ns).named("profile"),
        &raw,
        SIGNED_HEADER_LEN,
    );
    for writer_key in [None, Some(THEIRS)] {
        let ns = conformance::fresh_namespace();
        let writer = cached_in(cache(writer_key), &ns).named("profile");
        let mine = cached_in(cache(Some(MINE)), &ns).named("profile");
        planted_without_the_key_is_a_counted_miss(&mine, &writer);
    }
    // A signed entry is refused by a reader without the key too, rather than trusted unchecked.
    let ns = conformance::fresh_namespace();
    let mine = cached_in(cache(Some(MINE)), &ns).named("profile");
    let keyless = cached_in(cache(None), &ns).named("profile");
    planted_without_the_key_is_a_counted_miss(&keyless, &mine);
}

#[test]
fn the_signing_key_option_of_the_config_signs_redis_entries() {
    use opero::{BuildCache, CacheConfig};
    let server = RedisServer::start();
    let ns = conformance::fresh_namespace();
    let build = |key: Option<&str>| {
        let mut config = CacheConfig {
            namespace: ns.clone(),
            ..CacheConfig::enabled("redis")
        };
        config.backend_options.insert("url".into(), server.url());
        if let Some(key) = key {
            config
                .backend_options
                .insert("signing_key".into(), key.into());
        }
        cached_in(RedisCache::build(&config).unwrap(), &ns).named("profile")
    };
    planted_without_the_key_is_a_counted_miss(&build(Some(MINE)), &build(None));
    let mut config = CacheConfig::enabled("redis");
    config
        .backend_options
        .insert("signing_key".into(), "too short".into());
    let err = RedisCache::build(&config).unwrap_err();
    assert_eq!(err.field(), Some("signing_key"));
    assert!(!err.to_string().contains("too short"), "{err}");
}
