//! The `table` format, for people: a chosen few columns that fit a 120-column terminal, times
//! to the second, and a closing summary line. It streams: column widths are taken from the
//! first rows ([`SAMPLE`]), and later cells longer than their column are cut with `…`.

use std::collections::BTreeMap;
use std::io::Write;

/// Terminal width the table fits.
pub const WIDTH: usize = 120;
/// Rows read before the column widths are fixed.
const SAMPLE: usize = 1_000;
/// Narrowest a column is squeezed to.
const MIN_COLUMN: usize = 6;
const GAP: &str = "  ";

/// Which columns a row type shows in a table, by field name (empty: all).
#[derive(Debug, Clone, Copy, Default)]
pub struct TableSpec {
    pub columns: &'static [&'static str],
}

/// The indexes of the `status` and `scope` fields, and the opted-out and opted-in counts per
/// scope.
type ScopeCounts = (usize, usize, BTreeMap<String, (u64, u64)>);

/// A table being printed.
pub(super) struct Table {
    spec: TableSpec,
    /// Indexes of the shown fields, once the header is known.
    shown: Vec<usize>,
    header: Vec<String>,
    widths: Option<Vec<usize>>,
    pending: Vec<Vec<String>>,
    rows: u64,
    /// opted out / opted in counts per scope, when the rows have both fields.
    per_scope: Option<ScopeCounts>,
}

impl Table {
    pub fn new(spec: TableSpec) -> Self {
        Table {
            spec,
            shown: Vec::new(),
            header: Vec::new(),
            widths: None,
            pending: Vec::new(),
            rows: 0,
            per_scope: None,
        }
    }

    /// Adds a row of cells (all fields), with the field names.
    pub fn row(
        &mut self,
        out: &mut impl Write,
        header: &[String],
        cells: Vec<String>,
    ) -> std::io::Result<()> {
        if self.rows == 0 {
            self.start(header);
        }
        self.rows += 1;
        if let Some((status, scope, counts)) = &mut self.per_scope {
            let entry = counts.entry(cells[*scope].clone()).or_default();
            match cells[*status].as_str() {
                "opted_out" => entry.0 += 1,
                "opted_in" => entry.1 += 1,
                _ => {}
            }
        }
        let shown: Vec<String> = self
            .shown
            .iter()
            .map(|&i| display(&self.header[i], &cells[i]))
            .collect();
        match &self.widths {
            Some(widths) => writeln!(out, "{}", line(&shown, widths)),
            None => {
                self.pending.push(shown);
                if self.pending.len() >= SAMPLE {
                    self.flush_sample(out)?;
                }
                Ok(())
            }
        }
    }

    fn start(&mut self, header: &[String]) {
        self.header = header.to_vec();
        self.shown = if self.spec.columns.is_empty() {
            (0..header.len()).collect()
        } else {
            self.spec
                .columns
                .iter()
                .filter_map(|c| header.iter().position(|h| h == c))
                .collect()
        };
        let find = |name: &str| header.iter().position(|h| h == name);
        if let (Some(status), Some(scope)) = (find("status"), find("scope")) {
            self.per_scope = Some((status, scope, BTreeMap::new()));
        }
    }

    /// Fixes the widths from the rows seen so far, and prints them with the header.
    fn flush_sample(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        let names: Vec<String> = self.shown.iter().map(|&i| self.header[i].clone()).collect();
        let mut widths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
        for r in &self.pending {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        fit(&mut widths, WIDTH);
        writeln!(out, "{}", line(&names, &widths))?;
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        writeln!(out, "{}", line(&rule, &widths))?;
        for r in std::mem::take(&mut self.pending) {
            writeln!(out, "{}", line(&r, &widths))?;
        }
        self.widths = Some(widths);
        Ok(())
    }

    /// Prints what is left and the summary line.
    pub fn finish(mut self, out: &mut impl Write) -> std::io::Result<()> {
        if self.rows == 0 {
            return writeln!(out, "(no rows)");
        }
        if self.widths.is_none() {
            self.flush_sample(out)?;
        }
        writeln!(out, "{}", self.summary())
    }

    /// `(N rows)`, and for status rows the opted-out and opted-in counts, overall and per
    /// scope, cut to the table's width.
    fn summary(&self) -> String {
        let plural = if self.rows == 1 { "" } else { "s" };
        let mut text = format!("({} row{plural})", self.rows);
        let Some((_, _, counts)) = &self.per_scope else {
            return text;
        };
        let (out_total, in_total) = counts
            .values()
            .fold((0, 0), |(o, i), (co, ci)| (o + co, i + ci));
        text.push_str(&format!(" opted out/in: {out_total}/{in_total}; by scope:"));
        for (shown, (scope, (o, i))) in counts.iter().enumerate() {
            let part = format!(" {scope} {o}/{i},");
            let rest = counts.len() - shown - 1;
            let tail = if rest > 0 {
                format!(" +{rest} more scopes")
            } else {
                String::new()
            };
            if text.chars().count() + part.chars().count() + tail.chars().count() > WIDTH {
                text.push_str(&format!(" +{} more scopes", counts.len() - shown));
                return text;
            }
            text.push_str(&part);
        }
        text.pop(); // the last `,`
        text
    }
}

/// Shrinks the widest columns until the line fits `total` (or all are at their minimum).
fn fit(widths: &mut [usize], total: usize) {
    let gaps = GAP.len() * widths.len().saturating_sub(1);
    while widths.iter().sum::<usize>() + gaps > total {
        let Some((i, &w)) = widths.iter().enumerate().max_by_key(|(_, w)| **w) else {
            return;
        };
        if w <= MIN_COLUMN {
            return;
        }
        widths[i] = w - 1;
    }
}

/// One line: cells padded to their width, cut with `…` when longer.
fn line(cells: &[String], widths: &[usize]) -> String {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|(c, &w)| {
            if c.chars().count() > w {
                let cut: String = c.chars().take(w.saturating_sub(1)).collect();
                format!("{cut}…")
            } else {
                format!("{c:<w$}")
            }
        })
        .collect();
    padded.join(GAP).trim_end().to_string()
}

/// A cell as shown: control characters (a body's newline) as spaces, and a stored time
/// (`2026-03-01T12:00:04.512000Z`) to the second (`2026-03-01 12:00:04`).
fn display(name: &str, cell: &str) -> String {
    let is_time = name.ends_with("_at")
        && cell.len() == 27
        && cell.as_bytes().get(10) == Some(&b'T')
        && cell.ends_with('Z');
    if is_time {
        return format!("{} {}", &cell[..10], &cell[11..19]);
    }
    cell.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
