//! Shared support for the tower-secure fuzz targets: the fixture users, keys and PKI, a
//! realistic rule file, a runtime that drives a [`tower_secure::SecureLayer`] with
//! `oneshot`, and the invariants every layer target checks on every response.
//!
//! The oracles here are written from SPEC.md, not from the library's code: where they
//! need a fact the library also computes (a permission covering another, a NumericDate, a
//! scope list) they compute it their own way, so that a wrong answer is caught instead of
//! being repeated.
#![forbid(unsafe_code)]

pub mod certs;
pub mod credential;
pub mod drive;
pub mod fixtures;
pub mod jwt;
pub mod known;
pub mod oracle;
pub mod rules;
