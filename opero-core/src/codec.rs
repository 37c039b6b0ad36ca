//! [`Codec`]: how disk and Redis backends turn a value into stored bytes and back.
//!
//! Every entry starts with a fixed header so that a reader can tell, before decoding anything,
//! whether the bytes are meant for it:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `OPRO` |
//! | 4 | layout version (2) |
//! | 5 | codec: 0 postcard, 1 JSON |
//! | 6..14 | XXH3-64 of the value's type name, little endian |
//! | 14..22 | expiry in milliseconds since the Unix epoch, little endian (0: never) |
//! | 22..30 | the key the entry was written for: its 128-bit hash folded to 64 bits |
//! | 30..38 | XXH3-64 of the payload |
//! | 38.. | the value, in the codec named at byte 5 |
//!
//! A **signed** entry (written with a [`SigningKey`]) has layout version 3 and 32 more header
//! bytes: 38..70 hold HMAC-SHA256, under the key, of bytes 0..38 and of the payload, which
//! starts at [`SIGNED_HEADER_LEN`]. A reader with a signing key accepts only signed entries whose
//! MAC checks out, so a process that can write to a shared store but lacks the key cannot plant
//! a value: its entries are [`ErrorKind::Codec`] errors (a miss, counted and logged). A reader
//! without a key refuses signed entries the same way, rather than trusting what it cannot check.
//!
//! An entry of another type, another layout or **another key** (copied or renamed in the store)
//! decodes as [`Decoded::Foreign`]: a miss, never a wrong value. Bytes that claim to be ours but
//! do not check out (a payload whose checksum differs, a value that does not decode, a value
//! nested deeper than [`MAX_DECODE_DEPTH`] levels) are an [`ErrorKind::Codec`] error, which
//! backends treat as a corrupt entry: a miss, counted and logged. Decoding never recurses without
//! bound, so no stored entry can overflow the stack.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::depth::deserialize_limited;
pub use crate::depth::MAX_DECODE_DEPTH;
use crate::error::{ErrorKind, OperoError};
use crate::key::{CacheKey, FunctionLabel};

const MAGIC: &[u8; 4] = b"OPRO";
const LAYOUT_VERSION: u8 = 2;
const SIGNED_LAYOUT_VERSION: u8 = 3;

/// Length of the header in front of every encoded entry.
pub const HEADER_LEN: usize = 38;

/// Length of the header in front of a signed entry: [`HEADER_LEN`] and a 32-byte HMAC-SHA256.
pub const SIGNED_HEADER_LEN: usize = HEADER_LEN + MAC_LEN;

const MAC_LEN: usize = 32;

type HmacSha256 = Hmac<sha2::Sha256>;

/// A secret that signs cache entries with HMAC-SHA256 (see the layout under [`Codec`]).
///
/// At least [`SigningKey::MIN_LEN`] bytes; use random ones (`openssl rand -hex 32` gives 64
/// characters) and give every process that shares the cache the same key. The key never
/// appears in `Debug` output, errors or logs.
///
/// # Examples
///
/// ```
/// use opero_core::{CacheKey, Codec, Decoded, FunctionLabel, SigningKey};
///
/// let key = CacheKey { namespace: "ns", function: FunctionLabel::Named("f"), hash: 1 };
/// let secret = SigningKey::new("0123456789abcdef0123456789abcdef").unwrap();
/// assert_eq!(format!("{secret:?}"), "SigningKey(<redacted>)");
/// let bytes = Codec::Postcard.encode_signed(&key, &7u32, None, Some(&secret)).unwrap();
/// assert_eq!(Codec::Postcard.decode_signed::<u32>(&key, &bytes, Some(&secret)).unwrap(), Decoded::Value(7));
/// // Without the key, or with another one, the entry is refused.
/// let other = SigningKey::new("another key of enough length!!").unwrap();
/// assert!(Codec::Postcard.decode_signed::<u32>(&key, &bytes, Some(&other)).is_err());
/// assert!(Codec::Postcard.decode::<u32>(&key, &bytes).is_err());
/// // A short key is refused by the option's name, its value hidden.
/// let err = SigningKey::new("short").unwrap_err();
/// assert_eq!(err.field(), Some("signing_key"));
/// assert_eq!(err.value(), Some("(hidden)"));
/// ```
#[derive(Clone)]
pub struct SigningKey(Arc<[u8]>);

