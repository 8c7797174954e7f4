//! The HTTP face of a running pipeline: the live page at `/`, Prometheus text at
//! `/metrics`, the snapshot as JSON at `/api/snapshot`, the dependency graph at
//! `/graph.svg` and `/healthz`. The pipeline thread publishes snapshots; the
//! server only reads them.

use super::exposition::{openmetrics_to_text, ExpoFormat};
use super::live::{self, Snapshot};
use super::process::ProcessMetrics;
use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What the server shows: the latest snapshot and the live process metrics.
pub struct Published {
    pub snapshot: RwLock<Snapshot>,
    pub process: ProcessMetrics,
}

pub type Shared = Arc<Published>;

const PAGE: &str = include_str!("page.html");

pub fn shared(mode: &str, process: ProcessMetrics) -> Shared {
    Arc::new(Published {
        snapshot: RwLock::new(Snapshot {
            mode: mode.into(),
            graph_svg: live::render_svg(&[]),
            ..Snapshot::default()
        }),
        process,
    })
}

/// Replaces the published snapshot.
pub fn publish(shared: &Shared, snapshot: Snapshot) {
    if let Ok(mut s) = shared.snapshot.write() {
        *s = snapshot;
    }
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// The pipeline's series from the latest snapshot, then the process metrics as
/// they are now; OpenMetrics (with exemplars) when the scraper asks for it.
async fn metrics(State(s): State<Shared>, headers: HeaderMap) -> impl IntoResponse {
    let format = ExpoFormat::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let mut body = s.snapshot.read().map(|snap| snap.openmetrics.clone()).unwrap_or_default();
    s.process.encode(&mut body);
    if format == ExpoFormat::Text {
        body = openmetrics_to_text(&body);
    }
    ([(header::CONTENT_TYPE, format.content_type())], body)
}

async fn snapshot(State(s): State<Shared>) -> impl IntoResponse {
    let snap = s.snapshot.read().map(|s| s.clone()).unwrap_or_default();
    axum::Json(snap)
}

async fn graph(State(s): State<Shared>) -> impl IntoResponse {
    let svg = s.snapshot.read().map(|s| s.graph_svg.clone()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "image/svg+xml")], svg)
}

async fn health() -> &'static str {
    "ok\n"
}

/// SIGTERM (what `docker stop` sends), where there is one.
async fn terminated() {
    #[cfg(unix)]
    if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        s.recv().await;
        return;
    }
    std::future::pending::<()>().await
}

/// Why [`serve`] should stop besides Ctrl-C and SIGTERM.
pub struct Until {
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// The pipeline ended by itself (notified from its thread).
    pub pipeline_done: Arc<tokio::sync::Notify>,
}

/// Serves `shared` on `addr` until Ctrl-C, SIGTERM or `until`; calls `ready` with
/// the bound address once listening.
pub fn serve(
    addr: SocketAddr,
    shared: Shared,
    until: Until,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        ready(listener.local_addr().unwrap_or(addr));
        let app = Router::new()
            .route("/", get(page))
            .route("/metrics", get(metrics))
            .route("/api/snapshot", get(snapshot))
            .route("/graph.svg", get(graph))
            .route("/healthz", get(health))
            .with_state(shared);
        let shutdown = async move {
            let timer = async {
                match until.duration {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminated() => {}
                _ = timer => {}
                _ = until.pipeline_done.notified() => {}
            }
        };
        axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("web server failed")
    })
}
