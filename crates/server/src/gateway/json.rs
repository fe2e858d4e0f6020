//! The protobuf <-> JSON mapping of etcd 3.4's gateway (grpc-gateway v1 with
//! its default `JSONPb{OrigName: true}` marshaler), done by reflection over
//! our own descriptors with `prost-reflect`.
//!
//! Output, as etcd's (checked against it in the `gateway` tests): proto field
//! names (`create_revision`, `raft_term`, but `ID`, `TTL`, `dbSize` where
//! the .proto spells them so), fields at their default value left out,
//! 64-bit integers as strings, 32-bit ones as numbers, bytes as standard
//! base64, enums by name. Input: either field name form (`prev_kv` or
//! `prevKv`), integers as numbers or strings, enums by name or number,
//! unknown fields ignored, anything after the first JSON value ignored, an
//! empty body is the default request.
//!
//! Why reflection and not generated serde impls (pbjson): the descriptors
//! already exist (protox builds them for the gRPC code), there is one
//! mapping to configure instead of one per type, and proto-name output is an
//! option here. The cost is one extra protobuf encode/decode per message,
//! small next to the request itself.

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};

/// The descriptors of every message the gateway maps.
fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // Built from our own .proto files at compile time: failing here is a
        // build bug, caught by any gateway test.
        #[allow(clippy::expect_used)]
        DescriptorPool::decode(retcd_api::FILE_DESCRIPTOR_SET).expect("retcd's own descriptor set decodes")
    })
}

/// The request and response message descriptors of `service`'s `method`
/// (full service name, e.g. `etcdserverpb.KV`).
pub fn method(service: &str, method: &str) -> Option<(MessageDescriptor, MessageDescriptor)> {
    let svc = pool().get_service_by_name(service)?;
    let m = svc.methods().find(|m| m.name() == method)?;
    Some((m.input(), m.output()))
}

const SERIALIZE: SerializeOptions = SerializeOptions::new()
    .use_proto_field_name(true)
    .skip_default_fields(true)
    .stringify_64_bit_integers(true)
    .use_enum_numbers(false);

const DESERIALIZE: DeserializeOptions = DeserializeOptions::new().deny_unknown_fields(false);

/// Decodes the first JSON value of `body` as a `T` (the default `T` for an
/// empty body).
pub fn decode<T: Message + Default>(desc: &MessageDescriptor, body: &[u8]) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let dynamic =
        DynamicMessage::deserialize_with_options(desc.clone(), &mut de, &DESERIALIZE).map_err(|e| e.to_string())?;
    to_prost(&dynamic)
}

/// Decodes one already-split JSON value as a `T`.
pub fn decode_value<T: Message + Default>(desc: &MessageDescriptor, value: serde_json::Value) -> Result<T, String> {
    let dynamic =
        DynamicMessage::deserialize_with_options(desc.clone(), value, &DESERIALIZE).map_err(|e| e.to_string())?;
    to_prost(&dynamic)
}

fn to_prost<T: Message + Default>(dynamic: &DynamicMessage) -> Result<T, String> {
    T::decode(dynamic.encode_to_vec().as_slice()).map_err(|e| e.to_string())
}

/// The JSON text of `msg`, whose type `desc` describes.
pub fn encode<T: Message>(desc: &MessageDescriptor, msg: &T) -> Result<Vec<u8>, String> {
    let dynamic = DynamicMessage::decode(desc.clone(), msg.encode_to_vec().as_slice()).map_err(|e| e.to_string())?;
    let mut out = serde_json::Serializer::new(Vec::new());
    dynamic.serialize_with_options(&mut out, &SERIALIZE).map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use retcd_api::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
    use retcd_api::mvccpb::KeyValue;

    use super::*;

    #[test]
    fn output_uses_proto_names_strings_for_64_bit_and_skips_defaults() {
        let (_, out) = method("etcdserverpb.KV", "Range").unwrap();
        let resp = RangeResponse {
            header: Some(ResponseHeader { cluster_id: 1, member_id: 2, revision: 3, raft_term: 0 }),
            kvs: vec![KeyValue { key: b"foo".to_vec(), create_revision: 2, ..Default::default() }],
            count: 1,
            more: false,
        };
        let json = String::from_utf8(encode(&out, &resp).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"header":{"cluster_id":"1","member_id":"2","revision":"3"},"kvs":[{"key":"Zm9v","create_revision":"2"}],"count":"1"}"#
        );
    }

    #[test]
    fn input_accepts_both_name_forms_enum_names_and_ignores_unknown_fields() {
        let (input, _) = method("etcdserverpb.KV", "Range").unwrap();
        let body = br#"{"key":"Zm9v","countOnly":true,"limit":"2","sort_order":"DESCEND","bogus":1} trailing"#;
        let r: RangeRequest = decode(&input, body).unwrap();
        assert_eq!(r.key, b"foo");
        assert!(r.count_only);
        assert_eq!(r.limit, 2);
        assert_eq!(r.sort_order, 2);
        let empty: RangeRequest = decode(&input, b" ").unwrap();
        assert_eq!(empty, RangeRequest::default());
        assert!(decode::<RangeRequest>(&input, b"{bad").is_err());
    }
}
