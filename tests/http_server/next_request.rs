//! A worker that answered a kept-alive request waits a moment (`Limits::next_request_wait`) for
//! the connection's next request and serves it itself; everything it cannot serve goes back to
//! the poller exactly as if the poller had read it. These tests use a long wait so the worker
//! is certainly the one that reads the next request.

use super::*;

const LONG_WAIT: Duration = Duration::from_secs(5);

fn waiting(limits: Limits) -> Limits {
    Limits {
        next_request_wait: LONG_WAIT,
        ..limits
    }
}

/// One request on a kept-alive connection, its response read.
fn ask(s: &mut TcpStream, r: &mut BufReader<TcpStream>, path: &str) -> Resp {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    read_response(r, false)
}

fn conversation(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = connect(addr);
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

/// The worker of each request, for `n` requests on one connection with a pause between them.
fn workers_of_a_conversation(limits: Limits, n: usize) -> Vec<String> {
    let (server, _p) = start(limits);
    let (mut s, mut r) = conversation(server.local_addr());
    (0..n)
        .map(|i| {
            if i > 0 {
                thread::sleep(Duration::from_millis(20));
            }
            let resp = ask(&mut s, &mut r, &format!("/echo?{i}"));
            assert_eq!(resp.header("x-query"), Some(i.to_string().as_str()));
            resp.header("x-worker").unwrap().to_string()
        })
        .collect()
}

#[test]
fn the_worker_that_answered_serves_the_connections_next_request() {
    let workers = workers_of_a_conversation(waiting(small_limits()), 6);
    assert!(workers[0].starts_with("http-worker-"), "{workers:?}");
    assert!(workers.iter().all(|w| *w == workers[0]), "{workers:?}");
    // Without the wait the poller hands each request to the longest-idle worker of the
    // pool's four (the queue wakes its waiters in order), so the conversation moves around.
    let handed_off = workers_of_a_conversation(
        Limits {
            next_request_wait: Duration::ZERO,
            ..small_limits()
        },
        6,
    );
    assert!(
        handed_off.iter().any(|w| *w != handed_off[0]),
        "{handed_off:?}"
    );
}

#[test]
fn a_lone_worker_does_not_wait_while_another_client_needs_it() {
    let (server, _p) = start(waiting(Limits {
        workers: 1,
        ..small_limits()
    }));
    let addr = server.local_addr();
    let (mut s, mut r) = conversation(addr);
    assert_eq!(ask(&mut s, &mut r, "/echo").status, 200);
    // The only worker would wait 5 s on the first connection; the second client's request
    // must not wait behind that.
    assert_served_within(addr, Duration::from_secs(1));
    assert_eq!(ask(&mut s, &mut r, "/echo?again").status, 200);
}

#[test]
fn a_next_request_of_another_lane_is_served_by_that_lane() {
    let (server, _p) = start(waiting(small_limits()));
    let (mut s, mut r) = conversation(server.local_addr());
    let lanes: Vec<String> = ["/echo", "/quick/echo", "/control/echo", "/echo"]
        .iter()
        .map(|path| {
            let resp = ask(&mut s, &mut r, path);
            assert_eq!(resp.status, 200);
            let worker = resp.header("x-worker").unwrap();
            worker.rsplit_once('-').unwrap().0.to_string()
        })
        .collect();
    assert_eq!(
        lanes,
        ["http-worker", "http-quick", "http-control", "http-worker"]
    );
}

#[test]
fn a_next_request_its_lane_has_no_room_for_gets_503() {
    let (server, probes) = start(waiting(Limits {
        workers: 2,
        max_in_flight: 1,
        ..small_limits()
    }));
    let addr = server.local_addr();
    let (mut s, mut r) = conversation(addr);
    assert_eq!(ask(&mut s, &mut r, "/echo").status, 200);
    // (The answer is out before its worker counts the request out of the lane.)
    crate::support::wait::until(IO, "the first request counted out", || {
        get(addr, "/busy").text().starts_with("0 ")
    });
    // Another client takes the lane's only admission while the first connection's worker
    // waits for its next request.
    let mut blocked = connect(addr);
    blocked.write_all(b"GET /block HTTP/1.1\r\n\r\n").unwrap();
    probes.started.recv_timeout(IO).expect("handler started");
    let shed = ask(&mut s, &mut r, "/echo?over");
    assert_eq!(shed.status, 503, "{}", shed.text());
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_closed(&mut r);
    probes.release.send(()).unwrap();
    let mut r = BufReader::new(blocked);
    assert_eq!(read_response(&mut r, false).text(), "released");
}

#[test]
fn a_malformed_next_request_gets_400_and_the_connection_closes() {
    let (server, _p) = start(waiting(small_limits()));
    let (mut s, mut r) = conversation(server.local_addr());
    assert_eq!(ask(&mut s, &mut r, "/echo").status, 200);
    s.write_all("GET /echo HTTP/1.1\r\nNo colon here ✓\r\n\r\n".as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut r, false).status, 400);
    assert_closed(&mut r);
}

