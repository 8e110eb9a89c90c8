//! How the relay reaches PostgreSQL: the connection string as libpq users write it, TLS with
//! libpq's `sslmode` meanings, and the connection pool.
//!
//! tokio-postgres knows only `disable`, `prefer` and `require`, never verifies anything by
//! itself and refuses `sslrootcert`. So `sslmode` and `sslrootcert` are taken out of the string
//! here, and the TLS connector (rustls, through tokio-postgres-rustls) checks the server's
//! certificate as libpq would for that mode:
//!
//! | sslmode       | encrypted              | certificate checked               |
//! |---------------|------------------------|-----------------------------------|
//! | `disable`     | never                  | -                                 |
//! | `prefer`      | if the server offers it (the default, as in libpq) | no    |
//! | `require`     | always, or no connection | no (yes, as `verify-ca`, with an `sslrootcert`) |
//! | `verify-ca`   | always                 | signed by a CA in `sslrootcert`   |
//! | `verify-full` | always                 | that, and issued for the host name |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the operating system's store;
//! without it `verify-ca` and `verify-full` read `~/.postgresql/root.crt`, as libpq does. Over a
//! Unix socket nothing is encrypted, whatever the mode (libpq ignores sslmode there too).

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

/// What `sslmode` asks for, in libpq's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Result<TlsMode, ConnectError> {
        Ok(match value {
            "disable" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            // libpq's "allow" tries plaintext first: a password could go out unencrypted
            other => return Err(ConnectError::SslMode(other.to_owned())),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }

    fn verifies(self) -> bool {
        matches!(self, TlsMode::VerifyCa | TlsMode::VerifyFull)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid --database-url: sslmode {0:?} is not one of disable, prefer, require, verify-ca, verify-full")]
    SslMode(String),
    #[error("invalid --database-url: {0}")]
    Syntax(String),
    #[error("invalid --database-url: {0}")]
    Parse(#[from] tokio_postgres::Error),
    #[error("sslrootcert=system needs sslmode=verify-full, not {0}: with a weaker mode any publicly issued certificate would pass (libpq refuses it too)")]
    WeakWithSystemRoots(&'static str),
    #[error(
        "sslmode={mode} needs the CA certificates to trust: set sslrootcert (no {default} either)"
    )]
    NoRootCert { mode: &'static str, default: String },
    #[error("cannot read the CA certificates in sslrootcert {path}: {reason}")]
    RootCert { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS configuration: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
}

/// A parsed connection string and the TLS connector its sslmode asks for.
#[derive(Clone)]
pub struct Database {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub mode: TlsMode,
}

impl Database {
    pub fn parse(connection_string: &str) -> Result<Database, ConnectError> {
        let (rest, options) = take_tls_options(connection_string)?;
        let mut config: tokio_postgres::Config = rest.parse()?;
        let mode = effective_mode(&options)?;
        // libpq encrypts nothing over a Unix socket; a hostaddr is always TCP
        let over_sockets_only = config.get_hostaddrs().is_empty()
            && !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| matches!(h, Host::Unix(_)));
        config.ssl_mode(match mode {
            _ if over_sockets_only => SslMode::Disable,
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        });
        let roots = if mode.verifies() && !over_sockets_only {
            Some(root_certificates(mode, options.sslrootcert.as_deref())?)
        } else {
            None
        };
        let tls = MakeRustlsConnect::new(client_config(mode, roots)?);
        Ok(Database { config, tls, mode })
    }

    /// The pool every database call but LISTEN goes through.
    pub fn pool(&self, size: usize) -> Result<Pool, deadpool_postgres::BuildError> {
        Pool::builder(Manager::from_config(
            self.config.clone(),
            self.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        ))
        .max_size(size)
        .build()
    }
}

/// The mode as libpq reads sslmode and sslrootcert together: `require` with CA certificates
/// (given, or libpq's default file present) verifies the CA; `sslrootcert=system` means
/// `verify-full`, and a weaker mode with it is refused (libpq since PostgreSQL 16).
fn effective_mode(options: &TlsOptions) -> Result<TlsMode, ConnectError> {
    let system = options.sslrootcert.as_deref() == Some("system");
    let mode = match &options.sslmode {
        Some(value) => TlsMode::parse(value)?,
        None if system => TlsMode::VerifyFull,
        None => TlsMode::Prefer,
    };
    Ok(match mode {
        TlsMode::VerifyFull => mode,
        _ if system => return Err(ConnectError::WeakWithSystemRoots(mode.name())),
        TlsMode::Require if options.sslrootcert.is_some() || default_root_cert().exists() => {
            TlsMode::VerifyCa
        }
        _ => mode,
    })
}

#[derive(Debug, Default, PartialEq)]
struct TlsOptions {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

/// Split the TLS options this module handles off a URL or key=value connection string.
fn take_tls_options(connection_string: &str) -> Result<(String, TlsOptions), ConnectError> {
    let mut options = TlsOptions::default();
    let mut keep = |key: &str, value: &str| match key {
        "sslmode" => {
            options.sslmode = Some(value.to_owned());
            false
        }
        "sslrootcert" => {
            options.sslrootcert = Some(value.to_owned());
            false
        }
        _ => true,
    };
    let rest = if connection_string.starts_with("postgres://")
        || connection_string.starts_with("postgresql://")
    {
        without_url_options(connection_string, &mut keep)
    } else {
        without_key_value_options(connection_string, &mut keep)?
    };
    Ok((rest, options))
}

/// The URL without the query parameters `keep` refuses; the others stay exactly as written.
/// The query is found as tokio-postgres finds it: after the user info (up to the first `@`),
/// the first `?`. Only the query is touched: the rest may hold several hosts
/// (`host1,host2:5433`), which URL parsers refuse.
fn without_url_options(url: &str, keep: &mut impl FnMut(&str, &str) -> bool) -> String {
    let after_credentials = url.find('@').map_or(0, |at| at + 1);
    let Some(query_start) = url[after_credentials..]
        .find('?')
        .map(|q| q + after_credentials)
    else {
        return url.to_owned();
    };
    let decoded = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    let kept: Vec<&str> = url[query_start + 1..]
        .split('&')
        .filter(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            keep(&decoded(key), &decoded(value))
        })
        .collect();
    match kept.is_empty() {
        true => url[..query_start].to_owned(),
        false => format!("{}?{}", &url[..query_start], kept.join("&")),
    }
}

/// The key=value string without the pairs `keep` refuses, in libpq's syntax: spaces around `=`
/// allowed, values single-quoted or not, backslash escapes.
fn without_key_value_options(
    conninfo: &str,
    keep: &mut impl FnMut(&str, &str) -> bool,
) -> Result<String, ConnectError> {
    let mut kept = Vec::new();
    let mut chars = conninfo.chars().peekable();
    for word in 1.. {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            // not the word itself: it may be a password typed without "password="
            return Err(ConnectError::Syntax(format!(
                "word {word} ({} characters) is not followed by \"=\"",
                key.chars().count()
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => value.extend(chars.next()),
                Some('\'') if quoted => break,
                Some(c) if !quoted && c.is_whitespace() => break,
                Some(c) => value.push(c),
                None if quoted => {
                    return Err(ConnectError::Syntax(format!(
                        "the value of {key:?} has no closing quote"
                    )))
                }
                None => break,
            }
        }
        if keep(&key, &value) {
            let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{escaped}'"));
        }
    }
    Ok(kept.join(" "))
}

fn root_certificates(
    mode: TlsMode,
    sslrootcert: Option<&str>,
) -> Result<RootCertStore, ConnectError> {
    let mut roots = RootCertStore::empty();
    if sslrootcert == Some("system") {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(ConnectError::RootCert {
                path: "system".into(),
                reason: "the operating system's certificate store is empty".into(),
            });
        }
        return Ok(roots);
    }
    let path = match sslrootcert {
        Some(path) => PathBuf::from(path),
        None => {
            let default = default_root_cert();
            if !default.exists() {
                return Err(ConnectError::NoRootCert {
                    mode: mode.name(),
                    default: default.display().to_string(),
                });
            }
            default
        }
    };
    let unreadable = |reason: String| ConnectError::RootCert {
        path: path.clone(),
        reason,
    };
    for certificate in
        CertificateDer::pem_file_iter(&path).map_err(|e| unreadable(e.to_string()))?
    {
        let certificate = certificate.map_err(|e| unreadable(e.to_string()))?;
        roots
            .add(certificate)
            .map_err(|e| unreadable(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(unreadable("it holds no certificate".into()));
    }
    Ok(roots)
}

/// libpq's default sslrootcert.
fn default_root_cert() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_default();
    Path::new(&home).join(".postgresql/root.crt")
}

fn client_config(
    mode: TlsMode,
    roots: Option<RootCertStore>,
) -> Result<ClientConfig, ConnectError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let chain = match roots {
        Some(roots) => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()?,
        ),
        None => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match chain {
        Some(webpki) if mode == TlsMode::VerifyFull => webpki,
        chain => Arc::new(LibpqVerifier { chain, provider }),
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// `prefer` and `require` (no chain to check: any certificate is accepted, libpq's meaning) and
/// `verify-ca` (the chain must lead to a trusted CA, whatever name it was issued for). The
/// handshake's signatures are checked either way, so the server holds the key of the
/// certificate it shows.
#[derive(Debug)]
struct LibpqVerifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for LibpqVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        // webpki checks the chain before the name, so a name error means the chain is good
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(connection_string: &str) -> (String, TlsOptions) {
        take_tls_options(connection_string).expect("parses")
    }

    #[test]
    fn tls_options_are_taken_out_of_key_value_strings() {
        let (rest, tls) = options("host=db.example port = 5432 sslmode=verify-full sslrootcert='/etc/ca dir/root.pem' user=relay");
        assert_eq!(rest, "host='db.example' port='5432' user='relay'");
        assert_eq!(tls.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(tls.sslrootcert.as_deref(), Some("/etc/ca dir/root.pem"));
    }

    #[test]
    fn quotes_and_backslashes_in_other_values_survive() {
        let (rest, _) = options(r"password='it\'s a \\ secret' sslmode=require");
        let config: tokio_postgres::Config = rest.parse().expect("tokio-postgres reads it");
        assert_eq!(config.get_password(), Some(r"it's a \ secret".as_bytes()));
    }

    #[test]
    fn tls_options_are_taken_out_of_urls_and_other_parameters_kept() {
        let (rest, tls) =
            options("postgresql://relay@h1:5432,h2/app?sslmode=require&application_name=a%20b&sslrootcert=%2Fca.pem");
        // the other parameters exactly as written: tokio-postgres decodes %20, not +
        assert_eq!(
            rest,
            "postgresql://relay@h1:5432,h2/app?application_name=a%20b"
        );
        assert_eq!(tls.sslmode.as_deref(), Some("require"));
        assert_eq!(tls.sslrootcert.as_deref(), Some("/ca.pem"));
        assert_eq!(
            options("postgres://h/app?sslmode=disable").0,
            "postgres://h/app"
        );
    }

    #[test]
    fn a_question_mark_in_a_url_password_is_not_the_query() {
        let (rest, tls) =
            options("postgres://relay:pa?ss@h/app?sslmode=require&options=-c%20a%3Db");
        assert_eq!(rest, "postgres://relay:pa?ss@h/app?options=-c%20a%3Db");
        assert_eq!(tls.sslmode.as_deref(), Some("require"));
        let config: tokio_postgres::Config = rest.parse().expect("tokio-postgres reads it");
        assert_eq!(config.get_password(), Some("pa?ss".as_bytes()));
        assert_eq!(config.get_options(), Some("-c a=b"));
    }

    #[test]
    fn a_hostaddr_is_tcp_and_keeps_tls() {
        for conninfo in [
            "hostaddr=10.0.0.5 sslmode=require",
            "host=/run/pg hostaddr=10.0.0.5 sslmode=require",
        ] {
            let database = Database::parse(conninfo).expect("parses");
            assert_eq!(
                database.config.get_ssl_mode(),
                SslMode::Require,
                "{conninfo}"
            );
        }
    }

    #[test]
    fn sslrootcert_system_means_verify_full_and_refuses_weaker_modes() {
        let error = Database::parse("host=h sslrootcert=system sslmode=require")
            .err()
            .expect("refused");
        assert!(
            matches!(error, ConnectError::WeakWithSystemRoots("require")),
            "{error}"
        );
        // without a mode it verifies fully (when the system has any CA certificates)
        let tls = TlsOptions {
            sslmode: None,
            sslrootcert: Some("system".into()),
        };
        assert_eq!(effective_mode(&tls).expect("a mode"), TlsMode::VerifyFull);
    }

    #[test]
    fn a_word_without_a_value_is_refused_without_showing_it() {
        let error = Database::parse("host=h s3cretpassword")
            .err()
            .expect("refused");
        assert!(!error.to_string().contains("s3cret"), "{error}");
        assert!(error.to_string().contains("word 2"), "{error}");
    }

    #[test]
    fn an_unknown_sslmode_is_refused_by_name() {
        let error = Database::parse("host=h sslmode=allow")
            .err()
            .expect("refused");
        assert!(error.to_string().contains("\"allow\""), "{error}");
    }

    #[test]
    fn an_unclosed_quote_is_refused() {
        let error = Database::parse("host=h password='open")
            .err()
            .expect("refused");
        assert!(error.to_string().contains("no closing quote"), "{error}");
    }

    #[test]
    fn the_default_is_prefer_as_in_libpq() {
        let database = Database::parse("host=h").expect("parses");
        assert_eq!(database.mode, TlsMode::Prefer);
        assert_eq!(database.config.get_ssl_mode(), SslMode::Prefer);
    }

    #[test]
    fn a_missing_ca_file_is_refused_by_its_path() {
        let error = Database::parse("host=h sslmode=verify-full sslrootcert=/nonexistent/ca.pem")
            .err()
            .expect("refused");
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }

    #[test]
    fn require_with_a_root_certificate_verifies_the_ca_as_libpq_does() {
        // the CA file is read, so a bad one is refused rather than ignored
        let error = Database::parse("host=h sslmode=require sslrootcert=/nonexistent/ca.pem")
            .err()
            .expect("refused");
        assert!(matches!(error, ConnectError::RootCert { .. }), "{error}");
    }

    #[test]
    fn verify_full_without_a_root_certificate_names_libpqs_default_file() {
        let error = Database::parse("host=h sslmode=verify-full")
            .err()
            .expect("refused");
        assert!(
            error.to_string().contains(".postgresql/root.crt"),
            "{error}"
        );
    }

    #[test]
    fn unix_sockets_are_never_encrypted() {
        let database = Database::parse("host=/run/postgresql sslmode=require").expect("parses");
        assert_eq!(database.config.get_ssl_mode(), SslMode::Disable);
    }
}
