//! PCI addresses in the kernel's sysfs form, `DDDD:BB:DD.F` (domain, bus, device, function).

use std::fmt;
use std::str::FromStr;

/// Why a string is not a PCI address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PCI address {input:?}: {reason} (expected DDDD:BB:DD.F, e.g. 0000:03:02.3)")]
pub struct PciAddressError {
    /// The rejected input.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A PCI function address. Displays in the canonical lower-case sysfs form with the domain,
/// which is how sysfs names devices and how Multus and kubelet pass `deviceID`s.
///
/// The short form `BB:DD.F` (as `lspci` prints it) is accepted on input and means domain 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    /// PCI domain (segment), 16 bits in sysfs names.
    pub domain: u16,
    /// Bus number.
    pub bus: u8,
    /// Device number, 0..=31.
    pub device: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

impl PciAddress {
    /// Builds an address, checking the device and function ranges.
    pub fn new(domain: u16, bus: u8, device: u8, function: u8) -> Result<Self, PciAddressError> {
        let addr = Self { domain, bus, device, function };
        if device > 31 {
            return Err(PciAddressError { input: addr.to_string(), reason: "device number above 0x1f" });
        }
        if function > 7 {
            return Err(PciAddressError { input: addr.to_string(), reason: "function number above 7" });
        }
        Ok(addr)
    }
}

fn hex_field(s: &str, digits: usize, what: &'static str, input: &str) -> Result<u32, PciAddressError> {
    if s.len() != digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PciAddressError { input: input.to_owned(), reason: what });
    }
    u32::from_str_radix(s, 16).map_err(|_| PciAddressError { input: input.to_owned(), reason: what })
}

impl FromStr for PciAddress {
    type Err = PciAddressError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| PciAddressError { input: input.to_owned(), reason };
        let (slot, function) = input.rsplit_once('.').ok_or_else(|| err("missing '.' before the function"))?;
        let mut parts = slot.split(':').collect::<Vec<_>>();
        let domain = match parts.len() {
            3 => hex_field(parts.remove(0), 4, "domain must be 4 hex digits", input)?,
            2 => 0,
            _ => return Err(err("expected DDDD:BB:DD before the function")),
        };
        let bus = hex_field(parts[0], 2, "bus must be 2 hex digits", input)?;
        let device = hex_field(parts[1], 2, "device must be 2 hex digits", input)?;
        if function.len() != 1 {
            return Err(err("function must be one digit 0-7"));
        }
        let function = hex_field(function, 1, "function must be one digit 0-7", input)?;
        // The fields are range-checked by their digit counts except device and function.
        Self::new(domain as u16, bus as u8, device as u8, function as u8).map_err(|e| err(e.reason))
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{:x}", self.domain, self.bus, self.device, self.function)
    }
}

#[cfg(feature = "serde")]
crate::serde_as_string!(PciAddress);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_full_and_short_forms() {
        let a: PciAddress = "0000:03:02.3".parse().unwrap();
        assert_eq!(a, PciAddress { domain: 0, bus: 3, device: 2, function: 3 });
        assert_eq!("03:02.3".parse::<PciAddress>().unwrap(), a);
        assert_eq!("ABCD:EF:1F.7".parse::<PciAddress>().unwrap().to_string(), "abcd:ef:1f.7");
    }

    #[test]
    fn rejects_malformed_with_reason() {
        for (input, reason) in [
            ("", "missing '.'"),
            ("0000:03:02", "missing '.'"),
            ("0000:03:20.0", "device number"),
            ("0000:03:02.8", "function number"),
            ("0000:3:02.1", "bus must be"),
            ("000:03:02.1", "domain must be"),
            ("0000:03:02.10", "function must be one digit"),
            ("0000:0g:02.1", "bus must be"),
            ("1:0000:03:02.1", "expected DDDD:BB:DD"),
            ("0000:03:+2.1", "device must be"),
        ] {
            let err = input.parse::<PciAddress>().unwrap_err();
            assert!(err.to_string().contains(reason), "{input:?}: {err}");
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(domain: u16, bus: u8, device in 0u8..32, function in 0u8..8) {
            let a = PciAddress::new(domain, bus, device, function).unwrap();
            prop_assert_eq!(a.to_string().parse::<PciAddress>().unwrap(), a);
        }

        #[test]
        fn never_panics(s in "\\PC{0,20}") {
            let _ = s.parse::<PciAddress>();
        }

        #[test]
        fn near_misses_never_panic(s in "[0-9a-fA-F:.]{0,16}") {
            if let Ok(a) = s.parse::<PciAddress>() {
                prop_assert_eq!(a.to_string().parse::<PciAddress>().unwrap(), a);
            }
        }
    }
}
