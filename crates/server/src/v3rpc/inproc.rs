//! Calls into our own gRPC services from inside the server (the JSON
//! gateway, the lock and election services), so that they share every check
//! and behaviour of the gRPC path instead of re-implementing it.
//!
//! Unary methods are plain trait calls. Client-streaming methods take a
//! `tonic::Streaming`, which only tonic can decode: [`request_stream`] frames
//! the messages as gRPC does on the wire and hands tonic that body.

use std::convert::Infallible;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::Streaming;

/// A `Streaming<T>` that yields `messages`, then ends when they end.
pub fn request_stream<T, S>(messages: S) -> Streaming<T>
where
    T: Message + Default + Send + 'static,
    S: Stream<Item = T> + Send + 'static,
{
    let frames = messages.map(|m| Ok::<Bytes, Infallible>(frame(&m)));
    let body = axum::body::Body::from_stream(frames);
    Streaming::new_request(tonic_prost::ProstDecoder::<T>::default(), body, None, None)
}

/// One gRPC message frame: uncompressed flag, big-endian length, message.
fn frame<T: Message>(m: &T) -> Bytes {
    let len = m.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    // A message over 4 GiB cannot be built from a request we accepted.
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    m.encode_raw(&mut buf);
    buf.freeze()
}

/// A request carrying `msg` and the caller's metadata (its auth token).
pub fn request<T>(msg: T, metadata: &MetadataMap) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    *r.metadata_mut() = metadata.clone();
    r
}
