//! `poirot deps`: who calls whom, from the dependency graph in Neo4j.
#![allow(clippy::print_stdout)]

use crate::config::Config;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use neo4rs::query;
use serde::Serialize;

#[derive(Args, Debug)]
#[command(after_help = "Neo4j is the one `poirot run` writes to: the [neo4j] section of --config, or
  POIROT_NEO4J__URI=127.0.0.1:7687      Bolt address (bolt+s://host:7687 or neo4j+s://: TLS)
  POIROT_NEO4J__USER=neo4j
  POIROT_NEO4J__PASSWORD=...            or POIROT_NEO4J__PASSWORD_FILE=/run/secrets/neo4j_password
  POIROT_NEO4J__CA_FILE=ca.pem          a CA to trust besides the system's (with a +s uri)
Example: POIROT_NEO4J__URI=127.0.0.1:7687 POIROT_NEO4J__PASSWORD=secret poirot deps impact SandboxAnalyser")]
pub struct DepsArgs {
    #[command(subcommand)]
    pub query: DepsQuery,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum DepsQuery {
    /// Services SERVICE calls, directly or through others.
    Downstream {
        service: String,
        /// How many calls deep to follow (1-20).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
        depth: u32,
    },
    /// Services that call SERVICE, directly or through others.
    Upstream {
        service: String,
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
        depth: u32,
    },
    /// The shortest chain of calls from one service to another.
    Path { from: String, to: String },
    /// Every service an outage of SERVICE would hit (all that depend on it), with call volumes.
    Impact { service: String },
}

/// One service in an answer.
#[derive(Serialize, Debug)]
pub struct Row {
    pub service: String,
    /// Calls away from the service asked about.
    pub hops: i64,
    /// Calls on the first edge of the shortest path (from the queried service
    /// downstream; into the path upstream).
    pub calls: i64,
    pub errors: i64,
}

/// The Cypher each query runs, for people using Neo4j Browser.
pub fn cypher(q: &DepsQuery) -> String {
    match q {
        DepsQuery::Downstream { depth, .. } => format!(
            "MATCH p = shortestPath((s:Service {{name: $service}})-[:CALLS*1..{depth}]->(t:Service)) WHERE t <> s \
             RETURN t.name AS service, length(p) AS hops, relationships(p)[-1].calls AS calls, \
             relationships(p)[-1].errors AS errors ORDER BY hops, service"
        ),
        DepsQuery::Upstream { depth, .. } => format!(
            "MATCH p = shortestPath((u:Service)-[:CALLS*1..{depth}]->(s:Service {{name: $service}})) WHERE u <> s \
             RETURN u.name AS service, length(p) AS hops, relationships(p)[0].calls AS calls, \
             relationships(p)[0].errors AS errors ORDER BY hops, service"
        ),
        DepsQuery::Impact { .. } => "MATCH p = shortestPath((u:Service)-[:CALLS*1..20]->(s:Service {name: $service})) WHERE u <> s \
             RETURN u.name AS service, length(p) AS hops, relationships(p)[0].calls AS calls, \
             relationships(p)[0].errors AS errors ORDER BY hops, service"
            .to_owned(),
        DepsQuery::Path { .. } => "MATCH p = shortestPath((a:Service {name: $from})-[:CALLS*1..20]->(b:Service {name: $to})) \
             UNWIND range(0, length(p) - 1) AS i \
             RETURN nodes(p)[i + 1].name AS service, i + 1 AS hops, relationships(p)[i].calls AS calls, \
             relationships(p)[i].errors AS errors ORDER BY hops"
            .to_owned(),
    }
}

/// How long `deps` waits for Neo4j to answer the connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub fn run(args: DepsArgs, config: &Config) -> anyhow::Result<()> {
    let c = crate::sink::neo4j::Neo4jConfig::from_section(&config.neo4j)?.ok_or_else(|| {
        anyhow::anyhow!("set neo4j.uri (or POIROT_NEO4J__URI) to the Bolt address of Neo4j")
    })?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let rows = rt.block_on(async {
        // A person is waiting: an address that does not answer is said so within seconds.
        let graph =
            tokio::time::timeout(CONNECT_TIMEOUT, crate::sink::neo4j::connect_once(c.bolt(1)?, &c.uri))
                .await
                .map_err(|_| anyhow::anyhow!("no Bolt answer within {} s", CONNECT_TIMEOUT.as_secs()))
                .and_then(|r| r.map_err(anyhow::Error::from))
                .with_context(|| format!("cannot connect to Neo4j at {}", c.uri))?;
        let mut q = query(&cypher(&args.query));
        q = match &args.query {
            DepsQuery::Downstream { service, .. }
            | DepsQuery::Upstream { service, .. }
            | DepsQuery::Impact { service } => q.param("service", service.as_str()),
            DepsQuery::Path { from, to } => q.param("from", from.as_str()).param("to", to.as_str()),
        };
        let mut stream = graph.execute(q).await.context("the Neo4j query failed")?;
        let mut rows = Vec::new();
        while let Some(r) = stream.next().await.context("the Neo4j query failed")? {
            rows.push(Row {
                service: r.get("service").unwrap_or_default(),
                hops: r.get("hops").unwrap_or_default(),
                calls: r.get("calls").unwrap_or_default(),
                errors: r.get("errors").unwrap_or_default(),
            });
        }
        anyhow::Ok(rows)
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("(none)");
        return Ok(());
    }
    let width = rows.iter().map(|r| r.service.len()).max().unwrap_or(7).max(7);
    println!("{:<width$}  {:>4}  {:>10}  {:>8}", "service", "hops", "calls", "errors");
    for r in &rows {
        println!("{:<width$}  {:>4}  {:>10}  {:>8}", r.service, r.hops, r.calls, r.errors);
    }
    Ok(())
}
