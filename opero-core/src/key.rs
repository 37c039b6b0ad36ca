//! Cache keys: [`FunctionId`], [`CacheKey`], the [`KeyFn`] trait and the default [`StableKey`].

use std::fmt;
use std::panic::Location;

use serde::Serialize;
use xxhash_rust::xxh3::{xxh3_128_with_seed, Xxh3};

use crate::error::{ErrorKind, OperoError};

/// Names the function a cached call belongs to, so that two functions called with equal arguments
/// never share an entry.
///
/// A function is named by the user ([`FunctionId::named`], recommended for disk and Redis caches:
/// the entry then survives edits of the code around it), or by its type name plus the source
/// location where it was handed to opero ([`FunctionId::of`]). The location matters: closures in
/// one scope share a type name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionId<'a> {
    name: Option<&'a str>,
    type_name: &'static str,
    location: Option<&'static Location<'static>>,
}

impl<'a> FunctionId<'a> {
    /// A function named by the user. The name alone identifies it.
    pub fn named(name: &'a str) -> Self {
        FunctionId {
            name: Some(name),
            type_name: "",
            location: None,
        }
    }

    /// The function of type `F`, handed over at `location` (use `Location::caller()`).
    ///
    /// A named function (`fn fetch_user`) is identified by its path alone, so every call site
    /// shares its entries. A closure's type name is only unique within its scope, so a closure is
    /// identified by its type name and the location too.
    pub fn of<F: ?Sized>(location: &'static Location<'static>) -> FunctionId<'static> {
        let type_name = std::any::type_name::<F>();
        FunctionId {
            name: None,
            type_name,
            location: is_closure(type_name).then_some(location),
        }
    }

    /// This id, or `name` instead when one is given.
    pub fn or_named(self, name: Option<&'a str>) -> Self {
        match name {
            Some(n) => FunctionId::named(n),
            None => self,
        }
    }

    /// The user's name, if any.
    pub fn name(&self) -> Option<&'a str> {
        self.name
    }

    /// A 128-bit fingerprint of the identity: one-shot hashes of its parts, each seeded by the
    /// part's role so that parts cannot stand in for each other.
    fn fingerprint(&self) -> u128 {
        match self.name {
            Some(name) => xxh3_128_with_seed(name.as_bytes(), SEED_NAME),
            None => {
                // Type name and location are `'static`, so their addresses identify them for the
                // life of the process: a one-entry cache per thread spares a repeated call site
                // from hashing them again. Only the fingerprint, never an address, enters a key.
                let ids = (
                    self.type_name.as_ptr() as usize,
                    self.type_name.len(),
                    self.location
                        .map_or(0, |l| l as *const Location<'_> as usize),
                );
                LAST_FINGERPRINT.with(|last| {
                    let (cached_ids, cached_fp) = last.get();
                    if cached_ids == ids && ids.0 != 0 {
                        return cached_fp;
                    }
                    let fp = self.fingerprint_uncached();
                    last.set((ids, fp));
                    fp
                })
            }
        }
    }

    fn fingerprint_uncached(&self) -> u128 {
        let mut fp = xxh3_128_with_seed(self.type_name.as_bytes(), SEED_TYPE);
        if let Some(loc) = self.location {
            let at = (u64::from(loc.line()) << 32) | u64::from(loc.column());
            fp = fp.rotate_left(17) ^ xxh3_128_with_seed(loc.file().as_bytes(), at);
        }
        fp
    }

    /// A short label for keys people read (Redis): the name, or `fn-` and 16 hex digits of the
    /// identity's hash (computed only when printed).
    pub fn label(&self) -> FunctionLabel<'a> {
        match self.name {
            Some(n) => FunctionLabel::Named(n),
            None => FunctionLabel::Anonymous(*self),
        }
    }
}

/// The function part of a [`CacheKey`], printable without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionLabel<'a> {
    /// A user-given name.
    Named(&'a str),
    /// An unnamed function, printed as a hash of its type name and location.
    Anonymous(FunctionId<'a>),
}

impl fmt::Display for FunctionLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FunctionLabel::Named(n) => f.write_str(n),
            FunctionLabel::Anonymous(id) => write!(f, "fn-{:016x}", id.fingerprint() as u64),
        }
    }
}

