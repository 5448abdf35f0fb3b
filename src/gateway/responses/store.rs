//! The bounded in-memory response store behind `previous_response_id`, `GET` and `DELETE
//! /v1/responses/{id}`.
//!
//! Per process (a response created on another replica is unknown here). Bounded (limits from
//! the `responses:` config section) by entry count and by bytes (the serialized size of the stored response and conversation items, counted
//! once per item: a continuation adds only its new items), with a
//! TTL; the oldest entries are evicted first. Each entry remembers an owner tag (a keyed hash of
//! the caller's credentials) and is invisible to other callers. Items with an `id` are indexed
//! so an `item_reference` input item finds the newest stored copy ([`Store::find_item`]). One
//! mutex; every operation is O(1) amortized plus the evictions it performs (and the item ids of
//! the entry it puts or removes); no threads.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;

use super::input::{ConversationItem, user_text_item};
use super::object::OutputItem;

/// A conversation item as stored: in the form the request or the response had it, put in the
/// API's JSON shape only when a continuation translates it or a reference names it.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An input item as the client sent it (references resolved).
    Input(Value),
    /// `input` sent as a string: the user message it stands for.
    UserText(String),
    /// An output item of a response.
    Output(OutputItem),
}

impl Item {
    /// Its size as JSON, for the store's byte bound.
    pub fn json_len(&self) -> usize {
        match self {
            Item::Input(v) => json_len(v),
            Item::UserText(t) => USER_TEXT_ITEM_LEN + json_len(t.as_str()),
            Item::Output(o) => json_len(o),
        }
    }
}

/// The length of [`user_text_item`] without its text.
const USER_TEXT_ITEM_LEN: usize = 74;

impl ConversationItem for Arc<Item> {
    fn json(&self) -> Cow<'_, Value> {
        match self.as_ref() {
            Item::Input(v) => Cow::Borrowed(v),
            Item::UserText(t) => Cow::Owned(user_text_item(t)),
            Item::Output(o) => Cow::Owned(o.to_value()),
        }
    }

    fn id(&self) -> Option<&str> {
        match self.as_ref() {
            Item::Input(v) => v.id(),
            Item::UserText(_) => None,
            Item::Output(o) => Some(o.id()),
        }
    }
}

/// A finished response as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The response object, serialized as returned to the client.
    pub response: Arc<str>,
    /// The whole conversation (earlier items, this input, this output including hidden
    /// `mcp_call` items), without `instructions`.
    /// Items are shared with the entries that continue this one (no copy per turn).
    pub items: Arc<Vec<Arc<Item>>>,
    /// The serialized size of `items` (kept so a continuation adds only its new items).
    pub items_bytes: usize,
}

/// Entries a [`Store::put`] evicted (or replaced). Dropping it frees them: a large share of a
/// put's cost once the store is full, so the caller drops it after the reply is written.
#[must_use = "dropping it frees the evicted entries; drop it once the reply is out"]
pub struct Evicted(Vec<Stored>);

struct Entry {
    stored: Stored,
    owner: u64,
    bytes: usize,
    at: Instant,
}

struct Inner {
    map: HashMap<String, Entry>,
    /// Ids in insertion order; may hold ids already removed (skipped when popped).
    order: VecDeque<String>,
    bytes: usize,
    /// Item id → (response id, index in its `items`), for the newest response holding it.
    items: HashMap<String, (String, usize)>,
}

pub struct Store {
    inner: Mutex<Inner>,
    max_entries: usize,
    max_bytes: usize,
    ttl: Duration,
}

impl Default for Store {
    fn default() -> Self {
        Store::from_config(&crate::config::ResponsesConfig::default())
    }
}

impl Store {
    /// The store with the limits of the `responses:` config section.
    pub fn from_config(c: &crate::config::ResponsesConfig) -> Store {
        Store::new(c.store_max_entries, c.store_max_bytes, c.store_ttl)
    }

