//! Wire compatibility with etcd 3.4: messages encode to the bytes etcd's own
//! (gogoproto) encoder produces for the same field numbers, and the gRPC
//! services/methods in the descriptor set are exactly etcd's.

use prost::Message;
use retcd_api::authpb::{permission, Permission};
use retcd_api::etcdserverpb::{
    compare, request_op, watch_create_request, watch_request, Compare, LeaseGrantRequest, Member, PutRequest,
    RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest, WatchCancelRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest, WatchResponse,
};
use retcd_api::mvccpb::{event, Event, KeyValue};

/// Encodes `msg`, checks the bytes, and checks they decode back to `msg`.
fn check<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M, expected: &[u8]) {
    let bytes = msg.encode_to_vec();
    assert_eq!(bytes, expected, "encoding of {msg:?}");
    assert_eq!(&M::decode(expected).expect("decode"), msg);
}

#[test]
fn put_request() {
    let msg = PutRequest {
        key: b"foo".to_vec(),
        value: b"bar".to_vec(),
        lease: 7,
        prev_kv: true,
        ignore_value: true,
        ignore_lease: true,
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 3, b'f', b'o', b'o', // 1: key
        0x12, 3, b'b', b'a', b'r', // 2: value
        0x18, 7,                   // 3: lease
        0x20, 1,                   // 4: prev_kv
        0x28, 1,                   // 5: ignore_value
        0x30, 1,                   // 6: ignore_lease
    ];
    check(&msg, &expected);
}

#[test]
fn range_response_with_kvs() {
    let msg = RangeResponse {
        header: Some(ResponseHeader { cluster_id: 1, member_id: 2, revision: 3, raft_term: 4 }),
        kvs: vec![KeyValue {
            key: b"a".to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 1,
            value: b"b".to_vec(),
            lease: 5,
        }],
        more: true,
        count: 1,
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 8,                            // 1: header
            0x08, 1, 0x10, 2, 0x18, 3, 0x20, 4,
        0x12, 14,                           // 2: kvs[0]
            0x0a, 1, b'a',                  //   key
            0x10, 2,                        //   create_revision
            0x18, 3,                        //   mod_revision
            0x20, 1,                        //   version
            0x2a, 1, b'b',                  //   value
            0x30, 5,                        //   lease
        0x18, 1,                            // 3: more
        0x20, 1,                            // 4: count
    ];
    check(&msg, &expected);
}

#[test]
fn txn_request_with_nested_ops() {
    let msg = TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Mod as i32,
            key: b"k".to_vec(),
            range_end: b"z".to_vec(),
            target_union: Some(compare::TargetUnion::ModRevision(5)),
        }],
        success: vec![
            RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    ..Default::default()
                })),
            },
            RequestOp { request: Some(request_op::Request::RequestTxn(TxnRequest::default())) },
        ],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest { key: b"k".to_vec(), ..Default::default() })),
        }],
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 11,                       // 1: compare[0]
            0x10, 2,                    //   2: target = MOD (result EQUAL = 0 omitted)
            0x1a, 1, b'k',              //   3: key
            0x30, 5,                    //   6: mod_revision (oneof target_union)
            0x82, 0x04, 1, b'z',        //   64: range_end
        0x12, 8,                        // 2: success[0]
            0x12, 6,                    //   2: request_put
                0x0a, 1, b'k', 0x12, 1, b'v',
        0x12, 2,                        // 2: success[1]
            0x22, 0,                    //   4: request_txn (empty)
        0x1a, 5,                        // 3: failure[0]
            0x0a, 3,                    //   1: request_range
                0x0a, 1, b'k',
    ];
    check(&msg, &expected);
}

#[test]
fn watch_requests() {
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            start_revision: 10,
            progress_notify: true,
            filters: vec![watch_create_request::FilterType::Nodelete as i32],
            prev_kv: true,
            watch_id: 3,
            fragment: true,
        })),
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 19,                   // 1: create_request
            0x0a, 1, b'a',          //   1: key
            0x12, 1, b'b',          //   2: range_end
            0x18, 10,               //   3: start_revision
            0x20, 1,                //   4: progress_notify
            0x2a, 1, 1,             //   5: filters, packed [NODELETE]
            0x30, 1,                //   6: prev_kv
            0x38, 3,                //   7: watch_id
            0x40, 1,                //   8: fragment
    ];
    check(&create, &expected);

    let cancel = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CancelRequest(WatchCancelRequest { watch_id: 3 })),
    };
    check(&cancel, &[0x12, 2, 0x08, 3]);

    let progress =
        WatchRequest { request_union: Some(watch_request::RequestUnion::ProgressRequest(WatchProgressRequest {})) };
    check(&progress, &[0x1a, 0]);
}