/// The key of one cache entry: namespace, function label and a 128-bit hash.
///
/// `hash` covers the namespace, the function and the arguments; backends may key on it alone but
/// must keep namespaces apart. Its `Display` is `namespace:function:hash`, the Redis layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheKey<'a> {
    /// The namespace.
    pub namespace: &'a str,
    /// The function.
    pub function: FunctionLabel<'a>,
    /// The 128-bit hash of namespace, function and arguments.
    pub hash: u128,
}

impl fmt::Display for CacheKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{:032x}", self.namespace, self.function, self.hash)
    }
}

/// Turns a call's arguments into the 128-bit hash of its cache key.
///
/// The hash must cover the namespace, the function and the arguments, and must be the same for the
/// same inputs across restarts and rebuilds (never `TypeId`, `RandomState` or a pointer).
///
/// # Examples
///
/// A key function that ignores a request id in the arguments:
///
/// ```
/// use opero_core::{FunctionId, KeyFn, OperoError, StableKey};
/// use serde::Serialize;
///
/// struct IgnoreRequestId;
/// impl KeyFn for IgnoreRequestId {
///     fn hash<A: Serialize + ?Sized>(&self, ns: &str, f: &FunctionId<'_>, args: &A) -> Result<u128, OperoError> {
///         let mut value = serde_json::to_value(args).map_err(|e| OperoError::new(opero_core::ErrorKind::Codec, e.to_string()))?;
///         if let Some(map) = value.as_object_mut() { map.remove("request_id"); }
///         StableKey.hash(ns, f, &value)
///     }
/// }
///
/// #[derive(Serialize)]
/// struct Req { city: &'static str, request_id: u64 }
/// let f = FunctionId::named("weather");
/// let a = IgnoreRequestId.hash("ns", &f, &Req { city: "Oslo", request_id: 1 }).unwrap();
/// let b = IgnoreRequestId.hash("ns", &f, &Req { city: "Oslo", request_id: 2 }).unwrap();
/// assert_eq!(a, b);
/// ```
pub trait KeyFn: Send + Sync {
    /// The hash of namespace, function and arguments.
    fn hash<A: Serialize + ?Sized>(
        &self,
        namespace: &str,
        function: &FunctionId<'_>,
        args: &A,
    ) -> Result<u128, OperoError>;
}

impl<K: KeyFn + ?Sized> KeyFn for &K {
    fn hash<A: Serialize + ?Sized>(
        &self,
        namespace: &str,
        function: &FunctionId<'_>,
        args: &A,
    ) -> Result<u128, OperoError> {
        (**self).hash(namespace, function, args)
    }
}

impl<K: KeyFn + ?Sized> KeyFn for std::sync::Arc<K> {
    fn hash<A: Serialize + ?Sized>(
        &self,
        namespace: &str,
        function: &FunctionId<'_>,
        args: &A,
    ) -> Result<u128, OperoError> {
        (**self).hash(namespace, function, args)
    }
}

/// The default key function: XXH3-128 over the namespace, the function's identity and the
/// arguments serialized with postcard (a stable wire format), streamed without allocating.
///
/// # Examples
///
/// ```
/// use opero_core::{FunctionId, KeyFn, StableKey};
///
/// let f = FunctionId::named("geocode");
/// let a = StableKey.hash("opero", &f, &("Paris", 3u8)).unwrap();
/// assert_eq!(a, StableKey.hash("opero", &f, &("Paris", 3u8)).unwrap());
/// assert_ne!(a, StableKey.hash("other", &f, &("Paris", 3u8)).unwrap());
/// assert_ne!(a, StableKey.hash("opero", &FunctionId::named("route"), &("Paris", 3u8)).unwrap());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct StableKey;

impl KeyFn for StableKey {
    fn hash<A: Serialize + ?Sized>(
        &self,
        namespace: &str,
        function: &FunctionId<'_>,
        args: &A,
    ) -> Result<u128, OperoError> {
        // The input is built in place and only a reference travels through postcard: moving a
        // half-kilobyte buffer by value into the serializer cost more than hashing it.
        let mut input = KeyInput::new();
        let namespace = xxh3_128_with_seed(namespace.as_bytes(), SEED_NAMESPACE);
        input.put(&namespace.to_le_bytes());
        input.put(&function.fingerprint().to_le_bytes());
        postcard::serialize_with_flavor(args, Out(&mut input)).map_err(|e| {
            OperoError::new(ErrorKind::Codec, format!("cannot hash arguments: {e}"))
        })?;
        Ok(input.digest())
    }
}

