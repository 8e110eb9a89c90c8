//! Signing secrets in the Standard Webhooks form: `whsec_` followed by base64 of the key.

use crate::sql_error::SqlError;
use base64::{engine::general_purpose::STANDARD, Engine};
use pgrx::PgSqlErrorCode;

const PREFIX: &str = "whsec_";
const GENERATED_KEY_BYTES: usize = 32;
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("invalid secret: {0}")]
    Invalid(&'static str),
    #[error("could not generate a secret: {0}")]
    Random(getrandom::Error),
}

impl SqlError for SecretError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            SecretError::Invalid(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            SecretError::Random(_) => PgSqlErrorCode::ERRCODE_SYSTEM_ERROR,
        }
    }
}

pub fn generate() -> Result<String, SecretError> {
    let mut key = [0u8; GENERATED_KEY_BYTES];
    getrandom::getrandom(&mut key).map_err(SecretError::Random)?;
    Ok(format!("{PREFIX}{}", STANDARD.encode(key)))
}

/// The secret is deliberately not echoed in errors.
pub fn check(secret: &str) -> Result<String, SecretError> {
    let encoded = secret
        .strip_prefix(PREFIX)
        .ok_or(SecretError::Invalid("it must start with whsec_"))?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| SecretError::Invalid("the part after whsec_ must be base64"))?;
    if !KEY_BYTES.contains(&key.len()) {
        return Err(SecretError::Invalid("the key must be 24 to 64 bytes"));
    }
    Ok(secret.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_pass_the_check() {
        let secret = generate().expect("random bytes");
        assert!(secret.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&secret[6..]).expect("base64").len(), 32);
        assert!(check(&secret).is_ok());
    }

    #[test]
    fn accepts_the_standard_webhooks_example_secret() {
        assert!(check("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
    }

    #[test]
    fn refuses_a_missing_prefix() {
        assert!(check("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
    }

    #[test]
    fn refuses_a_short_key() {
        assert!(check(&format!("whsec_{}", STANDARD.encode([1u8; 8]))).is_err());
    }

    #[test]
    fn refuses_non_base64() {
        assert!(check("whsec_not*base64*at*all*!!").is_err());
    }
}
