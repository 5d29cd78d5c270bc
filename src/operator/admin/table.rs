//! kubectl-style plain tables: upper-case headers, columns padded with three spaces, no borders.

/// A table being built row by row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self { headers: headers.iter().map(|h| h.to_uppercase()).collect(), rows: Vec::new() }
    }

    /// Adds a row; missing cells print empty, extra cells are kept (and widen the table).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders with a trailing newline; the last column is not padded.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).chain([self.headers.len()]).max().unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, cell) in line.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut rendered = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = line.get(i).map(String::as_str).unwrap_or("");
                rendered.push_str(cell);
                if i + 1 < columns {
                    let pad = width - cell.chars().count() + 3;
                    rendered.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(rendered.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Bytes as kubectl shows quantities: `512`, `1.5Ki`, `230Mi`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["Ki", "Mi", "Gi", "Ti", "Pi"];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_aligned_columns_like_kubectl() {
        let mut table = Table::new(&["pod", "keys", "phase"]);
        table.row(vec!["mc-0".into(), "1000".into(), "idle".into()]);
        table.row(vec!["mc-10".into(), "7".into(), "compacting".into()]);
        assert_eq!(
            table.render(),
            "POD     KEYS   PHASE\nmc-0    1000   idle\nmc-10   7      compacting\n"
        );
    }

    #[test]
    fn short_rows_print_empty_cells() {
        let mut table = Table::new(&["a", "b"]);
        table.row(vec!["x".into()]);
        assert_eq!(table.render(), "A   B\nx\n");
    }

    #[test]
    fn human_bytes_uses_binary_suffixes() {
        assert_eq!(human_bytes(0), "0");
        assert_eq!(human_bytes(1023), "1023");
        assert_eq!(human_bytes(1024), "1Ki");
        assert_eq!(human_bytes(1536), "1.5Ki");
        assert_eq!(human_bytes(234_567), "229Ki");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3Gi");
    }
}
