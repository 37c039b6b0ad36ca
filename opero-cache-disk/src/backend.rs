//! [`DiskCache`]: cacache with a TTL and a namespace kept with each entry.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cacache::{Algorithm, WriteOpts};
use opero_core::{
    BuildCache, CacheBackend, CacheConfig, CacheKey, CacheValue, Codec, Decoded, ErrorKind,
    OperoError, SigningKey,
};
use tokio::io::AsyncWriteExt as _;

/// An on-disk cache on [cacache](https://docs.rs/cacache): content-addressed files and an
/// append-only index, so several threads and processes can share one directory.
///
/// Each entry is stored through a [`Codec`] with a header that names the value's type and its
/// expiry: an entry of another type is a miss, an expired one is a miss and is removed. The
/// namespace is kept in the entry's index metadata, so [`clear`](CacheBackend::clear) removes
/// exactly that namespace. A corrupt or truncated entry (cacache checks every read against the
/// content's hash) is reported once as an [`ErrorKind::Codec`] error and removed, so the next
/// lookup is a plain miss.
///
/// Clones share the same directory settings.
///
/// # Default
///
/// From a [`CacheConfig`]: the backend option `dir`, else [`DiskCache::default_dir`]; the option
/// `codec` (`"postcard"`, the default, or `"json"`); the option `signing_key` (none by default,
/// see [`DiskCache::with_signing_key`]).
///
/// # Examples
///
/// ```
/// use opero_cache_disk::DiskCache;
/// use opero_core::{CacheBackend, CacheKey, FunctionLabel};
///
/// let dir = tempfile::tempdir().unwrap();
/// let cache = DiskCache::new(dir.path());
/// let key = CacheKey { namespace: "ns", function: FunctionLabel::Named("f"), hash: 7 };
/// cache.set(&key, &vec![1, 2, 3], None).unwrap();
/// assert_eq!(cache.get::<Vec<i32>>(&key).unwrap(), Some(vec![1, 2, 3]));
/// assert_eq!(cache.get::<String>(&key).unwrap(), None); // another type: a miss
/// cache.clear("ns").unwrap();
/// assert_eq!(cache.get::<Vec<i32>>(&key).unwrap(), None);
/// ```
#[derive(Clone, Debug)]
pub struct DiskCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    codec: Codec,
    signing: Option<SigningKey>,
}

/// Content hashes only guard against corruption, not attackers, so the fast one will do.
const ALGORITHM: Algorithm = Algorithm::Xxh3;