    pub fn new(max_entries: usize, max_bytes: usize, ttl: Duration) -> Store {
        Store {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
                items: HashMap::new(),
            }),
            max_entries,
            max_bytes,
            ttl,
        }
    }

    /// Keep a response; evicts the oldest entries to make room and hands them back, so the
    /// caller frees them when it suits (after answering the client). An entry larger than the
    /// whole byte budget is not kept (`None`).
    pub fn put(&self, id: &str, owner: u64, stored: Stored) -> Option<Evicted> {
        let bytes = id.len() + stored.response.len() + stored.items_bytes;
        if bytes > self.max_bytes || self.max_entries == 0 {
            return None;
        }
        let mut evicted = Evicted(Vec::new());
        let mut g = self.inner.lock();
        let inner = &mut *g;
        if let Some(old) = inner.map.remove(id) {
            inner.bytes -= old.bytes;
            evicted.0.push(old.stored);
        }
        let now = Instant::now();
        while inner.map.len() >= self.max_entries
            || inner.bytes + bytes > self.max_bytes
            || front_expired(inner, now, self.ttl)
        {
            match pop_oldest(inner) {
                Some(old) => evicted.0.push(old),
                None => break,
            }
        }
        inner.bytes += bytes;
        inner.order.push_back(id.to_string());
        for (i, item_id) in item_ids(&stored.items) {
            inner.items.insert(item_id.to_string(), (id.to_string(), i));
        }
        inner.map.insert(
            id.to_string(),
            Entry {
                stored,
                owner,
                bytes,
                at: now,
            },
        );
        // Compact the order queue when removed ids pile up (DELETEs).
        if inner.order.len() > 2 * inner.map.len() + 64 {
            let map = &inner.map;
            inner.order.retain(|id| map.contains_key(id));
        }
        Some(evicted)
    }

    /// A live entry of this owner.
    pub fn get(&self, id: &str, owner: u64) -> Option<Stored> {
        let mut g = self.inner.lock();
        let expired = match g.map.get(id) {
            None => return None,
            Some(e) if e.owner != owner => return None,
            Some(e) => e.at.elapsed() >= self.ttl,
        };
        if expired {
            remove(&mut g, id);
            return None;
        }
        g.map.get(id).map(|e| e.stored.clone())
    }

    /// A stored item of this owner by its `id` (the newest live response holding it).
    pub fn find_item(&self, item_id: &str, owner: u64) -> Option<Value> {
        let g = self.inner.lock();
        let (resp, i) = g.items.get(item_id)?;
        let e = g.map.get(resp)?;
        if e.owner != owner || e.at.elapsed() >= self.ttl {
            return None;
        }
        e.stored.items.get(*i).map(|item| item.json().into_owned())
    }

    /// Remove an entry of this owner; false when there was none.
    pub fn delete(&self, id: &str, owner: u64) -> bool {
        let mut g = self.inner.lock();
        match g.map.get(id) {
            Some(e) if e.owner == owner => {
                let live = e.at.elapsed() < self.ttl;
                remove(&mut g, id);
                live
            }
            _ => false,
        }
    }

    /// Entries and bytes held (for tests and diagnostics).
    pub fn usage(&self) -> (usize, usize) {
        let g = self.inner.lock();
        (g.map.len(), g.bytes)
    }
}

/// Remove an entry and its item index; the entry is returned for the caller to drop.
fn remove(inner: &mut Inner, id: &str) -> Option<Stored> {
    let e = inner.map.remove(id)?;
    inner.bytes -= e.bytes;
    for (_, item_id) in item_ids(&e.stored.items) {
        if inner.items.get(item_id).is_some_and(|(r, _)| r == id) {
            inner.items.remove(item_id);
        }
    }
    Some(e.stored)
}

/// The length of `v` serialized, counted without building the text.
pub fn json_len<T: Serialize + ?Sized>(v: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // The items stored have string keys only, and the sink cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// `(index, id)` of the items that have a string `id`.
fn item_ids(items: &[Arc<Item>]) -> impl Iterator<Item = (usize, &str)> {
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| Some((i, item.id()?)))
}

fn front_expired(inner: &Inner, now: Instant, ttl: Duration) -> bool {
    inner
        .order
        .front()
        .and_then(|id| inner.map.get(id))
        .is_some_and(|e| now.duration_since(e.at) >= ttl)
}

