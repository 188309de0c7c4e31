//! The server's TLS configuration, built in the master from the TLS
//! settings: the `--certfile` chain and its `--keyfile` key (checked to
//! match), the `--ca-certs` roots that client certificates must chain to
//! (`--cert-reqs`), the `--ciphers` and `--tls-min-version` choices, and
//! ALPN `http/1.1`. Built at start (a bad file stops the server with one
//! line naming it) and again on HUP (a bad file keeps the current
//! configuration); workers inherit it across the fork.
//!
//! The crypto provider is rustls's `ring`. Session tickets are encrypted
//! with keys made here, before the fork, so a client resumes its session
//! on whichever worker accepts it next.

use crate::config::{CertReqs, CipherSuites, Settings, TlsVersion};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The one ALPN protocol offered.
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Why the TLS configuration could not be built. Each message is one line
/// naming the setting and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read, or is not PEM.
    #[error("{flag}: cannot read '{}': {reason}", .path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// A certificate file holds no certificate.
    #[error("{flag}: '{}' holds no PEM certificate", .path.display())]
    NoCertificate { flag: &'static str, path: PathBuf },
    /// The key file holds no private key.
    #[error("{flag}: '{}' holds no PEM private key", .path.display())]
    NoKey { flag: &'static str, path: PathBuf },
    /// The key is not usable with the certificate (mismatch, bad key).
    #[error("--keyfile: the key in '{}' does not fit the certificate in '{}': {reason}", .key.display(), .cert.display())]
    KeyMismatch {
        key: PathBuf,
        cert: PathBuf,
        reason: String,
    },
    /// `--ca-certs` holds something that is not a CA certificate.
    #[error("--ca-certs: '{}': {reason}", .path.display())]
    BadCa { path: PathBuf, reason: String },
    /// A setting that needs another one that is missing.
    #[error("{0}")]
    Missing(&'static str),
    /// The cipher suites and the minimum version have nothing in common.
    #[error("--ciphers: {0}")]
    Ciphers(String),
}

/// The TLS configuration the settings ask for: `None` without
/// `--certfile` (plain HTTP).
pub fn load(settings: &Settings) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let Some(certfile) = &settings.certfile else {
        if settings.keyfile.is_some() {
            return Err(TlsError::Missing("--keyfile: needs --certfile"));
        }
        return Ok(None);
    };
    let provider = Arc::new(provider(settings.ciphers.as_ref()));
    let chain = read_certificates("--certfile", certfile)?;
    let keyfile = settings.keyfile.as_deref().unwrap_or(certfile);
    let key = read_key(keyfile)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(settings.tls_min_version))
        .map_err(|e| {
            TlsError::Ciphers(format!(
                "no suite for TLS {} and newer (--tls-min-version): {e}",
                settings.tls_min_version
            ))
        })?;
    let builder = match settings.cert_reqs {
        CertReqs::None => builder.with_no_client_auth(),
        reqs => {
            let Some(ca_certs) = &settings.ca_certs else {
                return Err(TlsError::Missing(
                    "--cert-reqs: 1 and 2 verify client certificates against --ca-certs, which is not set",
                ));
            };
            let roots = read_roots(ca_certs)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            let verifier = match reqs {
                CertReqs::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier.build().map_err(|e| TlsError::BadCa {
                path: ca_certs.clone(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::KeyMismatch {
            key: keyfile.to_path_buf(),
            cert: certfile.clone(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    match rustls::crypto::ring::Ticketer::new() {
        Ok(ticketer) => config.ticketer = ticketer,
        Err(e) => log::warn!("TLS session tickets are off: {e}"),
    }
    Ok(Some(Arc::new(config)))
}

/// HUP: the configuration for the new workers. A file that no longer
/// loads keeps `current`, with the error logged; adding or removing
/// `--certfile` needs a restart (the sockets stay as they are).
pub fn reload(
    settings: &Settings,
    current: &Option<Arc<ServerConfig>>,
) -> Option<Arc<ServerConfig>> {
    if settings.certfile.is_none() != current.is_none() {
        log::warn!("--certfile added or removed; it applies only after a restart");
        return current.clone();
    }
    match load(settings) {
        Ok(config) => {
            if config.is_some() {
                log::info!("TLS certificates reloaded");
            }
            config
        }
        Err(e) => {
            log::error!("Cannot reload the TLS certificates, keeping the current ones: {e}");
            current.clone()
        }
    }
}

/// rustls's `ring` provider, with only the `--ciphers` suites when given
/// (in that order).
fn provider(ciphers: Option<&CipherSuites>) -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(CipherSuites(names)) = ciphers {
        let all = std::mem::take(&mut provider.cipher_suites);
        provider.cipher_suites = names
            .iter()
            .filter_map(|name| {
                all.iter()
                    .find(|suite| suite.suite().as_str() == Some(name))
                    .copied()
            })
            .collect();
    }
    provider
}

/// TLS 1.3 and 1.2, or 1.3 alone.
static FROM_TLS12: [&SupportedProtocolVersion; 2] =
    [&rustls::version::TLS13, &rustls::version::TLS12];
static FROM_TLS13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

fn versions(min: TlsVersion) -> &'static [&'static SupportedProtocolVersion] {
    match min {
        TlsVersion::Tls12 => &FROM_TLS12,
        TlsVersion::Tls13 => &FROM_TLS13,
    }
}

fn read_certificates(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |reason: String| TlsError::Read {
        flag,
        path: path.to_path_buf(),
        reason,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_error(pem_error_text(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_error(pem_error_text(e)))?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            flag,
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            flag: "--keyfile",
            path: path.to_path_buf(),
        },
        e => TlsError::Read {
            flag: "--keyfile",
            path: path.to_path_buf(),
            reason: pem_error_text(e),
        },
    })
}

fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates("--ca-certs", path)? {
        roots.add(certificate).map_err(|e| TlsError::BadCa {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// A PEM error as a short reason: the OS's words for an I/O error.
fn pem_error_text(error: rustls::pki_types::pem::Error) -> String {
    match error {
        rustls::pki_types::pem::Error::Io(e) => crate::os_error::os_error_text(&e),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CIPHER_SUITE_NAMES;

    #[test]
    fn every_cipher_name_the_settings_accept_is_a_suite_of_the_provider() {
        let provider = rustls::crypto::ring::default_provider();
        let offered: Vec<_> = provider
            .cipher_suites
            .iter()
            .filter_map(|suite| suite.suite().as_str())
            .collect();
        assert_eq!(offered, CIPHER_SUITE_NAMES.to_vec());
    }

    #[test]
    fn ciphers_keep_the_order_given() {
        let names = CipherSuites(vec![
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS13_CHACHA20_POLY1305_SHA256",
        ]);
        let chosen: Vec<_> = provider(Some(&names))
            .cipher_suites
            .iter()
            .filter_map(|suite| suite.suite().as_str())
            .collect();
        assert_eq!(chosen, names.0);
    }
}