impl DiskCache {
    /// A cache in `dir`, created on the first write.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DiskCache {
            inner: Arc::new(Inner {
                dir: dir.into(),
                codec: Codec::default(),
                signing: None,
            }),
        }
    }

    /// This cache, storing new entries with `codec` (entries are read with the codec they name).
    pub fn with_codec(self, codec: Codec) -> Self {
        DiskCache {
            inner: Arc::new(Inner {
                dir: self.inner.dir.clone(),
                codec,
                signing: self.inner.signing.clone(),
            }),
        }
    }

    /// This cache, signing its entries with HMAC-SHA256 under `key` and reading only entries
    /// signed with it: a process that can write to the directory but lacks the key cannot
    /// plant values (its entries are corrupt entries: a miss, counted and logged, and removed).
    /// Every process sharing the directory needs the same key.
    ///
    /// # Examples
    ///
    /// ```
    /// use opero_cache_disk::DiskCache;
    /// use opero_core::{CacheBackend, CacheKey, FunctionLabel, SigningKey};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let key = CacheKey { namespace: "ns", function: FunctionLabel::Named("f"), hash: 7 };
    /// let secret = SigningKey::new("a key of at least sixteen bytes").unwrap();
    /// let signed = DiskCache::new(dir.path()).with_signing_key(secret);
    /// DiskCache::new(dir.path()).set(&key, &1u8, None).unwrap(); // written without the key
    /// assert!(signed.get::<u8>(&key).is_err()); // refused, and removed
    /// assert_eq!(signed.get::<u8>(&key).unwrap(), None);
    /// signed.set(&key, &2u8, None).unwrap();
    /// assert_eq!(signed.get::<u8>(&key).unwrap(), Some(2));
    /// ```
    pub fn with_signing_key(self, key: SigningKey) -> Self {
        DiskCache {
            inner: Arc::new(Inner {
                dir: self.inner.dir.clone(),
                codec: self.inner.codec,
                signing: Some(key),
            }),
        }
    }

    /// Whether entries are signed.
    pub fn is_signed(&self) -> bool {
        self.inner.signing.is_some()
    }

    fn encode<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<Vec<u8>, OperoError> {
        let expires_at = ttl.and_then(|t| std::time::SystemTime::now().checked_add(t));
        self.inner
            .codec
            .encode_signed(key, value, expires_at, self.inner.signing.as_ref())
    }

    fn decode<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
        bytes: &[u8],
    ) -> Result<Decoded<V>, OperoError> {
        self.inner
            .codec
            .decode_signed(key, bytes, self.inner.signing.as_ref())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The codec of new entries.
    pub fn codec(&self) -> Codec {
        self.inner.codec
    }

    /// The per-user cache directory: `$XDG_CACHE_HOME/opero`, else `~/Library/Caches/opero` on
    /// macOS, `%LOCALAPPDATA%\opero` on Windows, `~/.cache/opero` elsewhere. An error naming
    /// the `dir` option when none of those variables is set.
    pub fn default_dir() -> Result<PathBuf, OperoError> {
        let var = |name: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let base = if let Some(xdg) = var("XDG_CACHE_HOME") {
            Some(xdg)
        } else if cfg!(windows) {
            var("LOCALAPPDATA")
        } else if cfg!(target_os = "macos") {
            var("HOME").map(|h| h.join("Library").join("Caches"))
        } else {
            var("HOME").map(|h| h.join(".cache"))
        };
        base.map(|b| b.join("opero")).ok_or_else(|| {
            OperoError::invalid_config(
                "dir",
                "(unset)",
                "no per-user cache directory found (XDG_CACHE_HOME, HOME); set the `dir` option",
            )
        })
    }

    /// Removes every entry of every namespace, and the content left behind by overwritten and
    /// deleted entries (which [`delete`](CacheBackend::delete) and
    /// [`clear`](CacheBackend::clear) keep, as other processes may be reading it).
    pub fn clear_all(&self) -> Result<(), OperoError> {
        cacache::clear_sync(self.dir()).map_err(|e| backend("clear_all", self.dir(), e))
    }

    /// What a decoded entry means for a lookup, removing it when it is expired or corrupt.
    fn settle<V: CacheValue>(
        &self,
        name: &str,
        decoded: Result<Decoded<V>, OperoError>,
    ) -> Result<Option<V>, OperoError> {
        match decoded {
            Ok(Decoded::Value(v)) => Ok(Some(v)),
            Ok(Decoded::Foreign) => Ok(None),
            Ok(Decoded::Expired) => {
                if let Err(e) = cacache::remove_sync(self.dir(), name) {
                    tracing::debug!(target: "opero", error = %e, "cannot remove an expired disk entry");
                }
                Ok(None)
            }
            Err(e) => {
                self.remove_corrupt(name);
                Err(e)
            }
        }
    }

    fn remove_corrupt(&self, name: &str) {
        let dir = self.dir();
        // The content is bad for every key that points at it, so it goes too.
        if let Ok(Some(meta)) = cacache::metadata_sync(dir, name) {
            let _ = cacache::remove_hash_sync(dir, &meta.integrity);
        }
        if let Err(e) = cacache::remove_sync(dir, name) {
            tracing::warn!(target: "opero", error = %e, "cannot remove a corrupt disk entry");
        }
    }

    fn read_failed(&self, name: &str, e: cacache::Error) -> Result<Option<Vec<u8>>, OperoError> {
        match e {
            cacache::Error::EntryNotFound(..) => Ok(None),
            cacache::Error::IntegrityError(_) | cacache::Error::SizeMismatch(..) => {
                self.remove_corrupt(name);
                Err(OperoError::new(
                    ErrorKind::Codec,
                    "a corrupt disk cache entry was found and removed",
                )
                .with_source(e))
            }
            cacache::Error::IoError(ref io, _) if io.kind() == std::io::ErrorKind::NotFound => {
                // The index names content that is gone (removed by `clear_all` or by hand).
                self.remove_corrupt(name);
                Ok(None)
            }
            e => Err(backend("read", self.dir(), e)),
        }
    }

    fn opts(namespace: &str, len: usize) -> WriteOpts {
        WriteOpts::new()
            .algorithm(ALGORITHM)
            .size(len)
            .raw_metadata(namespace.as_bytes().to_vec())
    }
}

