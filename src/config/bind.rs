//! `--bind` values: TCP (v4, v6, host names) and unix socket addresses,
//! and what the value says about TLS (`http://`, `https://`,
//! `http+unix:`).
//!
//! Only the shape is checked here; host names are resolved and sockets bound
//! by `master::sockets`.

use std::fmt;
use std::path::PathBuf;

/// The port used when a `--bind` value names only a host.
pub const DEFAULT_PORT: u16 = 8000;

/// One address to listen on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BindAddress {
    /// `HOST:PORT` or `[V6]:PORT`; host kept as written (resolved at bind),
    /// lowercased, without the brackets of a v6 literal. An empty host
    /// (`:8000`) means every IPv4 interface, `0.0.0.0`.
    Tcp { host: String, port: u16 },
    /// `unix:PATH`.
    Unix(PathBuf),
}

/// What a `--bind` value says about TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BindScheme {
    /// No scheme (`HOST:PORT`, `tcp://`, `unix:`): TLS when `--certfile` is
    /// set, as in gunicorn.
    Unsaid,
    /// `http://ADDR` or `http+unix:PATH`: plain HTTP even with `--certfile`.
    Http,
    /// `https://ADDR`: TLS; needs `--certfile`.
    Https,
}

/// One `--bind` value: the address and its scheme.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bind {
    pub scheme: BindScheme,
    pub address: BindAddress,
}

impl Bind {
    /// A bind with no scheme.
    pub fn unsaid(address: BindAddress) -> Bind {
        Bind {
            scheme: BindScheme::Unsaid,
            address,
        }
    }

    /// Parses one `--bind` value: an address as [`BindAddress::parse`]
    /// takes it, or `http://HOST:PORT`, `https://HOST:PORT` or
    /// `http+unix:PATH`.
    pub fn parse(text: &str) -> Result<Bind, BindAddressError> {
        let trimmed = text.trim();
        let (scheme, rest) = if let Some(rest) = trimmed.strip_prefix("https://") {
            (BindScheme::Https, rest)
        } else if let Some(rest) = trimmed.strip_prefix("http://") {
            (BindScheme::Http, rest)
        } else if let Some(path) = trimmed.strip_prefix("http+unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(BindAddressError::EmptyUnixPath {
                    text: text.to_string(),
                });
            }
            return Ok(Bind {
                scheme: BindScheme::Http,
                address: BindAddress::Unix(PathBuf::from(path)),
            });
        } else {
            return BindAddress::parse(text).map(Bind::unsaid);
        };
        if rest.is_empty() || rest.starts_with("unix:") || rest.contains("://") {
            return Err(BindAddressError::BadScheme {
                text: text.to_string(),
            });
        }
        let address = BindAddress::parse_tcp(text, rest, DEFAULT_PORT)?;
        Ok(Bind { scheme, address })
    }

    /// Whether this bind serves TLS, given whether `--certfile` is set.
    pub fn serves_tls(&self, certfile_set: bool) -> bool {
        match self.scheme {
            BindScheme::Unsaid => certfile_set,
            BindScheme::Http => false,
            BindScheme::Https => true,
        }
    }
}

impl fmt::Display for Bind {
    /// Writes the value back in `--bind` syntax, scheme included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.scheme, &self.address) {
            (BindScheme::Unsaid, address) => write!(f, "{address}"),
            (BindScheme::Http, BindAddress::Unix(path)) => {
                write!(f, "http+unix:{}", path.display())
            }
            (BindScheme::Http, address) => write!(f, "http://{address}"),
            (BindScheme::Https, address) => write!(f, "https://{address}"),
        }
    }
}

/// Why a `--bind` value is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindAddressError {
    /// The port is not a number from 0 to 65535.
    #[error("'{text}' is not HOST:PORT, [V6]:PORT or unix:PATH (bad port '{port}')")]
    BadPort { text: String, port: String },
    /// `[` without a matching `]`, or text after `]` that is not `:PORT`.
    #[error("'{text}' is not HOST:PORT, [V6]:PORT or unix:PATH (unbalanced brackets around an IPv6 address)")]
    BadBrackets { text: String },
    /// A bracketed host that is not an IPv6 address.
    #[error("'{text}' is not HOST:PORT, [V6]:PORT or unix:PATH ('{host}' is not an IPv6 address)")]
    BadIpv6 { text: String, host: String },
    /// More than one colon without brackets (an IPv6 address must be bracketed).
    #[error(
        "'{text}' is not HOST:PORT, [V6]:PORT or unix:PATH (write an IPv6 address as [V6]:PORT)"
    )]
    UnbracketedIpv6 { text: String },
    /// `unix:` with nothing after it.
    #[error("'{text}' names no socket path after 'unix:'")]
    EmptyUnixPath { text: String },
    /// `http://` or `https://` followed by nothing or by another scheme.
    #[error("'{text}': write http://HOST:PORT, https://HOST:PORT or http+unix:PATH")]
    BadScheme { text: String },
    /// Nothing at all.
    #[error("an empty value is not HOST:PORT, [V6]:PORT or unix:PATH")]
    Empty,
}

