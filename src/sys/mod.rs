//! **Layer `sys`**, above the base only: the only unsafe code of the crate, and no policy.
//!
//! The raw process primitives daemonic needs that std and rustix do not offer safely.
//!
//! # Safety
//!
//! This is the only module of the crate allowed to contain `unsafe`, one file per concern:
//! - `clone.rs`: process creation with `clone3(CLONE_INTO_CGROUP | CLONE_PIDFD)`, so that a child is in its
//!   cgroup before it runs an instruction and the parent gets a pidfd atomically, and the
//!   fallback `clone(CLONE_PIDFD)` plus a write of `0` to the target's `cgroup.procs`; where it
//!   can, the child shares the descriptor table and copies only its low part (see
//!   [`ChildSpec::share_table`]), and on x86_64 it also shares the caller's memory and runs on
//!   a stack of its own until `execve`, as `posix_spawn` does (see [`ChildSpec::report`];
//!   the stack and the raw clone3 that switches to it are in `stack.rs`);
//! - `clone.rs`, too: the code that runs in the child between the clone and `execve`. It may run in a copy of a
//!   multithreaded process whose other threads held locks at the moment of the clone, so it is
//!   async-signal-safe: no allocation, no locks, no logging, only system calls on data prepared
//!   by the parent before the clone (see [`ChildSpec`]);
//! - `init.rs`: the PID 1 of a contained member's PID namespace (`CLONE_NEWPID`): between the clone and
//!   `execve` the child forks the program's process and stays behind as its init, forwarding
//!   signals and reaping, with the same async-signal-safe rules (see [`ChildSpec::contain`]);
//! - `fd.rs`: descriptors (the high range, `close_range`, adopting a socket) and `poll`;
//! - `seccomp.rs`: installing a prepared seccomp program;
//! - `signal.rs`: blocking signals and reading them from a signalfd, for the supervisor;
//! - `hook.rs`: the `.init_array` hook, a mechanism that runs a dispatch function given from above before
//!   `main` ([`startup_hook!`]; [`crate::runtime::startup`] decides what it does);
//! - `atexit`, which ends the implicit family of [`crate::Process`] when the program exits.

#![allow(unsafe_code)]

mod abi;
mod clone;
mod fd;
mod hook;
mod init;
mod seccomp;
mod signal;
mod stack;

pub(crate) use clone::{CgroupEntry, ChildSpec, SHARED_MEMORY, Stage, Start, clone_child, read_report};
pub(crate) use fd::{
    HIGH_DESCRIPTORS, close_descriptors_from, close_range_works, note_inherited_socket, poll, raise_descriptor,
    reserve_high_descriptors, take_inherited_socket,
};
pub(crate) use hook::{Startup, at_exit, startup_hook};
pub(crate) use seccomp::install_filter;
pub(crate) use signal::{ignore_signal, read_signal, signalfd};
