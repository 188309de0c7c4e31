//! The PROXY protocol header (versions 1 and 2) that a load balancer sends
//! first on a connection to say where the client really came from.
//!
//! Bytes only: [`parse`] looks at the start of a buffer and answers
//! [`Status::Partial`] (a valid prefix, more bytes needed),
//! [`Status::Complete`] (the header, with its length so the caller can drop
//! it) or an [`Error`]. It never reads a socket, never allocates and knows
//! nothing of HTTP or Python; deciding which peers may send a header is the
//! caller's job.
//!
//! What is accepted (the HAProxy specification, "The PROXY protocol"):
//! * v1: `PROXY TCP4 src dst sport dport\r\n`, `PROXY TCP6 ...` or
//!   `PROXY UNKNOWN...\r\n`, at most 107 bytes with the CRLF; addresses must
//!   match the family, ports are decimal 0-65535.
//! * v2: the 12-byte signature, version 2, command LOCAL (addresses ignored)
//!   or PROXY; PROXY carries AF_INET or AF_INET6 over STREAM (the client's
//!   address), or AF_UNIX over STREAM or AF_UNSPEC (no IP address to give:
//!   the connection's own endpoints stand). TLVs after the addresses are
//!   skipped. The payload is bounded by [`V2_MAX_PAYLOAD`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v1 header starts with these bytes.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 header, CRLF included (the specification's limit).
pub const V1_MAX_LEN: usize = 107;
/// The v2 header starts with these 12 bytes.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version/command, family/protocol and the 2-byte length.
const V2_FIXED_LEN: usize = 16;
/// The most payload (addresses and TLVs) a v2 header may announce.
pub const V2_MAX_PAYLOAD: usize = 4096;

/// The outcome of parsing a buffer that starts a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A whole header.
    Complete(ProxyHeader),
    /// A valid prefix of a header: more bytes are needed. Not an error.
    Partial,
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The header's length in bytes: what follows is the client's data.
    pub len: usize,
    /// The client and the address it connected to, when the header gives
    /// them (not for v1 `UNKNOWN`, v2 `LOCAL` or v2 `AF_UNSPEC`: then the
    /// connection's own endpoints stand).
    pub addresses: Option<Addresses>,
}

/// The two ends of the proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The client.
    pub source: SocketAddr,
    /// The address the client connected to (the proxy's front).
    pub destination: SocketAddr,
}

/// Why a buffer does not start with a valid PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The bytes are neither `PROXY ` nor the v2 signature.
    #[error("no PROXY protocol header")]
    Missing,
    /// A v1 line longer than 107 bytes, or without its CRLF by then.
    #[error("PROXY v1 line longer than 107 bytes")]
    V1TooLong,
    /// A v1 line whose protocol is not `TCP4`, `TCP6` or `UNKNOWN`.
    #[error("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN")]
    V1Protocol,
    /// A v1 line without exactly four single-space separated fields after
    /// the protocol, or with a stray CR or LF.
    #[error("malformed PROXY v1 line")]
    V1Syntax,
    /// A v1 address that is not an address of the announced family.
    #[error("bad address in PROXY v1 line")]
    V1Address,
    /// A v1 port that is not a decimal number from 0 to 65535.
    #[error("bad port in PROXY v1 line")]
    V1Port,
    /// A v2 header whose version is not 2.
    #[error("PROXY v2 version is not 2")]
    V2Version,
    /// A v2 command other than LOCAL or PROXY.
    #[error("PROXY v2 command is not LOCAL or PROXY")]
    V2Command,
    /// A v2 PROXY command for a family or transport other than a stream
    /// over IPv4, IPv6 or a unix socket (or unspecified).
    #[error("PROXY v2 address family or transport not supported")]
    V2Family,
    /// A v2 payload longer than [`V2_MAX_PAYLOAD`].
    #[error("PROXY v2 header longer than allowed")]
    V2TooLong,
    /// A v2 payload too short for the addresses of its family.
    #[error("PROXY v2 header too short for its addresses")]
    V2TooShort,
}

/// Parses the PROXY header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Status, Error> {
    match buf.first() {
        None => Ok(Status::Partial),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Err(Error::Missing),
    }
}

/// Whether `buf` and `expected` agree on their common length.
fn agrees_with(buf: &[u8], expected: &[u8]) -> bool {
    let n = buf.len().min(expected.len());
    buf[..n] == expected[..n]
}

