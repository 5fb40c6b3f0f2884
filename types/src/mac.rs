//! Ethernet MAC addresses.

use std::fmt;
use std::str::FromStr;

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {input:?}: {reason} (expected six hex octets such as 02:00:5e:10:00:01)")]
pub struct MacAddrError {
    /// The rejected input.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A 48-bit Ethernet address. Parses `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff` in any case and
/// displays lower-case with colons, as sysfs and `ip` show it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `00:00:00:00:00:00`: what the kernel reports for a VF whose administrative MAC is unset.
    pub const ZERO: Self = Self([0; 6]);

    /// True for the all-zero address.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// True for group (multicast and broadcast) addresses, which a VF may never be given.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// The octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Reads the first six bytes of a netlink address attribute; `None` if it is shorter
    /// (e.g. an InfiniBand or tunnel address).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.get(..6).map(|b| Self([b[0], b[1], b[2], b[3], b[4], b[5]]))
    }
}

impl FromStr for MacAddr {
    type Err = MacAddrError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| MacAddrError { input: input.to_owned(), reason };
        let sep = if input.contains('-') { '-' } else { ':' };
        let parts: Vec<&str> = input.split(sep).collect();
        if parts.len() != 6 {
            return Err(err("expected 6 octets"));
        }
        let mut out = [0u8; 6];
        for (slot, part) in out.iter_mut().zip(parts) {
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err("each octet must be 2 hex digits"));
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| err("each octet must be 2 hex digits"))?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

#[cfg(feature = "serde")]
crate::serde_as_string!(MacAddr);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_both_separators_and_cases() {
        let m: MacAddr = "02:AB:cd:00:11:ff".parse().unwrap();
        assert_eq!(m.to_string(), "02:ab:cd:00:11:ff");
        assert_eq!("02-ab-cd-00-11-ff".parse::<MacAddr>().unwrap(), m);
        assert!(!m.is_multicast());
        assert!("01:00:5e:00:00:01".parse::<MacAddr>().unwrap().is_multicast());
        assert!(MacAddr::ZERO.is_zero());
    }

    #[test]
    fn rejects_malformed_naming_input() {
        for input in [
            "",
            "02:ab:cd:00:11",
            "02:ab:cd:00:11:ff:00",
            "2:ab:cd:00:11:ff",
            "02:ab:cd:00:11:fg",
            "02:ab-cd:00:11:ff",
            "0x2:ab:cd:00:11:f",
        ] {
            let err = input.parse::<MacAddr>().unwrap_err();
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(octets: [u8; 6]) {
            let m = MacAddr(octets);
            prop_assert_eq!(m.to_string().parse::<MacAddr>().unwrap(), m);
        }

        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = s.parse::<MacAddr>();
        }
    }
}
