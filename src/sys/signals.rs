//! Process signals, without async handlers: `serve` blocks SIGTERM, SIGINT and SIGHUP before any
//! thread starts (threads inherit the mask; std resets it for spawned children), then its main
//! thread waits for them with `sigwait` and acts in ordinary code.

/// What a received signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: stop accepting, drain, exit.
    Shutdown,
    /// SIGHUP: re-read the config file.
    Reload,
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a plain C struct we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Block the signals in the calling thread (and every thread it starts afterwards).
pub fn block() {
    let set = signal_set();
    // SAFETY: pthread_sigmask reads a valid, initialised set; a null old-set pointer is allowed.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Wait for the next signal. Requires [`block`] to have been called first.
pub fn wait() -> Signal {
    let set = signal_set();
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: sigwait reads a valid set and writes one int we own.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc != 0 {
            continue;
        }
        return if sig == libc::SIGHUP {
            Signal::Reload
        } else {
            Signal::Shutdown
        };
    }
}
