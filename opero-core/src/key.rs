//! Cache keys: [`FunctionId`], [`CacheKey`], the [`KeyFn`] trait and the default [`StableKey`].

use std::cell::Cell;
use std::fmt;
use std::panic::Location;

use serde::Serialize;
use xxhash_rust::xxh3::{xxh3_128_with_seed, Xxh3};

use crate::error::{ErrorKind, OperoError};

/// Names the function a cached call belongs to, so that two functions called with equal arguments
/// never share an entry.
///
/// opero never guesses an identity it cannot know. A function is identified:
///
/// - by a name the user gives ([`FunctionId::named`]; recommended for disk and Redis caches: the
///   entries then survive edits of the code around it), or else
/// - automatically, only when the callable is **zero-sized**, so that its type is the whole
///   function: a `fn` item (`fn fetch_user`) by its path, and a closure that captures nothing by
///   its type name plus the source location where it was handed to opero (closures in one scope
///   share a type name).
///
/// Everything else does not identify itself: a `fn` pointer (every `fn(u32) -> u32` has one type),
/// a `dyn Fn`, a reference to a callable, and a closure that captures state (every instance of it
/// shares its type, whatever it captured). [`FunctionId::of`] marks those as unidentified
/// ([`identifies`](FunctionId::identifies) is false); a cached call of one runs uncached, and a
/// cached wrapper of one is refused, until it is named.
///
/// Two different zero-sized closures can still reach opero with one type name at one location,
/// through a generic helper of the user's that lacks `#[track_caller]`. Within a process the
/// first of them keeps the identity and the others are unidentified; name closures that travel
/// through helpers, or put `#[track_caller]` on the helper.
///
/// # Examples
///
/// ```
/// use opero_core::FunctionId;
/// use std::panic::Location;
///
/// fn double(x: u32) -> u32 { x * 2 }
/// fn id_of<F>(_: &F) -> FunctionId<'static> { FunctionId::of::<F>(Location::caller()) }
///
/// assert!(id_of(&double).identifies());                     // a fn item: its path
/// assert!(id_of(&|x: u32| x + 1).identifies());             // captures nothing: type and place
/// let k = 3;
/// assert!(!id_of(&move |x: u32| x + k).identifies());       // captures state
/// assert!(!id_of(&(double as fn(u32) -> u32)).identifies()); // a fn pointer
/// assert!(FunctionId::named("double").identifies());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionId<'a> {
    name: Option<&'a str>,
    type_name: &'static str,
    location: Option<&'static Location<'static>>,
    /// The identity's fingerprint: of the name, or of the automatic identity; zero for an
    /// unidentified function (no 128-bit hash is expected to be zero).
    fingerprint: u128,
}

impl<'a> FunctionId<'a> {
    /// A function named by the user. The name alone identifies it.
    pub fn named(name: &'a str) -> Self {
        Self::named_with_fingerprint(name, name_fingerprint(name))
    }

    /// A named function whose fingerprint ([`name_fingerprint`]) was computed once, by a
    /// pipeline that calls it many times.
    pub(crate) const fn named_with_fingerprint(name: &'a str, fingerprint: u128) -> Self {
        FunctionId {
            name: Some(name),
            type_name: "",
            location: None,
            fingerprint,
        }
    }

