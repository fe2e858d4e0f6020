//! The DNS SRV resolver against a DNS server on loopback: SRV and A
//! lookups, Go's "no such host" text, the https-then-http order of client
//! endpoints, cluster entries named by matching the advertised peer URL,
//! and the TCP retry when a UDP answer is truncated.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};

use retcd_client::srv::{get_client, get_cluster, Resolver};
use retcd_testkit::dns::{DnsServer, Record};

fn records() -> Vec<Record> {
    vec![
        Record::srv("_etcd-client._tcp.example.test", "a.example.test.", 2379),
        Record::srv("_etcd-client-ssl._tcp.example.test", "b.example.test.", 2479),
        Record::srv("_etcd-server._tcp.example.test", "a.example.test.", 2380),
        Record::srv("_etcd-server._tcp.example.test", "b.example.test.", 2480),
        Record::addr("a.example.test", IpAddr::from([127, 0, 0, 1])),
        Record::addr("b.example.test", IpAddr::from([127, 0, 0, 2])),
    ]
}

fn check(resolver: &Resolver, server: SocketAddr) {
    assert_eq!(
        get_client(resolver, "etcd-client", "example.test", "").unwrap(),
        vec!["https://b.example.test:2479".to_string(), "http://a.example.test:2379".to_string()]
    );
    assert_eq!(resolver.resolve_tcp_addr("b.example.test", 1).unwrap(), SocketAddr::from(([127, 0, 0, 2], 1)));

    // The member advertising 127.0.0.2:2480 is the record for b.
    let own = vec!["http://127.0.0.2:2480".to_string()];
    assert_eq!(
        get_cluster(resolver, "http", "etcd-server", "me", "example.test", &own).unwrap(),
        vec!["0=http://a.example.test:2380".to_string(), "me=http://b.example.test:2480".to_string()]
    );

    let err = resolver.lookup_srv("etcd-server", "tcp", "missing.test").unwrap_err();
    assert_eq!(err.0, format!("lookup _etcd-server._tcp.missing.test on {server}: no such host"));
    let err = get_client(resolver, "etcd-client", "missing.test", "x").unwrap_err();
    assert_eq!(
        err.0,
        format!(
            "dns lookup errors: lookup _etcd-client-ssl-x._tcp.missing.test on {server}: no such host and \
             lookup _etcd-client-x._tcp.missing.test on {server}: no such host"
        )
    );
}

#[test]
fn lookups_over_udp() {
    let dns = DnsServer::start(records());
    check(&Resolver::with_servers(vec![dns.addr]), dns.addr);
}

#[test]
fn truncated_answers_are_asked_again_over_tcp() {
    let dns = DnsServer::start_with(records(), true);
    check(&Resolver::with_servers(vec![dns.addr]), dns.addr);
}
