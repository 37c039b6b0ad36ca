//! The codec's header, read back: codec, type, key, expiry and signature decide whether stored
//! bytes are a value, expired, foreign or refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{
    CacheKey, Codec, Decoded, ErrorKind, FunctionLabel, Header, SigningKey, HEADER_LEN,
    SIGNED_HEADER_LEN,
};

const KEY: CacheKey<'static> = CacheKey {
    namespace: "ns",
    function: FunctionLabel::Named("f"),
    hash: 42,
};

fn secret() -> SigningKey {
    SigningKey::new("0123456789abcdef").unwrap()
}

#[test]
fn the_header_records_codec_type_expiry_and_layout() {
    let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    for (codec, id) in [(Codec::Postcard, 0), (Codec::Json, 1)] {
        let bytes = codec.encode(&KEY, &7u32, Some(at)).unwrap();
        assert_eq!(&bytes[..4], b"OPRO");
        assert_eq!((bytes[4], bytes[5]), (2, id));
        let header = Header::parse(&bytes).unwrap();
        assert_eq!(header.codec, codec);
        assert_eq!(header.fingerprint, Codec::type_fingerprint::<u32>());
        assert_ne!(header.fingerprint, Codec::type_fingerprint::<u64>());
        assert_eq!(header.expires_at_ms, 1_700_000_000_123);
        assert!(!header.signed);
        assert_eq!(header.payload_offset(), HEADER_LEN);
        assert_eq!(
            header,
            Header::parse(&codec.encode(&KEY, &7u32, Some(at)).unwrap()).unwrap()
        );
    }
    let json = Codec::Json.encode(&KEY, &7u32, None).unwrap();
    assert_eq!(&json[HEADER_LEN..], b"7");
    assert_eq!(Header::parse(&json).unwrap().expires_at_ms, 0);
}

#[test]
fn an_entry_expires_at_its_millisecond_and_zero_is_never() {
    let bytes = Codec::Postcard
        .encode(&KEY, &1u8, Some(UNIX_EPOCH + Duration::from_millis(5_000)))
        .unwrap();
    let header = Header::parse(&bytes).unwrap();
    let at = |ms| UNIX_EPOCH + Duration::from_millis(ms);
    assert!(!header.is_expired(at(4_999)));
    assert!(header.is_expired(at(5_000)));
    assert!(header.is_expired(at(5_001)));
    let never = Header {
        expires_at_ms: 0,
        ..header
    };
    assert!(!never.is_expired(at(u64::MAX / 2)));
    // An expiry before 1970 is stored as the first millisecond, not as "never".
    let ancient = Codec::Postcard
        .encode(&KEY, &1u8, Some(UNIX_EPOCH - Duration::from_secs(1)))
        .unwrap();
    assert_eq!(Header::parse(&ancient).unwrap().expires_at_ms, 1);
    assert_eq!(
        Codec::Postcard.decode::<u8>(&KEY, &ancient).unwrap(),
        Decoded::Expired
    );
    let later = SystemTime::now() + Duration::from_secs(3600);
    let alive = Codec::Postcard.encode(&KEY, &1u8, Some(later)).unwrap();
    assert_eq!(
        Codec::Postcard.decode::<u8>(&KEY, &alive).unwrap(),
        Decoded::Value(1)
    );
}

#[test]
fn the_codec_in_the_header_decodes_whichever_codec_reads() {
    let json = Codec::Json.encode(&KEY, &vec![1u16, 2], None).unwrap();
    assert_eq!(
        Codec::Postcard.decode::<Vec<u16>>(&KEY, &json).unwrap(),
        Decoded::Value(vec![1, 2])
    );
    let postcard = Codec::Postcard.encode(&KEY, &vec![1u16, 2], None).unwrap();
    assert_eq!(
        Codec::Json.decode::<Vec<u16>>(&KEY, &postcard).unwrap(),
        Decoded::Value(vec![1, 2])
    );
}

