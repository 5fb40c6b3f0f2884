//! VM end-to-end helpers.