    /// The function of type `F`, handed over at `location` (use `Location::caller()`).
    ///
    /// A `fn` item is identified by its path alone, so every call site shares its entries. A
    /// closure that captures nothing is identified by its type name and the location. Any other
    /// callable is unidentified (see the type's documentation) until [`or_named`](Self::or_named)
    /// gives it a name.
    #[inline]
    pub fn of<F>(location: &'static Location<'static>) -> FunctionId<'static> {
        if std::mem::size_of::<F>() == 0 {
            // A call site called again (the usual case) is answered by this thread's last
            // identity, before any look at the type name.
            let site = location as *const Location<'_> as usize;
            if let Some((known_type, known_site, fp, closure)) = LAST_IDENTITY.with(Cell::get) {
                if known_type == typeid::of::<F>() && known_site == site {
                    return FunctionId::identified::<F>(location, fp, closure);
                }
            }
        }
        Self::of_slow::<F>(location)
    }

    /// [`of`](Self::of) for a callable this thread did not identify last.
    #[cold]
    #[inline(never)]
    fn of_slow<F>(location: &'static Location<'static>) -> FunctionId<'static> {
        let type_name = std::any::type_name::<F>();
        let closure = is_closure(type_name);
        if std::mem::size_of::<F>() == 0 {
            let fp = identify(
                typeid::of::<F>(),
                type_name,
                closure.then_some(location),
                location,
            );
            return FunctionId::identified::<F>(location, fp, closure);
        }
        FunctionId {
            name: None,
            type_name,
            // Kept for an unidentified function: warnings name the place to fix.
            location: Some(location),
            fingerprint: 0,
        }
    }

    /// The automatic identity of a zero-sized `F` whose fingerprint is `fp` (zero: unidentified).
    #[inline(always)]
    fn identified<F>(location: &'static Location<'static>, fp: u128, closure: bool) -> Self {
        FunctionId {
            name: None,
            type_name: std::any::type_name::<F>(),
            // A closure's place is part of its identity; an unidentified function's place is
            // where to fix it.
            location: (closure || fp == 0).then_some(location),
            fingerprint: fp,
        }
    }

    /// An id that names no function, for a pipeline without a cache, where no key is made.
    pub(crate) const fn unused() -> FunctionId<'static> {
        FunctionId {
            name: None,
            type_name: "",
            location: None,
            fingerprint: 0,
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

    /// Whether this id names one function: a user's name, or an automatic identity (see the
    /// type's documentation). A call whose function is not identified is never cached.
    pub fn identifies(&self) -> bool {
        self.fingerprint != 0
    }

    /// The type name of the function, when it was not named (empty for a named one).
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// Where the function was handed to opero, when that matters for its identity or for fixing
    /// its lack of one.
    pub fn location(&self) -> Option<&'static Location<'static>> {
        self.location
    }

    /// A 128-bit fingerprint of the identity: a one-shot hash of the name, or the automatic
    /// identity's. Zero for an unidentified function, which never reaches a key.
    fn fingerprint(&self) -> u128 {
        self.fingerprint
    }

    /// The identity's 128-bit fingerprint, as bytes (what a key hashes for the function).
    pub fn fingerprint_bytes(&self) -> [u8; 16] {
        self.fingerprint().to_le_bytes()
    }

    /// A short label for keys people read (Redis): the name, or `fn-` and 16 hex digits of the
    /// identity's hash (computed only when printed).
    pub fn label(&self) -> FunctionLabel<'_> {
        match self.name {
            Some(n) => FunctionLabel::Named(n),
            None => FunctionLabel::Anonymous(self),
        }
    }
}

/// The fingerprint a function name contributes to a key; a pipeline computes it once per name.
pub(crate) fn name_fingerprint(name: &str) -> u128 {
    xxh3_128_with_seed(name.as_bytes(), SEED_NAME)
}

/// The fingerprint a namespace contributes to a [`StableKey`] hash. A pipeline computes it once
/// and passes it to [`KeyFn::hash_prepared`], so that no call re-hashes its namespace.
///
/// # Examples
///
/// ```
/// use opero_core::{namespace_fingerprint, FunctionId, KeyFn, StableKey};
///
/// let f = FunctionId::named("geocode");
/// let prepared = namespace_fingerprint("opero");
/// assert_eq!(
///     StableKey.hash_prepared("opero", prepared, &f, &"Paris").unwrap(),
///     StableKey.hash("opero", &f, &"Paris").unwrap(),
/// );
/// ```
pub fn namespace_fingerprint(namespace: &str) -> u128 {
    xxh3_128_with_seed(namespace.as_bytes(), SEED_NAMESPACE)
}

