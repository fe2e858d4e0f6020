//! Linearizable reads sent to every member of a fresh three-member cluster
//! at the same moment all complete. Each member's read-index rounds carry a
//! context that must be unique cluster-wide: with per-member counters
//! starting alike, the leader ignored a follower's request whose context
//! equalled one already pending, and that read hung until its deadline
//! (`etcdctl endpoint health` reported a healthy member as unhealthy).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::RangeRequest;
use retcd_testkit::Cluster;

#[test]
fn simultaneous_linearizable_reads_on_every_member_complete() {
    let cluster = Cluster::start(env!("CARGO_BIN_EXE_retcd").as_ref(), 3, &[]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(3).enable_all().build().unwrap();
    rt.block_on(async {
        let clients: Vec<KvClient<tonic::transport::Channel>> = cluster
            .members
            .iter()
            .map(|m| {
                let ch = tonic::transport::Endpoint::from_shared(m.url())
                    .unwrap()
                    .timeout(Duration::from_secs(4))
                    .connect_lazy();
                KvClient::new(ch)
            })
            .collect();
        // Connect first, so the reads of one round leave together.
        for c in &clients {
            c.clone()
                .range(RangeRequest { key: b"warm".to_vec(), serializable: true, ..Default::default() })
                .await
                .unwrap();
        }
        for round in 0..5 {
            let reads = clients.iter().enumerate().map(|(i, c)| {
                let mut c = c.clone();
                async move { (i, c.range(RangeRequest { key: b"k".to_vec(), ..Default::default() }).await) }
            });
            for (i, r) in futures::future::join_all(reads).await {
                assert!(r.is_ok(), "round {round}: linearizable read on member {i} failed: {:?}", r.err());
            }
        }
    });
}
