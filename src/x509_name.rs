//! The subject and issuer of a DER X.509 certificate as RFC 4514 strings
//! (`CN=alice,O=Example,C=DE`: the most specific name first, as nginx's
//! `$ssl_client_s_dn` and OpenSSL's RFC 2253 output write them). A small
//! DER walk over the few fields it needs; bytes only, no TLS crate. The
//! certificate has already been verified by the TLS layer, so anything
//! malformed simply yields `None`.

use std::fmt::Write;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xA0;

/// A certificate's two names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateNames {
    pub subject: String,
    pub issuer: String,
}

/// Reads the issuer and subject names of a DER certificate.
pub fn certificate_names(der: &[u8]) -> Option<CertificateNames> {
    let (_, certificate, _) = element(der, SEQUENCE)?;
    let (_, tbs, _) = element(certificate, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = any_element(rest)?.2;
    }
    let (_, _serial, rest) = any_element(rest)?;
    let (_, _signature, rest) = element(rest, SEQUENCE)?;
    let (_, issuer, rest) = element(rest, SEQUENCE)?;
    let (_, _validity, rest) = element(rest, SEQUENCE)?;
    let (_, subject, _) = element(rest, SEQUENCE)?;
    Some(CertificateNames {
        subject: format_name(subject)?,
        issuer: format_name(issuer)?,
    })
}

/// One DER element: (tag, content, what follows).
fn any_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let count = (first & 0x7F) as usize;
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// One DER element that must have `tag`.
fn element(input: &[u8], tag: u8) -> Option<(u8, &[u8], &[u8])> {
    any_element(input).filter(|(t, _, _)| *t == tag)
}

/// A Name (a SEQUENCE of RDN SETs) in RFC 4514 order: last RDN first.
fn format_name(mut name: &[u8]) -> Option<String> {
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (_, mut set, rest) = element(name, SET)?;
        name = rest;
        let mut attributes = Vec::new();
        while !set.is_empty() {
            let (_, attribute, rest) = element(set, SEQUENCE)?;
            set = rest;
            let (_, oid, value) = element(attribute, OID)?;
            let (value_tag, value_content, _) = any_element(value)?;
            let mut text = attribute_name(oid);
            text.push('=');
            match decode_string(value_tag, value_content) {
                Some(string) => escape_value(&string, &mut text),
                None => {
                    text.push('#');
                    for byte in &value[..value.len()] {
                        let _ = write!(text, "{byte:02x}");
                    }
                }
            }
            attributes.push(text);
        }
        rdns.push(attributes.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// The short name of an attribute type (RFC 4514's, and OpenSSL's
/// `emailAddress`), else the dotted OID.
fn attribute_name(oid: &[u8]) -> String {
    let short = match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x04] => "SN",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0A] => "O",
        [0x55, 0x04, 0x0B] => "OU",
        [0x55, 0x04, 0x0C] => "title",
        [0x55, 0x04, 0x2A] => "GN",
        [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x01] => "emailAddress",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x01] => "UID",
        _ => return dotted_oid(oid),
    };
    short.to_string()
}

fn dotted_oid(oid: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut value: u64 = 0;
    for byte in oid {
        value = (value << 7) | u64::from(byte & 0x7F);
        if byte & 0x80 == 0 {
            arcs.push(value);
            value = 0;
        }
    }
    let mut text = String::new();
    if let Some(first) = arcs.first() {
        let (a, b) = match first {
            0..=39 => (0, *first),
            40..=79 => (1, first - 40),
            _ => (2, first - 80),
        };
        let _ = write!(text, "{a}.{b}");
    }
    for arc in arcs.iter().skip(1) {
        let _ = write!(text, ".{arc}");
    }
    text
}

