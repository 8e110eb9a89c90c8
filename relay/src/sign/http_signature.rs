//! HTTP Signatures (draft-cavage) with RSA-SHA256, laid out as Copernica and SMTPeter sign their
//! webhook calls: a `Digest` of the body, a `Date`, an `X-Nonce`, the account in
//! `X-Copernica-ID`, and a `Signature` over the request target and those headers. Receivers
//! check the signature with the webhook's public key (`webhooks.public_keys()`), the digest
//! against the body, and reject a `Date` older than about a minute.

use super::{pkcs8, SignError};
use crate::render::Request;
use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "rsa-sha256:";
const ACCOUNT_HEADER: &str = "x-copernica-id";
const NONCE_BYTES: usize = 16;

/// The headers a request signed with `key` (`rsa-sha256:<key id>:<base64 PKCS#8>:<account>`)
/// carries.
pub fn headers(key: &str, now: DateTime<Utc>, request: &Request) -> Result<HeaderMap, SignError> {
    let (key_id, pkcs8, account) = parts(key)?;
    let pair = RsaKeyPair::from_pkcs8(&pkcs8).map_err(|_| SignError::Key)?;
    let random = SystemRandom::new();
    let mut nonce = [0u8; NONCE_BYTES];
    random.fill(&mut nonce).map_err(|_| SignError::Key)?;

    let mut signed = vec![
        ("date", now.format("%a, %d %b %Y %H:%M:%S GMT").to_string()),
        (ACCOUNT_HEADER, account.to_owned()),
        (
            "digest",
            format!("SHA-256={}", STANDARD.encode(Sha256::digest(&request.body))),
        ),
        ("x-nonce", hex(&nonce)),
    ];
    if let Some(content_type) = request.content_type {
        // the values the client sends: the body is sent whole, with its length
        signed.push(("content-type", content_type.to_owned()));
        signed.push(("content-length", request.body.len().to_string()));
    }
    let pseudo = [
        ("(request-target)", request_target(request)?),
        ("host", host(&request.url)?),
    ];
    let own = pseudo.len(); // covered[own..] are the headers set here
    let covered: Vec<(&str, String)> = pseudo.into_iter().chain(signed).collect();
    let signing_string = covered
        .iter()
        .map(|(name, value)| format!("{name}: {value}"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut signature = vec![0u8; pair.public().modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA256,
        &random,
        signing_string.as_bytes(),
        &mut signature,
    )
    .map_err(|_| SignError::Key)?;
    let names: Vec<&str> = covered.iter().map(|(name, _)| *name).collect();

    let mut headers = HeaderMap::new();
    // the pseudo-headers and host are the request line's and the client's; content-type and
    // content-length are set by the sender, as signed here
    for (name, value) in covered[own..]
        .iter()
        .filter(|(name, _)| !name.starts_with("content-"))
    {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).map_err(|_| SignError::Key)?,
        );
    }
    let header = format!(
        "keyId=\"{key_id}\",algorithm=\"rsa-sha256\",headers=\"{}\",signature=\"{}\"",
        names.join(" "),
        STANDARD.encode(signature)
    );
    headers.insert(
        "signature",
        HeaderValue::from_str(&header).map_err(|_| SignError::Key)?,
    );
    Ok(headers)
}

fn parts(key: &str) -> Result<(&str, Vec<u8>, &str), SignError> {
    let rest = key.strip_prefix(PREFIX).ok_or(SignError::Key)?;
    let mut fields = rest.splitn(3, ':');
    let (Some(key_id), Some(encoded), Some(account)) =
        (fields.next(), fields.next(), fields.next())
    else {
        return Err(SignError::Key);
    };
    Ok((key_id, pkcs8(encoded)?, account))
}

/// `post /path?query`, as the request line has it.
fn request_target(request: &Request) -> Result<String, SignError> {
    let url = reqwest::Url::parse(&request.url).map_err(|_| SignError::Url)?;
    let query = url
        .query()
        .map(|query| format!("?{query}"))
        .unwrap_or_default();
    Ok(format!(
        "{} {}{query}",
        request.method.as_str().to_lowercase(),
        url.path()
    ))
}

