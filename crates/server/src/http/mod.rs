//! The plain HTTP endpoints etcd serves next to gRPC on the client port (and
//! on `--listen-metrics-urls`): `/health`, `/version` and `/metrics`; and
//! etcd's v2 keys API ([`v2keys`], with `--enable-v2`).

pub mod v2keys;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use retcd_api::etcdserverpb::AlarmType;

use crate::server::EtcdServer;

/// `/health`, `/version` and `/metrics`.
pub fn routes(server: &Arc<EtcdServer>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(server.clone())
}

/// Only `/health` and `/metrics`, for `--listen-metrics-urls`.
pub fn metrics_routes(server: &Arc<EtcdServer>) -> Router {
    Router::new().route("/health", get(health)).route("/metrics", get(metrics)).with_state(server.clone())
}

/// What `/metrics` reports of the member's state, read now.
fn scrape(server: &EtcdServer) -> crate::metrics::Scrape {
    use std::sync::atomic::Ordering;
    crate::metrics::Scrape {
        has_leader: server.raft.leader() != 0,
        is_leader: server.raft.is_leader(),
        is_learner: server.membership.get(server.settings.member_id).is_some_and(|m| m.is_learner),
        member_id: server.settings.member_id,
        committed: server.raft.commit.load(Ordering::Acquire),
        applied: server.applied.load(Ordering::Acquire),
        db_size: server.backend.size(),
        db_size_in_use: server.backend.size_in_use(),
        revision: server.kv.rev(),
        compact_revision: server.kv.compact_rev(),
        quota_bytes: server.settings.quota_bytes.unwrap_or(0),
    }
}

async fn version() -> Response {
    let body =
        format!("{{\"etcdserver\":\"{}\",\"etcdcluster\":\"{}\"}}", crate::version::SERVER, crate::version::CLUSTER);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(State(server): State<Arc<EtcdServer>>) -> Response {
    let text = crate::metrics::get().render(&scrape(&server));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// As etcd: unhealthy with an active alarm (not excluded), without a
/// leader, or when a linearizable read does not complete within a second.
/// `?exclude=NOSPACE` (repeatable) ignores that alarm.
async fn health(State(server): State<Arc<EtcdServer>>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let excluded: Vec<&str> = query.split('&').filter_map(|kv| kv.strip_prefix("exclude=")).collect();
    let alarmed = server.alarms.list(AlarmType::None).into_iter().any(|a| {
        let name = AlarmType::try_from(a.alarm).map(|t| t.as_str_name()).unwrap_or("NONE");
        !excluded.contains(&name)
    });
    let healthy = !alarmed
        && server.raft.leader() != 0
        && matches!(tokio::time::timeout(Duration::from_secs(1), server.linearizable_read()).await, Ok(Ok(())));
    let m = crate::metrics::get();
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if healthy {
        m.health_success.inc();
        (StatusCode::OK, headers, "{\"health\":\"true\"}").into_response()
    } else {
        m.health_failures.inc();
        // Go's http.Error appends a newline.
        (StatusCode::SERVICE_UNAVAILABLE, headers, "{\"health\":\"false\"}\n").into_response()
    }
}
