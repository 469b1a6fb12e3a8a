//! What the PBX sends about calls, checked before any plugin sees it: call
//! events (JSON), numbers and extensions. Every refusal names the field and
//! the fix. This is PBX knowledge (what a call event and a dialable number
//! look like); what a number *means* (E.164, regions) is the plugin's.

use serde_json::{Map, Value};

use crate::runtime::wit::{CallEvent, Direction, Phase};

/// Longest call id.
const MAX_CALL_ID: usize = 128;
/// Longest number as typed (digits plus formatting).
const MAX_NUMBER_CHARS: usize = 32;
/// E.164 allows at most 15 digits.
const MAX_DIGITS: usize = 15;
/// Longest extension.
const MAX_EXTENSION: usize = 16;
/// Longest disposition.
const MAX_DISPOSITION: usize = 64;
/// Longest recording URL.
const MAX_URL: usize = 2048;

/// A refused input: which field, and a message naming the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field, as named in the request.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

/// A phase's wire name.
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Ringing => "ringing",
        Phase::Answered => "answered",
        Phase::Ended => "ended",
        Phase::RecordingReady => "recording-ready",
    }
}

/// A direction's wire name.
pub fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
        Direction::Internal => "internal",
    }
}

/// The PBX's UTC offset in minutes at `at_ms` in `time_zone` (what a call
/// event carries, so the CRM dates the call on the PBX's day).
pub fn utc_offset_minutes(time_zone: &jiff::tz::TimeZone, at_ms: u64) -> i32 {
    let at = i64::try_from(at_ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    time_zone.to_offset(at).seconds() / 60
}

/// A call event as kept in the store (the retry queue, dead letters): one
/// kept before pbx:crm 0.5.0 has no UTC offset and reads as UTC, as it was
/// dated then, instead of being unreadable.
pub fn stored_event<'de, D>(deserializer: D) -> Result<CallEvent, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    let mut value = Value::deserialize(deserializer)?;
    if let Value::Object(map) = &mut value {
        map.entry("utc_offset_minutes").or_insert(Value::from(0));
    }
    serde_json::from_value(value).map_err(serde::de::Error::custom)
}

/// Parse and check a `POST /api/calls/events` body; the event carries the
/// PBX's UTC offset in `time_zone` at the call's start.
pub fn parse_event(
    body: &[u8],
    default_region: &str,
    time_zone: &jiff::tz::TimeZone,
) -> Result<CallEvent, Invalid> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        invalid(
            "body",
            format!("the body is not JSON ({e}); send a JSON object such as {EXAMPLE}"),
        )
    })?;
    let Value::Object(map) = value else {
        return Err(invalid(
            "body",
            format!("the body must be a JSON object such as {EXAMPLE}"),
        ));
    };
    event_from_map(&map, default_region, time_zone)
}

const EXAMPLE: &str = r#"{"call_id": "c-1", "phase": "ringing", "direction": "inbound", "external_number": "+14155550100", "extension": "1001", "started_at_ms": 1767225600000}"#;