#[test]
fn a_next_request_slower_than_the_wait_is_finished_by_the_poller() {
    let (server, _p) = start(Limits {
        next_request_wait: Duration::from_millis(50),
        ..small_limits()
    });
    let (mut s, mut r) = conversation(server.local_addr());
    assert_eq!(ask(&mut s, &mut r, "/echo").status, 200);
    // Half a head within the wait, the rest long after it.
    s.write_all(b"POST /echo?late HTTP/1.1\r\n").unwrap();
    thread::sleep(Duration::from_millis(300));
    s.write_all(b"Content-Length: 4\r\n\r\nbody").unwrap();
    let resp = read_response(&mut r, false);
    assert_eq!((resp.status, resp.text().as_str()), (200, "body"));
    assert_eq!(resp.header("x-query"), Some("late"));
}

#[test]
fn a_next_request_expecting_100_continue_gets_it_from_the_waiting_worker() {
    let (server, _p) = start(waiting(small_limits()));
    let (mut s, mut r) = conversation(server.local_addr());
    assert_eq!(ask(&mut s, &mut r, "/echo").status, 200);
    s.write_all(b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .unwrap();
    assert_eq!(read_line(&mut r), "HTTP/1.1 100 Continue");
    assert_eq!(read_line(&mut r), "");
    s.write_all("héllo".as_bytes()[..5].as_ref()).unwrap();
    let resp = read_response(&mut r, false);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, "héllo".as_bytes()[..5]);
}

#[test]
fn shutdown_does_not_wait_for_a_worker_waiting_for_a_next_request() {
    let (server, _p) = start(Limits {
        next_request_wait: Duration::from_secs(60),
        ..small_limits()
    });
    let (mut s, mut r) = conversation(server.local_addr());
    assert_eq!(ask(&mut s, &mut r, "/echo").status, 200);
    let t = Instant::now();
    assert!(server.shutdown(Duration::from_secs(20)), "drained");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_closed(&mut r);
}

#[test]
fn hostile_next_requests_meet_the_same_limits_as_first_ones() {
    let limits = waiting(Limits {
        head_timeout: Duration::from_millis(400),
        ..small_limits()
    });
    let (server, _p) = start(limits);
    let addr = server.local_addr();
    // A head over the limit, non-ASCII included: 431, closed.
    let (mut s, mut r) = conversation(addr);
    assert_eq!(ask(&mut s, &mut r, "/echo").status, 200);
    let huge = format!(
        "GET /echo HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "é".repeat(40 * 1024)
    );
    let _ = s.write_all(huge.as_bytes());
    assert_eq!(read_response(&mut r, false).status, 431);
    // An endless head, trickled: 408 at the head timeout, whoever reads it.
    let (mut s, mut r) = conversation(addr);
    assert_eq!(ask(&mut s, &mut r, "/echo").status, 200);
    let t = Instant::now();
    s.write_all(b"GET /echo HTTP/1.1\r\n").unwrap();
    for _ in 0..40 {
        // The server answers 408 and shuts its side midway: later writes may fail.
        if s.write_all(b"X-Trickle: a\r\n").is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(25));
    }
    let resp = read_response(&mut r, false);
    assert_eq!(resp.status, 408, "{}", resp.text());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // A truncated request, then the client's half-close: no answer, the connection ends.
    let (mut s, mut r) = conversation(addr);
    assert_eq!(ask(&mut s, &mut r, "/echo").status, 200);
    s.write_all(b"POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_closed(&mut r);
    // The server still serves.
    assert_served_within(addr, Duration::from_secs(1));
}