fn backend(op: &str, dir: &Path, e: cacache::Error) -> OperoError {
    OperoError::backend(format!("disk cache {op} in {} failed", dir.display()), e)
}

fn in_namespace(meta: &cacache::Metadata, namespace: &str) -> bool {
    meta.raw_metadata.as_deref() == Some(namespace.as_bytes())
}

impl CacheBackend for DiskCache {
    fn get<V: CacheValue>(&self, key: &CacheKey<'_>) -> Result<Option<V>, OperoError> {
        let name = key.to_string();
        let bytes = match cacache::read_sync(self.dir(), &name) {
            Ok(bytes) => bytes,
            Err(e) => match self.read_failed(&name, e)? {
                Some(bytes) => bytes,
                None => return Ok(None),
            },
        };
        self.settle(&name, self.decode::<V>(key, &bytes))
    }

    fn set<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<(), OperoError> {
        let bytes = self.encode(key, value, ttl)?;
        let write = || -> Result<(), cacache::Error> {
            let mut writer =
                Self::opts(key.namespace, bytes.len()).open_sync(self.dir(), key.to_string())?;
            writer
                .write_all(&bytes)
                .map_err(|e| cacache::Error::IoError(e, "write".into()))?;
            writer.commit()?;
            Ok(())
        };
        write().map_err(|e| backend("write", self.dir(), e))
    }

    fn delete(&self, key: &CacheKey<'_>) -> Result<(), OperoError> {
        cacache::remove_sync(self.dir(), key.to_string())
            .map_err(|e| backend("delete", self.dir(), e))
    }

    fn clear(&self, namespace: &str) -> Result<(), OperoError> {
        if !self.dir().exists() {
            return Ok(());
        }
        for entry in cacache::list_sync(self.dir()) {
            let meta = entry.map_err(|e| backend("list", self.dir(), e))?;
            if in_namespace(&meta, namespace) {
                cacache::remove_sync(self.dir(), &meta.key)
                    .map_err(|e| backend("clear", self.dir(), e))?;
            }
        }
        Ok(())
    }

    async fn get_async<V: CacheValue>(&self, key: &CacheKey<'_>) -> Result<Option<V>, OperoError> {
        let name = key.to_string();
        let bytes = match cacache::read(self.dir(), &name).await {
            Ok(bytes) => bytes,
            // The rare paths (corrupt, expired) clean up with blocking calls on a blocking thread.
            Err(e) => {
                let this = self.clone();
                let name2 = name.clone();
                match spawn_blocking(move || this.read_failed(&name2, e)).await? {
                    Some(bytes) => bytes,
                    None => return Ok(None),
                }
            }
        };
        match self.decode::<V>(key, &bytes) {
            Ok(Decoded::Value(v)) => Ok(Some(v)),
            Ok(Decoded::Foreign) => Ok(None),
            decoded => {
                let this = self.clone();
                spawn_blocking(move || this.settle::<V>(&name, decoded)).await
            }
        }
    }

    async fn set_async<V: CacheValue>(
        &self,
        key: &CacheKey<'_>,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<(), OperoError> {
        let bytes = self.encode(key, value, ttl)?;
        let opts = Self::opts(key.namespace, bytes.len());
        let name = key.to_string();
        let write = async {
            let mut writer = opts.open(self.dir(), name).await?;
            writer
                .write_all(&bytes)
                .await
                .map_err(|e| cacache::Error::IoError(e, "write".into()))?;
            writer.commit().await?;
            Ok::<_, cacache::Error>(())
        };
        write.await.map_err(|e| backend("write", self.dir(), e))
    }

    async fn delete_async(&self, key: &CacheKey<'_>) -> Result<(), OperoError> {
        cacache::remove(self.dir(), key.to_string())
            .await
            .map_err(|e| backend("delete", self.dir(), e))
    }

