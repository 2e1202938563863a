//! Rows as named text cells (the CSV form serde gives them), and the guard that keeps a CSV
//! cell from becoming a spreadsheet formula.

use serde::Serialize;

/// Turns rows into their CSV cells: a header (field names) from the first row, then one list
/// of cells per row, in field order. Borrowing csv's serializer keeps the three formats'
/// columns the same as the structs' fields.
pub(super) struct Cells {
    staging: Vec<u8>,
    header: Option<Vec<String>>,
}

impl Cells {
    pub fn new() -> Self {
        Cells {
            staging: Vec::new(),
            header: None,
        }
    }

    /// The field names, once a row was seen.
    pub fn header(&self) -> Option<&[String]> {
        self.header.as_deref()
    }

    /// The cells of `row`.
    pub fn row<T: Serialize>(&mut self, row: &T) -> anyhow::Result<Vec<String>> {
        self.staging.clear();
        {
            // The header row comes with the first row only.
            let mut w = csv::WriterBuilder::new()
                .has_headers(self.header.is_none())
                .buffer_capacity(1024)
                .from_writer(&mut self.staging);
            w.serialize(row)?;
            w.flush()?;
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(self.staging.as_slice());
        let mut records = reader.records();
        if self.header.is_none() {
            let header = records
                .next()
                .ok_or_else(|| anyhow::anyhow!("row without header"))??;
            self.header = Some(header.iter().map(str::to_string).collect());
        }
        let record = records
            .next()
            .ok_or_else(|| anyhow::anyhow!("row without cells"))??;
        Ok(record.iter().map(str::to_string).collect())
    }
}

/// A cell as a spreadsheet will read it without running it: one that starts with `=`, `@`, a
/// tab or a carriage return, or with `+` or `-` but is not a phone number, gets a leading `'`
/// (OWASP's advice for CSV injection). A phone number (`+15551230001`) stays exactly as
/// written, so it can be matched against other systems.
pub fn csv_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = match cell.as_bytes().first() {
        Some(b'=' | b'@' | b'\t' | b'\r') => true,
        Some(b'+' | b'-') => !is_phone_number(cell),
        _ => false,
    };
    if risky {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// `+` then 1 to 15 digits (E.164), nothing else: no formula can hide in it.
fn is_phone_number(cell: &str) -> bool {
    cell.strip_prefix('+')
        .is_some_and(|d| (1..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused_and_numbers_kept() {
        for (cell, shown) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tcmd", "'\tcmd"),
            ("\rcmd", "'\rcmd"),
            ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
            ("-2+3", "'-2+3"),
            ("+", "'+"),
            ("+15551230001", "+15551230001"),
            ("+447700900123", "+447700900123"),
            ("whatsapp:+447700900123", "whatsapp:+447700900123"),
            ("STOP", "STOP"),
            ("", ""),
        ] {
            assert_eq!(csv_safe(cell), shown, "{cell:?}");
        }
    }
}
