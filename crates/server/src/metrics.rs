//! Prometheus metrics under etcd's names, served at `/metrics`.
//!
//! Events are counted where they happen (leader changes and WAL fsyncs on the
//! raft thread, backend commits in the committer, proposals in the server,
//! gRPC calls by the interceptors with [`GrpcCall`]); state that already lives elsewhere
//! (leader, indexes, sizes, revision) is read at scrape time rather than
//! mirrored. One registry per process, as etcd's default registry: a process
//! runs one member.

use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The member's state at scrape time, read by whoever serves `/metrics`.
pub struct Scrape {
    pub has_leader: bool,
    pub is_leader: bool,
    pub is_learner: bool,
    pub member_id: u64,
    pub committed: u64,
    pub applied: u64,
    pub db_size: u64,
    pub db_size_in_use: u64,
    pub revision: i64,
    pub compact_revision: i64,
    /// 0 when the quota is disabled.
    pub quota_bytes: u64,
}

pub struct Metrics {
    registry: Registry,
    pub leader_changes: IntCounter,
    pub wal_fsync: Histogram,
    pub backend_commit: Histogram,
    pub defrag: Histogram,
    pub proposals_pending: IntGauge,
    pub proposals_failed: IntCounter,
    pub health_success: IntCounter,
    pub health_failures: IntCounter,
    pub range_total: IntCounter,
    pub put_total: IntCounter,
    pub delete_total: IntCounter,
    pub txn_total: IntCounter,
    grpc_started: IntCounterVec,
    grpc_handled: IntCounterVec,
    // Read at scrape time.
    has_leader: IntGauge,
    is_leader: IntGauge,
    is_learner: IntGauge,
    server_id: IntGaugeVec,
    server_version: IntGaugeVec,
    cluster_version: IntGaugeVec,
    proposals_committed: IntGauge,
    proposals_applied: IntGauge,
    db_size: IntGauge,
    db_size_in_use: IntGauge,
    debugging_db_size: IntGauge,
    current_revision: IntGauge,
    compact_revision: IntGauge,
    quota_bytes: IntGauge,
}

/// etcd's bucket layout for disk latencies: 1 ms doubling to ~4 s.
fn disk_buckets() -> Vec<f64> {
    exponential_buckets(0.001, 2.0, 13).unwrap_or_default()
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> Result<T, prometheus::Error> {
        r.register(Box::new(c.clone()))?;
        Ok(c)
    }
    let counter = |name: &str, help: &str| reg(&registry, IntCounter::new(name, help)?);
    let gauge = |name: &str, help: &str| reg(&registry, IntGauge::new(name, help)?);
    let label_gauge =
        |name: &str, help: &str, label: &str| reg(&registry, IntGaugeVec::new(Opts::new(name, help), &[label])?);
    let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
        reg(&registry, Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?)
    };
    let grpc_labels = ["grpc_type", "grpc_service", "grpc_method"];
    Ok(Metrics {
        leader_changes: counter("etcd_server_leader_changes_seen_total", "The number of leader changes seen.")?,
        wal_fsync: histogram(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            disk_buckets(),
        )?,
        backend_commit: histogram(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
            disk_buckets(),
        )?,
        defrag: histogram(
            "etcd_disk_backend_defrag_duration_seconds",
            "The latency distribution of backend defragmentation.",
            exponential_buckets(0.1, 2.0, 13)?,
        )?,
        proposals_pending: gauge(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
        )?,
        proposals_failed: counter("etcd_server_proposals_failed_total", "The total number of failed proposals seen.")?,
        health_success: counter("etcd_server_health_success", "The total number of successful health checks")?,
        health_failures: counter("etcd_server_health_failures", "The total number of failed health checks")?,
        range_total: counter("etcd_mvcc_range_total", "Total number of ranges seen by this member.")?,
        put_total: counter("etcd_mvcc_put_total", "Total number of puts seen by this member.")?,
        delete_total: counter("etcd_mvcc_delete_total", "Total number of deletes seen by this member.")?,
        txn_total: counter("etcd_mvcc_txn_total", "Total number of txns seen by this member.")?,
        grpc_started: reg(
            &registry,
            IntCounterVec::new(
                Opts::new("grpc_server_started_total", "Total number of RPCs started on the server."),
                &grpc_labels,
            )?,
        )?,
        grpc_handled: reg(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "grpc_server_handled_total",
                    "Total number of RPCs completed on the server, regardless of success or failure.",
                ),
                &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
            )?,
        )?,
        has_leader: gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.")?,
        is_leader: gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.")?,
        is_learner: gauge("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.")?,
        server_id: label_gauge(
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            "server_id",
        )?,
        server_version: label_gauge(
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            "server_version",
        )?,
        cluster_version: label_gauge(
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            "cluster_version",
        )?,
        proposals_committed: gauge(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
        )?,
        proposals_applied: gauge(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
        )?,
        db_size: gauge(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
        )?,
        db_size_in_use: gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
        )?,
        debugging_db_size: gauge(
            "etcd_debugging_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
        )?,
        current_revision: gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.")?,
        compact_revision: gauge(
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store.",
        )?,
        quota_bytes: gauge("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.")?,
        registry,
    })
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| match build() {
    Ok(m) => m,
    // Only a programming error (a duplicate or malformed name) gets here.
    Err(e) => panic!("metrics registry: {e}"),
});

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    pub fn observe_duration(h: &Histogram, d: Duration) {
        h.observe(d.as_secs_f64());
    }

    /// The text exposition of every metric, with the state-derived ones
    /// read from `server` now.
    /// The text exposition of every metric, with the gauges of state that
    /// lives elsewhere set from `now` first.
    pub fn render(&self, now: &Scrape) -> String {
        self.has_leader.set(i64::from(now.has_leader));
        self.is_leader.set(i64::from(now.is_leader));
        self.is_learner.set(i64::from(now.is_learner));
        self.server_id.with_label_values(&[&format!("{:x}", now.member_id)]).set(1);
        self.server_version.with_label_values(&[crate::version::SERVER]).set(1);
        self.cluster_version.with_label_values(&[crate::version::CLUSTER]).set(1);
        self.proposals_committed.set(now.committed as i64);
        self.proposals_applied.set(now.applied as i64);
        self.db_size.set(now.db_size as i64);
        self.debugging_db_size.set(now.db_size as i64);
        self.db_size_in_use.set(now.db_size_in_use as i64);
        self.current_revision.set(now.revision);
        self.compact_revision.set(now.compact_revision);
        self.quota_bytes.set(now.quota_bytes as i64);
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!("encoding metrics failed: {e}");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

// ---------------------------------------------------------------- gRPC calls

/// A gRPC method path's labels: (type, service, method).
fn grpc_labels(path: &str) -> Option<(&'static str, &str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let kind = match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
        ("etcdserverpb.Maintenance", "Snapshot") | ("v3electionpb.Election", "Observe") => "server_stream",
        _ => "unary",
    };
    Some((kind, service, method))
}

