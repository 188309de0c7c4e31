//! The lists of peers trusted by `--forwarded-allow-ips` and
//! `--proxy-allow-from`: comma-separated addresses and CIDR ranges, or `*`.
//!
//! Parsing happens once, in the master, when the settings are read; matching
//! an address is a scan of a short list, with no allocation. An IPv4 address
//! seen as IPv4-mapped IPv6 (`::ffff:a.b.c.d`, what a dual-stack socket
//! reports) matches the IPv4 entries too. This module does not know what the
//! lists are for.

use std::fmt;
use std::net::IpAddr;

/// A set of trusted addresses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IpAllowList {
    /// `*`: every address.
    any: bool,
    networks: Vec<Network>,
}

/// One entry: an address and how many leading bits must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Network {
    address: IpAddr,
    prefix_len: u8,
}

/// Why an allow list could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowListError {
    /// An entry is not an IP address or `ADDRESS/BITS`.
    #[error("'{0}' is not an IP address or CIDR range (e.g. 10.0.0.0/8), nor '*'")]
    BadEntry(String),
    /// A CIDR prefix longer than the address (over 32 for IPv4, 128 for IPv6).
    #[error("'{0}' has a prefix length longer than its address")]
    BadPrefix(String),
}

impl IpAllowList {
    /// Parses `127.0.0.1,::1`, `10.0.0.0/8, fd00::/8` or `*` (whitespace
    /// around entries is ignored). An empty list allows no address, as an
    /// empty list does in gunicorn.
    pub fn parse(text: &str) -> Result<IpAllowList, AllowListError> {
        let mut list = IpAllowList {
            any: false,
            networks: Vec::new(),
        };
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                list.any = true;
            } else {
                list.networks.push(Network::parse(entry)?);
            }
        }
        Ok(list)
    }

    /// Whether `*` was given.
    pub fn allows_any(&self) -> bool {
        self.any
    }

    /// Whether `address` is on the list.
    pub fn allows(&self, address: IpAddr) -> bool {
        if self.any {
            return true;
        }
        let address = address.to_canonical();
        self.networks
            .iter()
            .any(|network| network.contains(address))
    }
}

impl Network {
    fn parse(entry: &str) -> Result<Network, AllowListError> {
        let bad_entry = || AllowListError::BadEntry(entry.to_string());
        let (address, prefix) = match entry.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (entry, None),
        };
        let address: IpAddr = address.parse().map_err(|_| bad_entry())?;
        let address = address.to_canonical();
        let max_len = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => max_len,
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits
                    .parse::<u8>()
                    .ok()
                    .filter(|&len| len <= max_len)
                    .ok_or_else(|| AllowListError::BadPrefix(entry.to_string()))?
            }
            Some(_) => return Err(bad_entry()),
        };
        Ok(Network {
            address,
            prefix_len,
        })
    }

    /// Whether `address` (canonical) is in this network.
    fn contains(&self, address: IpAddr) -> bool {
        match (self.address, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => leading_bits_match(
                network.to_bits().into(),
                address.to_bits().into(),
                32,
                self.prefix_len,
            ),
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                leading_bits_match(network.to_bits(), address.to_bits(), 128, self.prefix_len)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix_len` of the `width` low bits of `a` and `b`
/// agree.
fn leading_bits_match(a: u128, b: u128, width: u32, prefix_len: u8) -> bool {
    let host_bits = width - u32::from(prefix_len);
    let differing = a ^ b;
    host_bits >= 128 || differing >> host_bits == 0
}

impl fmt::Display for IpAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut separator = "";
        if self.any {
            f.write_str("*")?;
            separator = ",";
        }
        for network in &self.networks {
            let full = if network.address.is_ipv4() { 32 } else { 128 };
            f.write_str(separator)?;
            if network.prefix_len == full {
                write!(f, "{}", network.address)?;
            } else {
                write!(f, "{}/{}", network.address, network.prefix_len)?;
            }
            separator = ",";
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_match_the_entries_that_contain_them() {
        let cases: &[(&str, &str, bool)] = &[
            // Single addresses
            ("127.0.0.1,::1", "127.0.0.1", true),
            ("127.0.0.1,::1", "::1", true),
            ("127.0.0.1,::1", "127.0.0.2", false),
            ("127.0.0.1,::1", "::2", false),
            ("127.0.0.1", "::ffff:127.0.0.1", true),
            ("::ffff:127.0.0.1", "127.0.0.1", true),
            // CIDR ranges
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("192.168.1.128/25", "192.168.1.200", true),
            ("192.168.1.128/25", "192.168.1.127", false),
            ("10.1.2.3/32", "10.1.2.3", true),
            ("10.1.2.3/32", "10.1.2.4", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("fd00::/8", "fd12:3456::1", true),
            ("fd00::/8", "fe80::1", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("::/0", "2001:db8::1", true),
            ("10.0.0.0/8", "::ffff:10.0.0.5", true),
            // Families never cross
            ("::1", "127.0.0.1", false),
            // Anything
            ("*", "203.0.113.9", true),
            ("*", "2001:db8::1", true),
            (" 10.0.0.1 , 10.0.0.2 ", "10.0.0.2", true),
        ];
        for &(list, address, expected) in cases {
            let parsed = IpAllowList::parse(list).unwrap();
            assert_eq!(parsed.allows(ip(address)), expected, "{address} in {list}");
        }
    }

    #[test]
    fn malformed_lists_are_rejected() {
        let cases: &[(&str, AllowListError)] = &[
            ("localhost", AllowListError::BadEntry("localhost".into())),
            ("10.0.0", AllowListError::BadEntry("10.0.0".into())),
            ("10.0.0.0/", AllowListError::BadEntry("10.0.0.0/".into())),
            ("10.0.0.0/x", AllowListError::BadEntry("10.0.0.0/x".into())),
            (
                "10.0.0.0/-1",
                AllowListError::BadEntry("10.0.0.0/-1".into()),
            ),
            (
                "10.0.0.0/33",
                AllowListError::BadPrefix("10.0.0.0/33".into()),
            ),
            ("::/129", AllowListError::BadPrefix("::/129".into())),
            ("::/300", AllowListError::BadPrefix("::/300".into())),
            ("127.0.0.1,nope", AllowListError::BadEntry("nope".into())),
        ];
        for (list, expected) in cases {
            assert_eq!(IpAllowList::parse(list).as_ref(), Err(expected), "{list:?}");
        }
    }

    #[test]
    fn an_empty_list_allows_no_address() {
        for empty in ["", " , "] {
            let list = IpAllowList::parse(empty).unwrap();
            assert!(!list.allows(ip("127.0.0.1")), "{empty:?}");
            assert!(!list.allows(ip("::1")), "{empty:?}");
        }
    }

    #[test]
    fn a_list_displays_as_it_would_be_given() {
        let list = IpAllowList::parse("127.0.0.1, ::1,10.0.0.0/8,*").unwrap();
        assert_eq!(list.to_string(), "*,127.0.0.1,::1,10.0.0.0/8");
        assert!(list.allows_any());
    }
}
