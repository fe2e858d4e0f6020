//! Go formatting rules etcdctl's output depends on: `%q` quoting, JSON
//! string escaping and base64 (encoding/json), `time.Duration` strings and
//! go-humanize's byte sizes.

/// Go's `strconv.Quote` (what `%q` prints): printable characters as they
/// are, the usual C escapes, `\xNN` for bytes that are not UTF-8.
pub fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    let mut rest = bytes;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, None),
            Err(e) => {
                let (v, r) = rest.split_at(e.valid_up_to());
                (std::str::from_utf8(v).unwrap_or_default(), Some(r))
            }
        };
        for c in valid.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
                c if c.is_control() => {
                    if (c as u32) < 0x10000 {
                        out.push_str(&format!("\\u{:04x}", c as u32));
                    } else {
                        out.push_str(&format!("\\U{:08x}", c as u32));
                    }
                }
                c => out.push(c),
            }
        }
        match bad {
            Some(r) => {
                out.push_str(&format!("\\x{:02x}", r[0]));
                rest = &r[1..];
            }
            None => rest = &[],
        }
    }
    out.push('"');
    out
}

/// A JSON string as Go's encoding/json writes it (HTML-safe escapes,
/// U+2028/U+2029 escaped, invalid UTF-8 replaced).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Standard base64 with padding (how encoding/json writes `[]byte`).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

/// Go's `time.Duration.String()`.
pub fn duration(d: std::time::Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", frac(ns, 1_000));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", frac(ns, 1_000_000));
    }
    let total_s = ns / 1_000_000_000;
    let sub = ns % 1_000_000_000;
    let h = total_s / 3600;
    let m = (total_s % 3600) / 60;
    let s = total_s % 60;
    let secs = frac(u128::from(s as u64) * 1_000_000_000 + sub, 1_000_000_000);
    if h > 0 {
        format!("{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{m}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `n / unit` with the fraction's trailing zeros trimmed.
fn frac(n: u128, unit: u128) -> String {
    let whole = n / unit;
    let rem = n % unit;
    if rem == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let f = format!("{rem:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// go-humanize's `Bytes` (SI units: "20 kB", "1.2 MB").
pub fn human_bytes(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    const SUFFIX: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let f = n as f64;
    let e = (f.ln() / 1000f64.ln()).floor();
    let idx = (e as usize).min(SUFFIX.len() - 1);
    let val = (f / 1000f64.powi(idx as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", SUFFIX[idx])
    } else {
        format!("{} {}", go_round_half_even(val), SUFFIX[idx])
    }
}

/// `%.0f` as Go prints it (exact value, ties to even).
fn go_round_half_even(v: f64) -> String {
    let r = v.round();
    let r = if (v - v.trunc()).abs() == 0.5 && r % 2.0 != 0.0 { r - v.signum() } else { r };
    format!("{r:.0}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quoting() {
        assert_eq!(quote(b"foo"), "\"foo\"");
        assert_eq!(quote(b"a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(quote(b"\xff\x01"), "\"\\xff\\x01\"");
        assert_eq!(quote("é".as_bytes()), "\"é\"");
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_string("a<b>&\u{1}"), "\"a\\u003cb\\u003e\\u0026\\u0001\"");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"a<b>&\xc3\xa9"), "YTxiPibDqQ==");
        assert_eq!(base64(b"k1"), "azE=");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(duration(Duration::from_nanos(1_192_288)), "1.192288ms");
        assert_eq!(duration(Duration::from_secs(5)), "5s");
        assert_eq!(duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(duration(Duration::from_nanos(1500)), "1.5µs");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(24576), "25 kB");
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(1234567), "1.2 MB");
    }
}
