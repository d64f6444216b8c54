//! `tower-secure-macros`: home of the `#[secure(...)]` attribute (SPEC B5).
//!
//! The attribute lands with the macro issue; until then this crate exports nothing,
//! so no rule can silently be attached to a handler and ignored.
#![forbid(unsafe_code)]
