//! `VfPool`: filled in by the device plugin work.
