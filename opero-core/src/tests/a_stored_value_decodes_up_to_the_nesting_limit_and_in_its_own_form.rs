//! Decoding through the nesting limit: a value nested exactly `MAX_DECODE_DEPTH` levels reads
//! back, one more level is a codec error (never a stack overflow); types whose form differs
//! between text and binary formats read back in each codec.

use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::{CacheKey, Codec, Decoded, ErrorKind, FunctionLabel, MAX_DECODE_DEPTH};

const KEY: CacheKey<'static> = CacheKey {
    namespace: "ns",
    function: FunctionLabel::Named("f"),
    hash: 9,
};

/// One nesting level per `More`: the content of an enum variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Chain {
    End,
    More(Box<Chain>),
}

fn chain(levels: usize) -> Chain {
    (0..levels).fold(Chain::End, |c, _| Chain::More(Box::new(c)))
}

#[test]
fn a_value_nested_to_the_limit_decodes_and_one_level_more_is_refused() {
    // postcard: serde_json stops at 128 levels of its own.
    {
        let codec = Codec::Postcard;
        let at_limit = codec.encode(&KEY, &chain(MAX_DECODE_DEPTH), None).unwrap();
        assert_eq!(
            codec.decode::<Chain>(&KEY, &at_limit).unwrap(),
            Decoded::Value(chain(MAX_DECODE_DEPTH))
        );
        let past = codec
            .encode(&KEY, &chain(MAX_DECODE_DEPTH + 1), None)
            .unwrap();
        assert_eq!(
            codec.decode::<Chain>(&KEY, &past).unwrap_err().kind(),
            ErrorKind::Codec
        );
    }
}

#[test]
fn a_type_stored_as_text_or_as_bytes_reads_back_in_each_codec() {
    let ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
    for codec in [Codec::Postcard, Codec::Json] {
        let bytes = codec.encode(&KEY, &ip, None).unwrap();
        assert_eq!(
            codec.decode::<IpAddr>(&KEY, &bytes).unwrap(),
            Decoded::Value(ip)
        );
    }
    // JSON is human-readable: the address as text; postcard stores its bytes.
    let json = Codec::Json.encode(&KEY, &ip, None).unwrap();
    assert_eq!(&json[crate::HEADER_LEN..], br#""::1""#);
}