fn parse_v1(buf: &[u8]) -> Result<Status, Error> {
    if !agrees_with(buf, V1_PREFIX) {
        return Err(Error::Missing);
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(cr) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return if buf.len() >= V1_MAX_LEN {
            Err(Error::V1TooLong)
        } else {
            Ok(Status::Partial)
        };
    };
    if window[cr] == b'\n' {
        return Err(Error::V1Syntax);
    }
    if cr + 2 > V1_MAX_LEN {
        return Err(Error::V1TooLong);
    }
    match window.get(cr + 1) {
        None => Ok(Status::Partial),
        Some(b'\n') => {
            let addresses = v1_addresses(&buf[V1_PREFIX.len()..cr])?;
            Ok(Status::Complete(ProxyHeader {
                len: cr + 2,
                addresses,
            }))
        }
        Some(_) => Err(Error::V1Syntax),
    }
}

/// The fields of a v1 line after `PROXY `, without the CRLF.
fn v1_addresses(line: &[u8]) -> Result<Option<Addresses>, Error> {
    let mut fields = line.split(|&b| b == b' ');
    let protocol = fields.next().unwrap_or_default();
    let is_v6 = match protocol {
        b"TCP4" => false,
        b"TCP6" => true,
        // Whatever follows UNKNOWN is to be ignored.
        b"UNKNOWN" => return Ok(None),
        _ => return Err(Error::V1Protocol),
    };
    let mut next = || fields.next().ok_or(Error::V1Syntax);
    let (source_ip, destination_ip) = (next()?, next()?);
    let (source_port, destination_port) = (next()?, next()?);
    if fields.next().is_some() {
        return Err(Error::V1Syntax);
    }
    let source = SocketAddr::new(v1_ip(source_ip, is_v6)?, v1_port(source_port)?);
    let destination = SocketAddr::new(v1_ip(destination_ip, is_v6)?, v1_port(destination_port)?);
    Ok(Some(Addresses {
        source,
        destination,
    }))
}

fn v1_ip(text: &[u8], is_v6: bool) -> Result<IpAddr, Error> {
    let text = std::str::from_utf8(text).map_err(|_| Error::V1Address)?;
    let ip = if is_v6 {
        text.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().map(IpAddr::V4)
    };
    ip.map_err(|_| Error::V1Address)
}

fn v1_port(text: &[u8]) -> Result<u16, Error> {
    if text.is_empty() || text.len() > 5 || !text.iter().all(u8::is_ascii_digit) {
        return Err(Error::V1Port);
    }
    let value = text
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| Error::V1Port)
}

/// v2 command (low nibble of byte 12).
const V2_LOCAL: u8 = 0x0;
const V2_PROXY: u8 = 0x1;
/// v2 family and transport (byte 13).
const V2_UNSPEC: u8 = 0x00;
const V2_TCP4: u8 = 0x11;
const V2_TCP6: u8 = 0x21;
const V2_UNIX_STREAM: u8 = 0x31;

fn parse_v2(buf: &[u8]) -> Result<Status, Error> {
    if !agrees_with(buf, &V2_SIGNATURE) {
        return Err(Error::Missing);
    }
    let Some(&version_command) = buf.get(12) else {
        return Ok(Status::Partial);
    };
    if version_command >> 4 != 2 {
        return Err(Error::V2Version);
    }
    let command = version_command & 0x0F;
    if command != V2_LOCAL && command != V2_PROXY {
        return Err(Error::V2Command);
    }
    let Some(&family) = buf.get(13) else {
        return Ok(Status::Partial);
    };
    let address_len = match family {
        _ if command == V2_LOCAL => 0,
        V2_UNSPEC => 0,
        V2_TCP4 => 12,
        V2_TCP6 => 36,
        V2_UNIX_STREAM => 216,
        _ => return Err(Error::V2Family),
    };
    let Some(length) = buf.get(14..V2_FIXED_LEN) else {
        return Ok(Status::Partial);
    };
    let payload_len = usize::from(u16::from_be_bytes([length[0], length[1]]));
    if payload_len > V2_MAX_PAYLOAD {
        return Err(Error::V2TooLong);
    }
    if payload_len < address_len {
        return Err(Error::V2TooShort);
    }
    let len = V2_FIXED_LEN + payload_len;
    let Some(payload) = buf.get(V2_FIXED_LEN..len) else {
        return Ok(Status::Partial);
    };
    let addresses = match (command, family) {
        (V2_PROXY, V2_TCP4) => Some(v2_addresses(payload, 4)),
        (V2_PROXY, V2_TCP6) => Some(v2_addresses(payload, 16)),
        _ => None,
    };
    Ok(Status::Complete(ProxyHeader { len, addresses }))
}

