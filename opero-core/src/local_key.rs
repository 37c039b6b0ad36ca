//! The encoding behind [`StableKey`](crate::StableKey)'s process-local hash
//! ([`KeyFn::hash_local`](crate::KeyFn::hash_local)): a serde serializer that writes the
//! arguments straight into a stack buffer and hashes them with XXH3-128.
//!
//! postcard (the stable key's format) costs about a hundred instructions for one small integer
//! through its generic flavor machinery; this writer costs a few. Its bytes need not be stable
//! across builds (the keys never leave the process), only injective for one type, as postcard's
//! are: every integer has its fixed width, every string, byte string, sequence and map is
//! preceded by its length, every `Option` by a tag and every enum value by its variant index.
//! Sequences and maps of unknown length are refused, as postcard refuses them.

use std::fmt;

use serde::ser::{self, Serialize};
use xxhash_rust::xxh3::{xxh3_128_with_seed, Xxh3};

/// Room for the usual arguments, hashed in one shot; longer ones stream through XXH3.
const INLINE: usize = 64;

/// XXH3-128 under `seed` of the local encoding of `args`.
#[inline]
pub(crate) fn hash<A: Serialize + ?Sized>(args: &A, seed: u64) -> Result<u128, KeyError> {
    let mut w = Writer {
        buf: [0; INLINE],
        len: 0,
        spill: None,
        seed,
    };
    args.serialize(&mut w)?;
    Ok(w.finish())
}

/// The bytes written so far: in `buf`, and once it overflowed, in a streaming hasher too.
struct Writer {
    buf: [u8; INLINE],
    len: usize,
    spill: Option<Box<Xxh3>>,
    seed: u64,
}

impl Writer {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end <= INLINE {
            self.buf[self.len..end].copy_from_slice(bytes);
            self.len = end;
        } else {
            self.put_spilled(bytes);
        }
    }

    /// Moves what `buf` holds into the streaming hasher, then `bytes`. Streamed and one-shot
    /// XXH3 give the same hash of the same bytes, so where the spill happens does not matter.
    #[cold]
    #[inline(never)]
    fn put_spilled(&mut self, bytes: &[u8]) {
        let seed = self.seed;
        let stream = self
            .spill
            .get_or_insert_with(|| Box::new(Xxh3::with_seed(seed)));
        stream.update(&self.buf[..self.len]);
        stream.update(bytes);
        self.len = 0;
    }

    #[inline(always)]
    fn put_len(&mut self, len: usize) {
        self.put(&(len as u64).to_le_bytes());
    }

    #[inline(always)]
    fn put_variant(&mut self, index: u32) {
        self.put(&index.to_le_bytes());
    }

    #[inline(always)]
    fn finish(self) -> u128 {
        match self.spill {
            None => xxh3_128_with_seed(&self.buf[..self.len], self.seed),
            Some(mut stream) => {
                stream.update(&self.buf[..self.len]);
                stream.digest128()
            }
        }
    }
}

/// Why arguments could not be encoded: their `Serialize` failed, or a sequence or map did not
/// tell its length.
#[derive(Debug)]
pub(crate) struct KeyError(pub(crate) String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

impl ser::Error for KeyError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        KeyError(msg.to_string())
    }
}

fn unknown_length() -> KeyError {
    KeyError("a sequence or map of unknown length cannot be hashed".into())
}

macro_rules! put_le {
    ($($method:ident: $ty:ty),*) => {$(
        #[inline(always)]
        fn $method(self, v: $ty) -> Result<(), KeyError> {
            self.put(&v.to_le_bytes());
            Ok(())
        }
    )*};
}

