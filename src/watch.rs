//! `server.watch_config: true`: follow the config file. A background thread polls the file's
//! resolved path (`stat` through every symlink, so a Kubernetes ConfigMap update — which swaps
//! the `..data` symlink to a new directory — shows as a new inode) every
//! [`DEFAULT_INTERVAL`], comparing device, inode, mtime and size; on a change it reloads
//! exactly as SIGHUP and `POST /admin/reload` do ([`App::reload`]: an invalid file is refused
//! and logged, the running config stays; requests in flight finish on the snapshot they
//! started with). A change is acted on once: a refused file is not retried until it changes
//! again.
//!
//! The flag is read from the running config on every tick, so a reload can switch watching
//! on or off. The thread holds the app weakly and ends when the app is dropped or the
//! [`Watcher`] handle is; one `stat` per tick, no other I/O unless the file changed.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::app::App;
use crate::metrics::Metrics;

/// How often the file is checked.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies one version of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Signature {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    size: u64,
}

fn signature(path: &Path) -> Option<Signature> {
    // `metadata` follows symlinks: the signature is the target's.
    let m = std::fs::metadata(path).ok()?;
    Some(Signature {
        dev: m.dev(),
        ino: m.ino(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
        size: m.size(),
    })
}

/// The running watcher; dropping it stops the thread (within one tick).
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Start watching `app`'s config file (when it has one and `server.watch_config` is on at
/// each tick). Reload outcomes are counted in `metrics`.
pub fn spawn(
    app: &Arc<App>,
    metrics: Arc<Metrics>,
    interval: Duration,
) -> std::io::Result<Watcher> {
    let stop = Arc::new(AtomicBool::new(false));
    let weak = Arc::downgrade(app);
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || run(&weak, &metrics, interval, &flag))?;
    Ok(Watcher {
        stop,
        thread: Some(thread),
    })
}

fn run(app: &Weak<App>, metrics: &Metrics, interval: Duration, stop: &AtomicBool) {
    let mut last: Option<Signature> = None;
    let step = Duration::from_millis(50).min(interval);
    loop {
        let mut waited = Duration::ZERO;
        while waited < interval {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(step);
            waited += step;
        }
        let Some(app) = app.upgrade() else { return };
        let Some(path) = app.config_path() else {
            return;
        };
        if !app.snapshot().config.server.watch_config {
            last = None;
            continue;
        }
        let now = signature(&path);
        match (last, now) {
            // First look (or watching just switched on): remember, do not reload.
            (None, _) => last = now,
            (Some(_), None) => {
                // Gone for a moment (an editor's rename): keep the old signature, look again.
            }
            (Some(before), Some(after)) if before == after => {}
            (Some(_), Some(_)) => {
                last = now;
                match app.reload() {
                    Ok(()) => {
                        metrics.config_reload(true);
                        log::info!("config file changed: reloaded {}", path.display());
                    }
                    Err(e) => {
                        metrics.config_reload(false);
                        log::error!(
                            "config file changed but the reload was refused, the running config stays: {e}"
                        );
                    }
                }
            }
        }
    }
}
