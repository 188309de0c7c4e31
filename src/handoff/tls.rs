//! The server's TLS configuration, built from the TLS settings and the
//! bytes of their files: the `--certfile` chain and its `--keyfile` key
//! (checked to match), the `--ca-certs` roots that client certificates must
//! chain to (`--cert-reqs`), the `--ciphers` and `--tls-min-version`
//! choices, and ALPN `http/1.1`.
//!
//! The master reads the files once ([`TlsMaterial::read`]) and builds the
//! configuration to check them (a bad file is a start-up error naming it;
//! on HUP it keeps the current material); the material goes to each worker
//! in its handoff, and the worker builds its configuration from those same
//! bytes with the same [`server_config`]: no worker reads a certificate
//! file.
//!
//! The crypto provider is rustls's `ring`. Session tickets are sealed with
//! keys every worker derives from one secret the master made
//! (`handoff::tickets`), so a client resumes its session on whichever
//! worker accepts it next.

use super::tickets::{SharedTickets, TicketSecret};
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

/// One TLS file as the master read it: its path (for messages) and bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl TlsFile {
    fn read(flag: &'static str, path: &Path) -> Result<TlsFile, TlsError> {
        let bytes = std::fs::read(path).map_err(|e| TlsError::Read {
            flag,
            path: path.to_path_buf(),
            reason: crate::os_error::os_error_text(&e),
        })?;
        Ok(TlsFile {
            path: path.to_path_buf(),
            bytes,
        })
    }
}

/// The files the TLS settings name, read once by the master.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsMaterial {
    /// `--certfile`: the certificate chain (PEM).
    pub chain: TlsFile,
    /// `--keyfile` (else the certfile again): the private key (PEM).
    pub key: TlsFile,
    /// `--ca-certs`, with `--cert-reqs` 1 or 2: the client CA roots (PEM).
    pub ca: Option<TlsFile>,
    /// The secret the session-ticket keys come from (`None`: the system
    /// gave no randomness; tickets are off).
    pub ticket_secret: Option<TicketSecret>,
}

impl TlsMaterial {
    /// Reads the files the settings name: `None` without `--certfile`
    /// (plain HTTP). Only reads; [`server_config`] checks the contents.
    pub fn read(settings: &Settings) -> Result<Option<TlsMaterial>, TlsError> {
        let Some(certfile) = &settings.certfile else {
            if settings.keyfile.is_some() {
                return Err(TlsError::Missing("--keyfile: needs --certfile"));
            }
            return Ok(None);
        };
        let chain = TlsFile::read("--certfile", certfile)?;
        let key = TlsFile::read("--keyfile", settings.keyfile.as_deref().unwrap_or(certfile))?;
        let ca = match settings.cert_reqs {
            CertReqs::None => None,
            _ => match &settings.ca_certs {
                Some(path) => Some(TlsFile::read("--ca-certs", path)?),
                None => {
                    return Err(TlsError::Missing(
                        "--cert-reqs: 1 and 2 verify client certificates against --ca-certs, which is not set",
                    ))
                }
            },
        };
        Ok(Some(TlsMaterial {
            chain,
            key,
            ca,
            ticket_secret: TicketSecret::generate(),
        }))
    }
}

/// The TLS configuration the settings ask for, from the files' bytes.
pub fn server_config(
    settings: &Settings,
    material: &TlsMaterial,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(provider(settings.ciphers.as_ref()));
    let chain = read_certificates("--certfile", &material.chain)?;
    let key = read_key(&material.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(settings.tls_min_version))
        .map_err(|e| {
            TlsError::Ciphers(format!(
                "no suite for TLS {} and newer (--tls-min-version): {e}",
                settings.tls_min_version
            ))
        })?;
    let builder = match (settings.cert_reqs, &material.ca) {
        (CertReqs::None, _) => builder.with_no_client_auth(),
        (_, None) => return Err(TlsError::Missing(
            "--cert-reqs: 1 and 2 verify client certificates against --ca-certs, which is not set",
        )),
        (reqs, Some(ca)) => {
            let roots = read_roots(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            let verifier = match reqs {
                CertReqs::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier.build().map_err(|e| TlsError::BadCa {
                path: ca.path.clone(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::KeyMismatch {
            key: material.key.path.clone(),
            cert: material.chain.path.clone(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    match &material.ticket_secret {
        Some(secret) => config.ticketer = Arc::new(SharedTickets::new(secret)),
        None => log::warn!("TLS session tickets are off: no randomness for their secret"),
    }
    Ok(Arc::new(config))
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
    file: &TlsFile,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |reason: String| TlsError::Read {
        flag,
        path: file.path.clone(),
        reason,
    };
    let certificates = CertificateDer::pem_slice_iter(&file.bytes)
        .map(|item| item.map(CertificateDer::into_owned))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_error(pem_error_text(e)))?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            flag,
            path: file.path.clone(),
        });
    }
    Ok(certificates)
}

fn read_key(file: &TlsFile) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&file.bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            flag: "--keyfile",
            path: file.path.clone(),
        },
        e => TlsError::Read {
            flag: "--keyfile",
            path: file.path.clone(),
            reason: pem_error_text(e),
        },
    })
}

fn read_roots(file: &TlsFile) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates("--ca-certs", file)? {
        roots.add(certificate).map_err(|e| TlsError::BadCa {
            path: file.path.clone(),
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
