//! Output formats: `simple`, `json`, `fields`, `table` and `protobuf`,
//! matching etcdctl 3.4 byte for byte.
//!
//! Each kind of response implements [`Printable`] with one method per
//! format it supports; [`Printer::print`] is the one place that picks the
//! method for `-w` and refuses, as etcdctl does, a format the kind lacks.
//! Printers return the bytes for stdout; nothing here writes or exits, so
//! they can be tested alone.

pub mod auth;
pub mod endpoint;
pub mod fields;
pub mod gofmt;
pub mod json;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod member;
pub mod table;

use retcd_client::etcdserverpb::ResponseHeader;

use crate::exit::{CtlError, EXIT_BAD_FEATURE};

/// Output format chosen with `-w/--write-out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Simple,
    Json,
    Fields,
    Table,
    Protobuf,
}

impl Format {
    /// etcdctl's names; anything else is refused as it refuses it.
    pub fn parse(s: &str) -> Result<Format, CtlError> {
        match s {
            "simple" => Ok(Format::Simple),
            "json" => Ok(Format::Json),
            "fields" => Ok(Format::Fields),
            "table" => Ok(Format::Table),
            "protobuf" => Ok(Format::Protobuf),
            _ => Err(CtlError::new(EXIT_BAD_FEATURE, "unsupported output format")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Fields => "fields",
            Format::Table => "table",
            Format::Protobuf => "protobuf",
        }
    }
}

/// A response as etcdctl prints it. A format left at its default (`None`)
/// is one etcdctl does not support for this kind.
pub trait Printable {
    /// Raw bytes: keys and values may not be UTF-8.
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        None
    }
    /// One JSON value; [`Printer::print`] adds the newline.
    fn json(&self) -> Option<String> {
        None
    }
    fn fields(&self) -> Option<String> {
        None
    }
    fn table(&self) -> Option<String> {
        None
    }
    /// The encoded message (`encode_to_vec` for the prost responses).
    fn protobuf(&self) -> Option<Vec<u8>> {
        None
    }
}

/// How to print, from the global flags.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: Format,
    pub hex: bool,
    pub value_only: bool,
}

impl Printer {
    /// `r` in the chosen format, or etcdctl's error for a format `r` lacks.
    pub fn print(&self, r: &(impl Printable + ?Sized)) -> Result<Vec<u8>, CtlError> {
        let out = match self.format {
            Format::Simple => r.simple(self),
            Format::Json => r.json().map(|s| s + "\n").map(String::into_bytes),
            Format::Fields => r.fields().map(String::into_bytes),
            Format::Table => r.table().map(String::into_bytes),
            Format::Protobuf => r.protobuf(),
        };
        out.ok_or_else(|| {
            CtlError::new(EXIT_BAD_FEATURE, format!("{} not supported as output format", self.format.name()))
        })
    }
}

/// A response that is only a header (auth changes, lease revoke): `simple`
/// prints `text`.
pub struct HeaderOnly<'a> {
    pub header: &'a Option<ResponseHeader>,
    pub text: String,
}

impl Printable for HeaderOnly<'_> {
    fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
        Some(self.text.clone().into_bytes())
    }
    fn json(&self) -> Option<String> {
        Some(json::header_only(self.header))
    }
    fn fields(&self) -> Option<String> {
        Some(fields::header_only(self.header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use retcd_client::etcdserverpb::{LeaseGrantResponse, ResponseHeader};

    fn printer(format: Format) -> Printer {
        Printer { format, hex: false, value_only: false }
    }

    /// Only `simple` and `fields`: the others fall back to the defaults.
    struct Two;

    impl Printable for Two {
        fn simple(&self, _p: &Printer) -> Option<Vec<u8>> {
            Some(b"simple\n".to_vec())
        }
        fn fields(&self) -> Option<String> {
            Some("\"Two\" : 2\n".into())
        }
    }

    #[test]
    fn picks_the_method_for_the_format() {
        assert_eq!(printer(Format::Simple).print(&Two).unwrap(), b"simple\n");
        assert_eq!(printer(Format::Fields).print(&Two).unwrap(), b"\"Two\" : 2\n");
    }

    #[test]
    fn a_missing_format_is_etcdctls_error() {
        for (format, msg) in [
            (Format::Json, "json not supported as output format"),
            (Format::Table, "table not supported as output format"),
            (Format::Protobuf, "protobuf not supported as output format"),
        ] {
            assert_eq!(printer(format).print(&Two), Err(CtlError::new(EXIT_BAD_FEATURE, msg)));
        }
    }

    #[test]
    fn lease_grant_has_no_table() {
        let r = LeaseGrantResponse { header: Some(ResponseHeader::default()), id: 0x1f, ttl: 5, error: String::new() };
        assert_eq!(printer(Format::Simple).print(&r).unwrap(), b"lease 000000000000001f granted with TTL(5s)\n");
        assert_eq!(printer(Format::Json).print(&r).unwrap(), b"{\"ID\":31,\"TTL\":5,\"Error\":\"\"}\n");
        let err = printer(Format::Table).print(&r).unwrap_err();
        assert_eq!((err.code, err.msg.as_str()), (EXIT_BAD_FEATURE, "table not supported as output format"));
    }
}
