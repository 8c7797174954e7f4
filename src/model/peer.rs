//! The attributes a client span names its callee with, for service-graph
//! virtual nodes: a call to a peer that sends no spans of its own (a database,
//! a cache, a third-party API) is still an edge, to a node named from them.

/// An attribute a virtual node can be named from.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PeerAttribute {
    /// `peer.service`
    PeerService,
    /// `db.name` (`db.namespace` in current semantic conventions)
    DbName,
    /// `db.system` (`db.system.name`)
    DbSystem,
    /// `server.address` (`net.peer.name` in older conventions)
    ServerAddress,
}

impl PeerAttribute {
    pub const ALL: [PeerAttribute; 4] = [
        PeerAttribute::PeerService,
        PeerAttribute::DbName,
        PeerAttribute::DbSystem,
        PeerAttribute::ServerAddress,
    ];

    /// The attribute's key, as configured.
    pub fn key(self) -> &'static str {
        match self {
            PeerAttribute::PeerService => "peer.service",
            PeerAttribute::DbName => "db.name",
            PeerAttribute::DbSystem => "db.system",
            PeerAttribute::ServerAddress => "server.address",
        }
    }

    /// By its key or an older or newer spelling of it.
    pub fn from_key(key: &str) -> Option<PeerAttribute> {
        Some(match key {
            "peer.service" => PeerAttribute::PeerService,
            "db.name" | "db.namespace" => PeerAttribute::DbName,
            "db.system" | "db.system.name" => PeerAttribute::DbSystem,
            "server.address" | "net.peer.name" => PeerAttribute::ServerAddress,
            _ => return None,
        })
    }
}

/// The default order, the OpenTelemetry service-graph connector's with
/// `server.address` added.
pub const DEFAULT_PEER_ATTRIBUTES: [PeerAttribute; 4] = PeerAttribute::ALL;
