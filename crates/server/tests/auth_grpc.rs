//! Auth over gRPC (tonic clients, the token in the "token" metadata key):
//! a permission matrix over every key-carrying RPC and every permission
//! shape (key, range, prefix, from-key), checked against real etcd where
//! they agree; cases where retcd is stricter than etcd 3.4 (nested txns,
//! prev_kv inside txns, lease time-to-live keys, from-key watches) on
//! retcd alone. Also token expiry and invalidation, restart and
//! replication. A denied case never returns data.

#![allow(clippy::unwrap_used)]
// The serial lock of the cluster tests is held for their whole run on purpose.
#![allow(clippy::await_holding_lock)]

use std::time::{Duration, Instant};

use retcd_api::authpb::permission::Type as PermType;
use retcd_api::authpb::Permission;
use retcd_api::etcdserverpb::auth_client::AuthClient;
use retcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use retcd_api::etcdserverpb::kv_client::KvClient;
use retcd_api::etcdserverpb::lease_client::LeaseClient;
use retcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use retcd_api::etcdserverpb::request_op::Request as Op;
use retcd_api::etcdserverpb::watch_client::WatchClient;
use retcd_api::etcdserverpb::watch_request::RequestUnion;
use retcd_api::etcdserverpb::*;
use retcd_testkit::{on_both, Cluster, Kind, Server};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Request;

const RETCD: &str = env!("CARGO_BIN_EXE_retcd");
const ARGS: &[&str] = &["--bcrypt-cost", "4"];
const DENIED: &str = "err: etcdserver: permission denied";

/// Cluster tests run one at a time: three members each are heavy on a
/// small machine.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn with_token<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    if !token.is_empty() {
        r.metadata_mut().insert("token", token.parse().unwrap());
    }
    r
}

fn outcome<T>(r: Result<tonic::Response<T>, tonic::Status>, show: impl Fn(&T) -> String) -> String {
    match r {
        Ok(resp) => format!("ok: {}", show(resp.get_ref())),
        Err(s) => format!("err: {}", s.message()),
    }
}

async fn authenticate(ch: &Channel, name: &str, password: &str) -> Result<String, String> {
    let r = AuthClient::new(ch.clone())
        .authenticate(AuthenticateRequest { name: name.into(), password: password.into() })
        .await;
    r.map(|r| r.into_inner().token).map_err(|s| s.message().to_string())
}

fn perm(t: PermType, key: &str, end: &[u8]) -> Permission {
    Permission { perm_type: t as i32, key: key.as_bytes().to_vec(), range_end: end.to_vec() }
}

/// Users: one per permission shape (readwrite), a write-only and a
/// read-only one, and root. Returns root's token.
async fn setup(ch: &Channel) -> String {
    let mut a = AuthClient::new(ch.clone());
    let users: &[(&str, Vec<Permission>)] = &[
        ("ukey", vec![perm(PermType::Readwrite, "k", b"")]),
        ("urange", vec![perm(PermType::Readwrite, "r1", b"r5")]),
        ("uprefix", vec![perm(PermType::Readwrite, "p/", b"p0")]),
        ("ufrom", vec![perm(PermType::Readwrite, "x", b"\0")]),
        ("uwrite", vec![perm(PermType::Write, "w/", b"w0")]),
        ("uread", vec![perm(PermType::Read, "w/", b"w0")]),
    ];
    a.user_add(AuthUserAddRequest { name: "root".into(), password: "rpw".into(), options: None }).await.unwrap();
    a.user_grant_role(AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }).await.unwrap();
    for (name, perms) in users {
        let role = format!("role-{name}");
        a.user_add(AuthUserAddRequest { name: name.to_string(), password: "pw".into(), options: None }).await.unwrap();
        a.role_add(AuthRoleAddRequest { name: role.clone() }).await.unwrap();
        for p in perms {
            a.role_grant_permission(AuthRoleGrantPermissionRequest { name: role.clone(), perm: Some(p.clone()) })
                .await
                .unwrap();
        }
        a.user_grant_role(AuthUserGrantRoleRequest { user: name.to_string(), role }).await.unwrap();
    }
    // Data every case can see (written before enabling).
    let mut kv = KvClient::new(ch.clone());
    for k in ["k", "k1", "r0", "r2", "r4", "r5", "p", "p/a", "p/b", "q", "w", "w/a", "x", "y", "zzz"] {
        kv.put(PutRequest { key: k.into(), value: b"v".to_vec(), ..Default::default() }).await.unwrap();
    }
    a.auth_enable(AuthEnableRequest {}).await.unwrap();
    authenticate(ch, "root", "rpw").await.unwrap()
}

