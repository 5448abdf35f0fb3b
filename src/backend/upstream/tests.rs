//! Unit tests of the upstream layer: agent configuration and error mapping. Wire behaviour
//! against live (fake) upstreams, for every backend kind, is in `tests/backend_upstream.rs`.

use std::io::{Error as IoError, ErrorKind};
use std::time::Duration;

use super::*;

fn upstream() -> Upstream {
    Upstream::new(
        "http://127.0.0.1:9/v1/x".into(),
        Vec::new(),
        Duration::from_secs(7),
        Limits {
            json_bytes: 1024,
            event_bytes: 1024,
        },
        |_| None,
    )
}

#[test]
fn agent_has_no_proxy_no_redirects_a_sized_pool_and_idle_gap_timeouts() {
    let u = upstream();
    let c = u.agent().config();
    assert!(c.proxy().is_none());
    assert!(!c.http_status_as_error());
    assert_eq!(c.max_redirects(), 0);
    assert!(!c.max_redirects_will_error());
    // Both: the overall cap (ureq's default 10) would otherwise bound the per-host one.
    assert_eq!(c.max_idle_connections(), IDLE_CONNECTIONS);
    assert_eq!(c.max_idle_connections_per_host(), IDLE_CONNECTIONS);
    let t = c.timeouts();
    let seven = Some(Duration::from_secs(7));
    assert_eq!(t.global, None, "a global timeout would cut long streams");
    assert_eq!(
        (t.connect, t.recv_response, t.resolve, t.send_body),
        (seven, seven, seven, seven)
    );
    assert_eq!(c.timeout_per_read(), seven);
}

#[test]
fn ureq_errors_map_to_backend_errors() {
    use ureq::Error as U;
    use ureq::Timeout as T;
    // Every timeout is a timeout, connecting included (504 for the client, one metrics kind).
    for t in [
        T::Connect,
        T::Resolve,
        T::RecvResponse,
        T::PerRead,
        T::Global,
    ] {
        assert_eq!(
            map_error(U::Timeout(t), Phase::Call),
            Error::Timeout,
            "{t:?}"
        );
    }
    let timed_out = IoError::new(ErrorKind::TimedOut, "connect timed out");
    assert_eq!(map_error(U::Io(timed_out), Phase::Call), Error::Timeout);
    assert_eq!(
        map_error(U::BodyExceedsLimit(1), Phase::Body),
        Error::TooLarge
    );
    assert!(matches!(
        map_error(U::HostNotFound, Phase::Call),
        Error::Connect(_)
    ));
    let refused = IoError::new(ErrorKind::ConnectionRefused, "refused");
    assert!(matches!(
        map_error(U::Io(refused), Phase::Call),
        Error::Connect(_)
    ));
    let reset = IoError::new(ErrorKind::ConnectionReset, "reset");
    assert!(matches!(
        map_error(U::Io(reset), Phase::Body),
        Error::Protocol(_)
    ));
    // A ureq timeout wrapped in io::Error by a body reader is still a timeout.
    assert_eq!(
        map_io_error(U::Timeout(T::PerRead).into_io()),
        Error::Timeout
    );
    assert_eq!(
        map_io_error(U::BodyExceedsLimit(9).into_io()),
        Error::TooLarge
    );
    let big = IoError::new(ErrorKind::InvalidData, "SSE event larger than 4 bytes");
    assert_eq!(map_io_error(big), Error::TooLarge);
}
