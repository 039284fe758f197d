//! The Conduit sink (v0.10.12, database version 18). This module is the only code that knows
//! Conduit's byte layouts (`../shared/conduit-db.md`).

pub mod preflight;
pub mod reader;
pub mod schema;
pub mod store;
pub mod verify;
pub mod write;
pub mod writer;
