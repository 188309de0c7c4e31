//! What a TLS connection tells the application, as plain data: the
//! protocol version, the cipher suite, and the client certificate's names
//! when one was presented. Filled by the worker's TLS session once the
//! handshake is done, read by the environ (`HTTPS`, `SSL_PROTOCOL`,
//! `SSL_CIPHER`, `SSL_CLIENT_S_DN`, `SSL_CLIENT_I_DN`,
//! `SSL_CLIENT_VERIFY`; see docs/tls.md). Names no TLS crate.

use crate::x509_name::CertificateNames;

/// A finished handshake's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3` (OpenSSL's and mod_ssl's spelling).
    pub protocol: &'static str,
    /// The cipher suite's rustls (IANA) name, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher: &'static str,
    /// The client certificate's subject and issuer, when the client sent
    /// one (it has then been verified against `--ca-certs`: a certificate
    /// that does not verify fails the handshake).
    pub client: Option<CertificateNames>,
}

impl TlsInfo {
    /// `SSL_CLIENT_VERIFY`: `SUCCESS` with a (verified) client
    /// certificate, `NONE` without one.
    pub fn client_verify(&self) -> &'static str {
        match self.client {
            Some(_) => "SUCCESS",
            None => "NONE",
        }
    }
}
