//! The few Linux syscalls std does not expose: an epoll instance, an eventfd used to wake the
//! poller, a non-blocking check whether a peer hung up (half-close is not), and a bounded wait
//! for a socket to become writable, a listener's accept backlog; plus two small socket helpers
//! of the poller (non-blocking small writes, accept error classification).
//!
//! Thread model: `Epoll` waits only on the poller thread; workers re-arm connections in it
//! (`epoll_ctl` is thread-safe); `Waker` is shared (`&self` methods, eventfd writes are
//! atomic); `peer_gone` and `wait_writable` may be called from any thread.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Interest for every registered socket: readable, or the peer shut down its write side.
const READ_INTEREST: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
/// The same, disarmed after one event until re-armed ([`Epoll::rearm`]).
const ONESHOT_INTEREST: u32 = READ_INTEREST | libc::EPOLLONESHOT as u32;

/// A level-triggered epoll instance. Level-triggered keeps the bookkeeping simple: a socket we
/// did not fully read is reported again on the next `wait`. Connections are registered
/// one-shot ([`Epoll::add_oneshot`]): after an event the socket stays registered but silent
/// until [`Epoll::rearm`], so handing it to another thread needs no `EPOLL_CTL_DEL`, and that
/// thread can re-arm it itself (`epoll_ctl` is thread-safe).
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall with a valid flag; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    /// Watch `fd` for readability; events carry `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, READ_INTEREST, token)
    }

    /// Watch `fd` for one readiness event, then keep it registered but disarmed.
    pub fn add_oneshot(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, ONESHOT_INTEREST, token)
    }

    /// Arm a one-shot registration again (callable from any thread).
    pub fn rearm(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, ONESHOT_INTEREST, token)
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as above; the event argument is ignored for DEL but must be non-null on old kernels.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Wait up to `timeout_ms` for events; fills the front of `events` and returns how many.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
        let max = i32::try_from(events.len()).unwrap_or(i32::MAX);
        // SAFETY: the kernel writes at most `max` entries into `events`, which has that many.
        let n =
            unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

/// An eventfd: workers and `Server::shutdown` write to it so the poller leaves `epoll_wait`.
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker { fd })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64. A failure can only be EAGAIN on counter
        // overflow, in which case the poller is already due to wake up, so it is ignored.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Reset the counter so level-triggered epoll stops reporting it.
    pub fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64; EAGAIN (nothing pending) is fine.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }
}

/// True when the client is gone: the connection was reset or hung up (both directions closed,
/// e.g. our write was answered with a reset), or the socket is in error. An orderly EOF alone
/// is NOT gone: a client may half-close (`shutdown(SHUT_WR)`) after sending its request and
/// still read the response; a client that closed completely is found out by the next write
/// (its kernel answers with a reset). Consumes nothing and never blocks.
pub fn peer_gone(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, zero timeout (never blocks).
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        if n >= 0 {
            break;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return true;
        }
    }
    pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

/// Wait until `fd` can take more bytes (or is in error, which the next write reports), at
/// most `timeout`; `TimedOut` after that. For writes on a non-blocking socket that must
/// behave like a blocking one with a send timeout.
pub fn wait_writable(fd: RawFd, timeout: Duration) -> io::Result<()> {
    if wait_for(fd, libc::POLLOUT, timeout)? {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out"))
    }
}

/// Wait until `fd` has bytes to read (or an EOF or error, which the next read reports), at
/// most `timeout` (microsecond precision); false when the time ran out first.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    wait_for(fd, libc::POLLIN, timeout)
}

