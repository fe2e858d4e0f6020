//! Splits a streaming request body into JSON values, as grpc-gateway's
//! decoder reads a client-streaming call: values one after another (any
//! whitespace, or none, between them), each read as soon as it is complete.

use axum::body::{Body, BodyDataStream};
use futures::StreamExt;

/// Reads JSON values from a request body as they arrive.
pub struct JsonObjects {
    data: BodyDataStream,
    buf: Vec<u8>,
    eof: bool,
}

impl JsonObjects {
    pub fn new(body: Body) -> JsonObjects {
        JsonObjects { data: body.into_data_stream(), buf: Vec::new(), eof: false }
    }

    /// The next value; `None` at the end of the body; an error for bad JSON
    /// or a body that ends inside a value.
    pub async fn next(&mut self) -> Result<Option<serde_json::Value>, String> {
        loop {
            let mut values = serde_json::Deserializer::from_slice(&self.buf).into_iter::<serde_json::Value>();
            match values.next() {
                Some(Ok(v)) => {
                    let used = values.byte_offset();
                    self.buf.drain(..used);
                    return Ok(Some(v));
                }
                Some(Err(e)) if !e.is_eof() => return Err(e.to_string()),
                None if self.eof => return Ok(None),
                Some(Err(_)) if self.eof => return Err("unexpected EOF".to_string()),
                _ => {}
            }
            match self.data.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(e.to_string()),
                None => self.eof = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn splits_concatenated_and_spaced_values() {
        let mut o = JsonObjects::new(Body::from(
            r#"{"a":1}{"b":2}
 {"c":3} "#,
        ));
        assert_eq!(o.next().await.unwrap().unwrap()["a"], 1);
        assert_eq!(o.next().await.unwrap().unwrap()["b"], 2);
        assert_eq!(o.next().await.unwrap().unwrap()["c"], 3);
        assert!(o.next().await.unwrap().is_none());
        let mut bad = JsonObjects::new(Body::from(r#"{"a":"#));
        assert_eq!(bad.next().await.unwrap_err(), "unexpected EOF");
    }
}
