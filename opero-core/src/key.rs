//! Cache keys: [`FunctionId`], [`CacheKey`], the [`KeyFn`] trait and the default [`StableKey`].

use std::fmt;
use std::panic::Location;

use serde::Serialize;
use xxhash_rust::xxh3::Xxh3;

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
            location: type_name.contains("{{closure}}").then_some(location),
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

    /// Feeds the identity into a hasher, with separators so fields cannot run into each other.
    fn write(&self, h: &mut Xxh3) {
        match self.name {
            Some(name) => {
                h.update(b"N");
                h.update(name.as_bytes());
            }
            None => {
                h.update(b"T");
                h.update(self.type_name.as_bytes());
                if let Some(loc) = self.location {
                    h.update(b"\0");
                    h.update(loc.file().as_bytes());
                    h.update(&loc.line().to_le_bytes());
                    h.update(&loc.column().to_le_bytes());
                }
            }
        }
        h.update(b"\0");
    }

    /// A short label for keys people read (Redis): the name, or `fn-` and 16 hex digits of the
    /// identity's hash.
    pub fn label(&self) -> FunctionLabel<'a> {
        match self.name {
            Some(n) => FunctionLabel::Named(n),
            None => {
                let mut h = Xxh3::new();
                self.write(&mut h);
                FunctionLabel::Anonymous(h.digest())
            }
        }
    }
}

/// The function part of a [`CacheKey`], printable without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FunctionLabel<'a> {
    /// A user-given name.
    Named(&'a str),
    /// A hash of type name and location.
    Anonymous(u64),
}

impl fmt::Display for FunctionLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FunctionLabel::Named(n) => f.write_str(n),
            FunctionLabel::Anonymous(h) => write!(f, "fn-{h:016x}"),
        }
    }
}

/// The key of one cache entry: namespace, function label and a 128-bit hash.
///
/// `hash` covers the namespace, the function and the arguments; backends may key on it alone but
/// must keep namespaces apart. Its `Display` is `namespace:function:hash`, the Redis layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
        let mut h = Xxh3::new();
        h.update(&(namespace.len() as u64).to_le_bytes());
        h.update(namespace.as_bytes());
        function.write(&mut h);
        postcard::serialize_with_flavor(args, HashFlavor(h))
            .map_err(|e| OperoError::new(ErrorKind::Codec, format!("cannot hash arguments: {e}")))
    }
}

/// A postcard output that hashes instead of storing.
struct HashFlavor(Xxh3);

impl postcard::ser_flavors::Flavor for HashFlavor {
    type Output = u128;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.update(&[data]);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.update(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<u128> {
        Ok(self.0.digest128())
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
        assert_eq!(h, 0x9aad5ca0b94546a791a52f6e43d21284_u128, "got {h:#x}");
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
    fn display_is_namespace_function_hash() {
        let k = CacheKey {
            namespace: "ns",
            function: FunctionLabel::Named("f"),
            hash: 0xab,
        };
        assert_eq!(k.to_string(), format!("ns:f:{:032x}", 0xab));
    }
}
