//! `-w table`: the box layout of the tablewriter library etcdctl uses
//! (upper-case centered headers, right-aligned cells, `+---+` borders).

/// Renders `header` and `rows` as etcdctl's tables do.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let titles: Vec<String> = header.iter().map(|h| h.to_uppercase().replace('_', " ")).collect();
    let mut widths: Vec<usize> = titles.iter().map(|t| t.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = line.clone();
    out.push('|');
    for (t, w) in titles.iter().zip(&widths) {
        let gap = w - t.chars().count();
        let left = gap / 2;
        out.push_str(&format!(" {}{}{} |", " ".repeat(left), t, " ".repeat(gap - left)));
    }
    out.push('\n');
    out.push_str(&line);
    for row in rows {
        out.push('|');
        for (i, w) in widths.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            out.push_str(&format!(" {cell:>w$} |"));
        }
        out.push('\n');
    }
    out.push_str(&line);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_table_layout() {
        let got = render(
            &["endpoint", "health", "took", "error"],
            &[vec!["127.0.0.1:23791".into(), "true".into(), "1.23085ms".into(), String::new()]],
        );
        let want = "\
+-----------------+--------+-----------+-------+
|    ENDPOINT     | HEALTH |   TOOK    | ERROR |
+-----------------+--------+-----------+-------+
| 127.0.0.1:23791 |   true | 1.23085ms |       |
+-----------------+--------+-----------+-------+
";
        assert_eq!(got, want);
    }
}
