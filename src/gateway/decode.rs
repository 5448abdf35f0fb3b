//! Decoding a `POST /v1/chat/completions` body without letting it amplify (issue 11 #4).
//!
//! JSON is compact and its decoded form is not: `[0,0,…]` costs 2 bytes per element on the
//! wire and 32–96 bytes decoded, and `{"a":0}` costs a 640-byte B-tree node. So before a body
//! is decoded, [`estimate`] walks it once without allocating (a serde visitor that only counts)
//! and prices its decoded form (`messages[]` as typed messages, everything else as
//! `Value`s); a body whose estimate exceeds [`decode_limit`] (4 ×
//! `max_body_bytes`, 16 MiB by default) is refused with 413 before anything is built. Bodies
//! are then decoded straight into the typed [`ChatRequest`]; only when that fails is the body
//! decoded again as a `serde_json::Value`, to name the wrong field ([`crate::api::diagnose`]).
//!
//! Bodies being decoded at once share one process-wide budget of estimated bytes
//! ([`decode_budget`]: 8 × `max_body_bytes`, 32 MiB by default). A request that finds the budget
//! exhausted waits up to [`BUDGET_WAIT`] for others to finish decoding, then gets 503 with
//! `Retry-After`. One request alone always fits (its estimate is at most half the budget).
//! The budget covers the decode itself, which takes milliseconds; the decoded request then
//! lives as long as its request, bounded by the per-request limit.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::api::openai::{ChatRequest, Message};
use crate::error::ApiError;

/// How long a request waits for the decode budget before 503.
pub const BUDGET_WAIT: Duration = Duration::from_secs(1);

/// Estimated bytes of one array element's slot (a 32-byte `Value`, plus `Vec` growth slack).
const ELEMENT: u64 = 48;
/// One B-tree node of a JSON object (holds up to 11 entries inline; ~6 on average).
const OBJECT_NODE: u64 = 640;
const ENTRIES_PER_NODE: u64 = 6;
/// One typed chat message.
const MESSAGE: u64 = std::mem::size_of::<Message>() as u64;
/// Allocation overhead of a string's heap block.
const STRING: u64 = 16;

/// The largest estimated decoded size of one request body.
pub fn decode_limit(max_body_bytes: usize) -> u64 {
    (max_body_bytes as u64).saturating_mul(4).max(1 << 20)
}

/// Estimated bytes of all bodies being decoded at once.
pub fn decode_budget(max_body_bytes: usize) -> u64 {
    decode_limit(max_body_bytes).saturating_mul(2)
}

/// Why [`estimate`] gave up.
#[derive(Debug)]
pub enum EstimateError {
    /// Not JSON (serde's message, with line and column).
    Json(serde_json::Error),
    /// The decoded form would exceed the limit.
    TooComplex,
}

/// The estimated heap bytes of `body` decoded, walking it once without building anything;
/// stops as soon as the estimate passes `limit`.
pub fn estimate(body: &[u8], limit: u64) -> Result<u64, EstimateError> {
    let mut count = Counter { cost: 0, limit };
    let mut de = serde_json::Deserializer::from_slice(body);
    let walked = Node(&mut count, Kind::Root)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match walked {
        Ok(()) => Ok(count.cost),
        Err(_) if count.cost > limit => Err(EstimateError::TooComplex),
        Err(e) => Err(EstimateError::Json(e)),
    }
}

struct Counter {
    cost: u64,
    limit: u64,
}

impl Counter {
    fn add<E: serde::de::Error>(&mut self, n: u64) -> Result<(), E> {
        self.cost = self.cost.saturating_add(n);
        if self.cost > self.limit {
            return Err(E::custom("request body too complex"));
        }
        Ok(())
    }
}

/// What a JSON value decodes into: a `serde_json::Value` (priced as such), the top-level
/// request (whose `messages` are typed), the `messages` array, or one typed [`Message`].
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Value,
    Root,
    Messages,
    Message,
}

struct Node<'a>(&'a mut Counter, Kind);

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A key of a typed message: its own fields cost nothing as keys (they are struct fields);
/// any other key lands in the message's `rest` map.
struct Key<'a>(&'a mut Counter, Kind);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<String>, E> {
        let typed = match self.1 {
            Kind::Message => MESSAGE_FIELDS.contains(&v),
            Kind::Root => v == "messages",
            _ => false,
        };
        if typed {
            return Ok(Some(v.to_string()));
        }
        self.0.add(v.len() as u64 + STRING)?;
        Ok(None)
    }
}

