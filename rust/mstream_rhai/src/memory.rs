//! A memory limit for script calls: the extension's global allocator counts the bytes each
//! thread holds, and `on_progress` stops a call whose net allocation exceeds its budget.
//!
//! Rhai has no memory limit of its own, and its size limits are not checked on every path
//! (a map grown by `m[key] = value` in a loop is only measured when it is passed to a
//! function), so this is what bounds memory. Only the extension's Rust allocations are
//! counted (Python objects are not), and only on the thread running the call.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Bytes allocated minus bytes freed by this thread (may go negative when a thread
    /// frees what another allocated; only differences are used).
    static HELD: Cell<isize> = const { Cell::new(0) };
    /// `(held at the start of the call, budget in bytes)` of the call on this thread.
    static BUDGET: Cell<Option<(isize, isize)>> = const { Cell::new(None) };
}

/// The system allocator, counting per thread.
pub struct Counting;

fn add(delta: isize) {
    // `try_with`: the slot may already be gone while a thread exits.
    let _ = HELD.try_with(|held| held.set(held.get().wrapping_add(delta)));
}

fn signed(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and only
// updates a plain thread-local counter (no allocation, no panics).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            add(signed(layout.size()));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add(signed(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        add(-signed(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            add(signed(new_size) - signed(layout.size()));
        }
        new
    }
}

/// Start a call's budget on this thread (`None`: no memory limit).
pub fn start(budget: Option<usize>) {
    let base = HELD.with(Cell::get);
    BUDGET.with(|b| b.set(budget.map(|n| (base, signed(n)))));
}

/// End the call's budget on this thread.
pub fn stop() {
    BUDGET.with(|b| b.set(None));
}

/// Whether the call on this thread holds more than its budget.
pub fn exceeded() -> bool {
    match BUDGET.with(Cell::get) {
        Some((base, budget)) => HELD.with(Cell::get).wrapping_sub(base) > budget,
        None => false,
    }
}
