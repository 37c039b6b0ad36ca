//! The process-local key a memory backend takes (`KeyFn::hash_local`) gives two arguments of one
//! type the same key only when they are the same value: every scalar, option, newtype, enum
//! variant and struct field takes part. Arguments it cannot encode are refused with the reason.

use std::collections::HashSet;

use serde::Serialize;

use crate::{namespace_fingerprint, ErrorKind, FunctionId, KeyFn, StableKey};

fn local<A: Serialize + ?Sized>(value: &A) -> u128 {
    let f = FunctionId::named("f");
    StableKey
        .hash_local("ns", namespace_fingerprint("ns"), &f, value)
        .unwrap()
}

/// Every value gets a key of its own.
fn all_distinct<A: Serialize + std::fmt::Debug>(values: &[A]) {
    let mut seen = HashSet::new();
    for v in values {
        assert!(
            seen.insert(local(v)),
            "a repeated key for {v:?} in {values:?}"
        );
    }
}

#[derive(Serialize, Debug)]
struct Meters(u32);

#[derive(Serialize, Debug)]
enum Shape {
    Dot,
    Empty,
    Line(u8),
    Ray(u8),
    Rect { w: u8, h: u8 },
}

#[derive(Serialize, Debug)]
struct Size {
    w: u8,
    h: u8,
}

#[test]
fn scalars_of_every_kind_are_told_apart() {
    all_distinct(&[true, false]);
    all_distinct(&[1.0f32, 2.0, -0.5]);
    all_distinct(&[1.0f64, 2.0, -0.5]);
    all_distinct(&['a', 'b', 'é']);
}

#[test]
fn options_newtypes_and_variants_are_told_apart() {
    all_distinct(&[None, Some(0u8), Some(1), Some(2)]);
    // Where a `None` sits in a list is part of the value.
    all_distinct(&[vec![Some(0u8), None], vec![None, Some(0)]]);
    all_distinct(&[Meters(1), Meters(2)]);
    all_distinct(&[
        Shape::Dot,
        Shape::Empty,
        Shape::Line(1),
        Shape::Line(2),
        Shape::Ray(1),
        Shape::Rect { w: 1, h: 2 },
        Shape::Rect { w: 2, h: 1 },
        Shape::Rect { w: 1, h: 1 },
    ]);
    all_distinct(&[
        Size { w: 1, h: 2 },
        Size { w: 2, h: 1 },
        Size { w: 1, h: 1 },
    ]);
}

#[test]
fn arguments_that_cannot_be_encoded_are_refused_with_the_reason() {
    /// A sequence that does not tell its length up front.
    struct Unsized;
    impl Serialize for Unsized {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            s.serialize_seq(None)?.end()
        }
    }
    let f = FunctionId::named("f");
    let err = StableKey
        .hash_local("ns", namespace_fingerprint("ns"), &f, &Unsized)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Codec);
    assert!(err.message().contains("unknown length"), "{err}");
}
