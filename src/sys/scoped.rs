//! A callback lent to code deeper in the same thread's call stack for the duration of one
//! call, for layers that cannot pass it down themselves (a ureq transport called from inside
//! ureq, which knows nothing of the request being served).
//!
//! Thread model: the callback lives in a thread-local slot only while [`with_hook`] runs on
//! that thread; another thread never sees it.

use std::cell::Cell;
use std::ptr::NonNull;

type Hook = dyn FnMut() -> bool;

thread_local! {
    static HOOK: Cell<Option<NonNull<Hook>>> = const { Cell::new(None) };
}

/// Run `body` with `hook` callable from within it, on this thread, through [`call_hook`].
/// The previous hook (of an enclosing `with_hook`) is back when `body` returns or unwinds.
pub fn with_hook<R>(hook: &mut dyn FnMut() -> bool, body: impl FnOnce() -> R) -> R {
    struct Restore(Option<NonNull<Hook>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            HOOK.set(self.0);
        }
    }
    let short: NonNull<dyn FnMut() -> bool + '_> = NonNull::from(hook);
    // SAFETY: only the trait object's lifetime bound changes (same layout). The pointer leaves
    // the slot (`Restore`) before this function returns, so it is never used after `hook`'s
    // borrow ends; and `body` cannot reach `hook` except through `call_hook`.
    let erased: NonNull<Hook> = unsafe { std::mem::transmute(short) };
    let _restore = Restore(HOOK.replace(Some(erased)));
    body()
}

/// Call this thread's hook: `None` when no [`with_hook`] is running on this thread, or the
/// hook itself is running (no re-entry).
pub fn call_hook() -> Option<bool> {
    struct PutBack(NonNull<Hook>);
    impl Drop for PutBack {
        fn drop(&mut self) {
            HOOK.set(Some(self.0));
        }
    }
    // Taken out while it runs, so a call from inside the hook finds nothing.
    let hook = PutBack(HOOK.take()?);
    // SAFETY: the pointer came from the `&mut` of a `with_hook` still running on this thread
    // (it removes it before returning), and it is out of the slot while this call runs, so
    // this is the only use of that borrow.
    Some(unsafe { (*hook.0.as_ptr())() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_is_reachable_only_inside_its_call_and_not_reentrant() {
        assert_eq!(call_hook(), None);
        let mut calls = 0;
        let mut hook = || {
            calls += 1;
            // Re-entry finds no hook.
            call_hook().is_none()
        };
        let got = with_hook(&mut hook, || {
            let first = call_hook();
            let nested = with_hook(&mut || false, call_hook);
            (first, nested, call_hook())
        });
        assert_eq!(got, (Some(true), Some(false), Some(true)));
        assert_eq!(calls, 2);
        assert_eq!(call_hook(), None);
        // Another thread never sees it.
        with_hook(&mut || true, || {
            assert_eq!(std::thread::spawn(call_hook).join().unwrap(), None);
        });
    }

    #[test]
    fn an_unwinding_body_leaves_no_hook_behind() {
        let unwound = std::panic::catch_unwind(|| with_hook(&mut || true, || panic!("body")));
        assert!(unwound.is_err());
        assert_eq!(call_hook(), None);
    }
}