fn event_from_map(
    map: &Map<String, Value>,
    default_region: &str,
    time_zone: &jiff::tz::TimeZone,
) -> Result<CallEvent, Invalid> {
    let call_id = check_call_id(&required_string(
        map,
        "call_id",
        "the PBX's unique id of the call",
    )?)?;
    let phase = match required_string(map, "phase", "ringing, answered, ended or recording-ready")?
        .as_str()
    {
        "ringing" => Phase::Ringing,
        "answered" => Phase::Answered,
        "ended" => Phase::Ended,
        "recording-ready" => Phase::RecordingReady,
        other => {
            return Err(invalid(
                "phase",
                format!(
                    "phase {other:?} is unknown; send ringing, answered, ended or recording-ready"
                ),
            ));
        }
    };
    let direction =
        match required_string(map, "direction", "inbound, outbound or internal")?.as_str() {
            "inbound" => Direction::Inbound,
            "outbound" => Direction::Outbound,
            "internal" => Direction::Internal,
            other => {
                return Err(invalid(
                    "direction",
                    format!("direction {other:?} is unknown; send inbound, outbound or internal"),
                ));
            }
        };
    let number = optional_string(map, "external_number")?.unwrap_or_default();
    // Between two extensions there is no outside number.
    let external_number = if direction == Direction::Internal && number.trim().is_empty() {
        String::new()
    } else {
        check_number("external_number", &number)?
    };
    let extension = check_extension(
        "extension",
        &required_string(map, "extension", "the extension on the PBX side, e.g. 1001")?,
    )?;
    let started_at_ms = required_ms(map, "started_at_ms")?;
    let answered_at_ms = optional_ms(map, "answered_at_ms")?;
    let ended_at_ms = optional_ms(map, "ended_at_ms")?;
    if phase == Phase::Answered && answered_at_ms.is_none() {
        return Err(invalid(
            "answered_at_ms",
            "an answered event needs answered_at_ms, when the call was answered (ms since the Unix epoch)",
        ));
    }
    if phase == Phase::Ended && ended_at_ms.is_none() {
        return Err(invalid(
            "ended_at_ms",
            "an ended event needs ended_at_ms, when the call ended (ms since the Unix epoch)",
        ));
    }
    if let Some(answered) = answered_at_ms
        && answered < started_at_ms
    {
        return Err(invalid(
            "answered_at_ms",
            "answered_at_ms is before started_at_ms; send the times the PBX recorded",
        ));
    }
    if let Some(ended) = ended_at_ms
        && (ended < started_at_ms || answered_at_ms.is_some_and(|a| ended < a))
    {
        return Err(invalid(
            "ended_at_ms",
            "ended_at_ms is before started_at_ms or answered_at_ms; send the times the PBX recorded",
        ));
    }
    let disposition = optional_string(map, "disposition")?
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty());
    if let Some(d) = &disposition
        && (d.chars().count() > MAX_DISPOSITION || d.chars().any(char::is_control))
    {
        return Err(invalid(
            "disposition",
            format!(
                "disposition must be a short word of at most {MAX_DISPOSITION} characters, e.g. answered, busy, no-answer"
            ),
        ));
    }
    let recording_url = optional_string(map, "recording_url")?
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty());
    if let Some(u) = &recording_url {
        check_url(u)?;
    }
    if phase == Phase::RecordingReady && recording_url.is_none() {
        return Err(invalid(
            "recording_url",
            "a recording-ready event needs recording_url, the recording's https link",
        ));
    }
    Ok(CallEvent {
        call_id,
        phase,
        direction,
        external_number,
        extension,
        started_at_ms,
        answered_at_ms,
        ended_at_ms,
        disposition,
        recording_url,
        default_region: default_region.to_string(),
        utc_offset_minutes: utc_offset_minutes(time_zone, started_at_ms),
    })
}

fn required_string(
    map: &Map<String, Value>,
    field: &'static str,
    what: &str,
) -> Result<String, Invalid> {
    match map.get(field) {
        None | Some(Value::Null) => Err(invalid(field, format!("{field} is missing; send {what}"))),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(invalid(
            field,
            format!("{field} must be a string ({what}), not {other}"),
        )),
    }
}

fn optional_string(
    map: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, Invalid> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(
            field,
            format!("{field} must be a string or null, not {other}"),
        )),
    }
}

fn ms(field: &'static str, value: &Value) -> Result<u64, Invalid> {
    match value.as_u64() {
        Some(ms) if ms > 0 => Ok(ms),
        _ => Err(invalid(
            field,
            format!(
                "{field} must be a positive whole number of milliseconds since the Unix epoch, e.g. 1767225600000, not {value}"
            ),
        )),
    }
}

fn required_ms(map: &Map<String, Value>, field: &'static str) -> Result<u64, Invalid> {
    match map.get(field) {
        None | Some(Value::Null) => Err(invalid(
            field,
            format!("{field} is missing; send when the call started, in ms since the Unix epoch"),
        )),
        Some(v) => ms(field, v),
    }
}

fn optional_ms(map: &Map<String, Value>, field: &'static str) -> Result<Option<u64>, Invalid> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => ms(field, v).map(Some),
    }
}

/// A call id: 1 to 128 characters, no control characters.
pub fn check_call_id(id: &str) -> Result<String, Invalid> {
    let id = id.trim();
    if id.is_empty() {
        return Err(invalid(
            "call_id",
            "call_id is empty; send the PBX's unique id of the call",
        ));
    }
    if id.chars().count() > MAX_CALL_ID || id.chars().any(char::is_control) {
        return Err(invalid(
            "call_id",
            format!("call_id must be at most {MAX_CALL_ID} printable characters"),
        ));
    }
    Ok(id.to_string())
}

/// A dialable number as people and PBXs write it: digits, an optional
/// leading `+`, and the usual separators (space, `-`, `.`, `(`, `)`, `/`).
/// Returns it trimmed; what it means is for the CRM plugin to decide.
pub fn check_number(field: &'static str, number: &str) -> Result<String, Invalid> {
    let n = number.trim();
    let example = "e.g. +14155550100 or (415) 555-0100";
    if n.is_empty() {
        return Err(invalid(
            field,
            format!("{field} is empty; send the outside party's number, {example}"),
        ));
    }
    if n.chars().count() > MAX_NUMBER_CHARS {
        return Err(invalid(
            field,
            format!(
                "{field} is too long ({} characters); a phone number has at most {MAX_DIGITS} digits, {example}",
                n.chars().count()
            ),
        ));
    }
    if n.chars().any(char::is_alphabetic) {
        return Err(invalid(
            field,
            format!("{field} {n:?} contains letters; send the number in digits, {example}"),
        ));
    }
    if let Some(c) = n
        .chars()
        .find(|c| !(c.is_ascii_digit() || " +-.()/".contains(*c)))
    {
        return Err(invalid(
            field,
            format!(
                "{field} {n:?} contains {c:?}; use only digits, a leading + and spaces, dashes, dots or parentheses, {example}"
            ),
        ));
    }
    if n.rfind('+').is_some_and(|at| at > 0) {
        return Err(invalid(
            field,
            format!("{field} {n:?} has a + that is not at the start, {example}"),
        ));
    }
    let digits = n.chars().filter(char::is_ascii_digit).count();
    if digits == 0 {
        return Err(invalid(
            field,
            format!("{field} {n:?} has no digits, {example}"),
        ));
    }
    if digits > MAX_DIGITS {
        return Err(invalid(
            field,
            format!(
                "{field} {n:?} has {digits} digits; a phone number has at most {MAX_DIGITS}, {example}"
            ),
        ));
    }
    Ok(n.to_string())
}