impl SigningKey {
    /// The shortest key accepted, in bytes.
    pub const MIN_LEN: usize = 16;

    /// A key of these bytes; fewer than [`MIN_LEN`](Self::MIN_LEN) is an error naming the
    /// `signing_key` option (the value is not echoed).
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, OperoError> {
        let secret = secret.as_ref();
        if secret.len() < Self::MIN_LEN {
            return Err(OperoError::invalid_config(
                "signing_key",
                "(hidden)",
                format!(
                    "a signing key must be at least {} bytes (it has {})",
                    Self::MIN_LEN,
                    secret.len()
                ),
            ));
        }
        Ok(SigningKey(secret.into()))
    }

    fn mac(&self, header: &[u8], payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(header);
        mac.update(payload);
        mac
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl PartialEq for SigningKey {
    fn eq(&self, other: &Self) -> bool {
        // Options compare keys; a MAC of each side keeps the comparison's time independent of
        // where the keys differ.
        self.mac(b"", b"").finalize().into_bytes() == other.mac(b"", b"").finalize().into_bytes()
    }
}

impl Eq for SigningKey {}

impl FromStr for SigningKey {
    type Err = OperoError;

    /// The key is the string's UTF-8 bytes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SigningKey::new(s.as_bytes())
    }
}

/// The serialization format of stored entries.
///
/// # Default
///
/// [`Codec::Postcard`]: compact and fast. [`Codec::Json`] suits a Redis cache that programs in
/// other languages read (after skipping the [`HEADER_LEN`]-byte header).
///
/// # Signed entries
///
/// [`encode_signed`](Codec::encode_signed) with a [`SigningKey`] writes layout 3: the
/// [`HEADER_LEN`] header bytes, then 32 bytes of HMAC-SHA256 under the key over those header
/// bytes and the payload, then the payload, at [`SIGNED_HEADER_LEN`].
///
/// # Examples
///
/// ```
/// use opero_core::{CacheKey, Codec, Decoded, FunctionLabel};
///
/// let key = CacheKey { namespace: "ns", function: FunctionLabel::Named("f"), hash: 1 };
/// let bytes = Codec::Json.encode(&key, &vec!["a".to_string(), "b".to_string()], None).unwrap();
/// assert_eq!(&bytes[opero_core::HEADER_LEN..], br#"["a","b"]"#);
/// assert_eq!(Codec::Json.decode::<Vec<String>>(&key, &bytes).unwrap(), Decoded::Value(vec!["a".into(), "b".into()]));
/// // Another type is a miss, not a wrong value:
/// assert_eq!(Codec::Json.decode::<Vec<u8>>(&key, &bytes).unwrap(), Decoded::Foreign);
/// // So is the entry read under another key (copied or renamed in the store):
/// let other = CacheKey { hash: 2, ..key };
/// assert_eq!(Codec::Json.decode::<Vec<String>>(&other, &bytes).unwrap(), Decoded::Foreign);
/// let name: Codec = "postcard".parse().unwrap();
/// assert_eq!(name, Codec::Postcard);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Codec {
    /// postcard, the compact binary format of the default key function.
    #[default]
    Postcard,
    /// JSON, readable by other languages.
    Json,
}

