//! Mattermost as a source (issue 5): where its database and files are (`config.json`), reading
//! them ([`db`], a channel in pages: [`pages`]), and mapping what was read ([`rows`]) into the import model ([`map`], with
//! Markdown, mentions and emoji converted by [`convert`]); [`mapping`] files say which Matrix
//! id each Mattermost id became.

pub mod config;
pub mod convert;
pub mod db;
mod emoji_table;
pub mod export;
pub mod map;
pub mod mapping;
pub mod pages;
pub mod posts;
pub mod rows;
pub mod server_env;
