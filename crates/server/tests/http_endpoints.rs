//! The HTTP endpoints on the client port: `/health` and `/version` answer
//! as real etcd's do (same status, body and content type), `/health` fails
//! with an alarm (unless excluded) and when quorum is lost, and `/metrics`
//! parses as Prometheus text with etcd's metric names and live values.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use retcd_api::etcdserverpb::alarm_request::AlarmAction;
use retcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use retcd_api::etcdserverpb::{AlarmRequest, AlarmType, StatusRequest};
use retcd_testkit::{require_tool, Cluster, Kind, Server};

fn retcd() -> &'static Path {
    env!("CARGO_BIN_EXE_retcd").as_ref()
}

struct HttpResponse {
    status: u16,
    content_type: String,
    body: String,
}

/// A plain HTTP/1.1 request (bounded by socket timeouts).
fn http(addr: &str, method: &str, path: &str) -> HttpResponse {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.into() };
    HttpResponse { status, content_type, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// What a client sees of `/health` and `/version`, and of `/health` with
/// the NOSPACE alarm raised (also excluded, then disarmed).
async fn transcript(server: &Server) -> Vec<String> {
    let addr = server.endpoint();
    let show = |r: HttpResponse| format!("{} [{}] {:?}", r.status, r.content_type, r.body);
    let mut out = vec![show(http(&addr, "GET", "/health")), show(http(&addr, "GET", "/version"))];
    let mut m = MaintenanceClient::new(server.connect().await);
    let member = m.status(StatusRequest {}).await.unwrap().into_inner().header.unwrap().member_id;
    let alarm = |action: AlarmAction| AlarmRequest {
        action: action as i32,
        member_id: member,
        alarm: AlarmType::Nospace as i32,
    };
    m.alarm(alarm(AlarmAction::Activate)).await.unwrap();
    out.push(show(http(&addr, "GET", "/health")));
    out.push(show(http(&addr, "GET", "/health?exclude=NOSPACE")));
    out.push(show(http(&addr, "GET", "/health?exclude=CORRUPT")));
    m.alarm(alarm(AlarmAction::Deactivate)).await.unwrap();
    out.push(show(http(&addr, "GET", "/health")));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_version_answer_as_etcd() {
    let server = Server::start_in_runtime(Kind::Retcd, retcd(), &[]);
    let ours = transcript(&server).await;
    assert_eq!(ours[0], "200 [text/plain; charset=utf-8] \"{\\\"health\\\":\\\"true\\\"}\"");
    assert_eq!(ours[2], "503 [text/plain; charset=utf-8] \"{\\\"health\\\":\\\"false\\\"}\\n\"");
    if require_tool("etcd").is_some() {
        let etcd = Server::start_in_runtime(Kind::Etcd, retcd(), &[]);
        let theirs = transcript(&etcd).await;
        assert_eq!(ours, theirs, "retcd (left) differs from etcd (right)");
    }
}

/// Parses `/metrics` and returns the value of the sample `name` whose
/// labels include every pair in `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.samples.iter().find_map(|s| {
        let matches = s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v));
        if !matches {
            return None;
        }
        match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        }
    })
}

fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let r = http(addr, "GET", "/metrics");
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/plain; version=0.0.4"), "{}", r.content_type);
    prometheus_parse::Scrape::parse(r.body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_with_etcds_names_and_live_values() {
    use retcd_api::etcdserverpb::kv_client::KvClient;
    use retcd_api::etcdserverpb::{PutRequest, RangeRequest};

    let metrics_port = retcd_testkit::free_port();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}");
    let server = Server::start_in_runtime(Kind::Retcd, retcd(), &["--listen-metrics-urls", &metrics_url]);
    let mut kv = KvClient::new(server.connect().await);
    for i in 0..5 {
        kv.put(PutRequest { key: format!("k{i}").into_bytes(), value: b"v".to_vec(), ..Default::default() })
            .await
            .unwrap();
    }
    kv.range(RangeRequest { key: b"k".to_vec(), revision: 1000, ..Default::default() }).await.unwrap_err();

    for addr in [server.endpoint(), format!("127.0.0.1:{metrics_port}")] {
        let s = scrape(&addr);
        assert_eq!(sample(&s, "etcd_server_has_leader", &[]), Some(1.0));
        assert_eq!(sample(&s, "etcd_server_is_leader", &[]), Some(1.0));
        assert_eq!(sample(&s, "etcd_server_leader_changes_seen_total", &[]), Some(1.0));
        assert_eq!(sample(&s, "etcd_debugging_mvcc_current_revision", &[]), Some(6.0));
        assert!(sample(&s, "etcd_mvcc_db_total_size_in_bytes", &[]).unwrap() > 0.0);
        assert!(sample(&s, "etcd_server_proposals_applied_total", &[]).unwrap() >= 5.0);
        assert_eq!(sample(&s, "etcd_server_version", &[("server_version", "3.4.23")]), Some(1.0));
        let put = [("grpc_service", "etcdserverpb.KV"), ("grpc_method", "Put"), ("grpc_type", "unary")];
        assert_eq!(sample(&s, "grpc_server_started_total", &put), Some(5.0));
        let put_ok = [put.as_slice(), &[("grpc_code", "OK")]].concat();
        assert_eq!(sample(&s, "grpc_server_handled_total", &put_ok), Some(5.0));
        let range_err = [("grpc_method", "Range"), ("grpc_code", "OutOfRange")];
        assert_eq!(sample(&s, "grpc_server_handled_total", &range_err), Some(1.0));
        // Histograms are there with their etcd names (at least one WAL sync).
        let fsyncs = s.samples.iter().find(|x| x.metric == "etcd_disk_wal_fsync_duration_seconds");
        match fsyncs.map(|x| &x.value) {
            Some(prometheus_parse::Value::Histogram(h)) => assert!(h.last().unwrap().count >= 5.0),
            other => panic!("no WAL fsync histogram: {other:?}"),
        }
    }
    // The metrics listener serves /health but not the gRPC API or /version.
    assert_eq!(http(&format!("127.0.0.1:{metrics_port}"), "GET", "/health").status, 200);
    assert_eq!(http(&format!("127.0.0.1:{metrics_port}"), "GET", "/version").status, 404);
}

/// `/health` on a member whose cluster lost quorum fails, as etcd's.
#[test]
fn health_fails_without_quorum() {
    let mut cluster = Cluster::start(retcd(), 3, &[]);
    let addr = cluster.members[0].endpoint();
    assert_eq!(http(&addr, "GET", "/health").status, 200);
    cluster.members[1].kill9();
    cluster.members[2].kill9();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http(&addr, "GET", "/health");
        if r.status == 503 {
            assert_eq!(r.body, "{\"health\":\"false\"}\n");
            break;
        }
        assert!(Instant::now() < deadline, "still healthy without quorum: {} {}", r.status, r.body);
        std::thread::sleep(Duration::from_millis(200));
    }
}