/// What [`Codec::decode`] found in a stored entry.
///
/// # Examples
///
/// ```
/// use opero_core::{CacheKey, Codec, Decoded, FunctionLabel};
/// use std::time::{Duration, SystemTime};
///
/// let key = CacheKey { namespace: "ns", function: FunctionLabel::Named("f"), hash: 7 };
/// let past = SystemTime::now() - Duration::from_secs(1);
/// let bytes = Codec::Postcard.encode(&key, &42u32, Some(past)).unwrap();
/// match Codec::Postcard.decode::<u32>(&key, &bytes).unwrap() {
///     Decoded::Value(v) => panic!("expired, yet read {v}"),
///     Decoded::Expired => {}
///     Decoded::Foreign => panic!("it is ours"),
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded<V> {
    /// The value, alive.
    Value(V),
    /// A value of this type whose TTL has passed.
    Expired,
    /// An entry of another type, another codec id or another layout: a miss.
    Foreign,
}

impl Codec {
    fn id(self) -> u8 {
        match self {
            Codec::Postcard => 0,
            Codec::Json => 1,
        }
    }

    fn from_id(id: u8) -> Option<Codec> {
        match id {
            0 => Some(Codec::Postcard),
            1 => Some(Codec::Json),
            _ => None,
        }
    }

    /// The fingerprint of `V` stored in the header: stable across runs and builds of one compiler,
    /// unlike `TypeId`. It names the exact type, so bytes encoded from a `Vec<&str>` are foreign
    /// to a reader of `Vec<String>`; the pipeline stores and reads one type per key.
    pub fn type_fingerprint<V: ?Sized>() -> u64 {
        xxh3_64(std::any::type_name::<V>().as_bytes())
    }

    /// Header and value of the entry for `key`, to expire at `expires_at` (never, when `None`).
    pub fn encode<V: Serialize + ?Sized>(
        self,
        key: &CacheKey<'_>,
        value: &V,
        expires_at: Option<SystemTime>,
    ) -> Result<Vec<u8>, OperoError> {
        self.encode_signed(key, value, expires_at, None)
    }

    /// [`encode`](Self::encode), signed with `signing` when there is one.
    pub fn encode_signed<V: Serialize + ?Sized>(
        self,
        key: &CacheKey<'_>,
        value: &V,
        expires_at: Option<SystemTime>,
        signing: Option<&SigningKey>,
    ) -> Result<Vec<u8>, OperoError> {
        let start = if signing.is_some() {
            SIGNED_HEADER_LEN
        } else {
            HEADER_LEN
        };
        let mut out = Vec::with_capacity(start + 64);
        out.extend_from_slice(MAGIC);
        out.push(if signing.is_some() {
            SIGNED_LAYOUT_VERSION
        } else {
            LAYOUT_VERSION
        });
        out.push(self.id());
        out.extend_from_slice(&Self::type_fingerprint::<V>().to_le_bytes());
        out.extend_from_slice(&expires_at.map_or(0, unix_millis).to_le_bytes());
        out.extend_from_slice(&key_fingerprint(key).to_le_bytes());
        // The checksum (and the MAC) are written once the payload is there.
        out.resize(start, 0);
        match self {
            Codec::Postcard => postcard::to_io(value, &mut out)
                .map(|_| ())
                .map_err(|e| codec_error("encode", self, e)),
            Codec::Json => {
                serde_json::to_writer(&mut out, value).map_err(|e| codec_error("encode", self, e))
            }
        }?;
        let checksum = xxh3_64(&out[start..]);
        out[30..38].copy_from_slice(&checksum.to_le_bytes());
        if let Some(signing) = signing {
            let tag = signing
                .mac(&out[..HEADER_LEN], &out[start..])
                .finalize()
                .into_bytes();
            out[HEADER_LEN..start].copy_from_slice(&tag);
        }
        Ok(out)
    }

    /// Encodes the entry for `key` with a TTL counted from now. A TTL too large to add to the
    /// clock means never expiring.
    pub fn encode_with_ttl<V: Serialize + ?Sized>(
        self,
        key: &CacheKey<'_>,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<Vec<u8>, OperoError> {
        self.encode(
            key,
            value,
            ttl.and_then(|t| SystemTime::now().checked_add(t)),
        )
    }

