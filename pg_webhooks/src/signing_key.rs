//! Key pairs for asymmetric signatures: Standard Webhooks' `v1a` (ed25519) and HTTP Signatures
//! with RSA-SHA256 (as Copernica and SMTPeter sign). The private key is stored as text only the
//! relay reads (`<scheme>:<key id>:<base64 PKCS#8>`); the public key is what receivers are given:
//! `whpk_<base64>` for ed25519 (the Standard Webhooks form), a PEM `PUBLIC KEY` for RSA.

use crate::sql_error::SqlError;
use base64::{engine::general_purpose::STANDARD, Engine};
use pgrx::PgSqlErrorCode;
use ring::signature::{Ed25519KeyPair, KeyPair};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

/// RSA modulus size: what Copernica's published keys use, and ring's (the relay's) minimum.
const RSA_BITS: usize = 2048;
/// Hex digits of the SHA-256 of the public key that name it (the `keyId` of a signature).
const KEY_ID_HEX: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("unknown signature scheme \"{0}\": use hmac-sha256, ed25519 or rsa-sha256")]
    UnknownScheme(String),
    #[error("could not generate a key pair: {0}")]
    Generate(String),
}

impl SqlError for KeyError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            KeyError::UnknownScheme(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            KeyError::Generate(_) => PgSqlErrorCode::ERRCODE_SYSTEM_ERROR,
        }
    }
}

#[derive(Debug)]
pub struct NewKeyPair {
    pub signing_key: String,
    pub public_key: String,
    pub key_id: String,
}

pub fn generate(scheme: &str) -> Result<NewKeyPair, KeyError> {
    match scheme {
        "ed25519" => ed25519(),
        "rsa-sha256" => rsa_sha256(),
        other => Err(KeyError::UnknownScheme(other.to_owned())),
    }
}

fn ed25519() -> Result<NewKeyPair, KeyError> {
    let random = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&random)
        .map_err(|error| KeyError::Generate(error.to_string()))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|error| KeyError::Generate(error.to_string()))?;
    let public = pair.public_key().as_ref();
    Ok(new_pair(
        "ed25519",
        pkcs8.as_ref(),
        format!("whpk_{}", STANDARD.encode(public)),
        public,
    ))
}

fn rsa_sha256() -> Result<NewKeyPair, KeyError> {
    let generate = |error: &dyn std::fmt::Display| KeyError::Generate(error.to_string());
    let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, RSA_BITS)
        .map_err(|error| generate(&error))?;
    let pkcs8 = private.to_pkcs8_der().map_err(|error| generate(&error))?;
    let public = private.to_public_key();
    let spki = public
        .to_public_key_der()
        .map_err(|error| generate(&error))?;
    let pem = public
        .to_public_key_pem(LineEnding::LF)
        .map_err(|error| generate(&error))?;
    Ok(new_pair(
        "rsa-sha256",
        pkcs8.as_bytes(),
        pem,
        spki.as_bytes(),
    ))
}

fn new_pair(scheme: &str, pkcs8: &[u8], public_key: String, public_bytes: &[u8]) -> NewKeyPair {
    let key_id: String = Sha256::digest(public_bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<String>()[..KEY_ID_HEX]
        .to_owned();
    NewKeyPair {
        signing_key: format!("{scheme}:{key_id}:{}", STANDARD.encode(pkcs8)),
        public_key,
        key_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ED25519};

    fn private_der(pair: &NewKeyPair) -> Vec<u8> {
        let encoded = pair.signing_key.rsplit(':').next().expect("three parts");
        STANDARD.decode(encoded).expect("base64")
    }

    #[test]
    fn an_ed25519_pair_signs_what_its_public_key_verifies() {
        let pair = generate("ed25519").expect("a key pair");
        assert!(pair
            .signing_key
            .starts_with(&format!("ed25519:{}:", pair.key_id)));
        let signer = Ed25519KeyPair::from_pkcs8(&private_der(&pair)).expect("PKCS#8");
        let public = STANDARD
            .decode(pair.public_key.strip_prefix("whpk_").expect("whpk_"))
            .expect("base64");
        let signature = signer.sign(b"msg_1.1700000000.{}");
        UnparsedPublicKey::new(&ED25519, &public)
            .verify(b"msg_1.1700000000.{}", signature.as_ref())
            .expect("verifies");
    }

    #[test]
    fn an_rsa_pair_is_pkcs8_for_the_relay_and_pem_for_receivers() {
        let pair = generate("rsa-sha256").expect("a key pair");
        assert!(pair.public_key.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(pair.key_id.len(), KEY_ID_HEX);
        ring::rsa::KeyPair::from_pkcs8(&private_der(&pair)).expect("ring reads it");
    }

    #[test]
    fn each_pair_is_new() {
        let (a, b) = (generate("ed25519"), generate("ed25519"));
        assert_ne!(a.expect("one").key_id, b.expect("two").key_id);
    }

    #[test]
    fn an_unknown_scheme_is_named() {
        let error = generate("dsa").expect_err("refused");
        assert!(error.to_string().contains("\"dsa\""), "{error}");
    }
}
