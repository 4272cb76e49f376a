//! Presentation: tables for people, JSON for machines, and how bytes and times are shown.

use holdfast_client::Record;
use serde_json::{json, Value};

/// A plain table: a header row, then rows, columns padded to the widest cell.
#[derive(Debug)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Self { headers: headers.to_vec(), rows: Vec::new() }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
            let padded: Vec<String> = cells.zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
            format!("{}\n", padded.join("  ").trim_end())
        };
        let mut out = line(&mut self.headers.iter().copied());
        for row in &self.rows {
            out.push_str(&line(&mut row.iter().map(String::as_str)));
        }
        out
    }
}

/// Bytes as text when they are UTF-8, else as `0x`-prefixed hex. In a table
/// control characters are escaped so one value stays on one line.
pub fn bytes_for_table(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
        }
        Err(_) => format!("0x{}", hex::encode(bytes)),
    }
}

/// Bytes for JSON: the text with its encoding named, so scripts can decode
/// binary values exactly.
pub fn bytes_for_json(bytes: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), "utf8"),
        Err(_) => (hex::encode(bytes), "hex"),
    }
}

pub fn record_json(record_id: &[u8], record: &Record) -> Value {
    let (id, id_encoding) = bytes_for_json(record_id);
    let (value, value_encoding) = match &record.value {
        Some(bytes) => {
            let (text, encoding) = bytes_for_json(bytes);
            (Value::String(text), Value::from(encoding))
        }
        None => (Value::Null, Value::Null),
    };
    json!({
        "record_id": id,
        "record_id_encoding": id_encoding,
        "revision": record.revision,
        "create_revision": record.create_revision,
        "commit_time_ms": record.commit_time_ms,
        "actor": record.actor,
        "reason": record.reason,
        "deleted": record.deleted,
        "value": value,
        "value_encoding": value_encoding,
    })
}

/// Columns shown for a record revision, matching [`record_row`].
pub const RECORD_HEADERS: [&str; 6] = ["REVISION", "COMMITTED", "ACTOR", "REASON", "DELETED", "VALUE"];

pub fn record_row(record: &Record) -> Vec<String> {
    vec![
        record.revision.to_string(),
        format_time_ms(record.commit_time_ms),
        record.actor.clone(),
        record.reason.clone(),
        yes_no(record.deleted).to_owned(),
        record.value.as_deref().map(bytes_for_table).unwrap_or_default(),
    ]
}

pub fn yes_no(flag: bool) -> &'static str {
    if flag {
        "yes"
    } else {
        "no"
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC; `-` for zero (unknown).
pub fn format_time_ms(ms: u64) -> String {
    if ms == 0 {
        return "-".to_owned();
    }
    let seconds = ms / 1000;
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let in_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`, for non-negative days), to avoid a date crate.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_prints_as_text_and_binary_as_hex() {
        assert_eq!(bytes_for_table("Київ".as_bytes()), "Київ");
        assert_eq!(bytes_for_table(b"a\nb"), "a\\nb");
        assert_eq!(bytes_for_table(&[0xff, 0x00]), "0xff00");
        assert_eq!(bytes_for_json(&[0xff, 0x00]), ("ff00".to_owned(), "hex"));
        assert_eq!(bytes_for_json(b"ok"), ("ok".to_owned(), "utf8"));
    }

    #[test]
    fn times_format_as_rfc3339_utc() {
        assert_eq!(format_time_ms(0), "-");
        assert_eq!(format_time_ms(1), "1970-01-01T00:00:00.001Z");
        assert_eq!(format_time_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_time_ms(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
    }

    #[test]
    fn table_pads_columns() {
        let mut table = Table::new(&["ID", "ADDR"]);
        table.push(vec!["1".to_owned(), "127.0.0.1:7001".to_owned()]);
        table.push(vec!["10".to_owned(), "x".to_owned()]);
        assert_eq!(table.render(), "ID  ADDR\n1   127.0.0.1:7001\n10  x\n");
    }
}