/// Drop the oldest live entry; false when the store is empty.
/// Evict the oldest live entry (`None` when the store is empty).
fn pop_oldest(inner: &mut Inner) -> Option<Stored> {
    while let Some(id) = inner.order.pop_front() {
        if let Some(old) = remove(inner, &id) {
            return Some(old);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::responses::object::ItemStatus;
    use serde_json::json;

    const DEFAULT_TTL: Duration = Duration::from_secs(3600);

    fn stored(text: &str) -> Stored {
        let items = vec![Arc::new(Item::Input(json!(text)))];
        Stored {
            response: Arc::from(format!("{{\"t\":{}}}", json!(text))),
            items_bytes: items.iter().map(|v| v.json_len()).sum(),
            items: Arc::new(items),
        }
    }

    #[test]
    fn counts_bytes_as_serialized() {
        let v = json!({"a": [1, "é", null], "b": {"c": true}});
        assert_eq!(json_len(&v), v.to_string().len());
        let output =
            OutputItem::message("msg_1".into(), ItemStatus::Completed, Some("\"ok\"".into()));
        for item in [
            Item::Input(v),
            Item::UserText("héllo \"you\"\n".into()),
            Item::Output(output),
        ] {
            let item = Arc::new(item);
            assert_eq!(item.json_len(), item.json().to_string().len(), "{item:?}");
        }
    }

    #[test]
    fn stored_items_read_back_in_the_apis_shape() {
        let text = Arc::new(Item::UserText("hi".into()));
        assert_eq!(
            text.json().into_owned(),
            json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]})
        );
        assert_eq!(text.id(), None);
        let call = Arc::new(Item::Output(OutputItem::FunctionCall {
            id: "fc_1".into(),
            status: ItemStatus::Completed,
            call_id: "call_1".into(),
            name: "f".into(),
            arguments: "{}".into(),
        }));
        assert_eq!(call.id(), Some("fc_1"));
        assert_eq!(
            call.json().into_owned(),
            json!({"type": "function_call", "id": "fc_1", "status": "completed",
                   "call_id": "call_1", "name": "f", "arguments": "{}"})
        );
    }

    #[test]
    fn evicts_oldest_by_count() {
        let s = Store::new(2, 1 << 20, DEFAULT_TTL);
        assert!(s.put("a", 1, stored("a")).is_some());
        assert!(s.put("b", 1, stored("b")).is_some());
        assert!(s.put("c", 1, stored("c")).is_some());
        assert!(s.get("a", 1).is_none());
        assert!(s.get("b", 1).is_some() && s.get("c", 1).is_some());
        assert_eq!(s.usage().0, 2);
    }

    #[test]
    fn evicts_by_bytes_and_refuses_oversized() {
        let big = "x".repeat(400);
        let s = Store::new(100, 1000, DEFAULT_TTL);
        assert!(s.put("a", 1, stored(&big)).is_some());
        assert!(s.put("b", 1, stored(&big)).is_some());
        assert!(
            s.get("a", 1).is_none(),
            "a evicted to fit b? {:?}",
            s.usage()
        );
        assert!(s.usage().1 <= 1000);
        assert!(s.put("huge", 1, stored(&"y".repeat(2000))).is_none());
        assert!(s.get("b", 1).is_some());
    }

    #[test]
    fn ttl_owner_and_delete() {
        let s = Store::new(10, 1 << 20, Duration::from_millis(0));
        assert!(s.put("a", 1, stored("a")).is_some());
        assert!(s.get("a", 1).is_none(), "expired at once");
        let s = Store::new(10, 1 << 20, DEFAULT_TTL);
        let _ = s.put("a", 1, stored("a"));
        assert!(s.get("a", 2).is_none(), "another owner sees nothing");
        assert!(!s.delete("a", 2));
        assert!(s.delete("a", 1));
        assert!(s.get("a", 1).is_none());
        assert_eq!(s.usage(), (0, 0));
        for i in 0..500 {
            let _ = s.put(&format!("k{i}"), 1, stored("v"));
            s.delete(&format!("k{i}"), 1);
        }
        assert!(s.inner.lock().order.len() < 200, "order queue compacted");
        assert!(s.inner.lock().items.is_empty(), "item index emptied");
    }

    #[test]
    fn finds_items_by_id_for_their_owner_only() {
        let s = Store::new(2, 1 << 20, DEFAULT_TTL);
        let with_items = |ids: &[&str]| Stored {
            response: Arc::from("{}"),
            items_bytes: 0,
            items: Arc::new(
                ids.iter()
                    .map(|i| Arc::new(Item::Input(json!({"id": i, "n": ids.len()}))))
                    .collect(),
            ),
        };
        let _ = s.put("r1", 1, with_items(&["msg_a"]));
        let _ = s.put("r2", 1, with_items(&["msg_a", "msg_b"]));
        assert_eq!(
            s.find_item("msg_a", 1),
            Some(json!({"id": "msg_a", "n": 2}))
        );
        assert_eq!(s.find_item("msg_b", 2), None, "another owner");
        assert_eq!(s.find_item("msg_c", 1), None);
        s.delete("r2", 1);
        assert_eq!(s.find_item("msg_b", 1), None, "gone with its response");
        let _ = s.put("r3", 1, with_items(&["x"]));
        let _ = s.put("r4", 1, with_items(&["y"]));
        assert_eq!(s.find_item("x", 1), Some(json!({"id": "x", "n": 1})));
        assert_eq!(
            s.inner.lock().items.len(),
            2,
            "evicted entries leave the index"
        );
    }
}
