//! gRPC connections: one `tonic` [`Channel`] (one HTTP/2 connection) per
//! `--conns`, spread round-robin over `--endpoints`; client `i` uses
//! connection `i % conns`, as etcd's benchmark does.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// `host:port` or `http://host:port` (TLS is not supported).
fn uri(endpoint: &str) -> Result<String, String> {
    let ep = endpoint.trim();
    if ep.starts_with("https://") || ep.starts_with("unixs://") {
        return Err(format!("{ep}: TLS endpoints are not supported"));
    }
    Ok(if ep.contains("://") { ep.to_string() } else { format!("http://{ep}") })
}

pub async fn connect_one(endpoint: &str, dial_timeout: Duration) -> Result<Channel, String> {
    let uri = uri(endpoint)?;
    Endpoint::from_shared(uri.clone())
        .map_err(|e| format!("bad endpoint {endpoint}: {e}"))?
        .tcp_nodelay(true)
        .connect_timeout(dial_timeout)
        .connect()
        .await
        .map_err(|e| format!("dial error: {uri}: {e}"))
}

/// Opens `conns` connections over `endpoints` (round-robin).
pub async fn connect(endpoints: &[String], conns: usize, dial_timeout: Duration) -> Result<Vec<Channel>, String> {
    if endpoints.is_empty() {
        return Err("no endpoints".into());
    }
    let mut out = Vec::with_capacity(conns.max(1));
    for i in 0..conns.max(1) {
        out.push(connect_one(&endpoints[i % endpoints.len()], dial_timeout).await?);
    }
    Ok(out)
}

/// The connection client number `i` uses.
pub fn for_client(channels: &[Channel], i: usize) -> Channel {
    channels[i % channels.len()].clone()
}