impl BindAddress {
    /// Parses one `--bind` value: `HOST:PORT`, `HOST` (port 8000),
    /// `[V6]:PORT`, `[V6]`, `:PORT` (all interfaces), `unix:PATH` or
    /// `unix://PATH`. A `tcp://` prefix is accepted, as gunicorn does.
    pub fn parse(text: &str) -> Result<BindAddress, BindAddressError> {
        BindAddress::parse_with_default_port(text, DEFAULT_PORT)
    }

    /// Like [`BindAddress::parse`], with `default_port` for a value that
    /// names only a host (`--statsd-host` defaults to statsd's 8125).
    pub fn parse_with_default_port(
        text: &str,
        default_port: u16,
    ) -> Result<BindAddress, BindAddressError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(BindAddressError::Empty);
        }
        if let Some(path) = trimmed.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(BindAddressError::EmptyUnixPath {
                    text: text.to_string(),
                });
            }
            return Ok(BindAddress::Unix(PathBuf::from(path)));
        }
        let netloc = trimmed.strip_prefix("tcp://").unwrap_or(trimmed);
        BindAddress::parse_tcp(text, netloc, default_port)
    }

    /// Parses the `HOST:PORT` part `netloc` of the `--bind` value `text`.
    fn parse_tcp(
        text: &str,
        netloc: &str,
        default_port: u16,
    ) -> Result<BindAddress, BindAddressError> {
        let (host, port) = split_host_port(text, netloc)?;
        Ok(BindAddress::Tcp {
            host: host.to_ascii_lowercase(),
            port: parse_port(text, port, default_port)?,
        })
    }
}

/// Splits `netloc` into host and the port text (`None` when absent).
fn split_host_port<'a>(
    text: &str,
    netloc: &'a str,
) -> Result<(&'a str, Option<&'a str>), BindAddressError> {
    if let Some(rest) = netloc.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(BindAddressError::BadBrackets {
                text: text.to_string(),
            });
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(BindAddressError::BadIpv6 {
                text: text.to_string(),
                host: host.to_string(),
            });
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(BindAddressError::BadBrackets {
                    text: text.to_string(),
                }),
            },
        };
    }
    if netloc.contains(']') {
        return Err(BindAddressError::BadBrackets {
            text: text.to_string(),
        });
    }
    match netloc.split_once(':') {
        None => Ok((netloc, None)),
        Some((_, port)) if port.contains(':') => Err(BindAddressError::UnbracketedIpv6 {
            text: text.to_string(),
        }),
        Some((host, port)) => Ok((host, Some(port))),
    }
}

/// Parses the port text; absent means `default_port`.
fn parse_port(text: &str, port: Option<&str>, default_port: u16) -> Result<u16, BindAddressError> {
    let Some(port) = port else {
        return Ok(default_port);
    };
    let all_digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    match port.parse::<u16>() {
        Ok(number) if all_digits => Ok(number),
        _ => Err(BindAddressError::BadPort {
            text: text.to_string(),
            port: port.to_string(),
        }),
    }
}

