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

    /// A status row as the store returns it (every field, the Messaging Service twice).
    #[derive(Serialize)]
    struct Status {
        account_sid: String,
        scope: String,
        messaging_service_sid: Option<String>,
        sender: String,
        subscriber: String,
        status: &'static str,
        changed_at: String,
        event_id: String,
    }

    fn status(n: usize, scope: &str, status: &'static str) -> Status {
        Status {
            account_sid: format!("AC{:032}", n),
            scope: scope.into(),
            messaging_service_sid: Some(scope.into()),
            sender: "+15559870002".into(),
            subscriber: format!("+1555{n:07}"),
            status,
            changed_at: "2026-03-01T12:00:04.512000Z".into(),
            event_id: format!("{:08}-8a1c-4b5e-9a57-3f1f0e2c6d11", n),
        }
    }

    const STATUS_SPEC: TableSpec = TableSpec {
        columns: &["subscriber", "status", "scope", "changed_at", "account_sid"],
    };

    #[test]
    fn status_table_fits_120_columns_and_ends_with_a_summary() {
        let mg = "MG0123456789abcdef0123456789abcdef";
        let rows: Vec<Status> = (0..1_500)
            .map(|n| match n % 3 {
                0 => status(n, mg, "opted_out"),
                1 => status(n, "+15559870002", "opted_out"),
                _ => status(n, mg, "opted_in"),
            })
            .collect();
        let mut out = Vec::new();
        let mut p = Printer::new(&mut out, Format::Table, STATUS_SPEC);
        p.rows(&rows).unwrap();
        p.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1_500 + 3, "header, rule, rows, summary");
        for line in &lines {
            assert!(
                line.chars().count() <= 120,
                "{} wide: {line}",
                line.chars().count()
            );
        }
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            ["subscriber", "status", "scope", "changed_at", "account_sid"]
        );
        assert!(!lines[0].contains("messaging_service_sid"), "{}", lines[0]);
        assert!(lines[2].contains("2026-03-01 12:00:04"), "{}", lines[2]);
        assert_eq!(
            *lines.last().unwrap(),
            format!(
                "(1500 rows) opted out/in: 1000/500; by scope: +15559870002 500/0, {mg} 500/500"
            )
        );
    }

    #[test]
    fn csv_keeps_numbers_and_defuses_formulas_row_by_row() {
        let mut row = status(1, "MG1", "opted_out");
        row.event_id = "=cmd|' /C calc'!A0".into();
        row.sender = "-1+1".into();
        let mut out = Vec::new();
        let mut p = Printer::new(&mut out, Format::Csv, TableSpec::default());
        p.row(&row).unwrap();
        p.row(&status(2, "MG1", "opted_in")).unwrap();
        p.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut r = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(r.headers().unwrap().len(), 8, "every field");
        let recs: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(&recs[0][4], "+15550000001");
        assert_eq!(&recs[0][3], "'-1+1");
        assert_eq!(&recs[0][7], "'=cmd|' /C calc'!A0");
        assert_eq!(&recs[1][7], "00000002-8a1c-4b5e-9a57-3f1f0e2c6d11");
    }
}