/// Source address, destination address (each `ip_len` bytes: 4 or 16),
/// then the two ports, all big-endian. `payload` holds at least
/// `2 * ip_len + 4` bytes.
fn v2_addresses(payload: &[u8], ip_len: usize) -> Addresses {
    let ip = |at: usize| -> IpAddr {
        let octets = &payload[at..at + ip_len];
        match <[u8; 4]>::try_from(octets) {
            Ok(v4) => IpAddr::from(v4),
            Err(_) => IpAddr::from(<[u8; 16]>::try_from(octets).expect("16 octets")),
        }
    };
    let port = |at: usize| u16::from_be_bytes([payload[at], payload[at + 1]]);
    Addresses {
        source: SocketAddr::new(ip(0), port(2 * ip_len)),
        destination: SocketAddr::new(ip(ip_len), port(2 * ip_len + 2)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(source: &str, destination: &str) -> Option<Addresses> {
        Some(Addresses {
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
        })
    }

    /// A v2 header: command, family, payload.
    fn v2(version_command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(version_command);
        header.push(family);
        header.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        header.extend_from_slice(payload);
        header
    }

    fn v2_tcp4_payload() -> Vec<u8> {
        let mut payload = vec![192, 0, 2, 7, 10, 0, 0, 1];
        payload.extend_from_slice(&54321u16.to_be_bytes());
        payload.extend_from_slice(&443u16.to_be_bytes());
        payload
    }

    fn v2_tcp6_payload() -> Vec<u8> {
        let source: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let destination: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut payload = source.octets().to_vec();
        payload.extend_from_slice(&destination.octets());
        payload.extend_from_slice(&1234u16.to_be_bytes());
        payload.extend_from_slice(&80u16.to_be_bytes());
        payload
    }

    /// Valid headers and what they parse to.
    fn valid_headers() -> Vec<(Vec<u8>, Option<Addresses>)> {
        let mut with_tlv = v2_tcp4_payload();
        with_tlv.extend_from_slice(&[0x04, 0x00, 0x03, b'a', b'b', b'c']);
        vec![
            (
                b"PROXY TCP4 192.0.2.7 10.0.0.1 54321 443\r\n".to_vec(),
                addresses("192.0.2.7:54321", "10.0.0.1:443"),
            ),
            (
                b"PROXY TCP6 2001:db8::7 ::1 1234 80\r\n".to_vec(),
                addresses("[2001:db8::7]:1234", "[::1]:80"),
            ),
            (
                b"PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n".to_vec(),
                addresses("255.255.255.255:65535", "0.0.0.0:0"),
            ),
            (b"PROXY UNKNOWN\r\n".to_vec(), None),
            (
                b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n".to_vec(),
                None,
            ),
            (
                v2(0x21, V2_TCP4, &v2_tcp4_payload()),
                addresses("192.0.2.7:54321", "10.0.0.1:443"),
            ),
            (
                v2(0x21, V2_TCP6, &v2_tcp6_payload()),
                addresses("[2001:db8::7]:1234", "[2001:db8::1]:80"),
            ),
            // TLVs after the addresses are skipped.
            (
                v2(0x21, V2_TCP4, &with_tlv),
                addresses("192.0.2.7:54321", "10.0.0.1:443"),
            ),
            // LOCAL: health checks; addresses ignored whatever the family.
            (v2(0x20, V2_UNSPEC, &[]), None),
            (v2(0x20, V2_TCP4, &v2_tcp4_payload()), None),
            (v2(0x20, 0x31, &[0; 216]), None),
            // PROXY over an unspecified family or a unix socket: the real
            // endpoints stand.
            (v2(0x21, V2_UNSPEC, &[]), None),
            (v2(0x21, V2_UNIX_STREAM, &[b'/'; 216]), None),
        ]
    }

    #[test]
    fn valid_headers_parse_to_their_addresses() {
        for (header, expected) in valid_headers() {
            let mut buf = header.clone();
            buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(
                parse(&buf),
                Ok(Status::Complete(ProxyHeader {
                    len: header.len(),
                    addresses: expected
                })),
                "{:?}",
                String::from_utf8_lossy(&header)
            );
        }
    }

    #[test]
    fn every_prefix_of_a_valid_header_is_partial() {
        for (header, _) in valid_headers() {
            for end in 0..header.len() {
                assert_eq!(
                    parse(&header[..end]),
                    Ok(Status::Partial),
                    "{:?}",
                    String::from_utf8_lossy(&header[..end])
                );
            }
        }
    }

    #[test]
    fn invalid_v1_lines_are_rejected() {
        let cases: &[(&[u8], Error)] = &[
            // Not a PROXY header at all
            (b"GET / HTTP/1.1\r\n", Error::Missing),
            (b"PROXZ", Error::Missing),
            (b"proxy TCP4", Error::Missing),
            (b"PROXY\r\n", Error::Missing),
            // Protocol
            (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", Error::V1Protocol),
            (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", Error::V1Protocol),
            (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", Error::V1Protocol),
            // Fields
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", Error::V1Syntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", Error::V1Syntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", Error::V1Syntax),
            (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", Error::V1Syntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", Error::V1Syntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", Error::V1Syntax),
            // Addresses of the wrong family, or not addresses
            (b"PROXY TCP4 ::1 ::1 1 2\r\n", Error::V1Address),
            (b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", Error::V1Address),
            (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", Error::V1Address),
            (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", Error::V1Address),
            (b"PROXY TCP4 example.com 5.6.7.8 1 2\r\n", Error::V1Address),
            // Ports
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", Error::V1Port),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", Error::V1Port),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 0x10\r\n", Error::V1Port),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 100000\r\n", Error::V1Port),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", Error::V1Port),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse(input),
                Err(*expected),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn a_v1_line_longer_than_107_bytes_is_rejected_without_waiting_for_its_end() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(V1_MAX_LEN - 2, b'x');
        line.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&line), Ok(Status::Complete(_))));
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX_LEN - 1, b'x');
        assert_eq!(parse(&long), Ok(Status::Partial));
        long.push(b'\r');
        assert_eq!(parse(&long), Err(Error::V1TooLong));
        long.pop();
        long.push(b'x');
        assert_eq!(parse(&long), Err(Error::V1TooLong));
    }

    #[test]
    fn invalid_v2_headers_are_rejected() {
        let mut too_long = V2_SIGNATURE.to_vec();
        too_long.extend_from_slice(&[0x21, V2_TCP4]);
        too_long.extend_from_slice(&((V2_MAX_PAYLOAD + 1) as u16).to_be_bytes());
        let cases: Vec<(Vec<u8>, Error)> = vec![
            // Signature
            (b"\r\n\r\n\0\r\nQUIT!".to_vec(), Error::Missing),
            (b"\r\n\r\nGET".to_vec(), Error::Missing),
            // Version and command, judged as soon as they arrive
            (
                v2(0x11, V2_TCP4, &v2_tcp4_payload())[..13].to_vec(),
                Error::V2Version,
            ),
            (v2(0x31, V2_TCP4, &v2_tcp4_payload()), Error::V2Version),
            (v2(0x22, V2_TCP4, &v2_tcp4_payload()), Error::V2Command),
            // Family and transport of a PROXY command
            (v2(0x21, 0x12, &v2_tcp4_payload()), Error::V2Family),
            (v2(0x21, 0x22, &v2_tcp6_payload()), Error::V2Family),
            (v2(0x21, 0x32, &[0; 216]), Error::V2Family),
            (v2(0x21, 0x41, &[]), Error::V2Family),
            (v2(0x21, 0x10, &v2_tcp4_payload()), Error::V2Family),
            // Lengths
            (too_long, Error::V2TooLong),
            (v2(0x21, V2_TCP4, &[0; 11]), Error::V2TooShort),
            (v2(0x21, V2_TCP6, &v2_tcp4_payload()), Error::V2TooShort),
            (v2(0x21, V2_UNIX_STREAM, &[0; 215]), Error::V2TooShort),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(&input), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn a_v2_header_is_judged_by_its_announced_length_only() {
        // Announces 12 bytes of addresses: what follows is the client's.
        let mut buf = v2(0x21, V2_TCP4, &v2_tcp4_payload());
        buf.extend_from_slice(b"\r\n\r\n\0\r\nQUIT\n");
        let Ok(Status::Complete(header)) = parse(&buf) else {
            panic!("not complete")
        };
        assert_eq!(header.len, 28);
    }
}
