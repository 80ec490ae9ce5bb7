//! The events of an input file, in order, each with the position just after it (what the
//! checkpoint records once its batch is acknowledged).
//!
//! - NDJSON: one event object per line (`{"customer","name","id"?,"properties"?,
//!   "timestamp"?}`, as `POST /v1/events` takes it); blank lines are skipped.
//! - CSV with a header row: columns `customer` and `name` (required), `id`, `timestamp` (ms),
//!   `properties` (a JSON object); any other column becomes a string property of that name
//!   (empty cells are left out).
//!
//! An event without an id gets `{prefix}-{line}`: the input's identity and the line it starts
//! on, so every run over the same input derives the same ids and the server's dedup answers a
//! resent event `duplicate`.

use super::super::CliError;
use super::checkpoint::Position;
use serde_json::Value;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use waymark_client::api::events::EventInput;
use waymark_client::api::Object;

/// The input's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON event per line.
    Ndjson,
    /// Comma-separated, with a header row.
    Csv,
}

impl Format {
    /// From the file's extension: `.ndjson`, `.jsonl`, `.json` or `.csv`.
    pub fn guess(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "ndjson" | "jsonl" | "json" => Some(Format::Ndjson),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// One event read, and where the input continues after it.
#[derive(Debug)]
pub struct Read {
    pub event: EventInput,
    /// The line the event starts on (1-based).
    pub line: u64,
    pub after: Position,
}

/// An open input, positioned at its next event.
pub enum Source {
    Ndjson(Ndjson),
    Csv(Csv),
}

impl Source {
    /// Opens `path` at `from` (the start, or a checkpoint's position).
    pub fn open(
        path: &Path,
        format: Format,
        from: Position,
        id_prefix: String,
    ) -> Result<Source, CliError> {
        let mut file = File::open(path).map_err(|e| CliError::io("cannot open", path, e))?;
        let context = Context {
            path: path.to_path_buf(),
            id_prefix,
        };
        Ok(match format {
            Format::Ndjson => {
                file.seek(SeekFrom::Start(from.byte))
                    .map_err(|e| CliError::io("cannot seek in", path, e))?;
                Source::Ndjson(Ndjson {
                    reader: BufReader::with_capacity(1 << 16, file),
                    position: from,
                    context,
                    buf: Vec::new(),
                })
            }
            Format::Csv => Source::Csv(Csv::open(file, from, context)?),
        })
    }

    /// The next event, or `None` at the end.
    pub fn next_event(&mut self) -> Result<Option<Read>, CliError> {
        match self {
            Source::Ndjson(s) => s.next_event(),
            Source::Csv(s) => s.next_event(),
        }
    }
}

struct Context {
    path: PathBuf,
    id_prefix: String,
}

impl Context {
    fn error(&self, line: u64, reason: impl std::fmt::Display) -> CliError {
        CliError::Input(format!("{}:{line}: {reason}", self.path.display()))
    }

    fn derived_id(&self, line: u64) -> String {
        format!("{}-{line}", self.id_prefix)
    }
}

/// NDJSON; `position.line` counts the lines before `position.byte`.
pub struct Ndjson {
    reader: BufReader<File>,
    position: Position,
    context: Context,
    buf: Vec<u8>,
}

impl Ndjson {
    fn next_event(&mut self) -> Result<Option<Read>, CliError> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| CliError::io("cannot read", &self.context.path, e))?;
            if n == 0 {
                return Ok(None);
            }
            self.position.byte += n as u64;
            self.position.line += 1;
            let line = self.position.line;
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let mut value: Value = serde_json::from_slice(&self.buf)
                .map_err(|e| self.context.error(line, format!("not JSON: {e}")))?;
            let object = value
                .as_object_mut()
                .ok_or_else(|| self.context.error(line, "not a JSON object"))?;
            if !object.contains_key("id") {
                object.insert("id".into(), Value::String(self.context.derived_id(line)));
            }
            let event = serde_json::from_value::<EventInput>(value)
                .map_err(|e| self.context.error(line, e))?;
            return Ok(Some(Read {
                event,
                line,
                after: self.position,
            }));
        }
    }
}

/// CSV; positions are the csv crate's own (byte, line of the next record, record index).
pub struct Csv {
    reader: csv::Reader<File>,
    columns: Vec<Column>,
    record: csv::StringRecord,
    context: Context,
}

/// What a CSV column holds.
enum Column {
    Id,
    Customer,
    Name,
    Timestamp,
    Properties,
    Property(String),
}