/// The Host header the client sends: the port only when it is not the scheme's default.
fn host(url: &str) -> Result<String, SignError> {
    let url = reqwest::Url::parse(url).map_err(|_| SignError::Url)?;
    let host = url.host_str().ok_or(SignError::Url)?;
    Ok(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::Method;
    use ring::signature::{KeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    /// A 2048-bit test key (PKCS#8), made once for these tests.
    const TEST_KEY: &str = include_str!("test_rsa_key.b64");

    fn key(account: &str) -> String {
        format!("{PREFIX}testkey:{}:{account}", TEST_KEY.trim())
    }

    fn post(url: &str, body: &str) -> Request {
        Request {
            method: Method::POST,
            url: url.to_owned(),
            content_type: Some("application/x-www-form-urlencoded"),
            body: body.as_bytes().to_vec(),
            signed_query: None,
        }
    }

    fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }

    /// `name="value"` of the Signature header.
    fn param<'a>(signature: &'a str, name: &str) -> &'a str {
        signature
            .split(',')
            .find_map(|part| part.strip_prefix(&format!("{name}=\"")))
            .and_then(|value| value.strip_suffix('"'))
            .unwrap_or_default()
    }

    #[test]
    fn the_signature_covers_the_request_target_and_the_headers_it_names() {
        let request = post("https://crm.example:8443/hooks/in.php?x=1", "type=create");
        let now = DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let headers = headers(&key("environment_1234"), now, &request).expect("signs");
        let signature = header(&headers, "signature");
        assert_eq!(param(signature, "keyId"), "testkey");
        assert_eq!(param(signature, "algorithm"), "rsa-sha256");
        assert_eq!(
            param(signature, "headers"),
            "(request-target) host date x-copernica-id digest x-nonce content-type content-length"
        );
        assert_eq!(header(&headers, "date"), "Wed, 02 Dec 2026 10:00:00 GMT");
        assert_eq!(header(&headers, "x-copernica-id"), "environment_1234");
        assert_eq!(
            header(&headers, "digest"),
            format!(
                "SHA-256={}",
                STANDARD.encode(Sha256::digest(b"type=create"))
            )
        );
        let signing_string = format!(
            "(request-target): post /hooks/in.php?x=1\nhost: crm.example:8443\n\
             date: Wed, 02 Dec 2026 10:00:00 GMT\nx-copernica-id: environment_1234\n\
             digest: {}\nx-nonce: {}\ncontent-type: application/x-www-form-urlencoded\n\
             content-length: 11",
            header(&headers, "digest"),
            header(&headers, "x-nonce")
        );
        let pair =
            RsaKeyPair::from_pkcs8(&STANDARD.decode(TEST_KEY.trim()).expect("b64")).expect("key");
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pair.public_key().as_ref())
            .verify(
                signing_string.as_bytes(),
                &STANDARD.decode(param(signature, "signature")).expect("b64"),
            )
            .expect("the signature verifies");
    }

    #[test]
    fn a_default_port_is_not_part_of_the_host_and_a_get_has_no_content_headers() {
        let request = Request {
            method: Method::GET,
            url: "https://crm.example:443/in?email=a%40b.nl".to_owned(),
            content_type: None,
            body: Vec::new(),
            signed_query: Some("email=a%40b.nl".to_owned()),
        };
        let headers = headers(&key("a"), Utc::now(), &request).expect("signs");
        let names = param(header(&headers, "signature"), "headers").to_owned();
        assert_eq!(
            names,
            "(request-target) host date x-copernica-id digest x-nonce"
        );
        assert_eq!(host(&request.url), Ok("crm.example".to_owned()));
        assert_eq!(
            request_target(&request),
            Ok("get /in?email=a%40b.nl".to_owned())
        );
    }

    #[test]
    fn every_request_has_a_nonce_of_its_own() {
        let request = post("http://127.0.0.1:9000/", "");
        let one = headers(&key("a"), Utc::now(), &request).expect("signs");
        let two = headers(&key("a"), Utc::now(), &request).expect("signs");
        assert_ne!(header(&one, "x-nonce"), header(&two, "x-nonce"));
        assert_eq!(header(&one, "x-nonce").len(), 2 * NONCE_BYTES);
    }

    #[test]
    fn a_key_that_cannot_be_read_is_refused() {
        let request = post("http://127.0.0.1:9000/", "");
        for broken in ["rsa-sha256:id", "rsa-sha256:id:bm90IGEga2V5:acct"] {
            assert_eq!(
                headers(broken, Utc::now(), &request).map(|_| ()),
                Err(SignError::Key)
            );
        }
    }
}