    /// The value in `bytes`, read as the entry for `key`. The codec named in the entry's header is
    /// used, whichever `self` is, so a cache whose codec setting changed still reads its older
    /// entries.
    pub fn decode<V: DeserializeOwned>(
        self,
        key: &CacheKey<'_>,
        bytes: &[u8],
    ) -> Result<Decoded<V>, OperoError> {
        self.decode_signed(key, bytes, None)
    }

    /// [`decode`](Self::decode) for a cache that signs its entries with `signing`: an unsigned
    /// entry, or one whose MAC does not check out under `signing`, is an [`ErrorKind::Codec`]
    /// error. Without a key, a signed entry is such an error too.
    pub fn decode_signed<V: DeserializeOwned>(
        self,
        key: &CacheKey<'_>,
        bytes: &[u8],
        signing: Option<&SigningKey>,
    ) -> Result<Decoded<V>, OperoError> {
        let Some(header) = Header::parse(bytes) else {
            return Ok(Decoded::Foreign);
        };
        if header.fingerprint != Self::type_fingerprint::<V>()
            || header.key_fingerprint != key_fingerprint(key)
        {
            return Ok(Decoded::Foreign);
        }
        if header.is_expired(SystemTime::now()) {
            return Ok(Decoded::Expired);
        }
        let start = header.payload_offset();
        let payload = &bytes[start..];
        match (signing, header.signed) {
            (Some(signing), true) => {
                let ok = signing
                    .mac(&bytes[..HEADER_LEN], payload)
                    .verify_slice(&bytes[HEADER_LEN..start])
                    .is_ok();
                if !ok {
                    return Err(OperoError::new(
                        ErrorKind::Codec,
                        "a cache entry's signature does not match this cache's signing key",
                    ));
                }
            }
            (Some(_), false) => {
                return Err(OperoError::new(
                    ErrorKind::Codec,
                    "a cache entry is not signed, and this cache requires signed entries",
                ))
            }
            (None, true) => {
                return Err(OperoError::new(
                    ErrorKind::Codec,
                    "a cache entry is signed, and this cache has no signing key to check it",
                ))
            }
            (None, false) => {}
        }
        if xxh3_64(payload) != header.checksum {
            return Err(OperoError::new(
                ErrorKind::Codec,
                "a cache entry's payload does not match its checksum",
            ));
        }
        let value = match header.codec {
            Codec::Postcard => {
                postcard_exact(payload).map_err(|e| codec_error("decode", header.codec, e))?
            }
            Codec::Json => {
                json_exact(payload).map_err(|e| codec_error("decode", header.codec, e))?
            }
        };
        Ok(Decoded::Value(value))
    }
}

/// The key an entry belongs to, as stored in its header: XXH3-64 over the namespace, the
/// function and the hash. The hash alone covers them with the default key function, but a key
/// function of a user's might leave the namespace out, and the entry must still not answer for
/// another namespace.
fn key_fingerprint(key: &CacheKey<'_>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(key.namespace.as_bytes());
    h.update(&[0]);
    match key.function {
        FunctionLabel::Named(name) => {
            h.update(&[1]);
            h.update(name.as_bytes());
        }
        FunctionLabel::Anonymous(id) => {
            h.update(&[2]);
            h.update(&id.fingerprint_bytes());
        }
    }
    h.update(&key.hash.to_le_bytes());
    h.digest()
}

/// The whole payload as one value, nested at most [`MAX_DECODE_DEPTH`] levels; a truncated or
/// padded entry must not decode, so every byte has to be consumed.
fn postcard_exact<V: DeserializeOwned>(payload: &[u8]) -> postcard::Result<V> {
    let mut d = postcard::Deserializer::from_bytes(payload);
    let value = deserialize_limited(&mut d, MAX_DECODE_DEPTH)?;
    if d.finalize()?.is_empty() {
        Ok(value)
    } else {
        Err(postcard::Error::DeserializeBadEncoding)
    }
}

/// The JSON twin of [`postcard_exact`] (serde_json's own recursion limit applies as well).
fn json_exact<V: DeserializeOwned>(payload: &[u8]) -> serde_json::Result<V> {
    let mut d = serde_json::Deserializer::from_slice(payload);
    let value = deserialize_limited(&mut d, MAX_DECODE_DEPTH)?;
    d.end()?;
    Ok(value)
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Postcard => "postcard",
            Codec::Json => "json",
        })
    }
}