#[test]
fn bytes_that_are_not_a_whole_header_of_ours_are_foreign() {
    let bytes = Codec::Postcard.encode(&KEY, &1u8, None).unwrap();
    assert!(Header::parse(&bytes[..HEADER_LEN]).is_some());
    assert!(Header::parse(&bytes[..HEADER_LEN - 1]).is_none());
    let mut magic = bytes.clone();
    magic[0] = b'X';
    assert!(Header::parse(&magic).is_none());
    let mut codec = bytes.clone();
    codec[5] = 2;
    assert!(Header::parse(&codec).is_none());
    assert_eq!(
        Codec::Postcard.decode::<u8>(&KEY, &codec).unwrap(),
        Decoded::Foreign
    );
    // A signed layout shorter than its MAC is not an entry either.
    let signed = Codec::Postcard
        .encode_signed(&KEY, &1u8, None, Some(&secret()))
        .unwrap();
    assert!(Header::parse(&signed[..SIGNED_HEADER_LEN]).is_some());
    assert!(Header::parse(&signed[..SIGNED_HEADER_LEN - 1]).is_none());
}

#[test]
fn a_signed_entry_reads_back_only_under_its_key() {
    let key = secret();
    for codec in [Codec::Postcard, Codec::Json] {
        let bytes = codec
            .encode_signed(&KEY, &"value", None, Some(&key))
            .unwrap();
        assert_eq!(bytes[4], 3);
        let header = Header::parse(&bytes).unwrap();
        assert!(header.signed);
        assert_eq!(header.payload_offset(), SIGNED_HEADER_LEN);
        // Written as a `&str`: another type than `String`, so a miss.
        assert_eq!(
            codec
                .decode_signed::<String>(&KEY, &bytes, Some(&key))
                .unwrap(),
            Decoded::Foreign
        );
        let owned = codec
            .encode_signed(&KEY, &"value".to_string(), None, Some(&key))
            .unwrap();
        assert_eq!(
            codec
                .decode_signed::<String>(&KEY, &owned, Some(&key))
                .unwrap(),
            Decoded::Value("value".to_string())
        );
        let refused = |bytes: &[u8], signing: Option<&SigningKey>| {
            codec
                .decode_signed::<String>(&KEY, bytes, signing)
                .unwrap_err()
                .kind()
                == ErrorKind::Codec
        };
        let other = SigningKey::new("fedcba9876543210").unwrap();
        assert!(refused(&owned, Some(&other)), "another key");
        assert!(refused(&owned, None), "no key to check it");
        let unsigned = codec.encode(&KEY, &"value".to_string(), None).unwrap();
        assert!(
            refused(&unsigned, Some(&key)),
            "unsigned, yet signing is required"
        );
        for at in [HEADER_LEN, SIGNED_HEADER_LEN - 1, owned.len() - 1, 20] {
            let mut altered = owned.clone();
            altered[at] ^= 1;
            assert!(refused(&altered, Some(&key)), "byte {at} altered");
        }
    }
}

#[test]
fn a_type_mismatch_is_foreign_before_any_signature_is_checked() {
    let bytes = Codec::Postcard
        .encode_signed(&KEY, &5u32, None, Some(&secret()))
        .unwrap();
    assert_eq!(
        Codec::Postcard
            .decode_signed::<u64>(&KEY, &bytes, None)
            .unwrap(),
        Decoded::Foreign
    );
}

#[test]
fn signing_keys_need_sixteen_bytes_and_compare_by_value() {
    assert!(SigningKey::new([7u8; 16]).is_ok());
    let short = SigningKey::new([7u8; 15]).unwrap_err();
    assert_eq!(short.field(), Some("signing_key"));
    assert_eq!(secret(), "0123456789abcdef".parse::<SigningKey>().unwrap());
    assert_ne!(secret(), SigningKey::new("0123456789abcdeF").unwrap());
    assert!("short".parse::<SigningKey>().is_err());
}

#[test]
fn codec_names_read_in_any_case_and_print_in_lower_case() {
    assert_eq!("JSON".parse::<Codec>().unwrap(), Codec::Json);
    assert_eq!("Postcard".parse::<Codec>().unwrap(), Codec::Postcard);
    assert_eq!(Codec::Json.to_string(), "json");
    assert_eq!(Codec::Postcard.to_string(), "postcard");
    assert_eq!(Codec::default(), Codec::Postcard);
}
