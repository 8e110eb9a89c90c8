//! Which URLs a webhook may post to. Address checks (loopback, private ranges) happen in the
//! relay on the address actually connected to; here only the form is checked.

use crate::sql_error::SqlError;
use pgrx::PgSqlErrorCode;

const MAX_URL_LENGTH: usize = 2048;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UrlError {
    #[error("invalid webhook URL \"{url}\": {reason}")]
    Invalid { url: String, reason: String },
}

impl SqlError for UrlError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
    }
}

fn invalid(url: &str, reason: impl Into<String>) -> UrlError {
    let shown: String = url.chars().take(200).collect();
    UrlError::Invalid {
        url: shown,
        reason: reason.into(),
    }
}

/// An absolute http(s) URL with a host, without credentials or a fragment; returned normalised.
pub fn check_webhook_url(url: &str) -> Result<String, UrlError> {
    if url.len() > MAX_URL_LENGTH {
        return Err(invalid(url, format!("longer than {MAX_URL_LENGTH} bytes")));
    }
    let parsed = url::Url::parse(url.trim()).map_err(|error| invalid(url, error.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(url, "the scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(url, "it has no host"));
    }
    // placeholders are filled from event data: never let data choose the host
    if parsed.host_str().is_some_and(|host| host.contains("__")) {
        return Err(invalid(
            url,
            "placeholders (__name__) may appear in the path and query, not in the host",
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(url, "credentials in the URL are not allowed"));
    }
    if parsed.fragment().is_some() {
        return Err(invalid(
            url,
            "a fragment (#...) is never sent and is not allowed",
        ));
    }
    Ok(parsed.into())
}

/// Where a webhook's verification file may be served, in the order they are tried: beside the
/// callback (`https://h/dir/hook.php` -> `https://h/dir/<file>`), then at the root of the host
/// (`https://h/<file>`). The query string of the callback is not carried over.
pub fn verification_urls(url: &str, file_name: &str) -> Result<Vec<String>, UrlError> {
    let base = url::Url::parse(url).map_err(|error| invalid(url, error.to_string()))?;
    let is_plain_file_name = !file_name.is_empty()
        && file_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !file_name.starts_with('.');
    if !is_plain_file_name {
        return Err(invalid(
            url,
            format!("bad verification file name \"{file_name}\""),
        ));
    }
    let mut urls = Vec::with_capacity(2);
    for path in [file_name.to_owned(), format!("/{file_name}")] {
        let candidate = base
            .join(&path)
            .map_err(|error| invalid(url, error.to_string()))?
            .to_string();
        if !urls.contains(&candidate) {
            urls.push(candidate);
        }
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verification_file_is_looked_for_beside_the_script_then_at_the_root() {
        assert_eq!(
            verification_urls("https://h.example/dir/hook.php?a=1", "pg-webhooks-1.txt"),
            Ok(vec![
                "https://h.example/dir/pg-webhooks-1.txt".to_owned(),
                "https://h.example/pg-webhooks-1.txt".to_owned()
            ])
        );
    }

    #[test]
    fn a_callback_at_the_root_has_one_verification_url() {
        assert_eq!(
            verification_urls("http://h.example:8080/hook", "f.txt"),
            Ok(vec!["http://h.example:8080/f.txt".to_owned()])
        );
    }

    #[test]
    fn a_verification_file_name_cannot_climb_directories() {
        assert!(verification_urls("https://h.example/a/b", "../f.txt").is_err());
        assert!(verification_urls("https://h.example/a/b", "x/../../f.txt").is_err());
    }

    #[test]
    fn accepts_https_with_path_and_query() {
        assert_eq!(
            check_webhook_url("https://example.com/dir/hook.php?a=1").as_deref(),
            Ok("https://example.com/dir/hook.php?a=1")
        );
    }

    #[test]
    fn normalises_scheme_and_host_case() {
        assert_eq!(
            check_webhook_url("HTTP://Example.COM").as_deref(),
            Ok("http://example.com/")
        );
    }

    #[test]
    fn refuses_other_schemes() {
        let error = check_webhook_url("ftp://example.com/").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid webhook URL \"ftp://example.com/\": the scheme must be http or https"
        );
    }

    #[test]
    fn refuses_relative_urls() {
        assert!(check_webhook_url("/hook.php").is_err());
    }

    #[test]
    fn refuses_a_url_without_host() {
        assert!(check_webhook_url("http://").is_err());
    }

    #[test]
    fn refuses_credentials() {
        assert!(check_webhook_url("https://user:pw@example.com/").is_err());
    }

    #[test]
    fn allows_placeholders_in_path_and_query_but_not_in_the_host() {
        assert!(check_webhook_url("https://h.example/__list__/add?email=__email__").is_ok());
        assert!(check_webhook_url("https://__tenant__.example/hook").is_err());
    }

    #[test]
    fn refuses_fragments() {
        assert!(check_webhook_url("https://example.com/#x").is_err());
    }

    #[test]
    fn refuses_very_long_urls() {
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LENGTH));
        assert!(check_webhook_url(&long).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_accepted_as_a_stable_url_or_refused_without_panicking(text in "\\PC{0,80}") {
            if let Ok(url) = check_webhook_url(&text) {
                proptest::prop_assert_eq!(check_webhook_url(&url), Ok(url.clone()));
            }
        }

        #[test]
        fn verification_files_stay_on_the_webhooks_host(
            path in "(/[a-z0-9._-]{0,8}){0,4}", file in "[a-z0-9-]{1,20}\\.txt"
        ) {
            let url = format!("https://h.example{path}");
            for candidate in verification_urls(&url, &file).expect("plain names are fine") {
                let parsed = url::Url::parse(&candidate).expect("a URL");
                proptest::prop_assert_eq!(parsed.host_str(), Some("h.example"));
                proptest::prop_assert!(parsed.path().ends_with(&file));
            }
        }
    }
}