async fn range(ch: &Channel, token: &str, key: &str, end: &[u8]) -> String {
    let r = KvClient::new(ch.clone())
        .range(with_token(RangeRequest { key: key.into(), range_end: end.to_vec(), ..Default::default() }, token))
        .await;
    outcome(r, |r| format!("{} kvs", r.kvs.len()))
}

async fn put(ch: &Channel, token: &str, key: &str, prev_kv: bool, lease: i64) -> String {
    let req = PutRequest { key: key.into(), value: b"n".to_vec(), prev_kv, lease, ..Default::default() };
    let r = KvClient::new(ch.clone()).put(with_token(req, token)).await;
    outcome(r, |r| format!("prev {}", r.prev_kv.is_some()))
}

async fn delete(ch: &Channel, token: &str, key: &str, end: &[u8], prev_kv: bool) -> String {
    let req = DeleteRangeRequest { key: key.into(), range_end: end.to_vec(), prev_kv };
    let r = KvClient::new(ch.clone()).delete_range(with_token(req, token)).await;
    outcome(r, |r| format!("{} deleted, {} prev", r.deleted, r.prev_kvs.len()))
}

fn cmp_exists(key: &str) -> Compare {
    Compare {
        result: CompareResult::Greater as i32,
        target: CompareTarget::Version as i32,
        key: key.into(),
        range_end: vec![],
        target_union: Some(TargetUnion::Version(0)),
    }
}

fn op_range(key: &str) -> RequestOp {
    RequestOp { request: Some(Op::RequestRange(RangeRequest { key: key.into(), ..Default::default() })) }
}

fn op_put(key: &str, prev_kv: bool) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: key.into(),
            value: b"t".to_vec(),
            prev_kv,
            ..Default::default()
        })),
    }
}

fn op_txn(t: TxnRequest) -> RequestOp {
    RequestOp { request: Some(Op::RequestTxn(t)) }
}

async fn txn(ch: &Channel, token: &str, t: TxnRequest) -> String {
    let r = KvClient::new(ch.clone()).txn(with_token(t, token)).await;
    outcome(r, |r| format!("succeeded {} with {} responses", r.succeeded, r.responses.len()))
}

/// Creates a watch; "created" or the cancel reason.
async fn watch(ch: &Channel, token: &str, key: &str, end: &[u8]) -> String {
    let (tx, rx) = mpsc::channel(4);
    let create = WatchCreateRequest { key: key.into(), range_end: end.to_vec(), ..Default::default() };
    tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await.unwrap();
    let mut stream = match WatchClient::new(ch.clone()).watch(with_token(ReceiverStream::new(rx), token)).await {
        Ok(s) => s.into_inner(),
        Err(s) => return format!("err: {}", s.message()),
    };
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap();
    match first {
        Ok(Some(r)) if r.canceled => format!("canceled: {}", r.cancel_reason),
        Ok(Some(r)) if r.created => "created".into(),
        other => format!("unexpected: {other:?}"),
    }
}

async fn grant_lease(ch: &Channel, root: &str, keys: &[&str]) -> i64 {
    let id = LeaseClient::new(ch.clone())
        .lease_grant(with_token(LeaseGrantRequest { ttl: 600, id: 0 }, root))
        .await
        .unwrap()
        .into_inner()
        .id;
    for k in keys {
        let p = PutRequest { key: k.to_string().into(), value: b"l".to_vec(), lease: id, ..Default::default() };
        KvClient::new(ch.clone()).put(with_token(p, root)).await.unwrap();
    }
    id
}