impl Csv {
    fn open(file: File, from: Position, context: Context) -> Result<Csv, CliError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(file);
        let headers = reader
            .headers()
            .map_err(|e| context.error(1, format!("no CSV header: {e}")))?
            .clone();
        let columns: Vec<Column> = headers
            .iter()
            .map(|h| match h.trim() {
                "id" => Column::Id,
                "customer" => Column::Customer,
                "name" => Column::Name,
                "timestamp" => Column::Timestamp,
                "properties" => Column::Properties,
                other => Column::Property(other.to_string()),
            })
            .collect();
        for (required, present) in [
            (
                "customer",
                columns.iter().any(|c| matches!(c, Column::Customer)),
            ),
            ("name", columns.iter().any(|c| matches!(c, Column::Name))),
        ] {
            if !present {
                return Err(context.error(1, format!("the header has no {required:?} column")));
            }
        }
        if from.byte > 0 {
            let mut position = csv::Position::new();
            position
                .set_byte(from.byte)
                .set_line(from.line)
                .set_record(from.record);
            reader
                .seek(position)
                .map_err(|e| context.error(from.line, format!("cannot seek: {e}")))?;
        }
        Ok(Csv {
            reader,
            columns,
            record: csv::StringRecord::new(),
            context,
        })
    }

    fn next_event(&mut self) -> Result<Option<Read>, CliError> {
        let more = self.reader.read_record(&mut self.record).map_err(|e| {
            let line = e.position().map_or(0, csv::Position::line);
            self.context.error(line, e)
        })?;
        if !more {
            return Ok(None);
        }
        let line = self.record.position().map_or(0, csv::Position::line);
        let (mut id, mut customer, mut name, mut timestamp) = (None, None, None, None);
        let mut properties = Object::new();
        for (column, cell) in self.columns.iter().zip(self.record.iter()) {
            match column {
                Column::Id if !cell.is_empty() => id = Some(cell.to_string()),
                Column::Customer => customer = Some(cell.to_string()),
                Column::Name => name = Some(cell.to_string()),
                Column::Timestamp if !cell.is_empty() => {
                    let ms = cell.trim().parse::<i64>().map_err(|_| {
                        self.context
                            .error(line, format!("timestamp {cell:?} is not milliseconds"))
                    })?;
                    timestamp = Some(ms);
                }
                Column::Properties if !cell.is_empty() => {
                    match serde_json::from_str::<Value>(cell) {
                        Ok(Value::Object(object)) => properties.extend(object),
                        _ => {
                            return Err(self
                                .context
                                .error(line, "properties must be a JSON object"))
                        }
                    }
                }
                Column::Property(key) if !cell.is_empty() => {
                    properties.insert(key.clone(), Value::String(cell.to_string()));
                }
                _ => {}
            }
        }
        let (Some(customer), Some(name)) = (customer, name) else {
            return Err(self.context.error(line, "customer and name are required"));
        };
        let position = self.reader.position();
        Ok(Some(Read {
            event: EventInput {
                id: id.unwrap_or_else(|| self.context.derived_id(line)),
                customer,
                name,
                properties: Some(properties),
                timestamp,
            },
            line,
            after: Position {
                byte: position.byte(),
                line: position.line(),
                record: position.record(),
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(path: &Path, format: Format, from: Position) -> Vec<Read> {
        let mut source = Source::open(path, format, from, "imp-x".into()).unwrap();
        std::iter::from_fn(|| source.next_event().unwrap()).collect()
    }

    #[test]
    fn ndjson_derives_ids_from_the_line_and_resumes_at_a_position_with_the_same_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.ndjson");
        std::fs::write(
            &path,
            "{\"customer\":\"ada\",\"name\":\"a\"}\n\n{\"id\":\"own\",\"customer\":\"bob\",\"name\":\"b\"}\n{\"customer\":\"cyd\",\"name\":\"c\"}",
        )
        .unwrap();
        let whole = all(&path, Format::Ndjson, Position::default());
        let ids: Vec<_> = whole.iter().map(|r| r.event.id.as_str()).collect();
        assert_eq!(ids, ["imp-x-1", "own", "imp-x-4"]);
        let resumed = all(&path, Format::Ndjson, whole[0].after);
        assert_eq!(resumed.len(), 2);
        assert_eq!(resumed[1].event.id, "imp-x-4");
        assert_eq!(
            resumed[1].after.byte,
            std::fs::metadata(&path).unwrap().len()
        );
    }

    #[test]
    fn csv_columns_map_to_the_event_and_resume_at_a_position_with_the_same_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.csv");
        std::fs::write(
            &path,
            "customer,name,plan,timestamp\nada,signed_up,pro,5\n\"b,ob\",signed_up,,\ncyd,x,\"multi\nline\",\n",
        )
        .unwrap();
        let whole = all(&path, Format::Csv, Position::default());
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].event.id, "imp-x-2");
        assert_eq!(whole[0].event.timestamp, Some(5));
        assert_eq!(whole[0].event.properties.as_ref().unwrap()["plan"], "pro");
        assert_eq!(whole[1].event.customer, "b,ob");
        assert!(whole[1].event.properties.as_ref().unwrap().is_empty());
        let resumed = all(&path, Format::Csv, whole[0].after);
        let ids: Vec<_> = resumed.iter().map(|r| r.event.id.clone()).collect();
        let expected: Vec<_> = whole[1..].iter().map(|r| r.event.id.clone()).collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.ndjson");
        std::fs::write(&path, "{\"customer\":\"a\",\"name\":\"n\"}\n[1]\n").unwrap();
        let mut source =
            Source::open(&path, Format::Ndjson, Position::default(), "p".into()).unwrap();
        assert!(source.next_event().unwrap().is_some());
        let err = source.next_event().unwrap_err();
        assert_eq!(err.code(), "invalid_input");
        assert!(
            err.message().ends_with("e.ndjson:2: not a JSON object"),
            "{err}"
        );
        let csv = dir.path().join("e.csv");
        std::fs::write(&csv, "customer,event\na,b\n").unwrap();
        let err = Source::open(&csv, Format::Csv, Position::default(), "p".into())
            .err()
            .unwrap();
        assert!(err.message().contains("\"name\""), "{err}");
    }
}
