//! Pooled upstream connections: reused by concurrent and sequential turns, each request sent
//! in one write, and a connection the upstream closed or spoiled never reused.

use super::*;

/// Turns running at once per wave (more than ureq's default pool of 10 idle connections).
const WAVE: usize = 16;
const WAVES: usize = 3;

#[test]
fn pooled_connections_are_reused_by_concurrent_and_sequential_turns() {
    for kind in KINDS {
        // Every request of a wave waits until the whole wave has arrived, so WAVE connections
        // are in use at once; the next wave must find them all in the pool.
        let gate = Arc::new((Mutex::new(0usize), Condvar::new()));
        let g = gate.clone();
        let fake = Fake::new(move |_, out| {
            let (count, cv) = &*g;
            let mut n = count.lock().unwrap();
            *n += 1;
            if *n <= WAVE * WAVES {
                let full = (*n).div_ceil(WAVE) * WAVE;
                cv.notify_all();
                let (_n, timeout) = cv
                    .wait_timeout_while(n, Duration::from_secs(20), |n| *n < full)
                    .unwrap();
                assert!(!timeout.timed_out(), "wave never filled");
            } else {
                drop(n);
            }
            respond(out, "200 OK", "", kind.answer())
        });
        let b = kind.backend(fake.addr, Duration::from_secs(10));
        for wave in 0..WAVES {
            let workers: Vec<_> = (0..WAVE)
                .map(|_| {
                    let b = b.clone();
                    std::thread::spawn(move || {
                        turn(&*b, false, in_a_minute(), &mut Sink::default()).map(|t| t.content)
                    })
                })
                .collect();
            for w in workers {
                assert_eq!(w.join().unwrap().as_deref(), Ok("ok"), "{kind:?}");
            }
            assert_eq!(
                fake.accepted(),
                WAVE,
                "{kind:?}: wave {wave} opened new connections"
            );
        }
        for _ in 0..10 {
            let t = turn(&*b, false, in_a_minute(), &mut Sink::default()).unwrap();
            assert_eq!(t.content, "ok");
        }
        assert_eq!(fake.accepted(), WAVE, "{kind:?}");
        assert_eq!(fake.paths().len(), WAVE * WAVES + 10);
    }
}

/// Whether `bytes` hold a whole request: its head and its `Content-Length` body.
fn whole_request(bytes: &[u8]) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    bytes.len() >= end + 4 + length
}

#[test]
fn a_request_leaves_in_one_write_and_spoiled_pooled_connections_are_not_reused() {
    for kind in KINDS {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Requests 0–2 on one connection, the third answer followed by bytes nobody asked
        // for; request 3 on a second connection, closed by the upstream after its answer;
        // request 4 on a third.
        let upstream = std::thread::spawn(move || {
            let mut whole_at_first_read = Vec::new();
            let mut connections = 0;
            let mut conn: Option<TcpStream> = None;
            for n in 0..5 {
                let c = conn.get_or_insert_with(|| {
                    connections += 1;
                    listener.accept().unwrap().0
                });
                let mut buf = vec![0; 64 * 1024];
                let mut got = c.read(&mut buf).unwrap();
                whole_at_first_read.push(whole_request(&buf[..got]));
                while !whole_request(&buf[..got]) {
                    got += c.read(&mut buf[got..]).unwrap();
                }
                respond(c, "200 OK", "", kind.answer()).unwrap();
                match n {
                    2 => {
                        c.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
                        conn = None;
                    }
                    3 => conn = None,
                    _ => {}
                }
            }
            (whole_at_first_read, connections)
        });
        let b = kind.backend(addr, Duration::from_secs(5));
        for n in 0..5 {
            // The upstream waits in its read; a pooled connection's close or stray bytes
            // have arrived by the next request, as after any idle time.
            std::thread::sleep(Duration::from_millis(50));
            let t = turn(&*b, false, in_a_minute(), &mut Sink::default());
            assert_eq!(t.map(|t| t.content).as_deref(), Ok("ok"), "{kind:?} #{n}");
        }
        let (whole_at_first_read, connections) = upstream.join().unwrap();
        assert_eq!(
            whole_at_first_read, [true; 5],
            "{kind:?}: head and body in one write"
        );
        assert_eq!(connections, 3, "{kind:?}");
    }
}
