//! Requests whose `:authority` is not an authority, accepted as Go's HTTP/2
//! server accepts them.
//!
//! grpc-go dials an endpoint written without a resolver scheme as
//! `passthrough:///http://127.0.0.1:2379` and then sends all of
//! `http://127.0.0.1:2379` as each request's `:authority` (etcd 3.4's
//! etcdctl does so for its one-endpoint calls: `defrag`, `endpoint hashkv`,
//! `endpoint status`). The h2 crate resets such a stream with PROTOCOL_ERROR;
//! etcd serves it. [`AuthorityRepair`] sits between a connection and hyper
//! and looks at the first request's header block: when that request's
//! `:authority` would be refused, every header block of the connection is
//! decoded and encoded again without it (HPACK's tables live as long as the
//! connection, so a rewrite, once begun, goes on to its end). For every
//! other connection (HTTP/1.1, and HTTP/2 clients that send a host name)
//! it steps aside after that first block: the bytes pass as they are and
//! nothing more is parsed.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame hyper accepts unless told otherwise (HTTP/2's
/// default SETTINGS_MAX_FRAME_SIZE), so the size of rewritten frames.
const MAX_FRAME: usize = 16 * 1024;
/// A header block, or a frame, larger than this is handed to h2 untouched
/// (it refuses it) rather than held here.
const MAX_HELD: usize = 1 << 20;
/// HPACK's default table size, which h2 advertises and holds clients to.
const TABLE_SIZE: usize = 4096;

enum Mode {
    /// Waiting for enough bytes to tell HTTP/2 from HTTP/1.1.
    Preface,
    /// An HTTP/2 connection before its first complete header block.
    FirstBlock(Decoder<'static>),
    /// Every header block re-encoded without a bad `:authority`.
    Rewrite(Box<(Decoder<'static>, Encoder<'static>)>),
    /// Bytes pass through untouched.
    Pass,
}

/// A header block being collected (HEADERS and its CONTINUATIONs).
struct Block {
    /// The frames as received, passed on if the block is left alone.
    raw: Vec<u8>,
    fragment: Vec<u8>,
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
}

/// A connection whose requests' bad `:authority` is dropped (see the
/// module doc). Writes go straight through.
pub struct AuthorityRepair<T> {
    io: T,
    mode: Mode,
    /// Read from `io`, not handled yet.
    raw: BytesMut,
    /// Handled, for hyper to read.
    out: BytesMut,
    block: Option<Block>,
}

impl<T> AuthorityRepair<T> {
    pub fn new(io: T) -> AuthorityRepair<T> {
        AuthorityRepair { io, mode: Mode::Preface, raw: BytesMut::new(), out: BytesMut::new(), block: None }
    }

    /// From now on bytes pass untouched: what is held goes out as it came.
    fn pass(&mut self) {
        if let Some(block) = self.block.take() {
            self.out.extend_from_slice(&block.raw);
        }
        self.out.extend_from_slice(&self.raw.split());
        self.mode = Mode::Pass;
    }

    /// Handles what `raw` holds as far as it can.
    fn process(&mut self) {
        if let Mode::Preface = self.mode {
            let n = self.raw.len().min(PREFACE.len());
            if self.raw[..n] != PREFACE[..n] {
                return self.pass();
            }
            if n < PREFACE.len() {
                return;
            }
            self.out.extend_from_slice(&self.raw.split_to(PREFACE.len()));
            let mut decoder = Decoder::new();
            decoder.set_max_allowed_table_size(TABLE_SIZE);
            self.mode = Mode::FirstBlock(decoder);
        }
        while !matches!(self.mode, Mode::Pass) && self.raw.len() >= FRAME_HEADER {
            let len = u32::from_be_bytes([0, self.raw[0], self.raw[1], self.raw[2]]) as usize;
            if len > MAX_HELD {
                return self.pass();
            }
            if self.raw.len() < FRAME_HEADER + len {
                return;
            }
            let frame = self.raw.split_to(FRAME_HEADER + len);
            self.frame(&frame);
        }
    }

