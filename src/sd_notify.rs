//! systemd's notify protocol without a crate: datagrams to the unix socket named by
//! `$NOTIFY_SOCKET` (a path, or an abstract name written `@name`). `serve` sends `READY=1` once
//! it listens, `WATCHDOG=1` from the HTTP poller loop every half of `$WATCHDOG_USEC` (so a
//! wedged poller stops the pings and systemd restarts the process), and `STOPPING=1` when a
//! shutdown begins. Without `$NOTIFY_SOCKET` (not run by systemd with `Type=notify`) every call
//! is a no-op. `$WATCHDOG_PID`, when set, must be our pid.
//!
//! Thread model: `Notifier` is shared (`Arc`) between the main thread and the poller thread;
//! `send` is one non-blocking `sendto` on an unconnected datagram socket, so it never blocks
//! either of them.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where and how to notify; `None` fields mean "not asked for".
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the process environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`).
    pub fn from_env() -> Notifier {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Notifier::new(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
        )
    }

    fn new(socket: Option<&str>, watchdog_usec: Option<&str>, watchdog_pid: Option<&str>) -> Self {
        let target = socket.and_then(|s| match open(s) {
            Ok(t) => Some(t),
            Err(e) => {
                log::warn!("NOTIFY_SOCKET {s:?} unusable, systemd is not notified: {e}");
                None
            }
        });
        let for_us = watchdog_pid.is_none_or(|p| p.trim() == std::process::id().to_string());
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0 && for_us && target.is_some())
            .map(Duration::from_micros);
        Notifier { target, watchdog }
    }

    /// How often to send `WATCHDOG=1` (half the watchdog timeout), when systemd asked for it.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.map(|t| t / 2)
    }

    pub fn ready(&self) {
        self.send("READY=1");
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    fn send(&self, state: &str) {
        if let Some((sock, addr)) = &self.target
            && let Err(e) = sock.send_to_addr(state.as_bytes(), addr)
        {
            log::debug!("sd_notify {state}: {e}");
        }
    }
}

/// An unbound, non-blocking datagram socket and the notify address.
fn open(name: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match name.strip_prefix('@') {
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abstract_name.as_bytes())?
        }
        None if name.starts_with('/') => SocketAddr::from_pathname(name)?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither an absolute path nor @abstract",
            ));
        }
    };
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    Ok((sock, addr))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 64];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(buf.get(..n).unwrap()).into_owned()
    }

    #[test]
    fn sends_to_a_path_and_an_abstract_socket() {
        let dir = std::env::temp_dir().join(format!("aiproxy-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let n = Notifier::new(path.to_str(), Some("20000000"), None);
        assert_eq!(n.watchdog_every(), Some(Duration::from_secs(10)));
        n.ready();
        n.watchdog();
        n.stopping();
        assert_eq!(recv(&server), "READY=1");
        assert_eq!(recv(&server), "WATCHDOG=1");
        assert_eq!(recv(&server), "STOPPING=1");
        let _ = std::fs::remove_dir_all(&dir);

        use std::os::linux::net::SocketAddrExt;
        let name = format!("aiproxy-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        Notifier::new(Some(&format!("@{name}")), None, None).ready();
        assert_eq!(recv(&server), "READY=1");
    }

    #[test]
    fn absent_or_foreign_settings_disable_it() {
        let n = Notifier::new(None, Some("1000000"), None);
        assert!(n.target.is_none() && n.watchdog_every().is_none());
        n.ready(); // a no-op
        let n = Notifier::new(Some("relative/path"), None, None);
        assert!(n.target.is_none());
        let n = Notifier::new(Some("@x"), Some("1000000"), Some("1"));
        assert!(
            n.watchdog_every().is_none(),
            "WATCHDOG_PID of another process"
        );
        let n = Notifier::new(Some("@x"), Some("junk"), None);
        assert!(n.watchdog_every().is_none());
    }
}
