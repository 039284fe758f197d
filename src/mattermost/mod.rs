//! Mattermost as a source (issue 5): so far, where its database and files are (`config.json`).

pub mod config;