    fn frame(&mut self, frame: &[u8]) {
        let (kind, flags) = (frame[3], frame[4]);
        let stream_id = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER..];
        match (kind, self.block.as_mut()) {
            (HEADERS, None) => {
                let Some((priority, fragment)) = headers_payload(flags, payload) else {
                    self.out.extend_from_slice(frame);
                    return self.pass();
                };
                self.block = Some(Block {
                    raw: frame.to_vec(),
                    fragment: fragment.to_vec(),
                    stream_id,
                    end_stream: flags & END_STREAM != 0,
                    priority,
                });
            }
            (CONTINUATION, Some(block)) if block.stream_id == stream_id => {
                block.raw.extend_from_slice(frame);
                block.fragment.extend_from_slice(payload);
                if block.raw.len() > MAX_HELD {
                    return self.pass();
                }
            }
            (_, None) => {
                self.out.extend_from_slice(frame);
                return;
            }
            // Not what HTTP/2 allows: h2 ends the connection over it.
            (_, Some(_)) => {
                if let Some(block) = self.block.take() {
                    self.out.extend_from_slice(&block.raw);
                }
                self.out.extend_from_slice(frame);
                return self.pass();
            }
        }
        if flags & END_HEADERS != 0 {
            if let Some(block) = self.block.take() {
                self.finish(block);
            }
        }
    }

    /// A complete header block: decides the connection's mode on the first,
    /// and re-encodes it when rewriting.
    fn finish(&mut self, block: Block) {
        let decoder = match &mut self.mode {
            Mode::FirstBlock(d) => d,
            Mode::Rewrite(codec) => &mut codec.0,
            Mode::Preface | Mode::Pass => {
                self.out.extend_from_slice(&block.raw);
                return;
            }
        };
        let Ok(headers) = decoder.decode(&block.fragment) else {
            // h2 fails the same block: let it say so.
            self.block = Some(block);
            return self.pass();
        };
        let bad = |name: &[u8], value: &[u8]| name == b":authority" && http::uri::Authority::try_from(value).is_err();
        if let Mode::FirstBlock(_) = self.mode {
            if !headers.iter().any(|(n, v)| bad(n, v)) {
                self.block = Some(block);
                return self.pass();
            }
            let Mode::FirstBlock(decoder) = std::mem::replace(&mut self.mode, Mode::Pass) else { return };
            let mut encoder = Encoder::new();
            encoder.set_max_table_size(TABLE_SIZE);
            self.mode = Mode::Rewrite(Box::new((decoder, encoder)));
        }
        let Mode::Rewrite(codec) = &mut self.mode else { return };
        let kept = headers.iter().filter(|(n, v)| !bad(n, v)).map(|(n, v)| (n.as_slice(), v.as_slice()));
        let encoded = codec.1.encode(kept);
        write_block(&mut self.out, &block, &encoded);
    }
}

/// The priority fields and the header block fragment of a HEADERS frame's
/// payload, without padding; None when the payload is too short for its
/// flags.
fn headers_payload(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut p = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        pad = *p.first()? as usize;
        p = &p[1..];
    }
    let priority = if flags & PRIORITY != 0 {
        let fields: [u8; 5] = p.get(..5)?.try_into().ok()?;
        p = &p[5..];
        Some(fields)
    } else {
        None
    };
    let end = p.len().checked_sub(pad)?;
    Some((priority, &p[..end]))
}

/// Writes `encoded` as a HEADERS frame (and CONTINUATIONs if it is long)
/// for `block`'s stream, unpadded.
fn write_block(out: &mut BytesMut, block: &Block, encoded: &[u8]) {
    let priority_len = if block.priority.is_some() { 5 } else { 0 };
    let first_len = encoded.len().min(MAX_FRAME - priority_len);
    let (first, mut rest) = encoded.split_at(first_len);
    let mut flags = if block.end_stream { END_STREAM } else { 0 };
    if block.priority.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    put_frame_header(out, priority_len + first.len(), HEADERS, flags, block.stream_id);
    if let Some(p) = block.priority {
        out.put_slice(&p);
    }
    out.put_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(MAX_FRAME));
        rest = after;
        let flags = if rest.is_empty() { END_HEADERS } else { 0 };
        put_frame_header(out, chunk.len(), CONTINUATION, flags, block.stream_id);
        out.put_slice(chunk);
    }
}

fn put_frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream_id: u32) {
    out.put_slice(&(len as u32).to_be_bytes()[1..]);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream_id);
}

impl<T: AsyncRead + Unpin> AsyncRead for AuthorityRepair<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if let Mode::Pass = this.mode {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The end: whatever is held goes out as it came, then EOF.
                this.pass();
                if this.out.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.raw.extend_from_slice(read.filled());
            this.process();
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AuthorityRepair<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn headers_frame(stream_id: u32, flags: u8, block: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_frame_header(&mut out, block.len(), HEADERS, flags, stream_id);
        out.put_slice(block);
        out.to_vec()
    }