/// The cases where retcd and etcd 3.4 agree; each line is checked here and
/// the whole transcript is compared with etcd's.
async fn matrix(ch: Channel) -> Vec<String> {
    let root = setup(&ch).await;
    let mut t = Vec::new();
    let mut check = |what: &str, got: String, want: &str| {
        assert!(got.starts_with(want), "{what}: got {got:?}, want {want:?}");
        t.push(format!("{what}: {got}"));
    };
    let tok = |name: &'static str| {
        let ch = ch.clone();
        async move { authenticate(&ch, name, "pw").await.unwrap() }
    };
    let ukey = tok("ukey").await;
    let urange = tok("urange").await;
    let uprefix = tok("uprefix").await;
    let ufrom = tok("ufrom").await;
    let uwrite = tok("uwrite").await;
    let uread = tok("uread").await;

    // No token, a bad token, a wrong password.
    check("range no token", range(&ch, "", "k", b"").await, "err: etcdserver: user name is empty");
    check("put no token", put(&ch, "", "k", false, 0).await, "err: etcdserver: user name is empty");
    check("range bad token", range(&ch, "bogus.1", "k", b"").await, "err: etcdserver: invalid auth token");
    check("range garbage token", range(&ch, "@@@", "k", b"").await, "err: etcdserver: invalid auth token");
    let wrong = authenticate(&ch, "ukey", "nope").await.unwrap_err();
    check("wrong password", format!("err: {wrong}"), "err: etcdserver: authentication failed");
    let unknown = authenticate(&ch, "nobody", "pw").await.unwrap_err();
    check("unknown user", format!("err: {unknown}"), "err: etcdserver: authentication failed");
    let huge = authenticate(&ch, &"u".repeat(100_000), "pw").await.unwrap_err();
    check("huge user name", format!("err: {huge}"), "err: etcdserver: authentication failed");

    // Key.
    check("key: range k", range(&ch, &ukey, "k", b"").await, "ok: 1 kvs");
    check("key: range k..k\\0", range(&ch, &ukey, "k", b"k\0").await, "ok: 1 kvs");
    check("key: range k1", range(&ch, &ukey, "k1", b"").await, DENIED);
    check("key: range k..l", range(&ch, &ukey, "k", b"l").await, DENIED);
    check("key: put k", put(&ch, &ukey, "k", true, 0).await, "ok: prev true");
    check("key: put k1", put(&ch, &ukey, "k1", false, 0).await, DENIED);
    check("key: delete k1", delete(&ch, &ukey, "k1", b"", false).await, DENIED);
    // Range.
    check("range: range r2..r3", range(&ch, &urange, "r2", b"r3").await, "ok: 1 kvs");
    check("range: range r4", range(&ch, &urange, "r4", b"").await, "ok: 1 kvs");
    check("range: range r0..r3", range(&ch, &urange, "r0", b"r3").await, DENIED);
    check("range: range r5", range(&ch, &urange, "r5", b"").await, DENIED);
    check("range: range r1..r6", range(&ch, &urange, "r1", b"r6").await, DENIED);
    check("range: put r3", put(&ch, &urange, "r3", false, 0).await, "ok");
    check("range: put r5", put(&ch, &urange, "r5", false, 0).await, DENIED);
    check("range: delete r1..r5", delete(&ch, &urange, "r1", b"r5", true).await, "ok: 3 deleted, 3 prev");
    check("range: delete r0..r5", delete(&ch, &urange, "r0", b"r5", true).await, DENIED);
    // Prefix.
    check("prefix: range p/*", range(&ch, &uprefix, "p/", b"p0").await, "ok: 2 kvs");
    check("prefix: range p/a", range(&ch, &uprefix, "p/a", b"").await, "ok: 1 kvs");
    check("prefix: range p", range(&ch, &uprefix, "p", b"").await, DENIED);
    check("prefix: range p/..q", range(&ch, &uprefix, "p/", b"q").await, DENIED);
    check("prefix: range all", range(&ch, &uprefix, "\0", b"\0").await, DENIED);
    check("prefix: put p/c", put(&ch, &uprefix, "p/c", false, 0).await, "ok");
    check("prefix: put q", put(&ch, &uprefix, "q", false, 0).await, DENIED);
    // From key.
    check("from: range x..", range(&ch, &ufrom, "x", b"\0").await, "ok: 3 kvs");
    check("from: range y..", range(&ch, &ufrom, "y", b"\0").await, "ok: 2 kvs");
    check("from: range x..z", range(&ch, &ufrom, "x", b"z").await, "ok: 2 kvs");
    check("from: range zzz", range(&ch, &ufrom, "zzz", b"").await, "ok: 1 kvs");
    check("from: range w..", range(&ch, &ufrom, "w", b"\0").await, DENIED);
    check("from: put zz", put(&ch, &ufrom, "zz", false, 0).await, "ok");
    check("from: put w", put(&ch, &ufrom, "w", false, 0).await, DENIED);
    // Write-only and read-only: prev_kv needs read.
    check("write: put w/a", put(&ch, &uwrite, "w/a", false, 0).await, "ok: prev false");
    check("write: put w/a prev_kv", put(&ch, &uwrite, "w/a", true, 0).await, DENIED);
    check("write: range w/a", range(&ch, &uwrite, "w/a", b"").await, DENIED);
    check("write: delete w/x prev_kv", delete(&ch, &uwrite, "w/x", b"", true).await, DENIED);
    check("write: delete w/x", delete(&ch, &uwrite, "w/x", b"", false).await, "ok: 0 deleted");
    check("read: range w/a", range(&ch, &uread, "w/a", b"").await, "ok: 1 kvs");
    check("read: put w/a", put(&ch, &uread, "w/a", false, 0).await, DENIED);
    check("read: delete w/a", delete(&ch, &uread, "w/a", b"", false).await, DENIED);

    // Txns: every compare and op of both branches.
    let ok_txn = TxnRequest {
        compare: vec![cmp_exists("p/a")],
        success: vec![op_range("p/a"), op_put("p/b", false)],
        failure: vec![op_range("p/x")],
    };
    check("txn: all inside", txn(&ch, &uprefix, ok_txn.clone()).await, "ok: succeeded true with 2 responses");
    let mut t1 = ok_txn.clone();
    t1.compare.push(cmp_exists("q"));
    check("txn: compare outside", txn(&ch, &uprefix, t1).await, DENIED);
    let mut t2 = ok_txn.clone();
    t2.failure.push(op_put("q", false));
    check("txn: untaken branch outside", txn(&ch, &uprefix, t2).await, DENIED);
    let mut t3 = ok_txn.clone();
    t3.success = vec![op_range("q")];
    check("txn: read-only outside", txn(&ch, &uprefix, t3).await, DENIED);
    let read_only = TxnRequest { compare: vec![], success: vec![op_range("w/a")], failure: vec![] };
    check("txn: read-only inside", txn(&ch, &uread, read_only).await, "ok: succeeded true with 1 responses");

    // Leases: attaching to a lease and revoking need write on its keys.
    let foreign = grant_lease(&ch, &root, &["q"]).await;
    let own = grant_lease(&ch, &root, &["p/l"]).await;
    check("lease: put p/c on foreign lease", put(&ch, &uprefix, "p/c", false, foreign).await, DENIED);
    check("lease: put p/c on own lease", put(&ch, &uprefix, "p/c", false, own).await, "ok");
    let rv = |id: i64, token: String| {
        let ch = ch.clone();
        async move {
            let r = LeaseClient::new(ch).lease_revoke(with_token(LeaseRevokeRequest { id }, &token)).await;
            outcome(r, |_| "revoked".into())
        }
    };
    check("lease: revoke foreign", rv(foreign, uprefix.clone()).await, DENIED);
    check("lease: revoke own", rv(own, uprefix.clone()).await, "ok: revoked");

    // Watches: the range as sent.
    check("watch: p/ prefix", watch(&ch, &uprefix, "p/", b"p0").await, "created");
    check(
        "watch: q",
        watch(&ch, &uprefix, "q", b"").await,
        "canceled: rpc error: code = PermissionDenied desc = etcdserver: permission denied",
    );
    check("watch: r2..r4", watch(&ch, &urange, "r2", b"r4").await, "created");
    check(
        "watch: r0..r4",
        watch(&ch, &urange, "r0", b"r4").await,
        "canceled: rpc error: code = PermissionDenied desc = etcdserver: permission denied",
    );
    check(
        "watch: no token",
        watch(&ch, "", "q", b"").await,
        "canceled: rpc error: code = InvalidArgument desc = etcdserver: user name is empty",
    );
    check(
        "watch: bad token",
        watch(&ch, "nope.5", "q", b"").await,
        "canceled: rpc error: code = Unauthenticated desc = etcdserver: invalid auth token",
    );

    // Root-only and self-only admin calls.
    let mut auth = AuthClient::new(ch.clone());
    let r = auth.user_list(with_token(AuthUserListRequest {}, &ukey)).await;
    check("admin: user list", outcome(r, |r| r.users.join(",")), DENIED);
    let r = auth.user_list(with_token(AuthUserListRequest {}, &root)).await;
    check(
        "admin: user list as root",
        outcome(r, |r| r.users.join(",")),
        "ok: root,ufrom,ukey,uprefix,urange,uread,uwrite",
    );
    let r = auth.user_get(with_token(AuthUserGetRequest { name: "ukey".into() }, &ukey)).await;
    check("admin: user get self", outcome(r, |r| r.roles.join(",")), "ok: role-ukey");
    let r = auth.user_get(with_token(AuthUserGetRequest { name: "root".into() }, &ukey)).await;
    check("admin: user get other", outcome(r, |r| r.roles.join(",")), DENIED);
    let r = auth.role_get(with_token(AuthRoleGetRequest { role: "role-ukey".into() }, &ukey)).await;
    check("admin: role get own", outcome(r, |r| format!("{} perms", r.perm.len())), "ok: 1 perms");
    let r = auth.role_get(with_token(AuthRoleGetRequest { role: "role-uread".into() }, &ukey)).await;
    check("admin: role get other", outcome(r, |r| format!("{} perms", r.perm.len())), DENIED);
    let r = MaintenanceClient::new(ch.clone()).hash_kv(with_token(HashKvRequest { revision: 0 }, &ukey)).await;
    check("admin: hash kv", outcome(r, |_| "hash".into()), "err: auth: permission denied");
    let r = MaintenanceClient::new(ch.clone()).hash_kv(with_token(HashKvRequest { revision: 0 }, &root)).await;
    check("admin: hash kv as root", outcome(r, |_| "hash".into()), "ok");
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn permission_matrix_matches_etcd() {
    let t = on_both("permission matrix", RETCD, ARGS, matrix).await;
    assert!(t.len() > 60, "{t:?}");
}

