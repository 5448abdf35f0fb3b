//! Sessions over an in-memory transport: dispatch by id, server requests, close, cancel.

use super::*;
use crate::mcp::jsonrpc::METHOD_NOT_FOUND;
use crate::mcp::transport::Outbound;

/// A transport double: records what was sent; replies are injected through the dispatcher.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<Message>>,
    open: AtomicBool,
}

impl Outbound for Arc<Recorder> {
    fn send(&self, msg: &Message, _deadline: Instant) -> Result<(), SendError> {
        if !self.open.load(Ordering::Acquire) {
            return Err(SendError::Closed("closed".into()));
        }
        self.sent.lock().push(msg.clone());
        Ok(())
    }
}

impl Transport for Arc<Recorder> {
    fn close(&self, _grace: Grace) {
        self.open.store(false, Ordering::Release);
    }
    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

fn session() -> (Session, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    rec.open.store(true, Ordering::Release);
    let s = Session {
        name: "t".into(),
        transport: Box::new(rec.clone()),
        dispatch: Arc::new(Dispatcher::new("t")),
        next_id: AtomicI64::new(1),
        info: OnceLock::new(),
        tools_fresh_until: Mutex::new(None),
        param_headers: Mutex::new(HashMap::new()),
        pinging: AtomicBool::new(false),
        left_out: Mutex::new(Arc::new(Vec::new())),
    };
    (s, rec)
}

#[test]
fn replies_are_routed_by_id_even_out_of_order() {
    let (s, rec) = session();
    let s = Arc::new(s);
    let deadline = Instant::now() + Duration::from_secs(5);
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || s.request("x", None, deadline, None))
        })
        .collect();
    while rec.sent.lock().len() < 3 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let ids: Vec<Id> = rec
        .sent
        .lock()
        .iter()
        .map(|m| match m {
            Message::Request { id, .. } => id.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    for id in ids.iter().rev() {
        let Id::Int(n) = id else { panic!() };
        s.dispatch.on_message(
            Message::Response {
                id: Id::Str(n.to_string()),
                result: json!({ "n": n }),
            },
            &rec,
        );
    }
    let mut got: Vec<i64> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap()["n"].as_i64().unwrap())
        .collect();
    got.sort();
    let mut want: Vec<i64> = ids
        .iter()
        .map(|i| if let Id::Int(n) = i { *n } else { 0 })
        .collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn timeout_sends_cancelled_and_drops_late_reply() {
    let (s, rec) = session();
    let t0 = Instant::now();
    let cancel = Cancel::new();
    let r = s.request(
        "tools/call",
        None,
        Instant::now() + Duration::from_millis(150),
        Some(&cancel),
    );
    assert_eq!(r, Err(RequestError::Failed(Error::Timeout)));
    assert!(t0.elapsed() >= Duration::from_millis(150));
    let sent = rec.sent.lock().clone();
    let Message::Notification { method, params } = &sent[1] else {
        panic!("{sent:?}")
    };
    assert_eq!(method, "notifications/cancelled");
    assert_eq!(params.as_ref().unwrap()["requestId"], json!(1));
    // A late reply finds no waiter and is dropped without harm.
    s.dispatch.on_message(
        Message::Response {
            id: Id::Int(1),
            result: json!({}),
        },
        &rec,
    );
    assert!(s.dispatch.pending.lock().waiters.is_empty());
}

#[test]
fn cancel_is_noticed_quickly() {
    let (s, _rec) = session();
    let cancel = Cancel::new();
    let c2 = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        c2.cancel();
    });
    let t0 = Instant::now();
    let r = s.request(
        "tools/call",
        None,
        Instant::now() + Duration::from_secs(10),
        Some(&cancel),
    );
    assert_eq!(r, Err(RequestError::Failed(Error::Cancelled)));
    assert!(
        t0.elapsed() < Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn close_fails_all_waiters_and_later_requests_are_not_sent() {
    let (s, rec) = session();
    let s = Arc::new(s);
    let deadline = Instant::now() + Duration::from_secs(5);
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || s.request("x", None, deadline, None))
        })
        .collect();
    while rec.sent.lock().len() < 4 {
        std::thread::sleep(Duration::from_millis(5));
    }
    s.dispatch.on_closed("server exited with status 1");
    for w in waiters {
        assert_eq!(
            w.join().unwrap(),
            Err(RequestError::Failed(Error::Closed(
                "server exited with status 1".into()
            )))
        );
    }
    assert!(matches!(
        s.request("x", None, deadline, None),
        Err(RequestError::NotSent(Error::Closed(_)))
    ));
    assert!(!s.is_open());
}

