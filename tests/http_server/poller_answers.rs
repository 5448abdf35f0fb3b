//! Requests the handler marks `answered_by_poller` (the gateway's liveness and readiness
//! probes) are answered on the poller thread itself, so a probe never waits for a worker to be
//! scheduled. The poller answers one request at a time (pipelined ones go to their lane), a
//! handler that panics or does not answer there gets a 500 as on a worker, and the poller's
//! writes never wait for a client that does not read. The control-plane threads ask the
//! scheduler for short slices.

use super::*;

fn thread_of(r: &Resp) -> &str {
    r.header("x-worker").unwrap_or_default()
}

fn ask(s: &mut TcpStream, r: &mut BufReader<TcpStream>, path: &str) -> Resp {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    read_response(r, false)
}

#[test]
fn a_probe_is_answered_by_the_poller_on_new_and_kept_alive_connections() {
    let (server, _p) = start(small_limits());
    let addr = server.local_addr();
    let r = get(addr, "/poller/echo?new");
    assert_eq!((r.status, thread_of(&r)), (200, "http-poller"));
    let head = exchange(addr, b"HEAD /poller/echo HTTP/1.1\r\nHost: t\r\n\r\n").0;
    assert_eq!(head.status, 200);

    let mut s = connect(addr);
    let mut rd = BufReader::new(s.try_clone().unwrap());
    for (path, by) in [
        ("/poller/echo?1", "http-poller"),
        ("/poller/echo?2", "http-poller"),
        ("/echo", "http-worker-"),
        ("/poller/echo?3", "http-poller"),
    ] {
        // Past the worker's wait for a next request, which would serve it itself.
        thread::sleep(Duration::from_millis(50));
        let r = ask(&mut s, &mut rd, path);
        assert_eq!(r.status, 200, "{path}");
        assert!(thread_of(&r).starts_with(by), "{path}: {}", thread_of(&r));
    }
}

#[test]
fn pipelined_probes_go_to_their_lane_and_are_answered_in_order() {
    let (server, _p) = start(small_limits());
    let mut s = connect(server.local_addr());
    let mut batch = String::new();
    for i in 0..5 {
        batch.push_str(&format!(
            "GET /poller/echo?i={i} HTTP/1.1\r\nHost: t\r\n\r\n"
        ));
    }
    s.write_all(batch.as_bytes()).unwrap();
    let mut rd = BufReader::new(s);
    for i in 0..5 {
        let r = read_response(&mut rd, false);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-query"), Some(format!("i={i}").as_str()));
        assert!(
            thread_of(&r).starts_with("http-worker-"),
            "{}",
            thread_of(&r)
        );
    }
}

#[test]
fn a_probe_handler_that_panics_or_does_not_answer_gets_500_and_the_poller_goes_on() {
    let (server, _p) = start(small_limits());
    let addr = server.local_addr();
    assert_eq!(get(addr, "/poller/panic").status, 500);
    assert_eq!(get(addr, "/poller/noreply").status, 500);
    let r = get(addr, "/poller/echo");
    assert_eq!((r.status, thread_of(&r)), (200, "http-poller"));
    assert_eq!(get(addr, "/echo").status, 200);
}

/// A 64 MiB answer on the poller to a client that does not read: the poller writes what fits
/// and closes that connection rather than wait `io_timeout` for room; others are served on.
#[test]
fn the_pollers_writes_never_wait_for_a_client_that_does_not_read() {
    let limits = Limits {
        io_timeout: Duration::from_secs(30),
        ..small_limits()
    };
    let (server, _p) = start(limits);
    let addr = server.local_addr();
    let mut stuck = connect(addr);
    stuck
        .write_all(b"GET /poller/big?mib=64 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let r = get(addr, "/poller/echo");
    assert_eq!((r.status, thread_of(&r)), (200, "http-poller"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let mut got = Vec::new();
    stuck.set_read_timeout(Some(IO)).unwrap();
    let _ = stuck.read_to_end(&mut got);
    assert!(
        !got.is_empty() && got.len() < 64 * 1024 * 1024,
        "{}",
        got.len()
    );
}

/// `se.slice` of every thread of this process whose name starts with `prefix`.
fn slices(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(prefix) {
            continue;
        }
        let sched = std::fs::read_to_string(task.path().join("sched")).unwrap_or_default();
        if let Some(line) = sched.lines().find(|l| l.starts_with("se.slice")) {
            out.push(
                line.rsplit(':')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            );
        }
    }
    out
}

#[test]
fn control_plane_threads_ask_for_short_scheduler_slices() {
    let (server, _p) = start(small_limits());
    let addr = server.local_addr();
    assert_eq!(get(addr, "/quick/echo").status, 200);
    assert_eq!(get(addr, "/echo").status, 200);
    if slices("http-poller").is_empty() {
        eprintln!("this kernel shows no se.slice: nothing to check");
        return;
    }
    // Threads set their slice as they start; give the last ones a moment.
    let deadline = Instant::now() + IO;
    loop {
        let control: Vec<String> = ["http-poller", "http-quick-", "http-control-"]
            .iter()
            .flat_map(|p| slices(p))
            .collect();
        if control.iter().all(|s| s == "100000") || Instant::now() > deadline {
            assert!(control.iter().all(|s| s == "100000"), "{control:?}");
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let workers = slices("http-worker-");
    assert!(!workers.is_empty() && workers.iter().all(|s| s != "100000"));
}