#[test]
fn watch_response_events() {
    let msg = WatchResponse {
        watch_id: 1,
        events: vec![Event {
            r#type: event::EventType::Delete as i32,
            kv: Some(KeyValue { key: b"a".to_vec(), ..Default::default() }),
            prev_kv: None,
        }],
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected = [
        0x10, 1,                    // 2: watch_id
        0x5a, 7,                    // 11: events[0]
            0x08, 1,                //   1: type = DELETE
            0x12, 3, 0x0a, 1, b'a', //   2: kv
    ];
    check(&msg, &expected);
}

#[test]
fn lease_member_and_auth_fields() {
    check(&LeaseGrantRequest { ttl: 60, id: 16 }, &[0x08, 60, 0x10, 16]);
    #[rustfmt::skip]
    check(
        &Member {
            id: 1,
            name: "n".into(),
            peer_ur_ls: vec!["p".into()],
            client_ur_ls: vec!["c".into()],
            is_learner: true,
        },
        &[0x08, 1, 0x12, 1, b'n', 0x1a, 1, b'p', 0x22, 1, b'c', 0x28, 1],
    );
    check(
        &Permission { perm_type: permission::Type::Readwrite as i32, key: b"k".to_vec(), range_end: b"l".to_vec() },
        &[0x08, 2, 0x12, 1, b'k', 0x1a, 1, b'l'],
    );
}

// A minimal view of google.protobuf.FileDescriptorSet, enough to read the
// declared services (avoids a dependency on prost-types).
#[derive(Clone, PartialEq, Message)]
struct FileDescriptorSet {
    #[prost(message, repeated, tag = "1")]
    file: Vec<FileDescriptorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct FileDescriptorProto {
    #[prost(string, tag = "2")]
    package: String,
    #[prost(message, repeated, tag = "6")]
    service: Vec<ServiceDescriptorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct ServiceDescriptorProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, repeated, tag = "2")]
    method: Vec<MethodDescriptorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct MethodDescriptorProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    input_type: String,
    #[prost(string, tag = "3")]
    output_type: String,
    #[prost(bool, tag = "5")]
    client_streaming: bool,
    #[prost(bool, tag = "6")]
    server_streaming: bool,
}

#[test]
fn services_match_etcd() {
    let fds = FileDescriptorSet::decode(retcd_api::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut got = Vec::new();
    for file in fds.file.iter().filter(|f| f.package == "etcdserverpb") {
        for svc in &file.service {
            for m in &svc.method {
                got.push(format!(
                    "/etcdserverpb.{}/{} {}{} -> {}{}",
                    svc.name,
                    m.name,
                    if m.client_streaming { "stream " } else { "" },
                    m.input_type.trim_start_matches(".etcdserverpb."),
                    if m.server_streaming { "stream " } else { "" },
                    m.output_type.trim_start_matches(".etcdserverpb."),
                ));
            }
        }
    }
    let rpc = |svc: &str, method: &str, req: &str, resp: &str| format!("/etcdserverpb.{svc}/{method} {req} -> {resp}");
    let simple =
        |svc: &str, method: &str, msg: &str| rpc(svc, method, &format!("{msg}Request"), &format!("{msg}Response"));
    let mut want = vec![
        simple("KV", "Range", "Range"),
        simple("KV", "Put", "Put"),
        simple("KV", "DeleteRange", "DeleteRange"),
        simple("KV", "Txn", "Txn"),
        simple("KV", "Compact", "Compaction"),
        rpc("Watch", "Watch", "stream WatchRequest", "stream WatchResponse"),
        simple("Lease", "LeaseGrant", "LeaseGrant"),
        simple("Lease", "LeaseRevoke", "LeaseRevoke"),
        rpc("Lease", "LeaseKeepAlive", "stream LeaseKeepAliveRequest", "stream LeaseKeepAliveResponse"),
        simple("Lease", "LeaseTimeToLive", "LeaseTimeToLive"),
        simple("Lease", "LeaseLeases", "LeaseLeases"),
        simple("Cluster", "MemberAdd", "MemberAdd"),
        simple("Cluster", "MemberRemove", "MemberRemove"),
        simple("Cluster", "MemberUpdate", "MemberUpdate"),
        simple("Cluster", "MemberList", "MemberList"),
        simple("Cluster", "MemberPromote", "MemberPromote"),
        simple("Maintenance", "Alarm", "Alarm"),
        simple("Maintenance", "Status", "Status"),
        simple("Maintenance", "Defragment", "Defragment"),
        simple("Maintenance", "Hash", "Hash"),
        simple("Maintenance", "HashKV", "HashKV"),
        rpc("Maintenance", "Snapshot", "SnapshotRequest", "stream SnapshotResponse"),
        simple("Maintenance", "MoveLeader", "MoveLeader"),
        simple("Auth", "AuthEnable", "AuthEnable"),
        simple("Auth", "AuthDisable", "AuthDisable"),
        simple("Auth", "Authenticate", "Authenticate"),
    ];
    for m in [
        "UserAdd",
        "UserGet",
        "UserList",
        "UserDelete",
        "UserChangePassword",
        "UserGrantRole",
        "UserRevokeRole",
        "RoleAdd",
        "RoleGet",
        "RoleList",
        "RoleDelete",
        "RoleGrantPermission",
        "RoleRevokePermission",
    ] {
        want.push(simple("Auth", m, &format!("Auth{m}")));
    }
    // etcd 3.5's, served too so 3.5 clients can ask.
    want.push(simple("Auth", "AuthStatus", "AuthStatus"));
    assert_eq!(got, want);
}
