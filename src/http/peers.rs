//! Open connections per client address, for `Limits::max_connections_per_ip`: one client cannot
//! take every connection slot. IPv4 addresses count one by one (IPv4-mapped IPv6 as IPv4);
//! IPv6 addresses count per /64, the block one subscriber usually gets. Each accepted
//! connection holds a [`PeerSlot`]; dropping it (wherever the connection is closed) gives the
//! slot back, so the count cannot drift. The table has one entry per address with an open
//! connection, so it is bounded by `max_connections`.
//!
//! Thread model: slots are taken by the poller thread and may be dropped on any thread (a worker
//! closing a connection), so the table sits behind a mutex held for a map update only.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use parking_lot::Mutex;

#[derive(Debug)]
pub(super) struct PeerTable {
    /// 0 = no cap (nothing is counted).
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection of one address; gives its slot back when dropped.
#[derive(Debug)]
pub(super) struct PeerSlot {
    table: Arc<PeerTable>,
    key: Option<IpAddr>,
}

impl PeerTable {
    pub(super) fn new(cap: usize) -> Arc<PeerTable> {
        Arc::new(PeerTable {
            cap,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a new connection from `ip`, or `None` when that address is at the cap.
    pub(super) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        if self.cap == 0 {
            return Some(PeerSlot {
                table: Arc::clone(self),
                key: None,
            });
        }
        let key = address_key(ip);
        let mut open = self.open.lock();
        let n = open.entry(key).or_insert(0);
        if *n >= self.cap {
            if *n == 0 {
                open.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            table: Arc::clone(self),
            key: Some(key),
        })
    }

    #[cfg(test)]
    fn count(&self, ip: IpAddr) -> usize {
        self.open.lock().get(&address_key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let Some(key) = self.key else {
            return;
        };
        let mut open = self.table.open.lock();
        if let Some(n) = open.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&key);
            }
        }
    }
}

/// The address a connection counts against.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]
mod tests {
    use super::*;

    #[test]
    fn cap_per_address_and_slots_come_back_on_drop() {
        let t = PeerTable::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = t.acquire(a).unwrap();
        let s2 = t.acquire(a).unwrap();
        assert!(t.acquire(a).is_none(), "third from one address");
        let _b1 = t.acquire(b).unwrap();
        drop(s1);
        assert_eq!(t.count(a), 1);
        let _s3 = t.acquire(a).unwrap();
        drop(s2);
        drop(_s3);
        assert_eq!(t.count(a), 0);
        assert_eq!(t.open.lock().len(), 1, "empty entries are removed");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let t = PeerTable::new(1);
        let _x = t.acquire("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(t.acquire("2001:db8:1:2:ffff::9".parse().unwrap()).is_none());
        assert!(t.acquire("2001:db8:1:3::1".parse().unwrap()).is_some());
        let _v4 = t.acquire("192.0.2.7".parse().unwrap()).unwrap();
        assert!(t.acquire("::ffff:192.0.2.7".parse().unwrap()).is_none());
    }

    #[test]
    fn zero_means_no_cap() {
        let t = PeerTable::new(0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let slots: Vec<_> = (0..1000).map(|_| t.acquire(ip).unwrap()).collect();
        assert_eq!(slots.len(), 1000);
        assert!(t.open.lock().is_empty());
    }
}
