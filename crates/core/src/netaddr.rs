//! Address ranges (CIDR blocks) for an identity's allowed sources and for mapping networks to
//! environments. Parsing, canonical form and membership only; IPv4-mapped IPv6 counts as IPv4.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::DomainError;

/// Most allowed source ranges one identity may have.
pub const MAX_SOURCE_CIDRS: usize = 64;

/// An address block: a network address and a prefix length (`10.0.0.0/8`, `2001:db8::/32`).
/// A bare address is a single-host block (`/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX` or a bare `ADDR`. Host bits must be zero, so that what an operator
    /// wrote is exactly what matches (`10.0.0.1/8` is refused rather than silently widened).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = IpAddr::from_str(addr)
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?
            .to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?,
        };
        let c = Self {
            network: addr,
            prefix,
        };
        if mask(addr, prefix) != addr {
            return Err(format!(
                "{s:?} has host bits set; did you mean {}?",
                Self {
                    network: mask(addr, prefix),
                    prefix
                }
            ));
        }
        Ok(c)
    }

    /// Is `addr` inside this block? IPv4-mapped IPv6 addresses match IPv4 blocks.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        addr.is_ipv4() == self.network.is_ipv4() && mask(addr, self.prefix) == self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Validates an identity's allowed source ranges: at most [`MAX_SOURCE_CIDRS`] blocks, each in
/// canonical `network/prefix` form; duplicates removed, sorted.
pub fn validate_source_cidrs(cidrs: &[String]) -> Result<Vec<String>, DomainError> {
    if cidrs.len() > MAX_SOURCE_CIDRS {
        return Err(DomainError::invalid(
            "allowed_source_cidrs",
            format!("at most {MAX_SOURCE_CIDRS} ranges are allowed"),
        ));
    }
    let mut out = Vec::with_capacity(cidrs.len());
    for c in cidrs {
        let parsed = Cidr::parse(c).map_err(|e| DomainError::invalid("allowed_source_cidrs", e))?;
        let s = parsed.to_string();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.sort();
    Ok(out)
}

/// Does `addr` fall inside any of `cidrs` (already validated strings)? Unparseable entries match nothing.
pub fn in_any(cidrs: &[String], addr: IpAddr) -> bool {
    cidrs
        .iter()
        .filter_map(|c| Cidr::parse(c).ok())
        .any(|c| c.contains(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_contain() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.1.2")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped IPv6");
        assert!(!c.contains(ip("2001:db8::1")));
        let h = Cidr::parse("192.0.2.7").unwrap();
        assert_eq!(h.to_string(), "192.0.2.7/32");
        assert!(h.contains(ip("192.0.2.7")) && !h.contains(ip("192.0.2.8")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
    }

    #[test]
    fn refuses_bad_blocks() {
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "x/8",
            "10.0.0.0/-1",
            "2001:db8::/129",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
        let e = Cidr::parse("10.0.0.1/8").unwrap_err();
        assert!(e.contains("10.0.0.0/8"), "{e}");
    }

    #[test]
    fn validation_normalizes() {
        let v =
            validate_source_cidrs(&["10.0.0.0/8".into(), "192.0.2.1".into(), "10.0.0.0/8".into()])
                .unwrap();
        assert_eq!(v, vec!["10.0.0.0/8", "192.0.2.1/32"]);
        assert!(validate_source_cidrs(&["nope".into()]).is_err());
        assert!(in_any(&v, ip("10.9.9.9")));
        assert!(!in_any(&v, ip("192.0.2.2")));
    }
}
