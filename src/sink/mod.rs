//! Where results go: files for replay, Prometheus text for scrapers, and the
//! live snapshot the demo page shows.

#[cfg(feature = "servers")]
pub mod dead_letters;
pub mod documents;
#[cfg(feature = "servers")]
pub mod elasticsearch;
pub mod exposition;
pub mod files;
pub mod live;
#[cfg(feature = "servers")]
pub mod neo4j;
pub mod prometheus;
#[cfg(feature = "servers")]
pub mod retry;
#[cfg(feature = "servers")]
pub mod tls;
#[cfg(feature = "servers")]
pub mod web;
#[cfg(feature = "servers")]
pub mod web_security;
