//! `--secure-scheme-headers` as a setting: the header fields that, from a
//! trusted peer, announce https, each with the value that means it. Whose
//! word is taken, and the scan of a request's headers, are the worker's
//! (`worker::forwarded`); this is only the value and its parser.

use std::fmt;

/// gunicorn's default `secure_scheme_headers`.
pub const DEFAULT_SECURE_SCHEME_HEADERS: &str =
    "X-FORWARDED-PROTOCOL=ssl,X-FORWARDED-PROTO=https,X-FORWARDED-SSL=on";

/// The header fields that announce https, each with the value that means it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecureSchemeHeaders {
    /// `(field name, value meaning https)`.
    headers: Vec<(String, String)>,
}

/// Why a `--secure-scheme-headers` value is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecureSchemeHeaderError {
    /// An entry is not `NAME=VALUE`.
    #[error("'{0}' is not NAME=VALUE (e.g. X-FORWARDED-PROTO=https)")]
    NotNameValue(String),
}

impl SecureSchemeHeaders {
    /// Parses `NAME=VALUE,NAME=VALUE` (an empty string means none: never
    /// trust a header).
    pub fn parse(text: &str) -> Result<SecureSchemeHeaders, SecureSchemeHeaderError> {
        let headers = text
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let bad = || SecureSchemeHeaderError::NotNameValue(entry.to_string());
                let (name, value) = entry.split_once('=').ok_or_else(bad)?;
                let (name, value) = (name.trim(), value.trim());
                if !crate::http::is_token(name.as_bytes()) || value.is_empty() {
                    return Err(bad());
                }
                Ok((name.to_string(), value.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(SecureSchemeHeaders { headers })
    }

    /// Whether there are none (no header is ever trusted).
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// The value meaning https for a field `name` (any case), if it is one
    /// of these headers.
    pub fn https_value(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(known, _)| known.as_bytes().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_bytes())
    }
}

impl fmt::Display for SecureSchemeHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.headers.iter().enumerate() {
            let separator = if i == 0 { "" } else { "," };
            write!(f, "{separator}{name}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_scheme_headers_parse_from_name_value_pairs() {
        let parsed = SecureSchemeHeaders::parse(" X-Scheme = https ,Front-End-Https=on").unwrap();
        assert_eq!(parsed.to_string(), "X-Scheme=https,Front-End-Https=on");
        assert_eq!(parsed.https_value(b"x-scheme"), Some(&b"https"[..]));
        assert!(SecureSchemeHeaders::parse("").unwrap().is_empty());
        for bad in [
            "X-Proto",
            "=https",
            "X-Proto=",
            "X Proto=https",
            "X-Proto:x=1",
        ] {
            assert_eq!(
                SecureSchemeHeaders::parse(bad),
                Err(SecureSchemeHeaderError::NotNameValue(bad.to_string())),
                "{bad}"
            );
        }
    }
}