const MESSAGE_FIELDS: &[&str] = &["role", "content", "name", "tool_calls", "tool_call_id"];

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.0.add(v.len() as u64 + STRING)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (child, slot) = match self.1 {
            // A typed message in a `Vec` (with growth slack), not a 32-byte `Value`.
            Kind::Messages => (Kind::Message, MESSAGE + MESSAGE / 2),
            _ => (Kind::Value, ELEMENT),
        };
        while seq.next_element_seed(Node(&mut *self.0, child))?.is_some() {
            self.0.add(slot)?;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Entries priced as `Value` map entries (a typed message's own fields are free).
        let mut entries: u64 = 0;
        while let Some(typed) = map.next_key_seed(Key(&mut *self.0, self.1))? {
            let child = match (self.1, typed.as_deref()) {
                (Kind::Root, Some("messages")) => Kind::Messages,
                _ => Kind::Value,
            };
            map.next_value_seed(Node(&mut *self.0, child))?;
            if self.1 == Kind::Message && typed.is_some() {
                continue;
            }
            if entries.is_multiple_of(ENTRIES_PER_NODE) {
                self.0.add(OBJECT_NODE)?;
            }
            entries += 1;
        }
        Ok(())
    }
}

/// The process-wide budget of estimated bytes being decoded.
pub struct Budget {
    used: Mutex<u64>,
    freed: Condvar,
}

/// Returned by [`Budget::acquire`]; gives its bytes back when dropped.
pub struct Permit<'a> {
    budget: &'a Budget,
    bytes: u64,
}

impl Budget {
    pub const fn new() -> Budget {
        Budget {
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Take `bytes` of a budget of `capacity`, waiting up to `wait`. A request alone always
    /// gets in, whatever its size (the per-request limit bounds it).
    pub fn acquire(&self, bytes: u64, capacity: u64, wait: Duration) -> Option<Permit<'_>> {
        let end = Instant::now() + wait;
        let mut used = self.used.lock();
        while *used > 0 && used.saturating_add(bytes) > capacity {
            if self.freed.wait_until(&mut used, end).timed_out() {
                return None;
            }
        }
        *used = used.saturating_add(bytes);
        Some(Permit {
            budget: self,
            bytes,
        })
    }

    /// Bytes currently taken.
    pub fn in_use(&self) -> u64 {
        *self.used.lock()
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new()
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock();
        *used = used.saturating_sub(self.bytes);
        self.budget.freed.notify_all();
    }
}

/// The budget shared by every request of this process.
pub static DECODING: Budget = Budget::new();

/// Decode a chat request body with messages that say what is wrong (docs/api.md#errors: 400, never 500;
/// 413 when too complex to decode, 503 when the decode budget stays exhausted).
pub fn chat_request(body: &[u8], max_body_bytes: usize) -> Result<ChatRequest, ApiError> {
    request_body(body, max_body_bytes)
}

/// Any JSON request body, under the same guards as [`chat_request`] (the legacy completions
/// endpoint decodes its own shape).
pub fn request_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    max_body_bytes: usize,
) -> Result<T, ApiError> {
    bounded(body, max_body_bytes, |text| {
        serde_json::from_str::<T>(text).map_err(|e| diagnose(text, &e))
    })
}

/// Decode a request body of any endpoint within the limits above: UTF-8 checked, priced by
/// [`estimate`] (413 when too complex), then `decode` runs on the text while the body holds its
/// share of the process-wide budget (503 when none is free in time).
pub fn bounded<T>(
    body: &[u8],
    max_body_bytes: usize,
    decode: impl FnOnce(&str) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("request body is not valid UTF-8"))?;
    let limit = decode_limit(max_body_bytes);
    let cost = match estimate(body, limit) {
        Ok(cost) => cost,
        Err(EstimateError::Json(e)) => {
            return Err(ApiError::bad_request(format!(
                "request body is not valid JSON: {e}"
            )));
        }
        Err(EstimateError::TooComplex) => {
            return Err(ApiError::payload_too_large(format!(
                "request body too complex: decoded it would take more than {} MiB \
                     (too many JSON values); send fewer, larger values",
                limit >> 20
            ))
            .with_code("request_too_complex"));
        }
    };
    let Some(_permit) = DECODING.acquire(cost, decode_budget(max_body_bytes), BUDGET_WAIT) else {
        log::warn!("request body decode budget exhausted; answering 503");
        return Err(ApiError::overloaded());
    };
    decode(text)
}