/// The text of a directory string; `None` for other value types (written
/// as `#` and the hex of the DER element).
fn decode_string(tag: u8, content: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, NumericString, VisibleString
        0x0C | 0x13 | 0x16 | 0x12 | 0x1A => String::from_utf8(content.to_vec()).ok(),
        // TeletexString: in practice Latin-1.
        0x14 => Some(content.iter().map(|b| char::from(*b)).collect()),
        // BMPString: UCS-2 big-endian.
        0x1E if content.len().is_multiple_of(2) => char::decode_utf16(
            content
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]])),
        )
        .collect::<Result<String, _>>()
        .ok(),
        // UniversalString: UCS-4 big-endian.
        0x1C if content.len().is_multiple_of(4) => content
            .chunks_exact(4)
            .map(|q| char::from_u32(u32::from_be_bytes([q[0], q[1], q[2], q[3]])))
            .collect(),
        _ => None,
    }
}

/// RFC 4514 section 2.4 escaping.
fn escape_value(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (index, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if index == 0 => out.push_str("\\#"),
            ' ' if index == 0 || index == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DER element with a short length.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(content);
        out
    }

    fn rdn(oid: &[u8], value_tag: u8, value: &[u8]) -> Vec<u8> {
        let attribute = [tlv(OID, oid), tlv(value_tag, value)].concat();
        tlv(SET, &tlv(SEQUENCE, &attribute))
    }

    fn certificate(issuer: &[u8], subject: &[u8]) -> Vec<u8> {
        let tbs = [
            tlv(VERSION, &tlv(0x02, &[2])),
            tlv(0x02, &[0x01, 0x02]),
            tlv(SEQUENCE, &tlv(OID, &[0x2A, 0x86, 0x48])),
            tlv(SEQUENCE, issuer),
            tlv(
                SEQUENCE,
                &[tlv(0x17, b"250101000000Z"), tlv(0x17, b"350101000000Z")].concat(),
            ),
            tlv(SEQUENCE, subject),
        ]
        .concat();
        tlv(
            SEQUENCE,
            &[tlv(SEQUENCE, &tbs), tlv(SEQUENCE, &[]), tlv(0x03, &[0])].concat(),
        )
    }

    #[test]
    fn names_are_written_most_specific_first() {
        let subject = [
            rdn(&[0x55, 4, 6], 0x13, b"DE"),
            rdn(&[0x55, 4, 10], 0x0C, b"Example, Inc."),
            rdn(&[0x55, 4, 3], 0x0C, b"alice"),
        ]
        .concat();
        let issuer = rdn(&[0x55, 4, 3], 0x0C, b"Test CA");
        let names = certificate_names(&certificate(&issuer, &subject)).unwrap();
        assert_eq!(names.subject, r"CN=alice,O=Example\, Inc.,C=DE");
        assert_eq!(names.issuer, "CN=Test CA");
    }

    #[test]
    fn values_are_escaped_and_odd_types_are_hex() {
        let subject = [
            rdn(&[0x55, 4, 3], 0x0C, b" #lead+trail "),
            rdn(&[0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37], 0x02, &[0x05]),
        ]
        .concat();
        let names = certificate_names(&certificate(&subject, &subject)).unwrap();
        assert_eq!(
            names.subject,
            r"1.3.6.1.4.1.311=#020105,CN=\ #lead\+trail\ "
        );
    }

    #[test]
    fn bmp_strings_are_decoded() {
        let subject = rdn(&[0x55, 4, 3], 0x1E, &[0x00, b'b', 0x00, 0xE9]);
        let names = certificate_names(&certificate(&subject, &subject)).unwrap();
        assert_eq!(names.subject, "CN=bé");
    }

    #[test]
    fn malformed_certificates_yield_nothing() {
        assert_eq!(certificate_names(&[]), None);
        assert_eq!(certificate_names(&[0x30, 0x05, 0x30]), None);
        let full = certificate(&[], &[]);
        for cut in 0..full.len() {
            assert_eq!(certificate_names(&full[..cut]), None, "cut at {cut}");
        }
    }
}