impl FromStr for Codec {
    type Err = OperoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "postcard" => Ok(Codec::Postcard),
            "json" => Ok(Codec::Json),
            _ => Err(OperoError::invalid_config(
                "codec",
                s,
                "unknown codec; known: \"postcard\", \"json\"",
            )),
        }
    }
}

/// The fixed header of a stored entry.
///
/// # Examples
///
/// ```
/// use opero_core::{CacheKey, Codec, FunctionLabel, Header};
///
/// let key = CacheKey { namespace: "ns", function: FunctionLabel::Named("f"), hash: 7 };
/// let bytes = Codec::Json.encode(&key, &"hello", None).unwrap();
/// let header = Header::parse(&bytes).unwrap();
/// assert_eq!(header.codec, Codec::Json);
/// assert_eq!(header.expires_at_ms, 0);
/// assert!(Header::parse(b"not an entry").is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The codec of the payload.
    pub codec: Codec,
    /// XXH3-64 of the value's type name.
    pub fingerprint: u64,
    /// Expiry in milliseconds since the Unix epoch; 0 for never.
    pub expires_at_ms: u64,
    /// The key the entry was written for, folded to 64 bits.
    pub key_fingerprint: u64,
    /// XXH3-64 of the payload.
    pub checksum: u64,
    /// Whether the entry is signed (layout 3): a MAC follows, and the payload starts at
    /// [`SIGNED_HEADER_LEN`].
    pub signed: bool,
}

impl Header {
    /// The header of `bytes`, or `None` when they are not an entry of this layout.
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return None;
        }
        let signed = match bytes[4] {
            LAYOUT_VERSION => false,
            SIGNED_LAYOUT_VERSION if bytes.len() >= SIGNED_HEADER_LEN => true,
            _ => return None,
        };
        let codec = Codec::from_id(bytes[5])?;
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Some(Header {
            codec,
            fingerprint: word(6),
            expires_at_ms: word(14),
            key_fingerprint: word(22),
            checksum: word(30),
            signed,
        })
    }

    /// Where the payload starts.
    pub fn payload_offset(&self) -> usize {
        if self.signed {
            SIGNED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Whether the entry's TTL has passed at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at_ms != 0 && unix_millis(now) >= self.expires_at_ms
    }
}

fn unix_millis(t: SystemTime) -> u64 {
    // A clock before 1970 is treated as the epoch; 0 is reserved for "never", so round up to 1.
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64);
    ms.max(1)
}

