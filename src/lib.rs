#![doc = "tower-secure (docs in progress)"]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod identity;
pub mod policy;