    fn request(encoder: &mut Encoder<'static>, authority: &[u8]) -> Vec<u8> {
        let fields: [(&[u8], &[u8]); 5] = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/etcdserverpb.Maintenance/Status"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
        ];
        encoder.encode(fields)
    }

    /// What hyper would read after `input` went through the repair.
    async fn repaired(input: Vec<u8>) -> Vec<u8> {
        let mut conn = AuthorityRepair::new(std::io::Cursor::new(input));
        let mut out = Vec::new();
        conn.read_to_end(&mut out).await.unwrap();
        out
    }

    /// The header lists of the HEADERS frames in `bytes` (after the preface).
    fn decoded_requests(bytes: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut decoder = Decoder::new();
        let mut p = &bytes[PREFACE.len()..];
        let mut requests = Vec::new();
        while p.len() >= FRAME_HEADER {
            let len = u32::from_be_bytes([0, p[0], p[1], p[2]]) as usize;
            assert_eq!(p[3], HEADERS);
            requests.push(decoder.decode(&p[FRAME_HEADER..FRAME_HEADER + len]).unwrap());
            p = &p[FRAME_HEADER + len..];
        }
        requests
    }

    #[tokio::test]
    async fn a_url_as_authority_is_dropped_from_every_request_of_the_connection() {
        let mut encoder = Encoder::new();
        let mut input = PREFACE.to_vec();
        for id in [1, 3, 5] {
            input.extend(headers_frame(id, END_HEADERS, &request(&mut encoder, b"http://127.0.0.1:2379")));
        }
        let requests = decoded_requests(&repaired(input).await);
        assert_eq!(requests.len(), 3);
        for headers in requests {
            assert!(headers.iter().all(|(n, _)| n != b":authority"), "{headers:?}");
            assert!(headers.iter().any(|(n, v)| n == b":path" && v == b"/etcdserverpb.Maintenance/Status"));
        }
    }

    #[tokio::test]
    async fn a_host_name_leaves_the_connection_untouched() {
        let mut encoder = Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(1, END_HEADERS, &request(&mut encoder, b"localhost:2379")));
        input.extend(b"\x00\x00\x00\x00\x01\x00\x00\x00\x01");
        assert_eq!(repaired(input.clone()).await, input);
    }

    #[tokio::test]
    async fn http1_and_cut_input_pass_as_they_are() {
        let http1 = b"POST /v3/kv/range HTTP/1.1\r\nHost: http://x\r\n\r\n".to_vec();
        assert_eq!(repaired(http1.clone()).await, http1);
        let mut cut = PREFACE.to_vec();
        cut.extend(&headers_frame(1, END_HEADERS, b"\x82\x86")[..6]);
        assert_eq!(repaired(cut.clone()).await, cut);
    }

    #[tokio::test]
    async fn a_long_rewritten_block_is_split_into_continuations() {
        let mut encoder = Encoder::new();
        let mut input = PREFACE.to_vec();
        let long = vec![b'v'; 40_000];
        let mut block = request(&mut encoder, b"http://127.0.0.1:2379");
        block.extend(encoder.encode([(b"x-long".as_slice(), long.as_slice())]));
        input.extend(headers_frame(1, END_HEADERS | END_STREAM, &block));
        let out = repaired(input).await;
        let mut p = &out[PREFACE.len()..];
        let mut kinds = Vec::new();
        let mut fragment = Vec::new();
        while !p.is_empty() {
            let len = u32::from_be_bytes([0, p[0], p[1], p[2]]) as usize;
            assert!(len <= MAX_FRAME);
            kinds.push((p[3], p[4]));
            fragment.extend(&p[FRAME_HEADER..FRAME_HEADER + len]);
            p = &p[FRAME_HEADER + len..];
        }
        assert_eq!(kinds, [(HEADERS, END_STREAM), (CONTINUATION, 0), (CONTINUATION, END_HEADERS)]);
        let headers = Decoder::new().decode(&fragment).unwrap();
        assert!(headers.iter().any(|(n, v)| n == b"x-long" && v.len() == 40_000));
        assert!(headers.iter().all(|(n, _)| n != b":authority"));
    }
}
