//! The helper functions the original mstream registers for scripts, and the sandbox
//! overrides.
//!
//! Behaviour follows the original (makarski/mstream) so scripts and their outputs match:
//! `hash_sha256` hashes the value's Rhai string form, `mask_phone` keeps the last four
//! characters, `mask_year_only` writes RFC 3339 with a `+00:00` offset.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use rhai::{Dynamic, Engine, EvalAltResult, Map, Position};
use sha2::{Digest, Sha256};

/// Register the helpers on `engine`.
pub fn register(engine: &mut Engine) {
    engine.register_fn("timestamp_ms", timestamp_ms);
    engine.register_fn("hash_sha256", hash_sha256);
    engine.register_fn("mask_email", mask_email);
    engine.register_fn("mask_phone", mask_phone);
    engine.register_fn("mask_year_only", mask_year_only);
    // The standard `sleep` would block past the time limit (no operations run meanwhile).
    engine.register_fn("sleep", |_: rhai::INT| -> Result<(), Box<EvalAltResult>> {
        Err(no_sleep())
    });
    engine.register_fn(
        "sleep",
        |_: rhai::FLOAT| -> Result<(), Box<EvalAltResult>> { Err(no_sleep()) },
    );
}

fn no_sleep() -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(
        "sleep() is not available in sandboxed scripts".into(),
        Position::NONE,
    )
    .into()
}

/// Current UNIX time in milliseconds.
fn timestamp_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Hex SHA-256 of the value's string form (strings as they are, numbers as printed).
fn hash_sha256(value: Dynamic) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `alice@example.com` → `a***@example.com`; a one-byte local part → `*@domain`.
fn mask_email(email: &str) -> String {
    let Some((local, domain)) = email.split_once('@') else {
        return email.to_string();
    };
    match local.chars().next() {
        Some(first) if local.len() > 1 => format!("{first}***@{domain}"),
        _ => format!("*@{domain}"),
    }
}

/// Every character but the last four becomes `*`; four or fewer are kept as they are.
fn mask_phone(phone: &str) -> String {
    let count = phone.chars().count();
    if count <= 4 {
        return phone.to_string();
    }
    let keep: String = phone.chars().skip(count - 4).collect();
    format!("{}{keep}", "*".repeat(count - 4))
}

/// Truncate a date to 1 January of its year: RFC 3339 strings (UTC year, written with
/// `+00:00`), `YYYY-MM-DD` strings, and Extended JSON `{"$date": {"$numberLong": ms}}`.
/// Anything else is returned unchanged.
fn mask_year_only(value: Dynamic) -> Dynamic {
    if let Some(s) = value.read_lock::<rhai::ImmutableString>() {
        if let Ok(dt) = DateTime::parse_from_rfc3339(s.as_str()) {
            return year_start(dt.with_timezone(&Utc)).to_rfc3339().into();
        }
        if let Ok(date) = NaiveDate::parse_from_str(s.as_str(), "%Y-%m-%d") {
            return format!("{}-01-01", date.format("%Y")).into();
        }
        return value.clone();
    }
    if let Some(map) = value.read_lock::<Map>() {
        if let Some(millis) = ejson_millis(&map) {
            if let Some(dt) = Utc.timestamp_millis_opt(millis).single() {
                let mut inner = Map::new();
                inner.insert(
                    "$numberLong".into(),
                    year_start(dt).timestamp_millis().to_string().into(),
                );
                let mut outer = Map::new();
                outer.insert("$date".into(), inner.into());
                return outer.into();
            }
        }
    }
    value
}

fn ejson_millis(map: &Map) -> Option<i64> {
    let inner = map.get("$date")?.read_lock::<Map>()?;
    let millis = inner
        .get("$numberLong")?
        .read_lock::<rhai::ImmutableString>()?;
    millis.parse().ok()
}

fn year_start(dt: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(dt.year(), 1, 1, 0, 0, 0)
        .earliest()
        .unwrap_or(dt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_like_the_original() {
        assert_eq!(mask_email("alice@example.com"), "a***@example.com");
        assert_eq!(mask_email("a@x.org"), "*@x.org");
        assert_eq!(mask_email("nope"), "nope");
        assert_eq!(mask_phone("555-123-4567"), "********4567");
        assert_eq!(mask_phone("1234"), "1234");
        let y = mask_year_only("1990-05-17T10:00:00Z".into());
        assert_eq!(y.to_string(), "1990-01-01T00:00:00+00:00");
        assert_eq!(
            mask_year_only("1990-05-17".into()).to_string(),
            "1990-01-01"
        );
        assert_eq!(
            hash_sha256("abc".into()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
