//! The Secret `<name>-admin-token`: the bearer token of the cache nodes' admin API, mounted into
//! the engine container and read by the operator. Generated once ([`generate_token`]) and kept:
//! reconcile re-applies the token it found, so pods never see it change under them.

use super::{ADMIN_TOKEN_KEY, admin_token_secret_name, child_meta};
use crate::operator::crd::MapCache;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rand::Rng;
use std::collections::BTreeMap;

pub fn build(mc: &MapCache, token: &str) -> Secret {
    Secret {
        metadata: child_meta(mc, admin_token_secret_name(mc)),
        type_: Some("Opaque".into()),
        // `data`, not `stringData`: the API server never stores stringData, so applying it would
        // leave server-side apply owning a field that does not exist.
        data: Some(BTreeMap::from([(
            ADMIN_TOKEN_KEY.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// A fresh token: 32 random bytes from the thread's CSPRNG, hex-encoded (64 characters).
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The token stored in an existing Secret, if it holds a non-empty UTF-8 one.
pub fn token_of(secret: &Secret) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(ADMIN_TOKEN_KEY)?;
    let token = String::from_utf8(bytes.0.clone()).ok()?;
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_carries_the_given_token_under_key_token() {
        let secret = build(&MapCache::test(), "abc");
        assert_eq!(secret.metadata.name.as_deref(), Some("cache-admin-token"));
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        assert_eq!(
            secret.data,
            Some(BTreeMap::from([("token".to_string(), ByteString(b"abc".to_vec()))]))
        );
        assert_eq!(secret.string_data, None);
        assert_eq!(token_of(&secret), Some("abc".to_string()));
    }

    #[test]
    fn generated_tokens_are_64_hex_chars_and_differ() {
        let first = generate_token();
        assert_eq!(first.len(), 64);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(first, generate_token());
    }

    #[test]
    fn token_of_reads_data_and_refuses_empty_or_missing() {
        let mut secret = Secret::default();
        assert_eq!(token_of(&secret), None);
        secret.data = Some(BTreeMap::from([("token".to_string(), ByteString(b"s3cret".to_vec()))]));
        assert_eq!(token_of(&secret), Some("s3cret".to_string()));
        secret.data = Some(BTreeMap::from([("token".to_string(), ByteString(Vec::new()))]));
        assert_eq!(token_of(&secret), None);
    }
}
