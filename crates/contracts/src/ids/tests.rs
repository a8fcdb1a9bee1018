//! Ids are time-ordered 32-hex UUIDv7 and parse strictly.

use super::*;

#[test]
fn generated_ids_are_32_lower_hex_and_time_ordered() {
    let ids: Vec<TokenId> = (0..1000).map(|_| TokenId::new()).collect();
    for id in &ids {
        assert_eq!(id.as_str().len(), 32);
        assert!(id.as_str().bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        // Version nibble 7.
        assert_eq!(&id.as_str()[12..13], "7");
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "UUIDv7 ids generated in sequence sort in sequence");
}

#[test]
fn parsing_rejects_empty_long_and_odd_ids() {
    assert!(RunId::parse("").is_err());
    assert!(RunId::parse("a".repeat(65)).is_err());
    assert!(RunId::parse("has space").is_err());
    assert!(NodeId::parse("transform_field_mapper_0123456789ab").is_ok());
    let error = RunId::parse("").expect_err("empty");
    assert_eq!(error.to_string(), "invalid RunId \"\": empty");
}
