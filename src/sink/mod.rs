//! Where results go: files for replay, Prometheus text for scrapers, and the
//! live snapshot the demo page shows.

pub mod elasticsearch;
pub mod exposition;
pub mod files;
pub mod live;
pub mod neo4j;
pub mod process;
pub mod prometheus;
pub mod tls;
pub mod web;
pub mod web_security;
