//! etcdctl's exit codes and its one error line (`Error: <message>` on
//! stderr).

use std::fmt;

pub const EXIT_ERROR: i32 = 1;
pub const EXIT_BAD_CONNECTION: i32 = 2;
pub const EXIT_INVALID_INPUT: i32 = 3;
pub const EXIT_BAD_FEATURE: i32 = 4;
pub const EXIT_INTERRUPTED: i32 = 5;
#[allow(dead_code)] // etcdctl uses it for snapshot I/O failures; kept for completeness of the table
pub const EXIT_IO: i32 = 6;
pub const EXIT_BAD_ARGS: i32 = 128;

/// A failure that ends the command with `code` after printing
/// `Error: <msg>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlError {
    pub code: i32,
    pub msg: String,
}

impl CtlError {
    pub fn new(code: i32, msg: impl Into<String>) -> CtlError {
        CtlError { code, msg: msg.into() }
    }

    pub fn bad_args(msg: impl Into<String>) -> CtlError {
        CtlError::new(EXIT_BAD_ARGS, msg)
    }

    /// A client error with `code`, printed as etcd's Go client prints it.
    /// A failed authentication is reported as etcdctl reports a client it
    /// could not create (its client authenticates when it connects).
    pub fn client(code: i32, err: retcd_client::Error) -> CtlError {
        let code =
            if err.etcd_kind() == Some(retcd_client::EtcdError::AuthFailed) { EXIT_BAD_CONNECTION } else { code };
        CtlError::new(code, err.to_string())
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl From<retcd_client::Error> for CtlError {
    fn from(err: retcd_client::Error) -> CtlError {
        CtlError::client(EXIT_ERROR, err)
    }
}

/// Go's strconv.ParseInt error text, e.g.
/// `strconv.ParseInt: parsing "x": invalid syntax`.
pub fn parse_int_error(func: &str, s: &str, e: &std::num::ParseIntError) -> String {
    use std::num::IntErrorKind;
    let why = match e.kind() {
        IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => "value out of range",
        _ => "invalid syntax",
    };
    format!("strconv.{func}: parsing {}: {why}", crate::printer::gofmt::quote(s.as_bytes()))
}

/// Go's `strconv.ParseInt(s, base, 64)`.
pub fn go_parse_i64(s: &str, base: u32) -> Result<i64, String> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return Err(format!(
            "strconv.ParseInt: parsing {}: invalid syntax",
            crate::printer::gofmt::quote(s.as_bytes())
        ));
    }
    let text = if neg { format!("-{digits}") } else { digits.to_string() };
    i64::from_str_radix(&text, base).map_err(|e| parse_int_error("ParseInt", s, &e))
}

/// Go's `strconv.ParseUint(s, base, 64)`.
pub fn go_parse_u64(s: &str, base: u32) -> Result<u64, String> {
    if s.is_empty() || s.starts_with(['+', '-']) {
        return Err(format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            crate::printer::gofmt::quote(s.as_bytes())
        ));
    }
    u64::from_str_radix(s, base).map_err(|e| parse_int_error("ParseUint", s, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_int_errors() {
        assert_eq!(go_parse_i64("abc", 10).unwrap_err(), "strconv.ParseInt: parsing \"abc\": invalid syntax");
        assert_eq!(go_parse_i64("-5", 10), Ok(-5));
        assert_eq!(go_parse_i64("ff", 16), Ok(255));
        assert_eq!(
            go_parse_i64("ffffffffffffffffff", 16).unwrap_err(),
            "strconv.ParseInt: parsing \"ffffffffffffffffff\": value out of range"
        );
        assert!(go_parse_u64("-1", 16).is_err());
    }
}
