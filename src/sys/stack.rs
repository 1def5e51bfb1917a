//! x86_64: the stack a child that shares the caller's memory runs on until `execve`, and the
//! raw `clone3` that switches to it (see `ChildSpec::report` in `clone.rs`).

#![cfg(target_arch = "x86_64")]

use std::io;

use super::abi::CloneArgs;

/// `clone3` whose child starts on the stack given in `args` and calls `entry(arg)`, which
/// must not return. Returns what the system call returns in the caller: the child's PID, or
/// `-errno`.
///
/// # Safety
///
/// `args` must ask for a stack that is mapped, writable, 16-byte aligned at its top and not
/// used by anything else until the child has executed or exited, and `entry` must be safe to
/// run there with `arg` in the state `args` creates (with `CLONE_VM`: the caller's memory).
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn clone3_on_stack(
    args: &CloneArgs,
    entry: extern "C" fn(*mut libc::c_void) -> !,
    arg: *mut libc::c_void,
) -> isize {
    let ret: isize;
    // SAFETY: (the caller's promise) the system call returns in both processes. The caller's
    // side (non-zero rax) falls through to the end. The child's side is on the new stack: it
    // clears the frame pointer so that nothing unwinds into the caller's frames, aligns the
    // stack and calls `entry` (kept across the call in callee-saved r12/r13, which the child
    // inherits), which never returns; `ud2` stops it if it did.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "and rsp, -16",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 as isize => ret,
            in("rdi") std::ptr::from_ref(args),
            in("rsi") size_of::<CloneArgs>(),
            in("r12") entry,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A thread's stack for its children in shared memory, kept for the thread's life: a guard
/// page below [`ChildStack::SIZE`] bytes, mapped lazily by the kernel as the child touches it.
#[cfg(target_arch = "x86_64")]
pub(super) struct ChildStack {
    /// The lowest byte of the usable stack, just above the guard page.
    pub(super) low: *mut u8,
}

#[cfg(target_arch = "x86_64")]
impl ChildStack {
    /// The usable size. The child's code before `execve` needs a few KiB.
    pub(super) const SIZE: usize = 64 * 1024;
    const GUARD: usize = 4096;

    /// This thread's stack, mapped on first use; [`ChildStack::give_back`] returns it.
    pub(super) fn take() -> io::Result<ChildStack> {
        if let Some(stack) = CHILD_STACK.try_with(std::cell::Cell::take).ok().flatten() {
            return Ok(stack);
        }
        let len = Self::SIZE + Self::GUARD;
        // SAFETY: a fresh anonymous private mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the first page of the mapping just made; a fault there beats silently writing
        // below the stack into whatever is mapped next.
        if unsafe { libc::mprotect(base, Self::GUARD, libc::PROT_NONE) } != 0 {
            let e = io::Error::last_os_error();
            // SAFETY: the mapping just made, unused.
            unsafe { libc::munmap(base, len) };
            return Err(e);
        }
        // SAFETY: GUARD < len: the result is inside the mapping.
        Ok(ChildStack { low: unsafe { base.cast::<u8>().add(Self::GUARD) } })
    }

    /// Keeps the stack for this thread's next child (or unmaps it, in a thread whose
    /// thread-locals are being destroyed).
    pub(super) fn give_back(self) {
        let _ = CHILD_STACK.try_with(|cell| cell.set(Some(self)));
    }
}

#[cfg(target_arch = "x86_64")]
impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: `low - GUARD` is the start of the mapping of `take`, `SIZE + GUARD` bytes
        // long, and no child runs on it any more (the caller of clone3 was held until then).
        unsafe { libc::munmap(self.low.sub(Self::GUARD).cast(), Self::SIZE + Self::GUARD) };
    }
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    pub(super) static CHILD_STACK: std::cell::Cell<Option<ChildStack>> = const { std::cell::Cell::new(None) };
}