/// An extension: 1 to 16 digits, letters, `*`, `#`, `-` or `_`.
pub fn check_extension(field: &'static str, extension: &str) -> Result<String, Invalid> {
    let x = extension.trim();
    if x.is_empty()
        || x.chars().count() > MAX_EXTENSION
        || !x
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "*#-_".contains(c))
    {
        return Err(invalid(
            field,
            format!(
                "{field} {x:?} is not an extension; send the PBX extension's number, e.g. 1001 (`pbx-host extension list` shows them)"
            ),
        ));
    }
    Ok(x.to_string())
}

fn check_url(u: &str) -> Result<(), Invalid> {
    let fix =
        "send an http(s) link to the recording, e.g. https://pbx.example.com/recordings/c-1.wav";
    if u.len() > MAX_URL {
        return Err(invalid(
            "recording_url",
            format!("recording_url is longer than {MAX_URL} bytes; {fix}"),
        ));
    }
    match url::Url::parse(u) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => Ok(()),
        _ => Err(invalid(
            "recording_url",
            format!("recording_url {u:?} is not an http(s) URL; {fix}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<CallEvent, Invalid> {
        parse_event(v.to_string().as_bytes(), "US", &jiff::tz::TimeZone::UTC)
    }

    fn base() -> Value {
        json!({"call_id": "c-1", "phase": "ended", "direction": "inbound",
               "external_number": "(415) 555-0100", "extension": "1001",
               "started_at_ms": 1000, "answered_at_ms": 2000, "ended_at_ms": 5000,
               "disposition": "answered", "recording_url": "https://pbx/r/c-1.wav"})
    }

    #[test]
    fn a_full_event_parses() {
        let e = parse(base()).expect("valid");
        assert_eq!(e.call_id, "c-1");
        assert_eq!(e.phase, Phase::Ended);
        assert_eq!(e.external_number, "(415) 555-0100");
        assert_eq!(e.default_region, "US");
        assert_eq!(e.answered_at_ms, Some(2000));
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            ("call_id", json!(null)),
            ("call_id", json!("")),
            ("phase", json!("hangup")),
            ("direction", json!("sideways")),
            ("external_number", json!("")),
            ("external_number", json!("call-me-maybe")),
            ("external_number", json!("1".repeat(40))),
            ("external_number", json!("+1 415 555 0100 0000 0")),
            ("external_number", json!("41+55550100")),
            ("external_number", json!("+1;415")),
            ("extension", json!("")),
            ("extension", json!("10 01")),
            ("started_at_ms", json!(-5)),
            ("started_at_ms", json!("now")),
            ("ended_at_ms", json!(null)),
            ("ended_at_ms", json!(500)),
            ("recording_url", json!("file:///etc/passwd")),
            ("disposition", json!(7)),
        ];
        for (field, value) in cases {
            let mut body = base();
            body[field] = value.clone();
            let err = parse(body).expect_err(&format!("{field} = {value} must be refused"));
            assert_eq!(err.field, field, "{value}: {}", err.message);
            assert!(err.message.contains(field), "{}", err.message);
        }
        assert_eq!(
            parse_event(b"not json", "US", &jiff::tz::TimeZone::UTC)
                .unwrap_err()
                .field,
            "body"
        );
        assert_eq!(parse(json!([1])).unwrap_err().field, "body");
    }

    #[test]
    fn internal_calls_need_no_outside_number() {
        let mut body = base();
        body["direction"] = json!("internal");
        body["external_number"] = json!("");
        assert!(parse(body).is_ok());
    }

    #[test]
    fn numbers_in_every_usual_format_pass() {
        for n in [
            "(415) 555-0100",
            "+1 415-555-0100",
            "415.555.0100",
            "4155550100",
            "+14155550100",
            "1 (415) 555 0100",
            "+44 20 7946 0000",
        ] {
            assert_eq!(check_number("number", n).as_deref(), Ok(n));
        }
    }
}