/// `ppoll` one descriptor for `events` until `timeout` has passed (signals do not shorten or
/// lengthen the wait); true when it became ready.
fn wait_for(fd: RawFd, events: libc::c_short, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let ts = libc::timespec {
            tv_sec: left.as_secs().try_into().unwrap_or(i32::MAX.into()),
            tv_nsec: libc::c_long::from(left.subsec_nanos()),
        };
        // SAFETY: one valid pollfd and timespec; no signal mask change; the timeout bounds
        // the wait.
        let n = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        if n > 0 {
            return Ok(true);
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// True while a pooled connection is usable: nothing to read and no EOF or error, checked with
/// one `recv(MSG_PEEK | MSG_DONTWAIT)` (never blocks, consumes nothing). Bytes waiting on an
/// idle connection are something the server sent unasked, so that connection is not usable.
pub fn peer_alive(fd: RawFd) -> bool {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most 1 byte into a valid local; MSG_DONTWAIT never blocks.
        let n = unsafe {
            libc::recv(
                fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return false;
        }
        match io::Error::last_os_error().kind() {
            io::ErrorKind::WouldBlock => return true,
            io::ErrorKind::Interrupted => {}
            _ => return false,
        }
    }
}

/// Let up to `backlog` connections wait to be accepted (the kernel caps it at
/// `net.core.somaxconn`). std listens with 128: a burst of new clients beyond that (a thousand
/// streams starting) has its SYNs dropped, and each of those clients, a health probe among
/// them, waits a second for its SYN to be retransmitted. `listen` again on a listening socket
/// only changes its backlog.
pub fn set_accept_backlog(listener: &TcpListener, backlog: usize) -> io::Result<()> {
    let backlog = libc::c_int::try_from(backlog).unwrap_or(libc::c_int::MAX);
    // SAFETY: listen on a descriptor the listener owns and keeps open across the call; no
    // memory is passed.
    if unsafe { libc::listen(listener.as_raw_fd(), backlog) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Have the kernel hand over a new connection only once its first bytes came (or after about
/// `secs`, whichever is first): an HTTP client speaks first, so the poller then wakes once per
/// new connection, accepts it and reads its request in the same turn, instead of waking for
/// the handshake and again for the request. A connection still silent after `secs` is handed
/// over as usual and its head deadline applies.
pub fn set_defer_accept(listener: &TcpListener, secs: u32) -> io::Result<()> {
    let secs = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt on a descriptor the listener owns and keeps open across the call,
    // with a pointer to a live `c_int` and its size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Write a small response without blocking; false unless every byte went out. Used only for
/// short messages on sockets we are about to read from or close, whose send buffer is empty.
pub fn write_now(stream: &TcpStream, bytes: &[u8]) -> bool {
    let mut s = stream;
    let mut rest = bytes;
    while !rest.is_empty() {
        match s.write(rest) {
            Ok(0) => return false,
            Ok(n) => rest = rest.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Errors that concern only the connection being accepted (accept(2): "should treat them
/// like EAGAIN by retrying"), as opposed to resource exhaustion.
pub fn is_per_connection_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a test failure"
)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    /// Polls until `peer_gone` says `want` (or 2 s pass); returns the last answer.
    fn settle(server: &TcpStream, want: bool) -> bool {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while peer_gone(server.as_raw_fd()) != want && std::time::Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        peer_gone(server.as_raw_fd())
    }

    /// With deferred accept, a connection that has sent its first bytes is handed over at
    /// once, with them readable, while a silent one (connected earlier) still waits.
    #[test]
    fn deferred_accept_hands_over_connections_that_have_spoken() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        set_defer_accept(&listener, 1).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = TcpStream::connect(addr).unwrap();
        let mut speaking = TcpStream::connect(addr).unwrap();
        speaking.write_all(b"G").unwrap();
        let end = std::time::Instant::now() + std::time::Duration::from_millis(500);
        let accepted = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < end, "nothing handed over");
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(
            accepted.peer_addr().unwrap(),
            speaking.local_addr().unwrap()
        );
        accepted.set_nonblocking(true).unwrap();
        assert_eq!(
            accepted.peek(&mut [0; 4]).unwrap(),
            1,
            "its byte came with it"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(
            listener.accept().map(|_| ()).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock),
            "the silent connection is not handed over yet"
        );
        drop(silent);
    }

    /// Connections beyond std's backlog of 128 wait in the accept queue instead of having
    /// their SYNs dropped (a dropped SYN is retried after a second: the connect times out).
    #[test]
    fn a_raised_backlog_queues_a_burst_of_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        set_accept_backlog(&listener, 1024).unwrap();
        let addr = listener.local_addr().unwrap();
        // The kernel caps the backlog at net.core.somaxconn (4096 since Linux 5.4).
        let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(128);
        let burst = cap.min(600);
        let clients: Vec<TcpStream> = (0..burst)
            .map(|i| {
                TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500))
                    .unwrap_or_else(|e| panic!("connection {i} not queued: {e}"))
            })
            .collect();
        assert_eq!(clients.len(), burst);
    }

    #[test]
    fn half_close_is_not_gone_but_reset_and_failed_writes_are() {
        let (mut client, server) = pair();
        assert!(!peer_gone(server.as_raw_fd()), "idle open connection");
        client.write_all(b"x").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!peer_gone(server.as_raw_fd()), "data then FIN: half-close");
        let mut b = [0u8; 2];
        assert_eq!(std::io::Read::read(&mut &server, &mut b).unwrap(), 1);
        assert_eq!(std::io::Read::read(&mut &server, &mut b).unwrap(), 0);
        assert!(!peer_gone(server.as_raw_fd()), "EOF read: still half-close");
        // The client can still read what we send.
        (&server).write_all(b"answer").unwrap();
        let mut got = [0u8; 6];
        std::io::Read::read_exact(&mut client, &mut got).unwrap();
        assert_eq!(&got, b"answer");
        assert!(!settle(&server, true));

        // A full close is a FIN too; the next write draws a reset, and then it is gone.
        let (client, server) = pair();
        drop(client);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!peer_gone(server.as_raw_fd()));
        (&server).write_all(b"probe").unwrap();
        assert!(
            settle(&server, true),
            "reset after writing to a closed peer"
        );
    }

    #[test]
    fn oneshot_fires_once_until_rearmed_from_another_thread() {
        let ep = std::sync::Arc::new(Epoll::new().unwrap());
        let (mut client, server) = pair();
        ep.add_oneshot(server.as_raw_fd(), 9).unwrap();
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        assert_eq!(ep.wait(&mut evs, 0).unwrap(), 0);
        client.write_all(b"x").unwrap();
        assert_eq!(ep.wait(&mut evs, 1000).unwrap(), 1);
        let token = evs[0].u64;
        assert_eq!(token, 9);
        // Unread data, but the registration is disarmed.
        assert_eq!(ep.wait(&mut evs, 50).unwrap(), 0);
        let (ep2, fd) = (std::sync::Arc::clone(&ep), server.as_raw_fd());
        std::thread::spawn(move || ep2.rearm(fd, 10).unwrap())
            .join()
            .unwrap();
        assert_eq!(ep.wait(&mut evs, 1000).unwrap(), 1);
        let token = evs[0].u64;
        assert_eq!(token, 10);
    }

    #[test]
    fn wait_writable_times_out_on_a_full_send_buffer() {
        let (_client, server) = pair();
        server.set_nonblocking(true).unwrap();
        assert!(wait_writable(server.as_raw_fd(), Duration::from_millis(100)).is_ok());
        let chunk = vec![0u8; 64 * 1024];
        while (&server).write(&chunk).is_ok() {}
        let t0 = Instant::now();
        let e = wait_writable(server.as_raw_fd(), Duration::from_millis(100)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t0.elapsed() >= Duration::from_millis(90));
    }

    #[test]
    fn peer_alive_until_data_or_close() {
        let (mut client, server) = pair();
        assert!(peer_alive(server.as_raw_fd()));
        client.write_all(b"x").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!peer_alive(server.as_raw_fd()), "unasked bytes");
        let (client, server) = pair();
        drop(client);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!peer_alive(server.as_raw_fd()), "closed");
    }

    #[test]
    fn waker_wakes_epoll_and_drains() {
        let ep = Epoll::new().unwrap();
        let w = Waker::new().unwrap();
        ep.add(w.raw_fd(), 7).unwrap();
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        assert_eq!(ep.wait(&mut evs, 0).unwrap(), 0);
        w.wake();
        w.wake();
        assert_eq!(ep.wait(&mut evs, 1000).unwrap(), 1);
        let token = evs[0].u64;
        assert_eq!(token, 7);
        w.drain();
        assert_eq!(ep.wait(&mut evs, 0).unwrap(), 0);
    }
}