/// The name grpc-go's metrics give a status code.
fn code_name(code: &str) -> &'static str {
    match code.parse::<i32>().map(tonic::Code::from) {
        Ok(tonic::Code::Ok) => "OK",
        Ok(tonic::Code::Cancelled) => "Canceled",
        Ok(tonic::Code::Unknown) => "Unknown",
        Ok(tonic::Code::InvalidArgument) => "InvalidArgument",
        Ok(tonic::Code::DeadlineExceeded) => "DeadlineExceeded",
        Ok(tonic::Code::NotFound) => "NotFound",
        Ok(tonic::Code::AlreadyExists) => "AlreadyExists",
        Ok(tonic::Code::PermissionDenied) => "PermissionDenied",
        Ok(tonic::Code::ResourceExhausted) => "ResourceExhausted",
        Ok(tonic::Code::FailedPrecondition) => "FailedPrecondition",
        Ok(tonic::Code::Aborted) => "Aborted",
        Ok(tonic::Code::OutOfRange) => "OutOfRange",
        Ok(tonic::Code::Unimplemented) => "Unimplemented",
        Ok(tonic::Code::Internal) => "Internal",
        Ok(tonic::Code::Unavailable) => "Unavailable",
        Ok(tonic::Code::DataLoss) => "DataLoss",
        Ok(tonic::Code::Unauthenticated) => "Unauthenticated",
        Err(_) => "Unknown",
    }
}

type Labels = [String; 3];

/// One gRPC call, counted as grpc-go's Prometheus interceptors (which etcd
/// installs) count: started when it arrives, handled with its status code,
/// read from the response headers (calls that fail at once) or from the
/// trailers at the end of the response body.
pub struct GrpcCall {
    labels: Labels,
}

impl GrpcCall {
    /// Counts the start of a call to `path` (None if it is not a method path).
    pub fn start(path: &str) -> Option<GrpcCall> {
        let (kind, service, method) = grpc_labels(path)?;
        get().grpc_started.with_label_values(&[kind, service, method]).inc();
        Some(GrpcCall { labels: [kind.to_string(), service.to_string(), method.to_string()] })
    }

    /// Counts the call as handled once its status is known.
    pub fn finish(self, resp: axum::response::Response) -> axum::response::Response {
        if let Some(code) = resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()) {
            handled(&self.labels, code);
            return resp;
        }
        resp.map(|body| axum::body::Body::new(TrailerWatch { inner: body, labels: Some(self.labels) }))
    }
}

fn handled(l: &Labels, code: &str) {
    get().grpc_handled.with_label_values(&[&l[0], &l[1], &l[2], code_name(code)]).inc();
}

/// A response body that records the grpc-status of its trailers.
struct TrailerWatch {
    inner: axum::body::Body,
    labels: Option<Labels>,
}

impl http_body::Body for TrailerWatch {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(trailers) = frame.trailers_ref() {
                let code = trailers.get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("2");
                if let Some(labels) = self.labels.take() {
                    handled(&labels, code);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
