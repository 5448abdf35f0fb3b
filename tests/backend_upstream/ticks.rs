//! Streams and their ticks: a trickling stream ends at the deadline, a silent one ticks and
//! ends at the read timeout, and a slow head ticks until the client leaves.

use super::*;

#[test]
fn trickling_streams_end_at_the_deadline() {
    for kind in KINDS {
        for keep_alive in [": keep-alive\n\n", kind.ping()] {
            let closed = Arc::new((Mutex::new(false), Condvar::new()));
            let c = closed.clone();
            let fake = Fake::new(move |_, out| {
                sse_head(out)?;
                // Forever, until the gateway hangs up.
                let err = loop {
                    if let Err(e) = chunk(out, keep_alive) {
                        break e;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                };
                *c.0.lock().unwrap() = true;
                c.1.notify_all();
                Err(err)
            });
            // The per-read timeout never trips (bytes keep coming); only the deadline can.
            let b = kind.backend(fake.addr, Duration::from_secs(10));
            let mut sink = Sink::default();
            let start = Instant::now();
            let e = turn(&*b, true, start + Duration::from_millis(1500), &mut sink).unwrap_err();
            let took = start.elapsed();
            assert_eq!(e, Error::Timeout, "{kind:?} {keep_alive:?}");
            assert_eq!(ApiError::from(&e).status, 504);
            assert!(
                took >= Duration::from_millis(1400) && took < Duration::from_millis(1500 + 3000),
                "{kind:?} {keep_alive:?}: {took:?}"
            );
            assert!(sink.idles >= 1, "{kind:?} {keep_alive:?}: no idle tick");
            assert!(sink.text.is_empty());
            // The upstream connection is closed, not left to trickle on.
            let (lock, cv) = &*closed;
            let (hung_up, _) = cv
                .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(5), |c| !*c)
                .unwrap();
            assert!(
                *hung_up,
                "{kind:?} {keep_alive:?}: upstream connection left open"
            );
        }
    }
}

/// Blocks until the gateway closes the connection (true) or 10 s pass (false).
fn wait_hang_up(out: &mut TcpStream) -> bool {
    out.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    match out.read(&mut [0; 64]) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
    }
}

type Flag = Arc<(Mutex<Option<bool>>, Condvar)>;

fn set(flag: &Flag, value: bool) {
    *flag.0.lock().unwrap() = Some(value);
    flag.1.notify_all();
}

fn wait(flag: &Flag) -> Option<bool> {
    let (lock, cv) = &**flag;
    *cv.wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(15), |v| {
        v.is_none()
    })
    .unwrap()
    .0
}

/// The body is read on the request's thread: a silent upstream still gives idle ticks, and its
/// silence ends the turn at the backend's per-read timeout (counted across ticks), long before
/// the deadline, closing the connection.
#[test]
fn a_silent_stream_ticks_and_ends_at_the_read_timeout() {
    for kind in KINDS {
        let hung_up: Flag = Default::default();
        let h = hung_up.clone();
        let fake = Fake::new(move |_, out| {
            sse_head(out)?;
            chunk(out, kind.ping())?;
            set(&h, wait_hang_up(out));
            Err(io::ErrorKind::ConnectionAborted.into())
        });
        let b = kind.backend(fake.addr, Duration::from_millis(2500));
        let mut sink = Sink::default();
        let start = Instant::now();
        let e = turn(&*b, true, in_a_minute(), &mut sink).unwrap_err();
        let took = start.elapsed();
        assert_eq!(e, Error::Timeout, "{kind:?}");
        assert!(
            took >= Duration::from_millis(2400) && took < Duration::from_secs(5),
            "{kind:?}: {took:?}"
        );
        assert!(sink.idles >= 2, "{kind:?}: {} idle ticks", sink.idles);
        assert_eq!(wait(&hung_up), Some(true), "{kind:?}: connection left open");
    }
}

/// A sink whose client leaves at its `leave_at`-th idle tick.
struct Leaving {
    idles: usize,
    leave_at: usize,
}

impl TurnSink for Leaving {
    fn text(&mut self, _delta: &str) -> Result<(), Cancelled> {
        Ok(())
    }
    fn idle(&mut self) -> Result<(), Cancelled> {
        self.idles += 1;
        if self.idles >= self.leave_at {
            return Err(Cancelled);
        }
        Ok(())
    }
}

/// While the upstream thinks before its head, the sink still gets idle ticks; once the client
/// leaves (here at a tick during the body), the turn ends and the upstream connection closes.
#[test]
fn a_slow_head_ticks_and_a_departed_client_closes_the_connection() {
    for kind in KINDS {
        let hung_up: Flag = Default::default();
        let h = hung_up.clone();
        let fake = Fake::new(move |_, out| {
            std::thread::sleep(Duration::from_millis(2500));
            sse_head(out)?;
            // Pings every 100 ms until the gateway hangs up.
            for _ in 0..100 {
                if chunk(out, kind.ping()).is_err() {
                    set(&h, true);
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            set(&h, false);
            Ok(())
        });
        let b = kind.backend(fake.addr, Duration::from_secs(10));
        let mut sink = Leaving {
            idles: 0,
            leave_at: 3,
        };
        let start = Instant::now();
        let e = turn(&*b, true, in_a_minute(), &mut sink).unwrap_err();
        let took = start.elapsed();
        assert_eq!(e, Error::Cancelled, "{kind:?}");
        // Two ticks while waiting for the head (at about 1 s and 2 s), the third after it.
        assert!(
            took >= Duration::from_millis(2500) && took < Duration::from_millis(4500),
            "{kind:?}: {took:?}"
        );
        assert_eq!(wait(&hung_up), Some(true), "{kind:?}: connection left open");
    }
}

/// A client that leaves while the upstream has not even sent its head ends the call at the
/// next tick (the wait for the head runs on the request's thread): no waiting for the head,
/// and the upstream connection is closed.
#[test]
fn a_client_leaving_during_the_head_wait_ends_the_call_at_the_next_tick() {
    for kind in KINDS {
        let hung_up: Flag = Default::default();
        let h = hung_up.clone();
        // Thinks for 10 s before any head; true if the gateway hangs up within 3 s.
        let fake = Fake::new(move |_, out| {
            let asked = Instant::now();
            let hung_up = wait_hang_up(out);
            set(&h, hung_up && asked.elapsed() < Duration::from_secs(3));
            Ok(())
        });
        let b = kind.backend(fake.addr, Duration::from_secs(10));
        let mut sink = Leaving {
            idles: 0,
            leave_at: 1,
        };
        let start = Instant::now();
        let e = turn(&*b, true, in_a_minute(), &mut sink).unwrap_err();
        let took = start.elapsed();
        assert_eq!(e, Error::Cancelled, "{kind:?}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2000),
            "{kind:?}: {took:?}"
        );
        assert_eq!(wait(&hung_up), Some(true), "{kind:?}: connection left open");
    }
}
