//! The configuration file: its model, loading, and validation.
//!
//! Loading never stops at the first problem: the file is parsed once for its
//! structure, every section is deserialized on its own, and every rule is
//! checked, so the owner sees all that is wrong in one run, each as
//! `file:line:col: message`.

pub mod duration;
mod model;

pub use model::*;