/// Whether a type name is (or wraps) a closure's. Checked on every call, so the usual shapes,
/// `path::{{closure}}` and `&mut path::{{closure}}`, are recognised without a substring search.
fn is_closure(type_name: &str) -> bool {
    type_name.ends_with("{{closure}}")
        || (type_name.ends_with('>') && type_name.contains("{{closure}}"))
}

thread_local! {
    static LAST_FINGERPRINT: std::cell::Cell<((usize, usize, usize), u128)> =
        const { std::cell::Cell::new(((0, 0, 0), 0)) };
}

const SEED_NAMESPACE: u64 = 0x6f70_6572_6f2d_6e73; // "opero-ns"
const SEED_NAME: u64 = 0x6f70_6572_6f2d_666e; // "opero-fn"
const SEED_TYPE: u64 = 0x6f70_6572_6f2d_7479; // "opero-ty"

/// Room for the two 16-byte fingerprints and the usual arguments.
const INLINE: usize = 160;

/// The bytes a key hashes. Small inputs (the usual key) are gathered on the stack and hashed in
/// one shot, several times faster than XXH3's streaming form; larger ones spill into the
/// streaming hasher. Both give the same hash for the same bytes.
struct KeyInput {
    buf: [u8; INLINE],
    len: usize,
    stream: Option<Box<Xxh3>>,
}

impl KeyInput {
    fn new() -> Self {
        KeyInput {
            buf: [0; INLINE],
            len: 0,
            stream: None,
        }
    }

    fn digest(&self) -> u128 {
        match &self.stream {
            Some(stream) => stream.digest128(),
            None => xxhash_rust::xxh3::xxh3_128(&self.buf[..self.len]),
        }
    }
}

impl KeyInput {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if let Some(stream) = &mut self.stream {
            stream.update(bytes);
        } else if let Some(slot) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            slot.copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            let mut stream = Box::new(Xxh3::new());
            stream.update(&self.buf[..self.len]);
            stream.update(bytes);
            self.stream = Some(stream);
        }
    }
}

/// A postcard output that appends to a [`KeyInput`].
struct Out<'a>(&'a mut KeyInput);

impl postcard::ser_flavors::Flavor for Out<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.put(&[data]);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.put(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_pinned_across_builds() {
        // A change of this value means every disk and Redis entry ever written becomes a miss.
        let h = StableKey
            .hash("opero", &FunctionId::named("f"), &(1u32, "a"))
            .unwrap();
        assert_eq!(h, 0x166e8b0ed9bc9d72e3976e393ca52f7e_u128, "got {h:#x}");
    }

    #[test]
    fn closures_in_one_scope_get_different_ids() {
        fn id<F>(_: &F, loc: &'static Location<'static>) -> FunctionId<'static> {
            FunctionId::of::<F>(loc)
        }
        let a = |x: u32| x + 1;
        let b = |x: u32| x + 2;
        let ka = StableKey
            .hash("n", &id(&a, Location::caller()), &1u32)
            .unwrap();
        let kb = StableKey
            .hash("n", &id(&b, Location::caller()), &1u32)
            .unwrap();
        assert_ne!(ka, kb);
    }

    #[test]
    fn named_functions_share_keys_across_call_sites() {
        fn double(x: u32) -> u32 {
            x * 2
        }
        fn id<F>(_: F, loc: &'static Location<'static>) -> FunctionId<'static> {
            FunctionId::of::<F>(loc)
        }
        let here = id(double, Location::caller());
        let there = id(double, Location::caller());
        assert_eq!(here, there);
    }

    #[test]
    fn long_arguments_spill_to_the_streaming_hasher_with_the_same_result() {
        let f = FunctionId::named("f");
        let long = "x".repeat(3 * INLINE);
        let spilled = StableKey.hash("ns", &f, &long).unwrap();
        let mut one_shot = Vec::new();
        one_shot.extend_from_slice(&xxh3_128_with_seed(b"ns", SEED_NAMESPACE).to_le_bytes());
        one_shot.extend_from_slice(&f.fingerprint().to_le_bytes());
        one_shot.extend_from_slice(&postcard::to_stdvec(&long).unwrap());
        assert_eq!(spilled, xxhash_rust::xxh3::xxh3_128(&one_shot));
    }

    #[test]
    fn display_is_namespace_function_hash() {
        let k = CacheKey {
            namespace: "ns",
            function: FunctionLabel::Named("f"),
            hash: 0xab,
        };
        assert_eq!(k.to_string(), format!("ns:f:{:032x}", 0xab));
    }
}