/// Where retcd checks more than etcd 3.4 does: nothing leaks through a
/// nested txn, a txn put's prev_kv, a lease's key list or a from-key watch.
#[tokio::test(flavor = "multi_thread")]
async fn stricter_than_etcd_34() {
    let server = Server::start_in_runtime(Kind::Retcd, RETCD, ARGS);
    let ch = server.connect().await;
    let root = setup(&ch).await;
    let uprefix = authenticate(&ch, "uprefix", "pw").await.unwrap();
    let uwrite = authenticate(&ch, "uwrite", "pw").await.unwrap();
    let ufrom = authenticate(&ch, "ufrom", "pw").await.unwrap();

    let nested = TxnRequest {
        compare: vec![],
        success: vec![op_txn(TxnRequest { compare: vec![], success: vec![op_range("q")], failure: vec![] })],
        failure: vec![],
    };
    assert_eq!(txn(&ch, &uprefix, nested).await, DENIED);
    let nested_cmp = TxnRequest {
        compare: vec![],
        success: vec![op_txn(TxnRequest { compare: vec![cmp_exists("q")], success: vec![], failure: vec![] })],
        failure: vec![],
    };
    assert_eq!(txn(&ch, &uprefix, nested_cmp).await, DENIED);
    let nested_write = TxnRequest {
        compare: vec![],
        success: vec![
            op_put("p/n", false),
            op_txn(TxnRequest { success: vec![op_put("q", false)], ..Default::default() }),
        ],
        failure: vec![],
    };
    assert_eq!(txn(&ch, &uprefix, nested_write).await, DENIED);
    let nested_ok = TxnRequest {
        compare: vec![],
        success: vec![op_txn(TxnRequest { success: vec![op_put("p/n", false)], ..Default::default() })],
        failure: vec![],
    };
    assert_eq!(txn(&ch, &uprefix, nested_ok).await, "ok: succeeded true with 1 responses");
    let txn_prev = TxnRequest { success: vec![op_put("w/a", true)], ..Default::default() };
    assert_eq!(txn(&ch, &uwrite, txn_prev).await, DENIED);

    // Lease time-to-live lists keys only to whom may read them all.
    let id = grant_lease(&ch, &root, &["p/l", "q"]).await;
    let ttl = |token: String, keys: bool| {
        let ch = ch.clone();
        async move {
            let req = LeaseTimeToLiveRequest { id, keys };
            outcome(LeaseClient::new(ch).lease_time_to_live(with_token(req, &token)).await, |r| {
                format!("{} keys", r.keys.len())
            })
        }
    };
    assert_eq!(ttl(uprefix.clone(), true).await, DENIED);
    assert_eq!(ttl(uprefix.clone(), false).await, "ok: 0 keys");
    assert_eq!(ttl(root.clone(), true).await, "ok: 2 keys");

    // Grants etcd would not survive are refused.
    let mut auth = AuthClient::new(ch.clone());
    let none = AuthRoleGrantPermissionRequest { name: "role-ukey".into(), perm: None };
    assert!(auth.role_grant_permission(with_token(none, &root)).await.is_err());
    let mut odd = perm(PermType::Read, "k", b"");
    odd.perm_type = 7;
    let odd = AuthRoleGrantPermissionRequest { name: "role-ukey".into(), perm: Some(odd) };
    assert!(auth.role_grant_permission(with_token(odd, &root)).await.is_err());

    // A from-key watch needs read on everything from its key on.
    assert_eq!(watch(&ch, &ufrom, "x", b"\0").await, "created");
    assert_eq!(
        watch(&ch, &uprefix, "p/", b"\0").await,
        "canceled: rpc error: code = PermissionDenied desc = etcdserver: permission denied"
    );
    // Denied writes left nothing behind.
    assert_eq!(range(&ch, &root, "q", b"").await, "ok: 1 kvs");
    let r = KvClient::new(ch.clone())
        .range(with_token(RangeRequest { key: b"q".to_vec(), ..Default::default() }, &root))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.kvs[0].value, b"l");
}

