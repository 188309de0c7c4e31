//! Byte classes of the RFC 9110/9112 (and RFC 3986) grammar as `[bool; 256]`
//! lookup tables, built at compile time, plus the scanning helper that walks
//! a buffer while its bytes stay in one class.
//!
//! Indexing a `[bool; 256]` with a `u8` needs no bounds check, so a scan is
//! one load and one branch per byte.

/// Builds a class from inclusive byte ranges and single bytes.
const fn class(ranges: &[(u8, u8)], singles: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut r = 0;
    while r < ranges.len() {
        let (low, high) = ranges[r];
        let mut b = low as usize;
        while b <= high as usize {
            table[b] = true;
            b += 1;
        }
        r += 1;
    }
    let mut s = 0;
    while s < singles.len() {
        table[singles[s] as usize] = true;
        s += 1;
    }
    table
}

/// RFC 9110 §5.6.2:
///
/// ```text
/// token = 1*tchar
/// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
///         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
/// ```
pub static TCHAR: [bool; 256] = class(
    &[(b'0', b'9'), (b'a', b'z'), (b'A', b'Z')],
    b"!#$%&'*+-.^_`|~",
);

/// The bytes a request-target may contain (RFC 9112 §3.2): every form is
/// built from URI characters, all of them visible ASCII; whitespace, CTLs
/// and bytes >= 0x80 never appear.
///
/// ```text
/// VCHAR = %x21-7E
/// ```
pub static TARGET: [bool; 256] = class(&[(0x21, 0x7e)], b"");

/// RFC 9110 §5.5, the bytes of a field value (and, by the same rule, of a
/// reason phrase and a chunk extension):
///
/// ```text
/// field-value   = *field-content
/// field-content = field-vchar [ 1*( SP / HTAB / field-vchar ) field-vchar ]
/// field-vchar   = VCHAR / obs-text
/// obs-text      = %x80-FF
/// ```
pub static FIELD_VALUE: [bool; 256] = class(&[(0x20, 0x7e), (0x80, 0xff)], b"\t");

/// RFC 9110 §5.6.4, the bytes of a quoted-string other than its quotes and
/// quoted-pairs:
///
/// ```text
/// qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
/// ```
pub static QDTEXT: [bool; 256] = class(&[(0x23, 0x5b), (0x5d, 0x7e), (0x80, 0xff)], b"\t !");

/// RFC 3986 §3.2.2, the bytes of a `reg-name` host (which also covers an
/// `IPv4address`); a `%` must start a `pct-encoded` triplet, checked apart.
///
/// ```text
/// reg-name    = *( unreserved / pct-encoded / sub-delims )
/// unreserved  = ALPHA / DIGIT / "-" / "." / "_" / "~"
/// sub-delims  = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "="
/// pct-encoded = "%" HEXDIG HEXDIG
/// ```
pub static REG_NAME: [bool; 256] = class(
    &[(b'0', b'9'), (b'a', b'z'), (b'A', b'Z')],
    b"-._~!$&'()*+,;=%",
);

/// The inside of an `IP-literal` (`[...]`), IPv6 only (RFC 3986 §3.2.2):
///
/// ```text
/// IPv6address = hex pieces separated by ":", optionally ending in an IPv4address
/// ```
pub static IPV6_LITERAL: [bool; 256] = class(&[(b'0', b'9'), (b'a', b'f'), (b'A', b'F')], b":.");

/// Returns the index of the first byte at or after `from` that is not in
/// `class`, or `buf.len()` when every remaining byte is.
#[inline]
pub fn scan(buf: &[u8], from: usize, class: &[bool; 256]) -> usize {
    buf[from..]
        .iter()
        .position(|&b| !class[b as usize])
        .map_or(buf.len(), |offset| from + offset)
}

/// The value of one `HEXDIG` (RFC 5234: `DIGIT / "A" - "F"`, matched
/// case-insensitively), or `None`.
#[inline]
pub fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `b` is optional whitespace (`OWS = *( SP / HTAB )`).
#[inline]
pub fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `bytes` without leading and trailing SP/HTAB.
pub fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !is_ows(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Whether every byte of `bytes` is in `class`.
#[inline]
pub fn all_in(bytes: &[u8], class: &[bool; 256]) -> bool {
    bytes.iter().all(|&b| class[b as usize])
}

/// Whether `bytes` is a `token` (RFC 9110 §5.6.2): one or more `tchar`.
pub fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && all_in(bytes, &TCHAR)
}

/// Whether every byte of `bytes` may stand in a field value or a reason
/// phrase ([`FIELD_VALUE`]: no CR, LF, NUL or other control character).
pub fn is_field_value(bytes: &[u8]) -> bool {
    all_in(bytes, &FIELD_VALUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tchar_holds_exactly_the_rfc_set() {
        let expected: Vec<u8> = (0u8..=255)
            .filter(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
            .collect();
        let actual: Vec<u8> = (0u8..=255).filter(|&b| TCHAR[b as usize]).collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn field_value_rejects_controls_but_allows_tab_and_obs_text() {
        for b in 0u8..=255 {
            let expected = b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80;
            assert_eq!(FIELD_VALUE[b as usize], expected, "byte {b:#04x}");
        }
    }

    #[test]
    fn qdtext_excludes_the_quote_the_backslash_and_controls() {
        for b in 0u8..=255 {
            let expected = b == b'\t'
                || b == b' '
                || b == b'!'
                || ((0x23..=0x7e).contains(&b) && b != b'\\')
                || b >= 0x80;
            assert_eq!(QDTEXT[b as usize], expected, "byte {b:#04x}");
        }
    }

    #[test]
    fn target_is_visible_ascii_only() {
        for b in 0u8..=255 {
            assert_eq!(
                TARGET[b as usize],
                (0x21..=0x7e).contains(&b),
                "byte {b:#04x}"
            );
        }
    }

    #[test]
    fn scan_stops_at_first_byte_outside_the_class() {
        assert_eq!(scan(b"GET /", 0, &TCHAR), 3);
        assert_eq!(scan(b"GET", 0, &TCHAR), 3);
        assert_eq!(scan(b"GET /", 4, &TCHAR), 4);
    }

    #[test]
    fn trim_ows_removes_only_space_and_tab() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"  "), b"");
        assert_eq!(trim_ows(b"\x0ba\x0b"), b"\x0ba\x0b");
    }
}
