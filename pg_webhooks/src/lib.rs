//! pg_webhooks: webhooks that start inside PostgreSQL.
//!
//! The public SQL API lives in `sql/*.sql` at the workspace root, one file per concern, pulled in
//! below in dependency order. Rust provides what SQL does poorly or cannot do safely: the
//! capture trigger (`capture.rs`), URL parsing and secret generation.

use pgrx::prelude::*;

mod capture;
mod secret;
mod signing_key;
mod sql_error;
mod url_check;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../../sql/10_tables.sql", name = "tables", bootstrap);
extension_sql_file!(
    "../../sql/20_registry.sql",
    name = "registry",
    requires = [
        "tables",
        check_url,
        new_secret,
        check_secret,
        new_signing_key
    ]
);
extension_sql_file!(
    "../../sql/25_options.sql",
    name = "options",
    requires = ["registry"]
);
extension_sql_file!(
    "../../sql/30_capture.sql",
    name = "capture",
    requires = ["options"]
);
extension_sql_file!(
    "../../sql/40_relay.sql",
    name = "relay",
    requires = ["capture"]
);
extension_sql_file!(
    "../../sql/45_probes.sql",
    name = "probes",
    requires = ["relay", verification_urls]
);
extension_sql_file!(
    "../../sql/50_retention.sql",
    name = "retention",
    requires = ["probes"]
);
extension_sql_file!(
    "../../sql/60_views.sql",
    name = "views",
    requires = ["retention"]
);
extension_sql_file!("../../sql/90_privileges.sql", name = "privileges", finalize);

/// The URL a webhook posts to, normalised; raises 22023 naming the URL when it is unusable.
#[pg_extern(immutable, parallel_safe, name = "_check_url")]
fn check_url(url: &str) -> String {
    url_check::check_webhook_url(url).unwrap_or_else(|error| sql_error::raise(error))
}

/// Where a webhook's verification file is looked for: next to the callback URL, then at the
/// root of its host.
#[pg_extern(immutable, parallel_safe, name = "_verification_urls")]
fn verification_urls(url: &str, file_name: &str) -> Vec<String> {
    url_check::verification_urls(url, file_name).unwrap_or_else(|error| sql_error::raise(error))
}

/// A fresh `whsec_` signing secret (32 random bytes).
#[pg_extern(volatile, parallel_safe, name = "_new_secret")]
fn new_secret() -> String {
    secret::generate().unwrap_or_else(|error| sql_error::raise(error))
}

/// A caller-supplied secret, checked to be `whsec_` + base64 of 24 to 64 bytes.
#[pg_extern(immutable, parallel_safe, name = "_check_secret")]
fn check_secret(secret: &str) -> String {
    secret::check(secret).unwrap_or_else(|error| sql_error::raise(error))
}

/// A fresh key pair for an asymmetric signature scheme (ed25519 or rsa-sha256): the private key
/// in the form only the relay reads, the public key as receivers are given it, and its id.
#[pg_extern(volatile, parallel_safe, name = "_new_signing_key")]
fn new_signing_key(
    scheme: &str,
) -> TableIterator<
    'static,
    (
        name!(signing_key, String),
        name!(public_key, String),
        name!(key_id, String),
    ),
> {
    let pair = signing_key::generate(scheme).unwrap_or_else(|error| sql_error::raise(error));
    TableIterator::once((pair.signing_key, pair.public_key, pair.key_id))
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn new_secret_has_the_standard_webhooks_form() {
        let secret = Spi::get_one::<String>("SELECT webhooks._new_secret()")
            .expect("query runs")
            .expect("a secret");
        assert!(crate::secret::check(&secret).is_ok(), "{secret}");
    }

    #[pg_test]
    fn two_new_secrets_differ() {
        let same = Spi::get_one::<bool>("SELECT webhooks._new_secret() = webhooks._new_secret()")
            .expect("query runs");
        assert_eq!(same, Some(false));
    }

    #[pg_test]
    fn check_url_keeps_a_good_url() {
        let url = Spi::get_one::<String>(
            "SELECT webhooks._check_url('https://example.com/hook.php?x=1')",
        )
        .expect("query runs");
        assert_eq!(url.as_deref(), Some("https://example.com/hook.php?x=1"));
    }

    #[pg_test(
        error = "pg_webhooks: invalid webhook URL \"ftp://example.com/\": the scheme must be http or https"
    )]
    fn check_url_refuses_other_schemes() {
        Spi::run("SELECT webhooks._check_url('ftp://example.com/')").expect("raises");
    }

    #[pg_test]
    fn create_returns_increasing_ids() {
        let ids = Spi::get_two::<i64, i64>(
            "SELECT webhooks.create('crm', 'profile.updated', 'https://a.example/h'), \
                    webhooks.create('crm', 'profile.*', 'https://b.example/h')",
        )
        .expect("query runs");
        let (first, second) = (ids.0.expect("id"), ids.1.expect("id"));
        assert!(second > first);
    }

    #[pg_test]
    fn event_patterns_match_names_prefixes_and_everything() {
        let matches = Spi::get_one::<Vec<bool>>(
            "SELECT ARRAY[webhooks._event_matches('profile.updated', 'profile.updated'), \
                          webhooks._event_matches('profile.*', 'profile.updated'), \
                          webhooks._event_matches('*', 'email.opened'), \
                          webhooks._event_matches('profile.*', 'profiles.updated'), \
                          webhooks._event_matches('profile.created', 'profile.updated')]",
        )
        .expect("query runs");
        assert_eq!(matches, Some(vec![true, true, true, false, false]));
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
