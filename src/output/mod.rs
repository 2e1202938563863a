//! Printing query results as an aligned table, JSON lines or CSV, a row at a time.
//!
//! Every row type is a `Serialize` struct; CSV and JSON come from serde directly and keep every
//! field, in the struct's order. The table is for people: the columns a row type names in its
//! [`TableSpec`], fitted to 120 columns, and a summary line. Nothing is held but the current
//! page (and, for a table, the first rows that fix its column widths), so a 10-million-row
//! export prints in constant memory.

mod cells;
mod table;

use std::io::Write;

use serde::Serialize;

pub use cells::csv_safe;
pub use table::TableSpec;

/// How query commands print their rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people, fitted to 120 columns, with a summary line.
    #[default]
    Table,
    /// One JSON object per line, every field.
    Json,
    /// RFC 4180 CSV with a header row, every field; cells that a spreadsheet would run as a
    /// formula start with `'`.
    Csv,
}

/// Prints rows as they come.
pub struct Printer<W: Write> {
    out: W,
    format: Format,
    cells: cells::Cells,
    table: Option<table::Table>,
}

impl<W: Write> Printer<W> {
    /// A printer of `format` to `out`; `spec` picks the table's columns.
    pub fn new(out: W, format: Format, spec: TableSpec) -> Self {
        Printer {
            out,
            format,
            cells: cells::Cells::new(),
            table: (format == Format::Table).then(|| table::Table::new(spec)),
        }
    }

    /// Prints `rows`.
    pub fn rows<T: Serialize>(&mut self, rows: &[T]) -> anyhow::Result<()> {
        for row in rows {
            self.row(row)?;
        }
        Ok(())
    }

    /// Prints one row.
    pub fn row<T: Serialize>(&mut self, row: &T) -> anyhow::Result<()> {
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut self.out, row)?;
                self.out.write_all(b"\n")?;
            }
            Format::Csv => {
                let first = self.cells.header().is_none();
                let cells = self.cells.row(row)?;
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .buffer_capacity(1024)
                    .from_writer(&mut self.out);
                if first && let Some(header) = self.cells.header() {
                    w.write_record(header)?;
                }
                w.write_record(cells.iter().map(|c| csv_safe(c).into_owned()))?;
                w.flush()?;
            }
            Format::Table => {
                let cells = self.cells.row(row)?;
                let header = self.cells.header().unwrap_or_default();
                if let Some(t) = &mut self.table {
                    t.row(&mut self.out, header, cells)?;
                }
            }
        }
        Ok(())
    }

    /// Ends the output (a table's last rows and summary) and flushes it.
    pub fn finish(mut self) -> anyhow::Result<()> {
        if let Some(t) = self.table.take() {
            t.finish(&mut self.out)?;
        }
        self.out.flush()?;
        Ok(())
    }
}

/// Writes `rows` to `out` in `format`, every column in a table. An empty result prints
/// nothing (JSON, CSV) or a `(no rows)` line (table).
pub fn write_rows<T: Serialize>(
    out: &mut impl Write,
    rows: &[T],
    format: Format,
) -> anyhow::Result<()> {
    let mut p = Printer::new(out, format, TableSpec::default());
    p.rows(rows)?;
    p.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        subscriber: String,
        status: &'static str,
        body: Option<String>,
    }

    fn rows() -> Vec<Row> {
        vec![
            Row {
                subscriber: "+15551230001".into(),
                status: "opted_out",
                body: Some("Stop\nnow, \"please\"".into()),
            },
            Row {
                subscriber: "whatsapp:+447700900123".into(),
                status: "opted_in",
                body: None,
            },
        ]
    }

    fn render(format: Format) -> String {
        let mut out = Vec::new();
        write_rows(&mut out, &rows(), format).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_is_one_object_per_line() {
        let text = render(Format::Json);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["status"], "opted_out");
        assert_eq!(lines[0]["body"], "Stop\nnow, \"please\"");
        assert!(lines[1]["body"].is_null());
    }

    #[test]
    fn csv_quotes_and_round_trips() {
        let text = render(Format::Csv);
        let mut r = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(r.headers().unwrap(), vec!["subscriber", "status", "body"]);
        let recs: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(&recs[0][2], "Stop\nnow, \"please\"");
        assert_eq!(&recs[1][2], "");
    }

    #[test]
    fn table_aligns_columns_and_counts_rows() {
        let text = render(Format::Table);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("subscriber"));
        let status_col = lines[0].find("status").unwrap();
        assert_eq!(lines[2].find("opted_out"), Some(status_col));
        assert_eq!(lines[3].find("opted_in"), Some(status_col));
        assert!(
            lines[2].contains("Stop now"),
            "newline kept in table: {text}"
        );
        assert_eq!(lines[4], "(2 rows)");
        let mut out = Vec::new();
        write_rows::<Row>(&mut out, &[], Format::Table).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "(no rows)\n");
    }
}
