//! Importing chat history from other chat systems: their data becomes the source-neutral
//! [`model`], which [`forge`] signs into an archive for the one event writer — or which
//! [`synapse`] replays into a running Synapse.

pub mod forge;
pub mod id_table;
pub mod model;
pub mod passwords;
pub mod queue;
pub mod scratch;
pub mod skips;
pub mod synapse;
