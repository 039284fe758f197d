//! transition-matrix: move whole chat servers into Conduit without losing anything.
//!
//! Data flows one way: sources (a live Synapse) are dumped into an [`archive`], which sinks read.
//! The CLI in `main.rs` is a thin layer over this library.

pub mod archive;
pub mod conduit;
pub mod config;
pub mod error;
pub mod import;
pub mod matrix;
pub mod mattermost;
pub mod progress;
pub mod proxy;
pub mod ssh;
pub mod synapse;

pub use error::{Error, Result};
