//! `make-mirror <destination>`: copies the source cluster's keys (or one
//! prefix) to a destination cluster, then keeps copying every change, as
//! etcdctl's mirror does: a paged read of everything at one revision, then
//! a watch from the next revision where each source revision becomes one
//! destination txn. The number of keys copied is printed every 30 seconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use retcd_client::etcdserverpb::{request_op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use retcd_client::mvccpb::event::EventType;
use retcd_client::{prefix_end, Client, Config, EtcdError, WatchCreateRequest};

use crate::cli::MakeMirrorArgs;
use crate::context::{out, tls_config, Ctx};
use crate::exit::{CtlError, EXIT_BAD_ARGS, EXIT_ERROR};

/// Keys per page of the initial copy (clientv3's mirror batch).
const BATCH: i64 = 1000;

/// How source keys are renamed at the destination.
struct Rename {
    from: Vec<u8>,
    to: Vec<u8>,
}

impl Rename {
    /// etcdctl's `strings.Replace(key, prefix, destPrefix, 1)`: the first
    /// occurrence (the prefix itself, for keys under it).
    fn apply(&self, key: &[u8]) -> Vec<u8> {
        if self.from.is_empty() {
            return [self.to.as_slice(), key].concat();
        }
        match key.windows(self.from.len()).position(|w| w == self.from.as_slice()) {
            Some(i) => [&key[..i], self.to.as_slice(), &key[i + self.from.len()..]].concat(),
            None => key.to_vec(),
        }
    }
}

pub async fn make_mirror(ctx: &Ctx, a: MakeMirrorArgs) -> Result<(), CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args("make-mirror takes one destination argument"));
    }
    let g = &ctx.global;
    // The destination: its own TLS flags (an empty one is unset, as a Go
    // string flag), no credentials, as etcdctl's.
    let set = |v: &str| (!v.is_empty()).then(|| v.to_string());
    let tls =
        tls_config(&set(&a.dest_cert), &set(&a.dest_key), &set(&a.dest_cacert), a.dest_insecure_transport, false)?;
    let mut cfg =
        Config::new([a.args[0].clone()]).dial_timeout(g.dial_timeout).keepalive(g.keepalive_time, g.keepalive_timeout);
    if let Some(tls) = tls {
        cfg = cfg.tls(tls);
    }
    let dest = Client::new(cfg).map_err(|e| CtlError::new(EXIT_BAD_ARGS, e.to_string()))?;
    let source = ctx.client_for(g.endpoints.clone(), false)?;

    let total = Arc::new(AtomicU64::new(0));
    let reporter = {
        let total = total.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                out(format!("{}\n", total.load(Ordering::Relaxed)));
            }
        })
    };
    let result = mirror(&source, &dest, &a, &total).await;
    reporter.abort();
    result
}

async fn mirror(source: &Client, dest: &Client, a: &MakeMirrorArgs, total: &AtomicU64) -> Result<(), CtlError> {
    let prefix = a.prefix.as_bytes().to_vec();
    // The revision the copy is taken at (clientv3 reads "foo" to learn it).
    let rev = source.get("foo").await?.header.map(|h| h.revision).unwrap_or(0);
    if a.no_dest_prefix && !a.dest_prefix.is_empty() {
        return Err(CtlError::bad_args(
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        ));
    }
    let to =
        if a.no_dest_prefix || !a.dest_prefix.is_empty() { a.dest_prefix.as_bytes().to_vec() } else { prefix.clone() };
    let rename = Rename { from: prefix.clone(), to };

    // The whole range (from "\0" when there is no prefix) at `rev`, in pages.
    let (mut key, end) = if prefix.is_empty() { (vec![0u8], vec![0u8]) } else { (prefix.clone(), prefix_end(&prefix)) };
    loop {
        let page = source
            .range(RangeRequest {
                key: key.clone(),
                range_end: end.clone(),
                limit: BATCH,
                revision: rev,
                ..Default::default()
            })
            .await?;
        for kv in &page.kvs {
            dest.put(rename.apply(&kv.key), kv.value.clone()).await?;
            total.fetch_add(1, Ordering::Relaxed);
        }
        match page.kvs.last() {
            Some(last) if page.more => key = [last.key.as_slice(), &[0]].concat(),
            _ => break,
        }
    }

    let range_end = if prefix.is_empty() { vec![0u8] } else { prefix_end(&prefix) };
    let watch = WatchCreateRequest { key: prefix.clone(), range_end, start_revision: rev + 1, ..Default::default() };
    let mut watcher = source.watch(watch).await?;
    while let Some(resp) = watcher.next().await {
        let resp = resp?;
        if resp.compact_revision != 0 {
            return Err(CtlError::new(EXIT_ERROR, EtcdError::Compacted.to_string()));
        }
        // One destination txn per source revision.
        let mut ops = Vec::new();
        let mut last_rev = 0;
        for ev in resp.events {
            let Some(kv) = ev.kv else { continue };
            if last_rev != 0 && kv.mod_revision > last_rev {
                dest.txn(TxnRequest { success: std::mem::take(&mut ops), ..Default::default() }).await?;
            }
            last_rev = kv.mod_revision;
            let key = rename.apply(&kv.key);
            let op = if ev.r#type == EventType::Delete as i32 {
                request_op::Request::RequestDeleteRange(DeleteRangeRequest { key, ..Default::default() })
            } else {
                request_op::Request::RequestPut(PutRequest { key, value: kv.value, ..Default::default() })
            };
            ops.push(RequestOp { request: Some(op) });
            total.fetch_add(1, Ordering::Relaxed);
        }
        if !ops.is_empty() {
            dest.txn(TxnRequest { success: ops, ..Default::default() }).await?;
        }
    }
    Err(CtlError::new(EXIT_ERROR, "watch closed"))
}

#[cfg(test)]
mod tests {
    use super::Rename;

    #[test]
    fn keys_are_renamed_as_etcdctl_renames_them() {
        let r = |from: &str, to: &str, key: &str| {
            String::from_utf8(Rename { from: from.into(), to: to.into() }.apply(key.as_bytes())).unwrap()
        };
        assert_eq!(r("", "", "a/b"), "a/b");
        assert_eq!(r("", "m/", "a/b"), "m/a/b");
        assert_eq!(r("a/", "", "a/b"), "b");
        assert_eq!(r("a/", "x/", "a/b"), "x/b");
        assert_eq!(r("a/", "a/", "a/b"), "a/b");
    }
}
