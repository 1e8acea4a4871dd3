//! `p2pf node --metrics ADDR`: the node's metrics over HTTP/1.1 at `/metrics`, in the
//! OpenMetrics text format (see `docs/metrics.md`).
//!
//! ```no_run
//! # async fn demo(node: p2p_foundation::P2PNode) -> Result<(), p2p_foundation_cli::CliError> {
//! let server = p2p_foundation_cli::metrics_http::serve(
//!     "127.0.0.1:9100".parse().expect("addr"),
//!     node.metrics_handle(),
//! )
//! .await?;
//! println!("scrape http://{}/metrics", server.local_addr());
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use p2p_foundation::MetricsHandle;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::error::CliError;

/// Connections served at once; further ones wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// Longest one connection is kept, requests included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// The content type of the OpenMetrics text format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A running metrics endpoint; stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens on `addr` and answers `GET /metrics` with `metrics`' text.
pub async fn serve(addr: SocketAddr, metrics: MetricsHandle) -> Result<MetricsServer, CliError> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        CliError::Usage(format!(
            "cannot serve metrics on {addr}: {e} (choose another --metrics address)"
        ))
    })?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| CliError::Failed(format!("metrics listener: {e}")))?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let (stream, peer) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |req| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, Infallible>(answer(&req, &metrics).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
                match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics connection failed"),
                    Err(_) => tracing::debug!(%peer, "metrics connection timed out"),
                }
            });
        }
    });
    tracing::info!(%local_addr, "serving metrics at /metrics");
    Ok(MetricsServer { local_addr, task })
}

async fn answer(req: &Request<Incoming>, metrics: &MetricsHandle) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return reply(StatusCode::NOT_FOUND, Bytes::from_static(b"try /metrics\n"));
    }
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                Bytes::from_static(b"GET /metrics\n"),
            );
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return r;
        }
    };
    let text = metrics.encode().await;
    let length = text.len();
    let mut r = reply(
        StatusCode::OK,
        if head {
            Bytes::new()
        } else {
            Bytes::from(text)
        },
    );
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(OPENMETRICS),
    );
    if head {
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, header::HeaderValue::from(length));
    }
    r
}
