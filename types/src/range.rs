//! VF index ranges as the device plugin's `pfNames` selector writes them: `0-3,6`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// Why a string is not a VF range, or a range does not fit a PF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VfRangeError {
    /// The text does not parse.
    #[error("invalid VF range {input:?}: {reason} (expected indices and ranges such as 0-3,6)")]
    Syntax {
        /// The rejected input.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The range names a VF index the PF cannot have.
    #[error("VF range {range} names VF {index}, but the PF has only {total_vfs} VFs (indices 0-{last})", last = total_vfs.saturating_sub(1))]
    BeyondTotal {
        /// The range as written.
        range: String,
        /// The first index that does not exist.
        index: u32,
        /// The PF's `sriov_totalvfs`.
        total_vfs: u32,
    },
}

/// A set of VF indices. Kept as an ordered set so overlapping parts (`0-3,2`) are harmless and
/// the display is canonical.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VfRange(BTreeSet<u32>);

/// The largest VF index any PF can have: `sriov_totalvfs` is a 16-bit field in the SR-IOV
/// capability.
pub const MAX_VF_INDEX: u32 = u16::MAX as u32 - 1;

impl VfRange {
    /// True if `index` is in the range.
    pub fn contains(&self, index: u32) -> bool {
        self.0.contains(&index)
    }

    /// The indices in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// Number of indices.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks every index against the PF's `sriov_totalvfs`.
    pub fn check_within(&self, total_vfs: u32) -> Result<(), VfRangeError> {
        match self.0.iter().find(|&&i| i >= total_vfs) {
            Some(&index) => Err(VfRangeError::BeyondTotal { range: self.to_string(), index, total_vfs }),
            None => Ok(()),
        }
    }
}

impl FromStr for VfRange {
    type Err = VfRangeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| VfRangeError::Syntax { input: input.to_owned(), reason };
        let index = |s: &str| -> Result<u32, VfRangeError> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(format!("{s:?} is not a VF index")));
            }
            match s.parse::<u32>() {
                Ok(i) if i <= MAX_VF_INDEX => Ok(i),
                _ => Err(err(format!("VF index {s} is above {MAX_VF_INDEX}"))),
            }
        };
        let mut set = BTreeSet::new();
        for part in input.split(',') {
            match part.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (index(lo)?, index(hi)?);
                    if lo > hi {
                        return Err(err(format!("range {lo}-{hi} runs backwards")));
                    }
                    set.extend(lo..=hi);
                }
                None => {
                    set.insert(index(part)?);
                }
            }
        }
        Ok(Self(set))
    }
}

impl fmt::Display for VfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut iter = self.0.iter().copied().peekable();
        while let Some(start) = iter.next() {
            let mut end = start;
            while iter.peek() == Some(&(end + 1)) {
                end += 1;
                iter.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if end == start {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_lists_and_ranges() {
        let r: VfRange = "0-3,6".parse().unwrap();
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![0, 1, 2, 3, 6]);
        assert_eq!(r.to_string(), "0-3,6");
        assert_eq!("5, 1-2 ,2".parse::<VfRange>().unwrap().to_string(), "1-2,5");
    }

    #[test]
    fn rejects_bad_syntax_naming_part() {
        for (input, needle) in [
            ("", "\"\""),
            ("3-1", "backwards"),
            ("a", "\"a\""),
            ("1-", "\"\""),
            ("-1", "\"\" is not"),
            ("1,,2", "\"\""),
            ("70000", "above"),
            ("1-2-3", "\"2-3\""),
        ] {
            let err = input.parse::<VfRange>().unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }

    #[test]
    fn checks_total_vfs() {
        let r: VfRange = "0-3,9".parse().unwrap();
        assert!(r.check_within(10).is_ok());
        let err = r.check_within(7).unwrap_err();
        assert_eq!(err, VfRangeError::BeyondTotal { range: "0-3,9".into(), index: 9, total_vfs: 7 });
        assert!(err.to_string().contains("only 7 VFs (indices 0-6)"));
    }

    proptest! {
        #[test]
        fn display_round_trips(set in proptest::collection::btree_set(0u32..200, 0..40)) {
            let r = VfRange(set);
            if !r.is_empty() {
                prop_assert_eq!(r.to_string().parse::<VfRange>().unwrap(), r);
            }
        }

        #[test]
        fn never_panics(s in "[0-9, -]{0,20}") {
            let _ = s.parse::<VfRange>();
        }
    }
}