fn codec_error(
    op: &str,
    codec: Codec,
    e: impl std::error::Error + Send + Sync + 'static,
) -> OperoError {
    OperoError::new(
        ErrorKind::Codec,
        format!("cannot {op} a cache entry with {codec}"),
    )
    .with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::FunctionLabel;

    const KEY: CacheKey<'static> = CacheKey {
        namespace: "ns",
        function: FunctionLabel::Named("f"),
        hash: 0x1234_5678_9abc_def0_0fed_cba9_8765_4321,
    };

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Point {
        x: i32,
        y: i32,
    }

    #[test]
    fn round_trips_in_both_codecs() {
        for codec in [Codec::Postcard, Codec::Json] {
            let p = Point { x: 1, y: -2 };
            let bytes = codec.encode(&KEY, &p, None).unwrap();
            assert_eq!(
                codec.decode::<Point>(&KEY, &bytes).unwrap(),
                Decoded::Value(p)
            );
        }
    }

    #[test]
    fn another_type_or_layout_is_foreign() {
        let bytes = Codec::Postcard.encode(&KEY, &7u64, None).unwrap();
        assert_eq!(
            Codec::Postcard.decode::<i64>(&KEY, &bytes).unwrap(),
            Decoded::Foreign
        );
        let mut old = bytes.clone();
        old[4] = 0;
        assert_eq!(
            Codec::Postcard.decode::<u64>(&KEY, &old).unwrap(),
            Decoded::Foreign
        );
        assert_eq!(
            Codec::Postcard.decode::<u64>(&KEY, b"7").unwrap(),
            Decoded::Foreign
        );
    }

    #[test]
    fn truncated_or_padded_payload_is_a_codec_error() {
        let bytes = Codec::Postcard
            .encode(&KEY, &"hello".to_string(), None)
            .unwrap();
        let cut = &bytes[..bytes.len() - 1];
        assert_eq!(
            Codec::Postcard
                .decode::<String>(&KEY, cut)
                .unwrap_err()
                .kind(),
            ErrorKind::Codec
        );
        let mut padded = bytes.clone();
        padded.push(0);
        assert_eq!(
            Codec::Postcard
                .decode::<String>(&KEY, &padded)
                .unwrap_err()
                .kind(),
            ErrorKind::Codec
        );
    }

    #[test]
    fn expiry_is_kept_in_the_header() {
        let past = SystemTime::now() - Duration::from_secs(1);
        let bytes = Codec::Postcard.encode(&KEY, &1u8, Some(past)).unwrap();
        assert_eq!(
            Codec::Postcard.decode::<u8>(&KEY, &bytes).unwrap(),
            Decoded::Expired
        );
        let bytes = Codec::Postcard
            .encode_with_ttl(&KEY, &1u8, Some(Duration::from_secs(60)))
            .unwrap();
        assert_eq!(
            Codec::Postcard.decode::<u8>(&KEY, &bytes).unwrap(),
            Decoded::Value(1)
        );
    }

    #[test]
    fn an_entry_read_under_another_key_is_foreign() {
        for codec in [Codec::Postcard, Codec::Json] {
            let bytes = codec.encode(&KEY, &7u64, None).unwrap();
            let other = CacheKey {
                hash: KEY.hash + 1,
                ..KEY
            };
            assert_eq!(
                codec.decode::<u64>(&other, &bytes).unwrap(),
                Decoded::Foreign
            );
            assert_eq!(
                codec.decode::<u64>(&KEY, &bytes).unwrap(),
                Decoded::Value(7)
            );
        }
    }

    #[test]
    fn the_same_hash_in_another_namespace_or_function_is_foreign() {
        // A key function that leaves the namespace out of its hash must not make entries travel.
        let bytes = Codec::Postcard.encode(&KEY, &7u64, None).unwrap();
        let other_ns = CacheKey {
            namespace: "other",
            ..KEY
        };
        let other_fn = CacheKey {
            function: FunctionLabel::Named("g"),
            ..KEY
        };
        for key in [other_ns, other_fn] {
            assert_eq!(
                Codec::Postcard.decode::<u64>(&key, &bytes).unwrap(),
                Decoded::Foreign
            );
        }
    }

    #[test]
    fn a_flipped_payload_bit_is_a_codec_error() {
        for codec in [Codec::Postcard, Codec::Json] {
            let mut bytes = codec.encode(&KEY, &7u64, None).unwrap();
            *bytes.last_mut().unwrap() ^= 0x10;
            assert_eq!(
                codec.decode::<u64>(&KEY, &bytes).unwrap_err().kind(),
                ErrorKind::Codec
            );
        }
    }

    #[test]
    fn a_ttl_past_the_end_of_time_never_expires() {
        let bytes = Codec::Postcard
            .encode_with_ttl(&KEY, &1u8, Some(Duration::MAX))
            .unwrap();
        assert_eq!(Header::parse(&bytes).unwrap().expires_at_ms, 0);
        assert_eq!(
            Codec::Postcard.decode::<u8>(&KEY, &bytes).unwrap(),
            Decoded::Value(1)
        );
    }

    #[test]
    fn unknown_codec_name_is_named() {
        let err = "yaml".parse::<Codec>().unwrap_err();
        assert_eq!(err.field(), Some("codec"));
        assert_eq!(err.value(), Some("yaml"));
    }
}