/// Tokens expire after the TTL without use, are renewed by use, and die
/// with a password change or the user's deletion.
async fn tokens(ch: Channel) -> Vec<String> {
    setup(&ch).await;
    let mut t = Vec::new();
    let idle = authenticate(&ch, "ukey", "pw").await.unwrap();
    let busy = authenticate(&ch, "ukey", "pw").await.unwrap();
    // ttl is 2 s: keep one token in use for 4 s, the other idle.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        assert_eq!(range(&ch, &busy, "k", b"").await, "ok: 1 kvs");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    t.push(format!("busy: {}", range(&ch, &busy, "k", b"").await));
    t.push(format!("idle: {}", range(&ch, &idle, "k", b"").await));

    // Root's first token went idle too.
    let root = authenticate(&ch, "root", "rpw").await.unwrap();
    let mut auth = AuthClient::new(ch.clone());
    let before = authenticate(&ch, "uprefix", "pw").await.unwrap();
    t.push(format!("before change: {}", range(&ch, &before, "p/a", b"").await));
    auth.user_change_password(with_token(
        AuthUserChangePasswordRequest { name: "uprefix".into(), password: "pw2".into() },
        &root,
    ))
    .await
    .unwrap();
    t.push(format!("after change: {}", range(&ch, &before, "p/a", b"").await));
    t.push(format!("old password: {:?}", authenticate(&ch, "uprefix", "pw").await));
    let after = authenticate(&ch, "uprefix", "pw2").await.unwrap();
    t.push(format!("new password: {}", range(&ch, &after, "p/a", b"").await));
    auth.user_delete(with_token(AuthUserDeleteRequest { name: "uprefix".into() }, &root)).await.unwrap();
    t.push(format!("after delete: {}", range(&ch, &after, "p/a", b"").await));
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn token_expiry_and_invalidation_match_etcd() {
    let mut args = ARGS.to_vec();
    args.extend(["--auth-token-ttl", "2"]);
    let t = on_both("tokens", RETCD, &args, tokens).await;
    assert_eq!(
        t,
        vec![
            "busy: ok: 1 kvs",
            "idle: err: etcdserver: invalid auth token",
            "before change: ok: 1 kvs",
            "after change: err: etcdserver: invalid auth token",
            "old password: Err(\"etcdserver: authentication failed, invalid user ID or password\")",
            "new password: ok: 1 kvs",
            "after delete: err: etcdserver: invalid auth token",
        ]
    );
}

/// A channel to `url` once a root login works there (bounded).
async fn connect_authenticated(url: &str) -> (Channel, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(ch) = Channel::from_shared(url.to_string()).unwrap().connect().await {
            if let Ok(token) = authenticate(&ch, "root", "rpw").await {
                return (ch, token);
            }
        }
        assert!(Instant::now() < deadline, "{url}: no root login");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_state_survives_restart() {
    let mut server = Server::start_in_runtime(Kind::Retcd, RETCD, ARGS);
    let ch = server.connect().await;
    setup(&ch).await;
    drop(ch);
    tokio::task::block_in_place(|| {
        server.terminate();
        server.spawn();
        server.wait_ready(Duration::from_secs(30));
    });
    let url = format!("http://{}", server.endpoint());
    let (ch, root) = connect_authenticated(&url).await;
    // Still enabled, with users, roles and permissions.
    let status = AuthClient::new(ch.clone()).auth_status(AuthStatusRequest {}).await.unwrap().into_inner();
    assert!(status.enabled);
    assert!(status.auth_revision > 0);
    assert_eq!(range(&ch, "", "k", b"").await, "err: etcdserver: user name is empty");
    let ukey = authenticate(&ch, "ukey", "pw").await.unwrap();
    assert_eq!(range(&ch, &ukey, "k", b"").await, "ok: 1 kvs");
    assert_eq!(range(&ch, &ukey, "k1", b"").await, DENIED);
    let r = AuthClient::new(ch.clone()).user_list(with_token(AuthUserListRequest {}, &root)).await.unwrap();
    assert_eq!(r.into_inner().users, ["root", "ufrom", "ukey", "uprefix", "urange", "uread", "uwrite"]);
    // The WAL and the backend never hold a plain password.
    let dir = server.data_dir();
    for entry in walk(&dir) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!bytes.windows(3).any(|w| w == b"rpw"), "{} holds a plain password", entry.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_is_replicated() {
    let _serial = serial();
    let cluster = tokio::task::block_in_place(|| Cluster::start(RETCD.as_ref(), 3, ARGS));
    let urls: Vec<String> = cluster.members.iter().map(|m| m.url()).collect();
    // Set up through member 0 (retrying until the cluster has a leader).
    let deadline = Instant::now() + Duration::from_secs(30);
    let ch0 = loop {
        if let Ok(ch) = Channel::from_shared(urls[0].clone()).unwrap().connect().await {
            let mut kv = KvClient::new(ch.clone());
            if kv.range(RangeRequest { key: b"a".to_vec(), ..Default::default() }).await.is_ok() {
                break ch;
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    setup(&ch0).await;
    // A user added via member 0 logs in on member 2; a token from member 0
    // is accepted by member 1.
    let (ch2, _) = connect_authenticated(&urls[2]).await;
    let t2 = authenticate(&ch2, "ukey", "pw").await.unwrap();
    assert_eq!(range(&ch2, &t2, "k", b"").await, "ok: 1 kvs");
    assert_eq!(range(&ch2, &t2, "k1", b"").await, DENIED);
    let t0 = authenticate(&ch0, "uprefix", "pw").await.unwrap();
    let ch1 = Channel::from_shared(urls[1].clone()).unwrap().connect().await.unwrap();
    assert_eq!(put(&ch1, &t0, "p/z", false, 0).await, "ok: prev false");
    assert_eq!(put(&ch1, &t0, "q", false, 0).await, DENIED);
}

/// JWT tokens: any auth change makes earlier tokens' revision old; they end
/// at their expiry; a forged one is invalid.
async fn jwt(ch: Channel) -> Vec<String> {
    let root = setup(&ch).await;
    let mut t = Vec::new();
    let ukey = authenticate(&ch, "ukey", "pw").await.unwrap();
    t.push(format!("three parts: {}", ukey.split('.').count()));
    t.push(format!("fresh: {}", range(&ch, &ukey, "k", b"").await));
    t.push(format!("denied: {}", range(&ch, &ukey, "k1", b"").await));
    let mut forged = ukey.clone();
    forged.pop();
    t.push(format!("forged: {}", range(&ch, &forged, "k", b"").await));
    AuthClient::new(ch.clone()).role_add(with_token(AuthRoleAddRequest { name: "new".into() }, &root)).await.unwrap();
    t.push(format!("after change, read: {}", range(&ch, &ukey, "k", b"").await));
    t.push(format!("after change, write: {}", put(&ch, &ukey, "k", false, 0).await));
    let again = authenticate(&ch, "ukey", "pw").await.unwrap();
    t.push(format!("new token: {}", range(&ch, &again, "k", b"").await));
    // ttl is 2 s: past it the token is refused.
    tokio::time::sleep(Duration::from_secs(4)).await;
    t.push(format!("expired: {}", range(&ch, &again, "k", b"").await));
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_tokens_match_etcd() {
    // Required in CI (.ci/run installs it); skipped locally without it.
    let Some(openssl) = retcd_testkit::require_tool("openssl") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = (dir.path().join("priv.pem"), dir.path().join("pub.pem"));
    let out = std::process::Command::new(&openssl)
        .args(["genrsa", "-out", private.to_str().unwrap(), "2048"])
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl genrsa: {}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(&openssl)
        .args(["rsa", "-in", private.to_str().unwrap(), "-pubout", "-out", public.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let flag = format!("jwt,pub-key={},priv-key={},sign-method=RS256,ttl=2s", public.display(), private.display());
    let mut args = ARGS.to_vec();
    args.extend(["--auth-token", &flag]);
    let t = on_both("jwt", RETCD, &args, jwt).await;
    assert_eq!(
        t,
        vec![
            "three parts: 3",
            "fresh: ok: 1 kvs",
            "denied: err: etcdserver: permission denied",
            "forged: err: etcdserver: invalid auth token",
            "after change, read: err: etcdserver: revision of auth store is old",
            "after change, write: err: etcdserver: revision of auth store is old",
            "new token: ok: 1 kvs",
            "expired: err: etcdserver: invalid auth token",
        ]
    );
}

/// With auth enabled, an expired lease is still revoked (the server revokes
/// as root) and its keys deleted.
async fn expiry_under_auth(ch: Channel) -> Vec<String> {
    let root = setup(&ch).await;
    let id = LeaseClient::new(ch.clone())
        .lease_grant(with_token(LeaseGrantRequest { ttl: 2, id: 0 }, &root))
        .await
        .unwrap()
        .into_inner()
        .id;
    let p = PutRequest { key: b"p/lease".to_vec(), value: b"l".to_vec(), lease: id, ..Default::default() };
    KvClient::new(ch.clone()).put(with_token(p, &root)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // A fresh token each time: the loop may outlive one.
        let token = authenticate(&ch, "root", "rpw").await.unwrap();
        if range(&ch, &token, "p/lease", b"").await == "ok: 0 kvs" {
            return vec!["expired and deleted".into()];
        }
        assert!(Instant::now() < deadline, "the lease's key outlived it");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_expire_with_auth_enabled() {
    let t = on_both("lease expiry under auth", RETCD, ARGS, expiry_under_auth).await;
    assert_eq!(t, ["expired and deleted"]);
}

/// A member that was down while users were added and many writes happened
/// catches up by snapshot, auth included.
#[tokio::test(flavor = "multi_thread")]
async fn auth_travels_in_snapshots() {
    let _serial = serial();
    let mut args = ARGS.to_vec();
    args.extend(["--snapshot-count", "300"]);
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(RETCD.as_ref(), 3, &args));
    let urls: Vec<String> = cluster.members.iter().map(|m| m.url()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ch0 = loop {
        if let Ok(ch) = Channel::from_shared(urls[0].clone()).unwrap().connect().await {
            let mut kv = KvClient::new(ch.clone());
            if kv.range(RangeRequest { key: b"a".to_vec(), ..Default::default() }).await.is_ok() {
                break ch;
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Stop a follower other than member 0 (a dead leader would time out
    // the proposals it had been forwarded).
    let mut leader = 0;
    let mut ids = Vec::new();
    for url in &urls {
        let ch = Channel::from_shared(url.clone()).unwrap().connect().await.unwrap();
        let st = MaintenanceClient::new(ch).status(StatusRequest {}).await.unwrap().into_inner();
        leader = st.leader;
        ids.push(st.header.unwrap().member_id);
    }
    let behind = if ids[2] == leader { 1 } else { 2 };
    cluster.members[behind].kill9();
    let root = setup(&ch0).await;
    // More entries than a leader keeps after a snapshot (5000).
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let (ch, root) = (ch0.clone(), root.clone());
            tokio::spawn(async move {
                let mut kv = KvClient::new(ch);
                for i in 0..350 {
                    let req = PutRequest { key: format!("bulk/{w:02}/{i:04}").into_bytes(), ..Default::default() };
                    kv.put(with_token(req, &root)).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    tokio::task::block_in_place(|| {
        cluster.spawn(behind);
        cluster.wait_ready(behind, Duration::from_secs(60));
    });
    let (ch2, _) = connect_authenticated(&urls[behind]).await;
    let log = cluster.members[behind].log_text();
    assert!(log.contains("installed the snapshot"), "the member did not catch up by snapshot:\n{log}");
    let ukey = authenticate(&ch2, "ukey", "pw").await.unwrap();
    assert_eq!(range(&ch2, &ukey, "k", b"").await, "ok: 1 kvs");
    assert_eq!(range(&ch2, &ukey, "k1", b"").await, DENIED);
    assert_eq!(range(&ch2, "", "k", b"").await, "err: etcdserver: user name is empty");
}
