//! `VfProfile`: filled in by the CNI plugin work.
