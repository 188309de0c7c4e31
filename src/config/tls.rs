//! The value types of the TLS settings (`--cert-reqs`, `--tls-min-version`,
//! `--ciphers`): words in, plain values out. Loading certificates and
//! building the TLS configuration is the master's job (`master/tls.rs`);
//! nothing here reads a file or names a TLS crate.

use std::fmt;

/// `--cert-reqs`: whether clients must present a certificate. The numbers
/// are gunicorn's (Python's `ssl.CERT_NONE`, `CERT_OPTIONAL`,
/// `CERT_REQUIRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum CertReqs {
    /// 0: no client certificate is asked for.
    #[default]
    None,
    /// 1: a client certificate is asked for; one that is sent must verify
    /// against `--ca-certs`, but a client may send none.
    Optional,
    /// 2: a client without a certificate that verifies against
    /// `--ca-certs` is refused during the handshake.
    Required,
}

/// `--cert-reqs 0|1|2` (gunicorn's numbers; the `ssl` module's names
/// `CERT_NONE`, `CERT_OPTIONAL`, `CERT_REQUIRED` are accepted too).
pub(super) fn parse_cert_reqs(text: &str) -> Result<CertReqs, String> {
    match text.trim().to_ascii_uppercase().as_str() {
        "0" | "CERT_NONE" => Ok(CertReqs::None),
        "1" | "CERT_OPTIONAL" => Ok(CertReqs::Optional),
        "2" | "CERT_REQUIRED" => Ok(CertReqs::Required),
        _ => Err(format!(
            "'{text}' is not 0 (none), 1 (optional) or 2 (required)"
        )),
    }
}

/// `--tls-min-version`: the oldest protocol version offered.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum TlsVersion {
    /// TLS 1.2 (the default floor; older versions are never offered).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        })
    }
}

/// `--tls-min-version 1.2|1.3` (also `TLSv1.2`, `TLSv1_3`...).
pub(super) fn parse_tls_version(text: &str) -> Result<TlsVersion, String> {
    let lower = text.trim().to_ascii_lowercase();
    let number = lower
        .strip_prefix("tlsv")
        .or_else(|| lower.strip_prefix("tls"))
        .unwrap_or(&lower)
        .replace('_', ".");
    match number.as_str() {
        "1.2" => Ok(TlsVersion::Tls12),
        "1.3" => Ok(TlsVersion::Tls13),
        "1" | "1.0" | "1.1" => Err(format!(
            "'{text}': TLS older than 1.2 is not offered; use 1.2 or 1.3"
        )),
        _ => Err(format!("'{text}' is not 1.2 or 1.3")),
    }
}

/// The cipher suites `--ciphers` may name: rustls's names, in its order of
/// preference. The master maps each name to the suite of the crypto
/// provider (a unit test there holds this list and the provider together).
pub const CIPHER_SUITE_NAMES: [&str; 9] = [
    "TLS13_AES_256_GCM_SHA384",
    "TLS13_AES_128_GCM_SHA256",
    "TLS13_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

/// `--ciphers`: the suites to offer, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct CipherSuites(pub Vec<&'static str>);

/// `--ciphers NAME[:NAME...]` (`:`, `,` or spaces between names): rustls
/// suite names, case-insensitive. An OpenSSL cipher string
/// (`ECDHE+AESGCM:!aNULL`, `HIGH`) is refused with the accepted names.
pub(super) fn parse_ciphers(text: &str) -> Result<CipherSuites, String> {
    let mut suites = Vec::new();
    for word in text
        .split([':', ',', ' '])
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        let upper = word.to_ascii_uppercase();
        let Some(name) = CIPHER_SUITE_NAMES.iter().find(|name| **name == upper) else {
            return Err(format!(
                "'{word}' is not a rustls cipher suite (OpenSSL cipher strings are not \
                 understood); name suites from: {}",
                CIPHER_SUITE_NAMES.join(", ")
            ));
        };
        if !suites.contains(name) {
            suites.push(*name);
        }
    }
    if suites.is_empty() {
        return Err(format!(
            "names no cipher suite; name suites from: {}",
            CIPHER_SUITE_NAMES.join(", ")
        ));
    }
    Ok(CipherSuites(suites))
}

/// Read back from the names a handoff carries, by the one parser.
impl TryFrom<Vec<String>> for CipherSuites {
    type Error = String;

    fn try_from(names: Vec<String>) -> Result<CipherSuites, String> {
        parse_ciphers(&names.join(":"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_reqs_takes_gunicorns_numbers() {
        assert_eq!(parse_cert_reqs("0"), Ok(CertReqs::None));
        assert_eq!(parse_cert_reqs("1"), Ok(CertReqs::Optional));
        assert_eq!(parse_cert_reqs("2"), Ok(CertReqs::Required));
        assert_eq!(parse_cert_reqs("cert_required"), Ok(CertReqs::Required));
        assert!(parse_cert_reqs("3").is_err());
    }

    #[test]
    fn tls_min_version_is_one_two_or_one_three() {
        assert_eq!(parse_tls_version("1.2"), Ok(TlsVersion::Tls12));
        assert_eq!(parse_tls_version("TLSv1.3"), Ok(TlsVersion::Tls13));
        assert_eq!(parse_tls_version("TLSv1_3"), Ok(TlsVersion::Tls13));
        assert!(parse_tls_version("1.1")
            .unwrap_err()
            .contains("older than 1.2"));
        assert!(parse_tls_version("2").is_err());
    }

    #[test]
    fn ciphers_are_rustls_names() {
        assert_eq!(
            parse_ciphers("tls13_aes_128_gcm_sha256:TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            Ok(CipherSuites(vec![
                "TLS13_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
            ]))
        );
        assert_eq!(
            parse_ciphers("TLS13_AES_128_GCM_SHA256, TLS13_AES_128_GCM_SHA256"),
            Ok(CipherSuites(vec!["TLS13_AES_128_GCM_SHA256"]))
        );
    }

    #[test]
    fn an_openssl_cipher_string_is_refused_with_the_accepted_names() {
        let error = parse_ciphers("ECDHE+AESGCM:!aNULL").unwrap_err();
        assert!(error.contains("'ECDHE+AESGCM' is not a rustls cipher suite"));
        assert!(error.contains("TLS13_AES_128_GCM_SHA256"));
        assert!(parse_ciphers(" : ").is_err());
    }
}