/// The fingerprint of a zero-sized callable's automatic identity, or zero (unidentified) when
/// another callable of this process already holds the same one.
///
/// A type name plus a location can be shared by two different closures (passed through a generic
/// helper without `#[track_caller]`). Their `TypeId`s differ, so a registry from fingerprint to
/// `TypeId` tells them apart within the process: the first keeps the identity, the others are
/// unidentified and run uncached. The `TypeId` never enters a key (it changes between builds); it
/// only guards this process. A one-entry cache per thread ([`FunctionId::of`]) keeps a repeated
/// call site off the lock and off this hashing.
fn identify(
    type_id: std::any::TypeId,
    type_name: &'static str,
    closure_site: Option<&'static Location<'static>>,
    site: &'static Location<'static>,
) -> u128 {
    let mut fp = xxh3_128_with_seed(type_name.as_bytes(), SEED_TYPE);
    if let Some(loc) = closure_site {
        let at = (u64::from(loc.line()) << 32) | u64::from(loc.column());
        fp = fp.rotate_left(17) ^ xxh3_128_with_seed(loc.file().as_bytes(), at);
    }
    let verdict = {
        let registry = IDENTITIES.get_or_init(Default::default);
        // A poisoned lock only means another thread panicked while inserting; the map is whole.
        let mut map = registry.lock().unwrap_or_else(|p| p.into_inner());
        let holder = *map.entry(fp).or_insert(type_id);
        if holder == type_id {
            fp
        } else {
            0
        }
    };
    if verdict == 0 {
        tracing::warn!(
            target: "opero",
            function = type_name,
            at = %site,
            "two different callables share one type name and call site (a generic helper without \
             #[track_caller]?); this one runs uncached until it is given a name"
        );
    }
    let site_addr = site as *const Location<'_> as usize;
    let closure = closure_site.is_some();
    LAST_IDENTITY.with(|last| last.set(Some((type_id, site_addr, verdict, closure))));
    verdict
}

thread_local! {
    /// The last callable identified on this thread: its type, call site, fingerprint (zero:
    /// unidentified) and whether it is a closure.
    static LAST_IDENTITY: Cell<Option<(std::any::TypeId, usize, u128, bool)>> =
        const { Cell::new(None) };
}

static IDENTITIES: std::sync::OnceLock<
    std::sync::Mutex<std::collections::HashMap<u128, std::any::TypeId>>,
> = std::sync::OnceLock::new();

/// The function part of a [`CacheKey`], printable without allocating.
///
/// # Examples
///
/// ```
/// use opero_core::FunctionId;
///
/// assert_eq!(FunctionId::named("geocode").label().to_string(), "geocode");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionLabel<'a> {
    /// A user-given name.
    Named(&'a str),
    /// An unnamed function, printed as a hash of its type name and location. Borrowed: a key is
    /// built on every cached call, and copying the whole identity into it cost a hit more than
    /// the rest of the key.
    Anonymous(&'a FunctionId<'a>),
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
///
/// # Examples
///
/// ```
/// use opero_core::{CacheKey, FunctionLabel};
///
/// let key = CacheKey { namespace: "weather", function: FunctionLabel::Named("forecast"), hash: 0xab };
/// assert_eq!(key.to_string(), format!("weather:forecast:{:032x}", 0xab));
/// ```
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

    /// [`hash`](KeyFn::hash), given also the namespace's [`namespace_fingerprint`], which a
    /// pipeline computes once rather than per call. The result must equal `hash`'s. The default
    /// ignores the fingerprint; [`StableKey`] uses it.
    fn hash_prepared<A: Serialize + ?Sized>(
        &self,
        namespace: &str,
        namespace_fingerprint: u128,
        function: &FunctionId<'_>,
        args: &A,
    ) -> Result<u128, OperoError> {
        let _ = namespace_fingerprint;
        self.hash(namespace, function, args)
    }

    /// The hash of a key that never leaves this process: a memory cache's
    /// ([`CacheBackend::LOCAL_KEYS`](crate::CacheBackend::LOCAL_KEYS)). It need not be stable
    /// across builds or equal [`hash`](KeyFn::hash), but must keep every distinction `hash`
    /// makes: inputs `hash` tells apart get different local hashes too. The default is
    /// [`hash_prepared`](KeyFn::hash_prepared), so a key function of one's own applies
    /// unchanged; [`StableKey`] uses a faster hash.
    ///
    /// # Examples
    ///
    /// ```
    /// use opero_core::{namespace_fingerprint, FunctionId, KeyFn, StableKey};
    ///
    /// let (f, g) = (FunctionId::named("f"), FunctionId::named("g"));
    /// let ns = namespace_fingerprint("opero");
    /// let a = StableKey.hash_local("opero", ns, &f, &7u64).unwrap();
    /// assert_eq!(a, StableKey.hash_local("opero", ns, &f, &7u64).unwrap());
    /// assert_ne!(a, StableKey.hash_local("opero", ns, &g, &7u64).unwrap());
    /// assert_ne!(a, StableKey.hash_local("opero", ns, &f, &8u64).unwrap());
    /// ```
    #[inline]
    fn hash_local<A: Serialize + ?Sized>(
        &self,
        namespace: &str,
        namespace_fingerprint: u128,
        function: &FunctionId<'_>,
        args: &A,
    ) -> Result<u128, OperoError> {
        self.hash_prepared(namespace, namespace_fingerprint, function, args)
    }
}

