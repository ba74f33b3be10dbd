//! The `http` listener: `GET /metrics` (Prometheus text format) and `GET /health`, with axum
//! routes served by hyper's HTTP/1.1 connection driver over a [`Connection`] (so HTTP gets the
//! same limits, counters, logs and shutdown as every other listener). JMAP lands here later.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

use super::connection::Connection;
use super::context::ServerContext;
use super::front_end::{FrontEnd, SessionFuture};

/// The HTTP front end.
#[derive(Debug, Clone, Copy)]
pub struct Http;

/// The routes of the `http` listener.
pub fn router(ctx: Arc<ServerContext>) -> Router {
    Router::new().route("/metrics", get(metrics)).route("/health", get(health)).with_state(ctx)
}

async fn metrics(State(ctx): State<Arc<ServerContext>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], ctx.render_metrics())
}

async fn health() -> impl IntoResponse {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok\n")
}

impl FrontEnd for Http {
    fn serve(&self, ctx: Arc<ServerContext>, conn: Connection) -> SessionFuture {
        Box::pin(async move {
            let mut shutdown = conn.shutdown_signal();
            let idle = conn.idle_timeout();
            let service = TowerToHyperService::new(router(ctx));
            let mut builder = hyper::server::conn::http1::Builder::new();
            // The header read timeout starts whenever the connection waits for a request, so
            // it is the idle timeout between keep-alive requests too.
            builder.timer(TokioTimer::new()).header_read_timeout(idle).keep_alive(true);
            let http = builder.serve_connection(TokioIo::new(conn), service);
            tokio::pin!(http);
            tokio::select! {
                r = http.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "http connection ended with an error");
                    }
                    return;
                }
                _ = shutdown.triggered() => {}
            }
            // Finish the request in flight, then close; an idle connection closes at once.
            http.as_mut().graceful_shutdown();
            let _ = http.await;
        })
    }
}
