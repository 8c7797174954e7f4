//! The HTTP face of a running pipeline: the live page at `/`, Prometheus text at
//! `/metrics`, the snapshot as JSON at `/api/snapshot` (with an ETag: unchanged,
//! it is not sent again), one anomaly document with its evidence at
//! `/api/anomaly?id=`, the dependency graph at `/graph.svg`, liveness at
//! `/healthz` and readiness at `/readyz`. The pipeline
//! thread publishes snapshots and the sources and sinks set their [`Health`];
//! the server only reads them. TLS and credentials: [`super::web_security`].

use super::exposition::{openmetrics_to_text, ExpoFormat};
use super::live::Snapshot;
use super::web_security::{Access, WebSecurity};
use crate::telemetry::health::Health;
use crate::telemetry::process::ProcessMetrics;
use anyhow::Context as _;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What the server shows: the latest snapshot and the live process metrics.
pub struct Published {
    pub snapshot: RwLock<Snapshot>,
    /// The snapshot as JSON and its ETag, made once per snapshot.
    json: RwLock<Option<(String, String)>>,
    pub process: ProcessMetrics,
    /// What `/readyz` reports.
    pub health: Health,
}

pub type Shared = Arc<Published>;

const PAGE: &str = include_str!("page.html");

pub fn shared(mode: &str, process: ProcessMetrics, health: Health) -> Shared {
    Arc::new(Published {
        snapshot: RwLock::new(Snapshot { mode: mode.into(), ..Snapshot::default() }),
        json: RwLock::new(None),
        process,
        health,
    })
}

/// Replaces the published snapshot.
pub fn publish(shared: &Shared, snapshot: Snapshot) {
    if let Ok(mut s) = shared.snapshot.write() {
        *s = snapshot;
    }
    if let Ok(mut j) = shared.json.write() {
        *j = None;
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

/// The snapshot as JSON; 304 when the client's `If-None-Match` names the same
/// content (the page polls: a pipeline at rest sends nothing new).
async fn snapshot(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let cached = s.json.read().ok().and_then(|j| j.clone());
    let (etag, body) = match cached {
        Some(c) => c,
        None => {
            let body =
                s.snapshot.read().map(|s| serde_json::to_string(&*s).unwrap_or_default()).unwrap_or_default();
            let etag = format!("\"{:016x}\"", crate::model::text::fnv1a64(body.as_bytes()));
            if let Ok(mut j) = s.json.write() {
                *j = Some((etag.clone(), body.clone()));
            }
            (etag, body)
        }
    };
    let not_modified = headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let etag_header = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\""));
    if not_modified {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_header)]).into_response();
    }
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json")), (header::ETAG, etag_header)],
        body,
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct AnomalyQuery {
    id: String,
}

/// One anomaly document the page lists, evidence included.
async fn anomaly(State(s): State<Shared>, Query(q): Query<AnomalyQuery>) -> Response {
    let found = s.snapshot.read().ok().and_then(|snap| snap.examples.get(&q.id).cloned());
    match found {
        Some(a) => axum::Json(&*a).into_response(),
        None => (StatusCode::NOT_FOUND, "no such anomaly among those the page lists\n").into_response(),
    }
}

/// The dependency graph, laid out when asked for (off the pipeline thread).
async fn graph(State(s): State<Shared>) -> impl IntoResponse {
    let model = s
        .snapshot
        .read()
        .map(|snap| {
            let rates = snap
                .edge_rates
                .iter()
                .map(|r| ((r.source.clone(), r.target.clone(), r.virtual_node), r.per_second))
                .collect();
            super::graph::Model::of(&snap.edges, &snap.losses, &rates)
        })
        .unwrap_or_default();
    let svg = tokio::task::spawn_blocking(move || super::graph::render(&model)).await.unwrap_or_default();
    ([(header::CONTENT_TYPE, "image/svg+xml")], svg)
}

async fn health() -> &'static str {
    "ok\n"
}

/// 200 with the readiness report when every component works, else 503 with it.
async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    let report = s.health.report();
    let status = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(report))
}

/// Lets requests with the credentials of `access` through; 401 otherwise.
async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let authorization = request.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
    if access.allows(authorization) {
        return next.run(request).await;
    }
    let mut response = (StatusCode::UNAUTHORIZED, "credentials required\n").into_response();
    for challenge in access.challenges() {
        response.headers_mut().append(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    response
}

/// `routes` behind `access` (unchanged when it is open).
fn protect(routes: Router<Shared>, access: &Access) -> Router<Shared> {
    if access.is_open() {
        return routes;
    }
    routes.route_layer(middleware::from_fn_with_state(Arc::new(access.clone()), guard))
}

/// Every route, each group behind its credentials.
pub fn router(shared: Shared, security: &WebSecurity) -> Router {
    let page = Router::new()
        .route("/", get(page))
        .route("/api/snapshot", get(snapshot))
        .route("/api/anomaly", get(anomaly))
        .route("/graph.svg", get(graph));
    let metrics = Router::new().route("/metrics", get(metrics));
    let open = Router::new().route("/healthz", get(health)).route("/readyz", get(readyz));
    protect(page, &security.page).merge(protect(metrics, &security.metrics)).merge(open).with_state(shared)
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

/// Serves `shared` on `addr` with `security` until Ctrl-C, SIGTERM or `until`;
/// calls `ready` with the bound address once listening.
pub fn serve(
    addr: SocketAddr,
    shared: Shared,
    security: WebSecurity,
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
        tracing::info!("http listener: {}", security.describe());
        let app = router(shared, &security);
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
        match security.tls {
            Some(tls) => serve_tls(listener, app, tls, shutdown).await,
            None => {
                axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("web server failed")
            }
        }
    })
}

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections may take to finish after a stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/1.1 over TLS: accepts until `shutdown`, then lets open connections finish
/// their requests (for at most [`DRAIN_TIMEOUT`]). A client that does not speak
/// TLS gets its connection closed.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Finished connections' results, so the set does not grow.
        while connections.try_join_next().is_some() {}
        let (acceptor, app, mut stop) = (acceptor.clone(), app.clone(), stop_rx.clone());
        connections.spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake with {peer} failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake with {peer} timed out");
                    return;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(conn);
            // Stopping (or the server gone): the value's guard is dropped in here.
            let stopping = async move {
                let _ = stop.wait_for(|&stop| stop).await;
            };
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stopping => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained =
        tokio::time::timeout(DRAIN_TIMEOUT, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        connections.abort_all();
    }
    Ok(())
}