macro_rules! forward_key_fn {
    ($($ty:ty),*) => {$(
        impl<K: KeyFn + ?Sized> KeyFn for $ty {
            fn hash<A: Serialize + ?Sized>(
                &self,
                namespace: &str,
                function: &FunctionId<'_>,
                args: &A,
            ) -> Result<u128, OperoError> {
                (**self).hash(namespace, function, args)
            }

            fn hash_prepared<A: Serialize + ?Sized>(
                &self,
                namespace: &str,
                namespace_fingerprint: u128,
                function: &FunctionId<'_>,
                args: &A,
            ) -> Result<u128, OperoError> {
                (**self).hash_prepared(namespace, namespace_fingerprint, function, args)
            }

            #[inline]
            fn hash_local<A: Serialize + ?Sized>(
                &self,
                namespace: &str,
                namespace_fingerprint: u128,
                function: &FunctionId<'_>,
                args: &A,
            ) -> Result<u128, OperoError> {
                (**self).hash_local(namespace, namespace_fingerprint, function, args)
            }
        }
    )*};
}

forward_key_fn!(&K, std::sync::Arc<K>);

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
        self.hash_prepared(namespace, namespace_fingerprint(namespace), function, args)
    }

    #[inline]
    fn hash_prepared<A: Serialize + ?Sized>(
        &self,
        _namespace: &str,
        namespace_fingerprint: u128,
        function: &FunctionId<'_>,
        args: &A,
    ) -> Result<u128, OperoError> {
        if !function.identifies() {
            // Opero never asks for such a key; a caller of the key function directly gets the
            // same answer rather than a key two functions would share.
            return Err(OperoError::invalid_config(
                "name",
                function.type_name(),
                "this callable does not identify itself (a fn pointer, a dyn Fn, a reference or a \
                 closure that captures state): give it a name to cache it",
            ));
        }
        // The usual key is small: gathered in a stack buffer by postcard's slice writer and
        // hashed in one shot, several times faster than XXH3's streaming form. Arguments that do
        // not fit are streamed; both give the same hash for the same bytes.
        let mut buf = [0u8; INLINE];
        buf[..16].copy_from_slice(&namespace_fingerprint.to_le_bytes());
        buf[16..PREFIX].copy_from_slice(&function.fingerprint().to_le_bytes());
        match postcard::to_slice(args, &mut buf[PREFIX..]) {
            Ok(written) => {
                let len = PREFIX + written.len();
                Ok(xxhash_rust::xxh3::xxh3_128(&buf[..len]))
            }
            Err(postcard::Error::SerializeBufferFull) => streamed(&buf[..PREFIX], args),
            Err(e) => Err(hash_error(e)),
        }
    }

    /// XXH3-128 of the arguments alone, written by a serializer of its own straight into a stack
    /// buffer (postcard's machinery cost more than the hash), seeded by the identity (namespace
    /// and function), then XORed with the identity's 128 bits: the namespace and the function
    /// are never re-hashed per call, and a small argument hashes in a few dozen instructions.
    ///
    /// Distinct inputs stay apart: equal identities give equal seeds, so the keys differ as
    /// XXH3-128 of distinct byte strings under one seed; distinct identities give keys that
    /// differ unless two unrelated 128-bit values coincide.
    #[inline]
    fn hash_local<A: Serialize + ?Sized>(
        &self,
        namespace: &str,
        namespace_fingerprint: u128,
        function: &FunctionId<'_>,
        args: &A,
    ) -> Result<u128, OperoError> {
        if !function.identifies() {
            return self.hash_prepared(namespace, namespace_fingerprint, function, args);
        }
        // Both fingerprints are XXH3 outputs under distinct seeds; the rotation keeps a
        // namespace and a function from cancelling when their fingerprints are swapped.
        let identity = namespace_fingerprint ^ function.fingerprint().rotate_left(64);
        let seed = (identity as u64) ^ ((identity >> 64) as u64);
        match crate::local_key::hash(args, seed) {
            Ok(hash) => Ok(hash ^ identity),
            Err(e) => Err(OperoError::new(
                ErrorKind::Codec,
                format!("cannot hash arguments: {e}"),
            )),
        }
    }
}