#[test]
fn server_requests_are_answered() {
    let (s, rec) = session();
    s.dispatch
        .on_message(Message::request(Id::Str("p".into()), "ping", None), &rec);
    s.dispatch.on_message(
        Message::request(Id::Int(9), "sampling/createMessage", Some(json!({}))),
        &rec,
    );
    let sent = rec.sent.lock().clone();
    assert_eq!(
        sent[0],
        Message::Response {
            id: Id::Str("p".into()),
            result: json!({})
        }
    );
    assert_eq!(
        sent[1],
        Message::error(Some(Id::Int(9)), METHOD_NOT_FOUND, "Method not found")
    );
}

#[test]
fn list_changed_marks_tools_stale_and_errors_map_to_rpc() {
    let (s, rec) = session();
    assert!(!s.tools_stale());
    s.dispatch.on_message(
        Message::notification("notifications/tools/list_changed", None),
        &rec,
    );
    s.dispatch.on_message(
        Message::notification("notifications/progress", Some(json!({}))),
        &rec,
    );
    assert!(s.tools_stale());
    let s = Arc::new(s);
    let s2 = s.clone();
    let h = std::thread::spawn(move || {
        s2.request("y", None, Instant::now() + Duration::from_secs(5), None)
    });
    while rec.sent.lock().is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    s.dispatch
        .on_message(Message::error(Some(Id::Int(1)), -32602, "bad"), &rec);
    assert_eq!(
        h.join().unwrap(),
        Err(RequestError::Rejected(RpcError {
            code: -32602,
            message: "bad".into(),
            data: None
        }))
    );
}

