//! Durations in the spec (`10m`, `30s`, `1h30m`, `500ms`), parsed with jiff's friendly format
//! (ISO 8601 `PT10M` works too). Negative and zero-length values are refused where they would make
//! no sense (a zero poll interval would spin), with a message that names the field.

use std::time::Duration;

/// A spec field that does not hold a usable duration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message} (got {value:?}; expected a duration like \"30s\", \"10m\", \"1h30m\")")]
pub struct DurationError {
    /// The spec path, e.g. `spec.maintenance.cooldown`.
    pub field: &'static str,
    pub value: String,
    pub message: String,
}

/// Parses a non-negative duration; `field` names the spec path in the error.
pub fn parse_duration(field: &'static str, value: &str) -> Result<Duration, DurationError> {
    let error = |message: String| DurationError { field, value: value.to_string(), message };
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(error("empty".into()));
    }
    let signed: jiff::SignedDuration =
        trimmed.parse().map_err(|e: jiff::Error| error(e.to_string()))?;
    if signed.is_negative() {
        return Err(error("negative".into()));
    }
    Duration::try_from(signed).map_err(|e| error(e.to_string()))
}

/// Like [`parse_duration`], but zero is refused too.
pub fn parse_positive_duration(
    field: &'static str,
    value: &str,
) -> Result<Duration, DurationError> {
    let duration = parse_duration(field, value)?;
    if duration.is_zero() {
        return Err(DurationError {
            field,
            value: value.to_string(),
            message: "must be longer than zero".into(),
        });
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_the_crd_documents() {
        assert_eq!(parse_duration("f", "30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("f", "10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("f", "5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("f", "1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("f", "1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("f", "500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("f", " 2s "), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("f", "PT10M"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("f", "0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_garbage_negative_and_empty_with_the_field_named() {
        for bad in ["", "  ", "ten minutes", "10", "10x", "-5m"] {
            let error = parse_duration("spec.maintenance.cooldown", bad).unwrap_err();
            assert_eq!(error.field, "spec.maintenance.cooldown");
            assert_eq!(error.value, bad);
            assert!(error.to_string().starts_with("spec.maintenance.cooldown: "), "{error}");
        }
        assert_eq!(parse_duration("f", "-5m").unwrap_err().message, "negative");
    }

    #[test]
    fn positive_duration_refuses_zero() {
        let error = parse_positive_duration("spec.maintenance.pollInterval", "0s").unwrap_err();
        assert_eq!(error.message, "must be longer than zero");
        assert_eq!(parse_positive_duration("f", "1s"), Ok(Duration::from_secs(1)));
    }
}