/// The hash of `prefix` and the postcard bytes of `args`, for arguments too long for the stack.
#[cold]
fn streamed<A: Serialize + ?Sized>(prefix: &[u8], args: &A) -> Result<u128, OperoError> {
    let mut stream = Box::new(Xxh3::new());
    stream.update(prefix);
    postcard::serialize_with_flavor(args, Streamed(&mut stream)).map_err(hash_error)?;
    Ok(stream.digest128())
}

fn hash_error(e: postcard::Error) -> OperoError {
    OperoError::new(ErrorKind::Codec, format!("cannot hash arguments: {e}"))
}

/// Whether a type name is (or wraps) a closure's. Checked on every call, so the usual shapes,
/// `path::{{closure}}` and `&mut path::{{closure}}`, are recognised without a substring search.
fn is_closure(type_name: &str) -> bool {
    type_name.ends_with("{{closure}}")
        || (type_name.ends_with('>') && type_name.contains("{{closure}}"))
}

const SEED_NAMESPACE: u64 = 0x6f70_6572_6f2d_6e73; // "opero-ns"
const SEED_NAME: u64 = 0x6f70_6572_6f2d_666e; // "opero-fn"
const SEED_TYPE: u64 = 0x6f70_6572_6f2d_7479; // "opero-ty"

/// The namespace's and the function's fingerprints.
const PREFIX: usize = 32;

/// Room for the prefix and the usual arguments, hashed in one shot.
const INLINE: usize = 128;

/// A postcard output that feeds a streaming hasher.
struct Streamed<'a>(&'a mut Xxh3);

impl postcard::ser_flavors::Flavor for Streamed<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.update(&[data]);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.update(data);
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
        let a = |x: u32| x + 1;
        let b = |x: u32| x + 2;
        let ka = StableKey
            .hash("n", &id_of(&a, Location::caller()), &1u32)
            .unwrap();
        let kb = StableKey
            .hash("n", &id_of(&b, Location::caller()), &1u32)
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

    fn id_of<F>(_: &F, loc: &'static Location<'static>) -> FunctionId<'static> {
        FunctionId::of::<F>(loc)
    }

    #[test]
    fn only_zero_sized_callables_identify_themselves() {
        fn double(x: u32) -> u32 {
            x * 2
        }
        let here = Location::caller();
        let k = 3u32;
        let pointer: fn(u32) -> u32 = double;
        let boxed: Box<dyn Fn(u32) -> u32> = Box::new(double);
        assert!(id_of(&double, here).identifies());
        assert!(id_of(&|x: u32| x + 1, here).identifies());
        assert!(!id_of(&move |x: u32| x + k, here).identifies());
        assert!(!id_of(&pointer, here).identifies());
        assert!(!id_of(&boxed, here).identifies());
        assert!(
            !id_of(&&double, here).identifies(),
            "a reference is not its referent"
        );
        assert!(id_of(&pointer, here).or_named(Some("double")).identifies());
    }

    #[test]
    fn an_unidentified_function_gets_no_key() {
        let k = 3u32;
        let f = id_of(&move |x: u32| x + k, Location::caller());
        let err = StableKey.hash("ns", &f, &1u32).unwrap_err();
        assert_eq!(err.field(), Some("name"));
    }

    #[test]
    fn two_closures_at_one_site_with_one_type_name_do_not_share_an_identity() {
        // A helper without #[track_caller] hands both closures over at one location.
        fn helper<F>(_: &F) -> FunctionId<'static> {
            FunctionId::of::<F>(Location::caller())
        }
        let (a, b) = (|x: u32| x + 1, |x: u32| x + 2);
        let (first, second) = (helper(&a), helper(&b));
        assert_eq!(first.type_name(), second.type_name());
        assert!(first.identifies());
        assert!(
            !second.identifies(),
            "the second closure must not take the first's entries"
        );
        // The holder keeps its identity, asked again from this or another thread.
        assert_eq!(helper(&a), first);
        let again = std::thread::scope(|s| s.spawn(|| helper(&a)).join().unwrap());
        assert_eq!(again, first);
        assert!(!std::thread::scope(|s| s.spawn(|| helper(&b)).join().unwrap()).identifies());
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