/// The 400 for a body that is JSON but not a chat request. Decodes the body again, as a
/// `Value` (its size is bounded by the estimate), to name the field at fault.
fn diagnose(text: &str, typed: &serde_json::Error) -> ApiError {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return ApiError::bad_request(format!("invalid request: {typed}"));
    };
    if !value.is_object() {
        return ApiError::bad_request("request body must be a JSON object");
    }
    for field in ["model", "messages"] {
        if value.get(field).is_none() {
            return ApiError::bad_request(format!("missing required parameter: '{field}'"))
                .with_param(field);
        }
    }
    // Name the field at fault: serde's message alone does not say where it is.
    match crate::api::diagnose::locate(&value) {
        Some((path, msg)) if !path.is_empty() => {
            ApiError::bad_request(format!("invalid request: {path}: {msg}")).with_param(path)
        }
        _ => ApiError::bad_request(format!("invalid request: {typed}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MIB: usize = 1 << 20;

    fn zeros(n: usize) -> String {
        format!("[{}0]", "0,".repeat(n - 1))
    }

    #[test]
    fn estimate_prices_structure_not_bytes() {
        let text = format!(r#"{{"s":"{}"}}"#, "a".repeat(MIB));
        let cost = estimate(text.as_bytes(), u64::MAX).unwrap();
        assert!(
            cost < 2 * MIB as u64,
            "one big string costs its length: {cost}"
        );
        let arr = zeros(100_000);
        let cost = estimate(arr.as_bytes(), u64::MAX).unwrap();
        assert!(cost >= 100_000 * 32, "{cost} for {} bytes", arr.len());
        let objs = format!("[{}{{}}]", r#"{"a":0},"#.repeat(10_000));
        assert!(estimate(objs.as_bytes(), u64::MAX).unwrap() >= 10_000 * 600);
    }

    #[test]
    fn estimate_stops_at_the_limit_and_reports_bad_json() {
        assert!(matches!(
            estimate(zeros(1_000_000).as_bytes(), MIB as u64),
            Err(EstimateError::TooComplex)
        ));
        assert!(matches!(
            estimate(b"{\"a\":", u64::MAX),
            Err(EstimateError::Json(_))
        ));
        assert!(matches!(
            estimate(b"{} x", u64::MAX),
            Err(EstimateError::Json(_))
        ));
    }

    #[test]
    fn a_hostile_array_is_refused_with_413_and_a_big_string_is_not() {
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"x":{}}}"#,
            zeros(2 * MIB - 64)
        );
        let e = chat_request(body.as_bytes(), 4 * MIB).unwrap_err();
        assert_eq!((e.status, e.code), (413, Some("request_too_complex")));
        let big =
            json!({"model":"m","messages":[{"role":"user","content":"a".repeat(4 * MIB - 100)}]});
        let req = chat_request(big.to_string().as_bytes(), 4 * MIB).unwrap();
        assert_eq!(req.messages[0].text_content().len(), 4 * MIB - 100);
    }

    #[test]
    fn errors_keep_naming_the_field() {
        let e = chat_request(br#"{"model":"m"}"#, MIB).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        assert!(e.message.contains("missing required parameter"));
        let e = chat_request(br#"{"model":"m","messages":[{"role":"robot"}]}"#, MIB).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = chat_request(b"[1]", MIB).unwrap_err();
        assert_eq!(e.message, "request body must be a JSON object");
        let e = chat_request(b"{oops", MIB).unwrap_err();
        assert!(e.message.starts_with("request body is not valid JSON"));
        let e = chat_request(b"\xff", MIB).unwrap_err();
        assert_eq!(e.message, "request body is not valid UTF-8");
    }

    #[test]
    fn budget_waits_then_refuses_and_a_lone_request_always_fits() {
        let b = Budget::new();
        let big = b.acquire(100, 10, Duration::ZERO).expect("alone it fits");
        assert!(b.acquire(1, 10, Duration::from_millis(20)).is_none());
        std::thread::scope(|s| {
            let waiter = s.spawn(|| b.acquire(5, 10, Duration::from_secs(10)).map(|p| p.bytes));
            std::thread::sleep(Duration::from_millis(20));
            drop(big);
            assert_eq!(waiter.join().unwrap(), Some(5));
        });
        assert_eq!(b.in_use(), 0);
    }
}
