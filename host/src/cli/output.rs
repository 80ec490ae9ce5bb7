//! What commands print: with `--json` the API's own response, pretty-printed, so a script
//! reads the same shapes as `docs/API.md`; otherwise tables (comfy-table: sized to the
//! terminal, plain ASCII borders so a log or a pipe reads them too).

use super::CliError;
use comfy_table::{presets::ASCII_MARKDOWN, ContentArrangement, Table};
use serde::Serialize;
use waymark_client::api::Millis;

/// Prints `value` as pretty JSON on stdout.
pub fn json(value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Io(format!("cannot encode the answer as JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// A table with `header`, in the house style.
pub fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(ASCII_MARKDOWN)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    table
}

/// A time (ms since the epoch) as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn time(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A duration in ms, the way a person reads it: `3d 4h`, `5m 2s`, `750ms`.
pub fn duration(ms: Millis) -> String {
    let (d, h, m, s) = (
        ms / 86_400_000,
        ms / 3_600_000 % 24,
        ms / 60_000 % 60,
        ms / 1_000 % 60,
    );
    match (d, h, m, s) {
        (0, 0, 0, 0) => format!("{ms}ms"),
        (0, 0, 0, s) => format!("{s}s"),
        (0, 0, m, s) => format!("{m}m {s}s"),
        (0, h, m, _) => format!("{h}h {m}m"),
        (d, h, _, _) => format!("{d}d {h}h"),
    }
}

/// A ratio as a percentage, `-` when there is none.
pub fn percent(ratio: Option<f64>) -> String {
    ratio
        .map(|r| format!("{:.1}%", r * 100.0))
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ratios_read_as_a_person_would_say_them() {
        assert_eq!(duration(750), "750ms");
        assert_eq!(duration(62_000), "1m 2s");
        assert_eq!(duration(3 * 86_400_000 + 4 * 3_600_000), "3d 4h");
        assert_eq!(percent(Some(0.5)), "50.0%");
        assert_eq!(percent(None), "-");
        assert_eq!(time(0), "1970-01-01 00:00:00");
    }
}
