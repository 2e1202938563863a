//! Printing query results as an aligned table, JSON lines or CSV.
//!
//! Every row type is a `Serialize` struct; CSV and JSON come from serde directly, and the
//! table is drawn from the CSV form so the three formats always have the same columns in the
//! same order.

use std::io::Write;

use serde::Serialize;

/// How query commands print their rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON object per line.
    Json,
    /// RFC 4180 CSV with a header row.
    Csv,
}

/// Writes `rows` to `out` in `format`. An empty result prints a header (CSV), nothing (JSON) or
/// a `(no rows)` line (table).
pub fn write_rows<T: Serialize>(
    out: &mut impl Write,
    rows: &[T],
    format: Format,
) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            for row in rows {
                serde_json::to_writer(&mut *out, row)?;
                out.write_all(b"\n")?;
            }
        }
        Format::Csv => {
            let csv = to_csv(rows)?;
            out.write_all(&csv)?;
        }
        Format::Table => {
            let csv = to_csv(rows)?;
            write_table(out, &csv)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn to_csv<T: Serialize>(rows: &[T]) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.serialize(row)?;
    }
    Ok(w.into_inner()?)
}

fn write_table(out: &mut impl Write, csv: &[u8]) -> anyhow::Result<()> {
    let mut reader = csv::ReaderBuilder::new().from_reader(csv);
    let header: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
    let records: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.map(|r| r.iter().map(clean).collect()))
        .collect::<Result<_, _>>()?;
    if records.is_empty() {
        writeln!(out, "(no rows)")?;
        return Ok(());
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &records {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    writeln!(out, "{}", line(&header))?;
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    writeln!(out, "{}", line(&rule))?;
    for r in &records {
        writeln!(out, "{}", line(r))?;
    }
    writeln!(
        out,
        "({} row{})",
        records.len(),
        if records.len() == 1 { "" } else { "s" }
    )?;
    Ok(())
}

/// Keeps a table on one line per row: control characters (a body with a newline) become spaces.
fn clean(cell: &str) -> String {
    cell.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
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