impl fmt::Display for BindAddress {
    /// Writes the address back in `--bind` syntax (`[v6]:port` bracketed).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddress::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            BindAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
            BindAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> BindAddress {
        BindAddress::Tcp {
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn valid_addresses_parse() {
        let cases: &[(&str, BindAddress)] = &[
            ("127.0.0.1:8000", tcp("127.0.0.1", 8000)),
            ("0.0.0.0:80", tcp("0.0.0.0", 80)),
            ("localhost:5000", tcp("localhost", 5000)),
            ("LocalHost:5000", tcp("localhost", 5000)),
            ("example.com", tcp("example.com", DEFAULT_PORT)),
            ("127.0.0.1", tcp("127.0.0.1", DEFAULT_PORT)),
            ("127.0.0.1:0", tcp("127.0.0.1", 0)),
            ("127.0.0.1:65535", tcp("127.0.0.1", 65535)),
            (":9000", tcp("", 9000)),
            ("[::1]:8080", tcp("::1", 8080)),
            ("[::]:8080", tcp("::", 8080)),
            ("[::1]", tcp("::1", DEFAULT_PORT)),
            ("[FE80::1]:1", tcp("fe80::1", 1)),
            ("tcp://127.0.0.1:81", tcp("127.0.0.1", 81)),
            (" 127.0.0.1:82 ", tcp("127.0.0.1", 82)),
            (
                "unix:/tmp/app.sock",
                BindAddress::Unix("/tmp/app.sock".into()),
            ),
            (
                "unix://tmp/app.sock",
                BindAddress::Unix("tmp/app.sock".into()),
            ),
            (
                "unix:///tmp/app.sock",
                BindAddress::Unix("/tmp/app.sock".into()),
            ),
            (
                "unix:relative.sock",
                BindAddress::Unix("relative.sock".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(BindAddress::parse(text).as_ref(), Ok(expected), "{text}");
        }
    }

    #[test]
    fn invalid_addresses_are_rejected_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            (
                "x:y",
                "'x:y' is not HOST:PORT, [V6]:PORT or unix:PATH (bad port 'y')",
            ),
            ("127.0.0.1:", "(bad port '')"),
            ("127.0.0.1:65536", "(bad port '65536')"),
            ("127.0.0.1:-1", "(bad port '-1')"),
            ("127.0.0.1:+80", "(bad port '+80')"),
            ("127.0.0.1:80x", "(bad port '80x')"),
            ("[::1]:http", "(bad port 'http')"),
            ("::1", "write an IPv6 address as [V6]:PORT"),
            ("::1:8000", "write an IPv6 address as [V6]:PORT"),
            ("[::1", "unbalanced brackets"),
            ("::1]:80", "unbalanced brackets"),
            ("[::1]80", "unbalanced brackets"),
            ("[abc]:80", "'abc' is not an IPv6 address"),
            ("[127.0.0.1]:80", "'127.0.0.1' is not an IPv6 address"),
            ("unix:", "names no socket path"),
            ("unix://", "names no socket path"),
            ("", "an empty value"),
            ("   ", "an empty value"),
        ];
        for (text, reason) in cases {
            let message = BindAddress::parse(text).expect_err(text).to_string();
            assert!(message.contains(reason), "{text:?}: {message}");
            assert!(!message.contains('\n'), "{text:?}: {message}");
        }
    }

    #[test]
    fn schemes_say_plain_or_tls() {
        let cases: &[(&str, BindScheme, BindAddress)] = &[
            ("127.0.0.1:1", BindScheme::Unsaid, tcp("127.0.0.1", 1)),
            ("tcp://127.0.0.1:1", BindScheme::Unsaid, tcp("127.0.0.1", 1)),
            ("http://127.0.0.1:2", BindScheme::Http, tcp("127.0.0.1", 2)),
            ("https://[::1]:3", BindScheme::Https, tcp("::1", 3)),
            (
                "unix:/a.sock",
                BindScheme::Unsaid,
                BindAddress::Unix("/a.sock".into()),
            ),
            (
                "http+unix:/b.sock",
                BindScheme::Http,
                BindAddress::Unix("/b.sock".into()),
            ),
            (
                "http+unix:///c.sock",
                BindScheme::Http,
                BindAddress::Unix("/c.sock".into()),
            ),
        ];
        for (text, scheme, address) in cases {
            let parsed = Bind::parse(text).unwrap();
            assert_eq!(
                (&parsed.scheme, &parsed.address),
                (scheme, address),
                "{text}"
            );
        }
        let tls = |text: &str, certfile| Bind::parse(text).unwrap().serves_tls(certfile);
        assert!(tls("127.0.0.1:1", true) && !tls("127.0.0.1:1", false));
        assert!(!tls("http://127.0.0.1:1", true) && tls("https://127.0.0.1:1", true));
        assert!(tls("unix:/a", true) && !tls("http+unix:/a", true));
        for bad in [
            "https://",
            "http://unix:/a",
            "https://tcp://1.2.3.4:5",
            "http+unix:",
            "HTTP://127.0.0.1:1",
        ] {
            let message = Bind::parse(bad).expect_err(bad).to_string();
            assert!(!message.contains('\n'), "{bad}: {message}");
        }
        for text in [
            "http://127.0.0.1:1",
            "https://[::1]:2",
            "http+unix:/b.sock",
            "unix:/a",
        ] {
            assert_eq!(Bind::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn display_writes_bind_syntax_back() {
        for text in [
            "127.0.0.1:8000",
            "[::1]:8080",
            "unix:/tmp/a.sock",
            "localhost:1",
        ] {
            assert_eq!(BindAddress::parse(text).unwrap().to_string(), text);
        }
    }
}