impl ser::Serializer for &mut Writer {
    type Ok = ();
    type Error = KeyError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    put_le!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128
    );

    #[inline(always)]
    fn serialize_bool(self, v: bool) -> Result<(), KeyError> {
        self.put(&[u8::from(v)]);
        Ok(())
    }

    #[inline(always)]
    fn serialize_f32(self, v: f32) -> Result<(), KeyError> {
        self.put(&v.to_bits().to_le_bytes());
        Ok(())
    }

    #[inline(always)]
    fn serialize_f64(self, v: f64) -> Result<(), KeyError> {
        self.put(&v.to_bits().to_le_bytes());
        Ok(())
    }

    #[inline(always)]
    fn serialize_char(self, v: char) -> Result<(), KeyError> {
        self.put(&u32::from(v).to_le_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), KeyError> {
        self.serialize_bytes(v.as_bytes())
    }

    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), KeyError> {
        self.put_len(v.len());
        self.put(v);
        Ok(())
    }

    #[inline(always)]
    fn serialize_none(self) -> Result<(), KeyError> {
        self.put(&[0]);
        Ok(())
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), KeyError> {
        self.put(&[1]);
        value.serialize(self)
    }

    #[inline(always)]
    fn serialize_unit(self) -> Result<(), KeyError> {
        Ok(())
    }

    #[inline(always)]
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), KeyError> {
        Ok(())
    }

    #[inline(always)]
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
    ) -> Result<(), KeyError> {
        self.put_variant(index);
        Ok(())
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        value.serialize(self)
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        self.put_variant(index);
        value.serialize(self)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, KeyError> {
        self.put_len(len.ok_or_else(unknown_length)?);
        Ok(self)
    }

    #[inline(always)]
    fn serialize_tuple(self, _len: usize) -> Result<Self, KeyError> {
        Ok(self)
    }

    #[inline(always)]
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self, KeyError> {
        Ok(self)
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, KeyError> {
        self.put_variant(index);
        Ok(self)
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self, KeyError> {
        self.put_len(len.ok_or_else(unknown_length)?);
        Ok(self)
    }

    #[inline(always)]
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, KeyError> {
        Ok(self)
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, KeyError> {
        self.put_variant(index);
        Ok(self)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

macro_rules! compound {
    ($($trait:ident { $($method:ident),* }),*) => {$(
        impl ser::$trait for &mut Writer {
            type Ok = ();
            type Error = KeyError;
            $(
                #[inline]
                fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
                    value.serialize(&mut **self)
                }
            )*
            #[inline(always)]
            fn end(self) -> Result<(), KeyError> {
                Ok(())
            }
        }
    )*};
}

compound!(
    SerializeSeq { serialize_element },
    SerializeTuple { serialize_element },
    SerializeTupleStruct { serialize_field },
    SerializeTupleVariant { serialize_field },
    SerializeMap {
        serialize_key,
        serialize_value
    }
);

impl ser::SerializeStruct for &mut Writer {
    type Ok = ();
    type Error = KeyError;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _key: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        value.serialize(&mut **self)
    }
    #[inline(always)]
    fn end(self) -> Result<(), KeyError> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Writer {
    type Ok = ();
    type Error = KeyError;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _key: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        value.serialize(&mut **self)
    }
    #[inline(always)]
    fn end(self) -> Result<(), KeyError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn bytes_of<A: Serialize + ?Sized>(a: &A) -> Vec<u8> {
        // The one-shot hash of these bytes must equal `hash`; they are checked by that.
        let mut w = Writer {
            buf: [0; INLINE],
            len: 0,
            spill: None,
            seed: 0,
        };
        a.serialize(&mut w).unwrap();
        assert!(w.spill.is_none());
        w.buf[..w.len].to_vec()
    }

    #[test]
    fn the_encoding_is_self_delimiting() {
        // Neighbours that a careless encoding would merge.
        assert_ne!(bytes_of(&("ab", "c")), bytes_of(&("a", "bc")));
        assert_ne!(
            bytes_of(&(Some(0u8), 1u8)),
            bytes_of(&(None::<u8>, 0u8, 1u8))
        );
        assert_ne!(
            bytes_of(&vec![vec![1u8], vec![]]),
            bytes_of(&vec![vec![], vec![1u8]])
        );
        assert_ne!(bytes_of(&1u32), bytes_of(&1u64));
        let mut m = BTreeMap::new();
        m.insert(1u8, 2u8);
        assert_ne!(bytes_of(&m), bytes_of(&BTreeMap::<u8, u8>::new()));
        assert_eq!(bytes_of(&42u64), 42u64.to_le_bytes());
    }

    #[test]
    fn long_arguments_stream_to_the_one_shot_hash_of_the_same_bytes() {
        for n in [0, 1, 55, 56, 57, 63, 64, 65, 200, 5_000] {
            let text = "y".repeat(n);
            let value = (7u64, text.as_str(), vec![3u16; n % 17]);
            let mut all = Vec::new();
            all.extend_from_slice(&7u64.to_le_bytes());
            all.extend_from_slice(&(n as u64).to_le_bytes());
            all.extend_from_slice(text.as_bytes());
            all.extend_from_slice(&((n % 17) as u64).to_le_bytes());
            for _ in 0..n % 17 {
                all.extend_from_slice(&3u16.to_le_bytes());
            }
            assert_eq!(
                hash(&value, 99).unwrap(),
                xxh3_128_with_seed(&all, 99),
                "{n}"
            );
        }
    }

    #[test]
    fn a_sequence_of_unknown_length_is_refused() {
        struct Unsized;
        impl Serialize for Unsized {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use ser::SerializeSeq;
                let seq = s.serialize_seq(None)?;
                seq.end()
            }
        }
        assert!(hash(&Unsized, 0).is_err());
    }
}
