//! Behind a proxy: whose word the worker takes on the request's scheme.
//!
//! A peer on `--forwarded-allow-ips` (or any unix-socket peer, as gunicorn
//! trusts those) may say that the client spoke https through one of the
//! `--secure-scheme-headers`; everyone else's such headers are ignored and
//! the scheme stays `http`. As in gunicorn, a header's value must equal the
//! configured one exactly to mean https (any other value means http), and
//! two of these headers that disagree make the request invalid (400).
//!
//! Trust is decided once per connection, from the socket's peer (the proxy,
//! even when a PROXY protocol header names another client); the scheme is
//! decided per request by a scan of its headers, with no allocation.

use crate::config::SecureSchemeHeaders;
use crate::http::{RequestHead, UrlScheme};
use crate::ip_allow_list::IpAllowList;
use crate::listener::Endpoint;

/// Why a request's scheme is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardedError {
    /// Two secure-scheme headers from a trusted peer disagree (one means
    /// https, the other http): gunicorn's `InvalidSchemeHeaders`.
    #[error("contradictory scheme headers")]
    ConflictingSchemeHeaders,
}

/// `--forwarded-allow-ips` with `--secure-scheme-headers`.
#[derive(Debug, Clone)]
pub struct SchemePolicy {
    trusted: IpAllowList,
    headers: SecureSchemeHeaders,
}

impl SchemePolicy {
    pub fn new(trusted: IpAllowList, headers: SecureSchemeHeaders) -> SchemePolicy {
        SchemePolicy { trusted, headers }
    }

    /// Whether the socket peer `peer` may set the scheme. Unix-socket peers
    /// are trusted (gunicorn's rule: only a TCP peer is checked).
    pub fn trusts(&self, peer: &Endpoint) -> bool {
        match peer {
            Endpoint::Tcp(address) => self.trusted.allows(address.ip()),
            Endpoint::Unix => true,
        }
    }

    /// The scheme of a request whose head is `head` (spans into `buf`),
    /// from a peer that [`trusts`](Self::trusts) said is `trusted`, on a
    /// connection whose own scheme is `connection` (`https` over TLS): the
    /// trusted headers have the last word, as in gunicorn.
    pub fn scheme(
        &self,
        trusted: bool,
        buf: &[u8],
        head: &RequestHead,
        connection: UrlScheme,
    ) -> Result<UrlScheme, ForwardedError> {
        if !trusted || self.headers.is_empty() {
            return Ok(connection);
        }
        let announced = self.announced(
            head.headers
                .iter()
                .map(|header| (header.name.get(buf), header.value.get(buf))),
        )?;
        Ok(announced.unwrap_or(connection))
    }

    /// The scheme the `(name, value)` fields announce (`http` when none do).
    pub fn scheme_from<'a>(
        &self,
        fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<UrlScheme, ForwardedError> {
        Ok(self.announced(fields)?.unwrap_or_default())
    }

    /// The scheme the `(name, value)` fields announce, if any does.
    fn announced<'a>(
        &self,
        fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<Option<UrlScheme>, ForwardedError> {
        let mut announced = None;
        for (name, value) in fields {
            let Some(https_value) = self.headers.https_value(name) else {
                continue;
            };
            let scheme = if value == https_value {
                UrlScheme::Https
            } else {
                UrlScheme::Http
            };
            match announced {
                Some(earlier) if earlier != scheme => {
                    return Err(ForwardedError::ConflictingSchemeHeaders)
                }
                _ => announced = Some(scheme),
            }
        }
        Ok(announced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(trusted: &str) -> SchemePolicy {
        SchemePolicy::new(
            IpAllowList::parse(trusted).unwrap(),
            SecureSchemeHeaders::parse(crate::config::DEFAULT_SECURE_SCHEME_HEADERS).unwrap(),
        )
    }

    #[test]
    fn trust_follows_the_allow_list_and_unix_peers_are_trusted() {
        let policy = policy("127.0.0.1,::1");
        assert!(policy.trusts(&Endpoint::Tcp("127.0.0.1:4000".parse().unwrap())));
        assert!(policy.trusts(&Endpoint::Tcp("[::1]:4000".parse().unwrap())));
        assert!(!policy.trusts(&Endpoint::Tcp("10.0.0.1:4000".parse().unwrap())));
        assert!(policy.trusts(&Endpoint::Unix));
    }

    #[test]
    fn secure_scheme_headers_decide_the_scheme() {
        use UrlScheme::{Http, Https};
        type Fields = &'static [(&'static str, &'static str)];
        let cases: &[(Fields, Result<UrlScheme, ForwardedError>)] = &[
            // No such header
            (&[], Ok(Http)),
            (&[("Host", "example.com")], Ok(Http)),
            // One header, any case of name, exact value
            (&[("X-Forwarded-Proto", "https")], Ok(Https)),
            (&[("x-forwarded-proto", "https")], Ok(Https)),
            (&[("X-Forwarded-Ssl", "on")], Ok(Https)),
            (&[("X-Forwarded-Protocol", "ssl")], Ok(Https)),
            (&[("X-Forwarded-Proto", "http")], Ok(Http)),
            (&[("X-Forwarded-Proto", "HTTPS")], Ok(Http)),
            (&[("X-Forwarded-Ssl", "off")], Ok(Http)),
            // Several that agree
            (
                &[("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "on")],
                Ok(Https),
            ),
            (
                &[("X-Forwarded-Proto", "http"), ("X-Forwarded-Ssl", "off")],
                Ok(Http),
            ),
            (
                &[
                    ("X-Forwarded-Proto", "https"),
                    ("X-Forwarded-Proto", "https"),
                ],
                Ok(Https),
            ),
            // Several that disagree
            (
                &[("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "off")],
                Err(ForwardedError::ConflictingSchemeHeaders),
            ),
            (
                &[
                    ("X-Forwarded-Proto", "http"),
                    ("X-Forwarded-Protocol", "ssl"),
                ],
                Err(ForwardedError::ConflictingSchemeHeaders),
            ),
            (
                &[
                    ("X-Forwarded-Proto", "https"),
                    ("X-Forwarded-Proto", "http"),
                ],
                Err(ForwardedError::ConflictingSchemeHeaders),
            ),
        ];
        let policy = policy("127.0.0.1");
        for (raw, expected) in cases {
            let fields = raw
                .iter()
                .map(|(name, value)| (name.as_bytes(), value.as_bytes()));
            assert_eq!(&policy.scheme_from(fields), expected, "{raw:?}");
        }
    }
}
