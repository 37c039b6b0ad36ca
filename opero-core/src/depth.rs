//! A serde deserializer adapter that refuses values nested deeper than a limit.
//!
//! postcard decodes a recursive type by recursing once per level, so an entry of a few thousand
//! nesting bytes would overflow the stack and abort the process: nothing can catch that. Every
//! nested value (a sequence element, a map key or value, an enum variant's content, an `Option`'s
//! or a newtype's content) passes through [`Limited`], which counts the levels and fails with a
//! serde error past the limit, long before the stack runs out.

use std::cell::Cell;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// How deep a stored value may nest before decoding refuses it (serde_json's own limit too).
pub const MAX_DECODE_DEPTH: usize = 128;

/// The level counter shared by every adapter of one decode.
struct Depth {
    now: Cell<usize>,
    max: usize,
}

impl Depth {
    fn enter<E: de::Error>(&self) -> Result<(), E> {
        let next = self.now.get() + 1;
        if next > self.max {
            return Err(E::custom(format_args!(
                "value nested deeper than {} levels",
                self.max
            )));
        }
        self.now.set(next);
        Ok(())
    }

    fn leave(&self) {
        self.now.set(self.now.get() - 1);
    }

    /// Runs `step` one level deeper, refusing it past the limit.
    fn nested<T, E: de::Error>(&self, step: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        self.enter()?;
        let out = step();
        self.leave();
        out
    }
}

/// Deserializes `T` from `deserializer`, refusing nesting deeper than `max`.
pub(crate) fn deserialize_limited<'de, T, D>(deserializer: D, max: usize) -> Result<T, D::Error>
where
    T: de::Deserialize<'de>,
    D: Deserializer<'de>,
{
    let depth = Depth {
        now: Cell::new(0),
        max,
    };
    T::deserialize(Limited {
        inner: deserializer,
        depth: &depth,
    })
}

/// A deserializer whose visitors report every nested value to the counter.
struct Limited<'a, D> {
    inner: D,
    depth: &'a Depth,
}

/// A visitor whose nested accessors are limited.
struct Wrap<'a, V> {
    inner: V,
    depth: &'a Depth,
}

/// A seed whose value counts as one level deeper.
struct Seed<'a, S> {
    inner: S,
    depth: &'a Depth,
}

struct Seq<'a, A> {
    inner: A,
    depth: &'a Depth,
}

struct Map<'a, A> {
    inner: A,
    depth: &'a Depth,
}

struct Enum<'a, A> {
    inner: A,
    depth: &'a Depth,
}

struct Variant<'a, A> {
    inner: A,
    depth: &'a Depth,
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method($($arg,)* Wrap { inner: visitor, depth: self.depth })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Limited<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
        self.depth.nested(|| {
            self.inner.visit_some(Limited {
                inner: d,
                depth: self.depth,
            })
        })
    }

    fn visit_newtype_struct<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
        self.depth.nested(|| {
            self.inner.visit_newtype_struct(Limited {
                inner: d,
                depth: self.depth,
            })
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_seq(Seq {
            inner: seq,
            depth: self.depth,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(Map {
            inner: map,
            depth: self.depth,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_enum(Enum {
            inner: data,
            depth: self.depth,
        })
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.depth.nested(|| {
            self.inner.deserialize(Limited {
                inner: d,
                depth: self.depth,
            })
        })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(Seed {
            inner: seed,
            depth: self.depth,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(Seed {
            inner: seed,
            depth: self.depth,
        })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(Seed {
            inner: seed,
            depth: self.depth,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'a, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<'a, A> {
    type Error = A::Error;
    type Variant = Variant<'a, A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let (value, variant) = self.inner.variant_seed(seed)?;
        Ok((
            value,
            Variant {
                inner: variant,
                depth: self.depth,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(Seed {
            inner: seed,
            depth: self.depth,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.depth.nested(|| {
            self.inner.tuple_variant(
                len,
                Wrap {
                    inner: visitor,
                    depth: self.depth,
                },
            )
        })
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.depth.nested(|| {
            self.inner.struct_variant(
                fields,
                Wrap {
                    inner: visitor,
                    depth: self.depth,
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Tree {
        Leaf(u8),
        Node(Box<Tree>),
    }

    fn nested(levels: usize) -> Vec<u8> {
        // postcard: variant 1 (Node) repeated, then variant 0 (Leaf) and its byte.
        let mut bytes = vec![1u8; levels];
        bytes.extend_from_slice(&[0, 7]);
        bytes
    }

    fn decode(bytes: &[u8], max: usize) -> Result<Tree, postcard::Error> {
        let mut d = postcard::Deserializer::from_bytes(bytes);
        deserialize_limited(&mut d, max)
    }

    #[test]
    fn shallow_values_decode_as_without_the_limit() {
        let tree = decode(&nested(10), MAX_DECODE_DEPTH).unwrap();
        assert_eq!(tree, postcard::from_bytes::<Tree>(&nested(10)).unwrap());
    }

    #[test]
    fn deep_values_are_an_error_not_a_stack_overflow() {
        for levels in [1_000, 1_000_000] {
            assert!(
                decode(&nested(levels), MAX_DECODE_DEPTH).is_err(),
                "{levels}"
            );
        }
    }

    #[test]
    fn siblings_do_not_add_up() {
        let wide: Vec<Vec<u8>> = vec![vec![1, 2]; 10_000];
        let bytes = postcard::to_stdvec(&wide).unwrap();
        let mut d = postcard::Deserializer::from_bytes(&bytes);
        let back: Vec<Vec<u8>> = deserialize_limited(&mut d, 4).unwrap();
        assert_eq!(back, wide);
    }
}
