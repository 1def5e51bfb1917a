//! The kernel's ABI that libc does not give (or gives deprecated): clone3 flags and
//! `struct clone_args`, the kernel's `struct sigaction`.

/// `CLONE_INTO_CGROUP` (Linux 5.7); libc's constant is deprecated, the value is ABI.
pub(super) const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// `CLONE_PIDFD` (Linux 5.2).
pub(super) const CLONE_PIDFD: u64 = 0x1000;
/// `CLONE_NEWPID`.
pub(super) const CLONE_NEWPID: u64 = libc::CLONE_NEWPID as u64;
/// `CLONE_FILES | CLONE_VFORK`: share the descriptor table, and hold the caller until the child
/// has executed its program or exited (see [`ChildSpec::share_table`](super::ChildSpec::share_table)).
pub(super) const SHARE_TABLE: u64 = (libc::CLONE_FILES | libc::CLONE_VFORK) as u64;

/// `struct clone_args` from `<linux/sched.h>`, as far as `CLONE_ARGS_SIZE_VER2`.
#[repr(C)]
#[derive(Default)]
pub(super) struct CloneArgs {
    pub(super) flags: u64,
    pub(super) pidfd: u64,
    pub(super) child_tid: u64,
    pub(super) parent_tid: u64,
    pub(super) exit_signal: u64,
    pub(super) stack: u64,
    pub(super) stack_size: u64,
    pub(super) tls: u64,
    pub(super) set_tid: u64,
    pub(super) set_tid_size: u64,
    pub(super) cgroup: u64,
}

/// The kernel's `struct sigaction` on x86_64 (not the C library's, whose mask is 128 bytes).
#[cfg(target_arch = "x86_64")]
#[repr(C)]
#[derive(Default)]
pub(super) struct KernelSigaction {
    pub(super) handler: libc::sighandler_t,
    pub(super) flags: libc::c_ulong,
    pub(super) restorer: usize,
    pub(super) mask: u64,
}
