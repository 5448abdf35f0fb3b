//! Process and pipe syscalls std does not expose, for the stdio MCP transport: `poll(2)` on a
//! pipe, non-blocking mode, exit checks that do not reap (`waitid(WNOWAIT)`, so a process-group
//! id stays reserved until we reap the child and a group is never signalled after its id may
//! have been reused), signalling a whole process group, and whether we run as root; and
//! lowering one thread's scheduling priority (main-lane HTTP workers).
//!
//! Thread model: free functions, callable from any thread; none blocks beyond its timeout.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// What [`poll_fd`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    Read,
    Write,
}

/// Wait until `fd` is ready to read or to write, at most `timeout`. `Ok(false)` on timeout.
/// Hang-up and errors count as ready: the following read or write reports them.
pub fn poll_fd(fd: RawFd, ready: Ready, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: match ready {
            Ready::Read => libc::POLLIN,
            Ready::Write => libc::POLLOUT,
        },
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    match n {
        n if n > 0 => Ok(true),
        0 => Ok(false),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// Put a pipe end in non-blocking mode, so writes can be bounded by a deadline.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; no pointers involved.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How a child ended, checked without reaping it (`WNOWAIT`), so its pid — and with it the
/// process-group id — stays reserved until we reap it. `None` while it runs.
pub fn exit_status_nowait(pid: u32) -> Option<String> {
    // SAFETY: siginfo_t is plain data; all-zero is a valid "nothing happened" value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let id: libc::id_t = pid;
    // SAFETY: `info` is a valid siginfo_t we own.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            id,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        // ECHILD: already reaped (by our own shutdown); it is certainly gone.
        return Some("exited".into());
    }
    // SAFETY: waitid filled `info` (or left it zeroed when nothing has exited yet).
    let (si_pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if si_pid == 0 {
        return None;
    }
    Some(match info.si_code {
        libc::CLD_EXITED => format!("exited with status {status}"),
        _ => format!("killed by signal {status}"),
    })
}

/// Send `sig` to the whole process group led by `pid` (the child was spawned with
/// `process_group(0)`, so npx-style grandchildren are reached too).
pub fn signal_group(pid: u32, sig: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals a process group; no memory involved.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Whether the process runs as root (effective uid 0): the admin API then keeps a persisted
/// config file's owner.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Lower the scheduling priority of the calling thread (only): its nice value goes up by
/// `by` (Linux applies `setpriority(PRIO_PROCESS, tid)` to one thread). Raising nice needs
/// no privilege; it cannot be undone without one. The benchmark harness runs its stand-ins
/// for remote machines (load generator, fake upstream) this way.
pub fn lower_thread_priority(by: i32) -> io::Result<()> {
    let (tid, current) = this_thread_nice()?;
    let target = current.saturating_add(by).min(19);
    // SAFETY: setpriority changes the nice value of this thread only; no memory involved.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, target) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's id and nice value.
fn this_thread_nice() -> io::Result<(libc::id_t, libc::c_int)> {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    let tid = libc::id_t::try_from(tid).map_err(|_| io::Error::other("negative thread id"))?;
    // getpriority can return -1 legitimately, so errno is cleared first and checked after.
    errno_clear();
    // SAFETY: getpriority reads the nice value of a thread id; no memory involved.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
    if nice == -1 && io::Error::last_os_error().raw_os_error() != Some(0) {
        return Err(io::Error::last_os_error());
    }
    Ok((tid, nice))
}

fn errno_clear() {
    // SAFETY: __errno_location returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() = 0 };
}

/// Ask the scheduler for short time slices for this thread: `sched_setattr` with policy
/// `SCHED_OTHER`, the thread's nice value unchanged, and `sched_runtime` = `slice`. Since Linux
/// 6.12 (EEVDF) a thread that asked for a shorter slice than the running one's preempts it when
/// it wakes, instead of waiting for that slice to end; older kernels ignore the request (or
/// refuse it, which is harmless). Unprivileged.
pub fn request_short_slice(slice: std::time::Duration) -> io::Result<()> {
    let (tid, nice) = this_thread_nice()?;
    let attr = libc::sched_attr {
        size: u32::try_from(std::mem::size_of::<libc::sched_attr>()).unwrap_or(u32::MAX),
        sched_policy: u32::try_from(libc::SCHED_OTHER).unwrap_or_default(),
        sched_flags: 0,
        sched_nice: nice,
        sched_priority: 0,
        sched_runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: sched_setattr reads `attr`, a fully initialised struct whose size it is given,
    // for this thread only, and keeps no pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            tid,
            &raw const attr,
            0 as libc::c_uint,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