    async fn clear_async(&self, namespace: &str) -> Result<(), OperoError> {
        // cacache lists its index only synchronously; walking it belongs on a blocking thread.
        let this = self.clone();
        let namespace = namespace.to_owned();
        spawn_blocking(move || this.clear(&namespace)).await
    }
}

async fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OperoError> + Send + 'static,
) -> Result<T, OperoError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OperoError::backend("disk cache task failed", e))?
}

impl BuildCache for DiskCache {
    fn build(config: &CacheConfig) -> Result<Self, OperoError> {
        let dir = match config.backend_options.get("dir") {
            Some(dir) if dir.is_empty() => {
                return Err(OperoError::invalid_config("dir", "", "must not be empty"))
            }
            Some(dir) => PathBuf::from(dir),
            None => Self::default_dir()?,
        };
        let codec = config.option::<Codec>("codec")?.unwrap_or_default();
        let cache = DiskCache::new(dir).with_codec(codec);
        // Parsed by hand: a parse error through `option` would echo the secret.
        Ok(match config.backend_options.get("signing_key") {
            Some(secret) => cache.with_signing_key(SigningKey::new(secret.as_bytes())?),
            None => cache,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opero_core::FunctionLabel;

    fn key(ns: &str, hash: u128) -> CacheKey<'_> {
        CacheKey {
            namespace: ns,
            function: FunctionLabel::Named("f"),
            hash,
        }
    }

    #[test]
    fn clear_keeps_namespaces_that_share_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path());
        cache.set(&key("a", 1), &1u8, None).unwrap();
        cache.set(&key("a:b", 1), &2u8, None).unwrap();
        cache.clear("a").unwrap();
        assert_eq!(cache.get::<u8>(&key("a", 1)).unwrap(), None);
        assert_eq!(cache.get::<u8>(&key("a:b", 1)).unwrap(), Some(2));
    }

    #[test]
    fn options_are_read_and_checked_by_name() {
        let mut cfg = CacheConfig::enabled("disk");
        cfg.backend_options.insert("dir".into(), "/tmp/x".into());
        cfg.backend_options.insert("codec".into(), "json".into());
        let cache = DiskCache::build(&cfg).unwrap();
        assert_eq!(cache.dir(), Path::new("/tmp/x"));
        assert_eq!(cache.codec(), Codec::Json);
        cfg.backend_options.insert("codec".into(), "xml".into());
        assert_eq!(DiskCache::build(&cfg).unwrap_err().field(), Some("codec"));
        cfg.backend_options.insert("dir".into(), "".into());
        assert_eq!(DiskCache::build(&cfg).unwrap_err().field(), Some("dir"));
    }

    #[test]
    fn the_signing_key_option_signs_and_short_keys_are_refused_unechoed() {
        let mut cfg = CacheConfig::enabled("disk");
        cfg.backend_options.insert("dir".into(), "/tmp/x".into());
        assert!(!DiskCache::build(&cfg).unwrap().is_signed());
        for short in ["", "fifteen bytes!!"] {
            cfg.backend_options
                .insert("signing_key".into(), short.into());
            let err = DiskCache::build(&cfg).unwrap_err();
            assert_eq!(err.field(), Some("signing_key"));
            if !short.is_empty() {
                assert!(!err.to_string().contains(short), "{err}");
            }
        }
        cfg.backend_options
            .insert("signing_key".into(), "sixteen bytes!!!".into());
        let cache = DiskCache::build(&cfg).unwrap();
        assert!(cache.is_signed());
        assert!(!format!("{cache:?}").contains("sixteen"));
    }

    #[test]
    fn an_expired_entry_is_a_miss_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path());
        cache
            .set(&key("a", 1), &1u8, Some(Duration::from_millis(1)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(cache.get::<u8>(&key("a", 1)).unwrap(), None);
        assert!(cacache::metadata_sync(dir.path(), key("a", 1).to_string())
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn async_forms_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path());
        cache
            .set_async(&key("a", 1), &"v".to_string(), None)
            .await
            .unwrap();
        assert_eq!(
            cache
                .get_async::<String>(&key("a", 1))
                .await
                .unwrap()
                .as_deref(),
            Some("v")
        );
        cache.delete_async(&key("a", 1)).await.unwrap();
        assert_eq!(cache.get_async::<String>(&key("a", 1)).await.unwrap(), None);
    }
}
