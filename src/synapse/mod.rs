//! The Synapse source: admin and client APIs, self-signed federation, its database, and the
//! dump that turns a live Synapse into an archive.

pub mod admin;
pub mod db;
pub mod diagnose;
pub mod dump;
pub mod federation;
pub mod homeserver;
pub mod http;
pub mod source;

pub use source::{Source, SynapseSettings};