/// Run `f` against a modern session whose peer answers each sent request with `peer`.
fn with_modern_peer<T: Send + 'static>(
    peer: impl Fn(&str, &Value) -> Message + Send + 'static,
    f: impl FnOnce(&Session) -> T + Send + 'static,
) -> (T, Vec<Message>) {
    let (s, rec) = session();
    s.set_info(SessionInfo {
        protocol_version: era::MODERN_VERSION.into(),
        modern: true,
        server_name: None,
        server_version: None,
    });
    let s = Arc::new(s);
    let s2 = s.clone();
    let h = std::thread::spawn(move || f(&s2));
    let mut seen = 0;
    while !h.is_finished() {
        let new: Vec<Message> = rec.sent.lock()[seen..].to_vec();
        seen += new.len();
        for m in new {
            if let Message::Request { id, method, params } = m {
                let reply = match peer(&method, params.as_ref().unwrap_or(&Value::Null)) {
                    Message::Response { result, .. } => Message::Response { id, result },
                    Message::Error { error, .. } => Message::Error {
                        id: Some(id),
                        error,
                    },
                    other => other,
                };
                s.dispatch.on_message(reply, &rec);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = h.join().unwrap();
    let sent = rec.sent.lock().clone();
    (out, sent)
}

fn ok(result: Value) -> Message {
    Message::Response {
        id: Id::Int(0),
        result,
    }
}

fn params_of(m: &Message) -> (Id, Value) {
    match m {
        Message::Request { id, params, .. } => (id.clone(), params.clone().unwrap()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn modern_requests_carry_meta_and_retry_a_rejected_version_once() {
    let first = std::sync::atomic::AtomicBool::new(true);
    let (r, sent) = with_modern_peer(
        move |_, params| {
            assert_eq!(params["_meta"][era::META_VERSION], "2026-07-28");
            if first.swap(false, Ordering::AcqRel) {
                Message::Error {
                    id: None,
                    error: RpcError {
                        code: era::UNSUPPORTED_PROTOCOL_VERSION,
                        message: "Unsupported protocol version".into(),
                        data: Some(json!({"supported": ["2026-07-28"], "requested": "x"})),
                    },
                }
            } else {
                ok(json!({"tools": []}))
            }
        },
        |s| {
            s.request(
                "tools/list",
                None,
                Instant::now() + Duration::from_secs(5),
                None,
            )
        },
    );
    assert_eq!(r, Ok(json!({"tools": []})));
    assert_eq!(sent.len(), 2);
    let (id1, p1) = params_of(&sent[0]);
    let (id2, p2) = params_of(&sent[1]);
    assert_ne!(id1, id2, "a retry gets a new id");
    assert_eq!(p1, p2);
    assert_eq!(
        p1["_meta"]["io.modelcontextprotocol/clientCapabilities"],
        json!({})
    );
    // A second rejection is the answer.
    let (r, sent) = with_modern_peer(
        |_, _| Message::error(None, era::UNSUPPORTED_PROTOCOL_VERSION, "no"),
        |s| {
            s.request(
                "tools/list",
                None,
                Instant::now() + Duration::from_secs(5),
                None,
            )
        },
    );
    assert!(matches!(r, Err(RequestError::Rejected(e)) if e.code == -32022));
    assert_eq!(sent.len(), 1, "no supported list, no retry");
}

#[test]
fn input_required_with_request_state_is_followed() {
    let round = std::sync::atomic::AtomicUsize::new(0);
    let (r, sent) = with_modern_peer(
        move |_, params| match round.fetch_add(1, Ordering::AcqRel) {
            0 => {
                assert!(params.get("requestState").is_none());
                ok(json!({"resultType": "input_required", "requestState": "opaque-1"}))
            }
            _ => {
                assert_eq!(params["requestState"], "opaque-1");
                ok(json!({"content": [{"type": "text", "text": "done"}]}))
            }
        },
        |s| {
            s.call_tool(
                protocol::call_params("t", json!({"x": 1})),
                Instant::now() + Duration::from_secs(5),
                &Cancel::new(),
            )
        },
    );
    assert_eq!(r.unwrap()["content"][0]["text"], "done");
    let (id1, p1) = params_of(&sent[0]);
    let (id2, p2) = params_of(&sent[1]);
    assert_ne!(id1, id2);
    assert_eq!(p2["arguments"], p1["arguments"]);
    // Questions we cannot answer end the call with a clear error.
    let (r, _) = with_modern_peer(
        |_, _| {
            ok(json!({"resultType": "input_required",
                      "inputRequests": {"q": {"method": "elicitation/create"}}}))
        },
        |s| {
            s.call_tool(
                protocol::call_params("t", json!({})),
                Instant::now() + Duration::from_secs(5),
                &Cancel::new(),
            )
        },
    );
    assert!(matches!(r, Err(RequestError::Failed(Error::Protocol(m))) if m.contains("input")));
}

#[test]
fn modern_tool_lists_go_stale_after_their_ttl() {
    let ((fresh, stale_later), _) = with_modern_peer(
        |_, _| ok(json!({"tools": [{"name": "a"}], "ttlMs": 300})),
        |s| {
            s.list_tools(Instant::now() + Duration::from_secs(5), None)
                .unwrap();
            let fresh = !s.tools_stale();
            std::thread::sleep(MIN_TOOLS_TTL + Duration::from_millis(50));
            (fresh, s.tools_stale())
        },
    );
    assert!(fresh && stale_later);
}

#[test]
fn an_oversized_reply_fails_its_call_by_id_or_explains_the_timeout() {
    let (s, _rec) = session();
    let s = Arc::new(s);
    // Seen by id: that call fails at once with TooLarge.
    let s2 = s.clone();
    let waiter = std::thread::spawn(move || {
        s2.request("x", None, Instant::now() + Duration::from_secs(5), None)
    });
    while !s.dispatch.wants(&Id::Int(1)) {
        std::thread::sleep(Duration::from_millis(5));
    }
    s.dispatch.on_oversized(Some(&Id::Int(1)), 99);
    assert_eq!(
        waiter.join().unwrap(),
        Err(RequestError::Failed(Error::TooLarge(99)))
    );
    // Not seen: the call times out, and its error says why.
    let s2 = s.clone();
    let waiter = std::thread::spawn(move || {
        s2.request("x", None, Instant::now() + Duration::from_millis(300), None)
    });
    while !s.dispatch.wants(&Id::Int(2)) {
        std::thread::sleep(Duration::from_millis(5));
    }
    s.dispatch.on_oversized(None, 99);
    assert!(matches!(
        waiter.join().unwrap(),
        Err(RequestError::Failed(Error::TooLarge(_)))
    ));
    // A later call that saw no oversized message times out plainly.
    let r = s.request("x", None, Instant::now() + Duration::from_millis(100), None);
    assert_eq!(r, Err(RequestError::Failed(Error::Timeout)));
}
