//! The no-children rule (C3), enforced by the kernel with seccomp.
//!
//! A daemonic process gets a seccomp filter before it executes its program:
//! - `fork`, `vfork`, and `clone` without `CLONE_THREAD` fail with `EPERM`;
//! - `clone3` fails with `ENOSYS`. clone3 passes its flags in memory, which a seccomp filter
//!   cannot read, so it cannot tell a thread from a process; ENOSYS makes glibc and other
//!   runtimes fall back to `clone`, where the flags are a register and threads are allowed.
//!
//! seccompiler gives one match action per filter, so the two rules are built as two programs,
//! then chained into one: the first program's "allow" becomes a jump to the second. One
//! program is one `seccomp()` call for the child, which compiles it; two stacked filters cost
//! a second call, and a second filter for the kernel to run at every system call of the daemon.
//! On x86_64 the x32 numbers of the same calls are refused too (they share the audit
//! architecture); calls from another architecture (i386 `int 0x80`) kill the process, which is
//! seccompiler's arch check. The program is built before the clone (this allocates) and
//! installed in the child with [`crate::sys::install_filter`] (which does not).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use crate::error::{Error, ErrorKind, Result};

const CLONE_THREAD: u64 = 0x0001_0000;
const X32_SYSCALL_BIT: i64 = 0x4000_0000;

/// Syscall numbers of one architecture.
struct Numbers {
    /// fork and vfork, where the architecture has them.
    forks: &'static [i64],
    clone: i64,
    clone3: i64,
    /// Whether the x32 numbers of the same calls must be refused as well.
    x32: bool,
}

fn numbers(arch: TargetArch) -> Numbers {
    match arch {
        TargetArch::x86_64 => Numbers { forks: &[57, 58], clone: 56, clone3: 435, x32: true },
        TargetArch::aarch64 | TargetArch::riscv64 => Numbers { forks: &[], clone: 220, clone3: 435, x32: false },
    }
}

/// The architecture this binary runs on.
pub(crate) fn native_arch() -> Result<TargetArch> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|_| {
        Error::new(ErrorKind::Unsupported, format!("the no-fork filter is not available on {}", std::env::consts::ARCH))
    })
}

/// The filters for `arch`, in installation order: one program.
pub(crate) fn no_fork_filters(arch: TargetArch) -> Result<Vec<Vec<libc::sock_filter>>> {
    let n = numbers(arch);
    let with_x32 = |nr: i64| -> Vec<i64> { if n.x32 { vec![nr, nr | X32_SYSCALL_BIT] } else { vec![nr] } };

    let not_a_thread = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(CLONE_THREAD), 0)
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(build_error)?;
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in n.forks {
        for nr in with_x32(nr) {
            eperm.insert(nr, Vec::new());
        }
    }
    for nr in with_x32(n.clone) {
        eperm.insert(nr, vec![not_a_thread.clone()]);
    }
    let enosys: BTreeMap<i64, Vec<SeccompRule>> = with_x32(n.clone3).into_iter().map(|nr| (nr, Vec::new())).collect();

    let programs = [(eperm, libc::EPERM), (enosys, libc::ENOSYS)]
        .into_iter()
        .map(|(rules, errno)| {
            let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno as u32), arch)
                .map_err(build_error)?;
            let program: BpfProgram = filter.try_into().map_err(build_error)?;
            Ok(program.into_iter().map(|i| libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k }).collect())
        })
        .collect::<Result<Vec<Vec<libc::sock_filter>>>>()?;
    Ok(vec![programs.into_iter().reduce(chain).unwrap_or_default()])
}

/// `BPF_RET | BPF_K` and `BPF_JMP | BPF_JA`.
const RET_K: u16 = 0x06;
const JA: u16 = 0x05;

/// One program that runs `first`, and `then` wherever `first` would allow the call: each
/// `ret ALLOW` of `first` becomes a jump to the start of `then`, which follows it. No other
/// instruction moves, so `first`'s own (relative) jumps keep their targets.
fn chain(first: Vec<libc::sock_filter>, then: Vec<libc::sock_filter>) -> Vec<libc::sock_filter> {
    let len = first.len();
    let mut out: Vec<libc::sock_filter> = first
        .into_iter()
        .enumerate()
        .map(|(i, ins)| {
            if ins.code == RET_K && ins.k == libc::SECCOMP_RET_ALLOW {
                libc::sock_filter { code: JA, jt: 0, jf: 0, k: (len - i - 1) as u32 }
            } else {
                ins
            }
        })
        .collect();
    out.extend(then);
    out
}

fn build_error(e: seccompiler::BackendError) -> Error {
    Error::caused_by(ErrorKind::Os, "failed to build the no-fork seccomp filter", e)
}

#[cfg(test)]
mod tests {
    use crate::spawn::seccomp::*;

    /// Runs a classic-BPF seccomp program over a `seccomp_data` and returns its verdict.
    fn run(program: &[libc::sock_filter], arch: u32, nr: i32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[16..24].copy_from_slice(&arg0.to_ne_bytes());
        let load = |off: u32| u32::from_ne_bytes(data[off as usize..off as usize + 4].try_into().expect("in range"));
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = &program[pc];
            pc += 1;
            match i.code {
                0x20 => acc = load(i.k),                                         // ld w abs
                0x54 => acc &= i.k,                                              // and k
                0x15 => pc += if acc == i.k { i.jt } else { i.jf } as usize,     // jeq k
                0x35 => pc += if acc >= i.k { i.jt } else { i.jf } as usize,     // jge k
                0x25 => pc += if acc > i.k { i.jt } else { i.jf } as usize,      // jgt k
                0x45 => pc += if acc & i.k != 0 { i.jt } else { i.jf } as usize, // jset k
                0x05 => pc += i.k as usize,                                      // ja
                0x06 => return i.k,                                              // ret k
                0x04 => acc = acc.wrapping_add(i.k),                             // add k
                code => panic!("instruction {code:#x} not modelled"),
            }
        }
    }

    const ERRNO: u32 = 0x0005_0000;
    const ALLOW: u32 = 0x7fff_0000;

    /// The verdict of the one program.
    fn verdict(filters: &[Vec<libc::sock_filter>], arch: u32, nr: i32, arg0: u64) -> u32 {
        assert_eq!(filters.len(), 1, "one program");
        run(&filters[0], arch, nr, arg0)
    }

    #[test]
    fn x86_64_refuses_processes_and_allows_threads() {
        const AUDIT_X86_64: u32 = 0xc000_003e;
        let f = no_fork_filters(TargetArch::x86_64).expect("filters");
        let thread_flags = 0x3d0f00; // glibc pthread_create
        assert_eq!(verdict(&f, AUDIT_X86_64, 57, 0), ERRNO | libc::EPERM as u32, "fork");
        assert_eq!(verdict(&f, AUDIT_X86_64, 58, 0), ERRNO | libc::EPERM as u32, "vfork");
        assert_eq!(verdict(&f, AUDIT_X86_64, 56, libc::SIGCHLD as u64), ERRNO | libc::EPERM as u32, "clone process");
        assert_eq!(verdict(&f, AUDIT_X86_64, 56, thread_flags), ALLOW, "clone thread");
        assert_eq!(verdict(&f, AUDIT_X86_64, 435, 0), ERRNO | libc::ENOSYS as u32, "clone3");
        assert_eq!(verdict(&f, AUDIT_X86_64, 57 | 0x4000_0000, 0), ERRNO | libc::EPERM as u32, "x32 fork");
        assert_eq!(verdict(&f, AUDIT_X86_64, 435 | 0x4000_0000, 0), ERRNO | libc::ENOSYS as u32, "x32 clone3");
        assert_eq!(verdict(&f, AUDIT_X86_64, 0, 0), ALLOW, "read");
        assert_eq!(verdict(&f, AUDIT_X86_64, 59, 0), ALLOW, "execve");
        assert_eq!(verdict(&f, 0x4000_0003, 2, 0), 0x8000_0000, "i386 calls kill the process");
    }

    #[test]
    fn aarch64_filter_is_built_and_correct() {
        const AUDIT_AARCH64: u32 = 0xc000_00b7;
        let f = no_fork_filters(TargetArch::aarch64).expect("filters");
        assert_eq!(verdict(&f, AUDIT_AARCH64, 220, libc::SIGCHLD as u64), ERRNO | libc::EPERM as u32, "clone process");
        assert_eq!(verdict(&f, AUDIT_AARCH64, 220, 0x3d0f00), ALLOW, "clone thread");
        assert_eq!(verdict(&f, AUDIT_AARCH64, 435, 0), ERRNO | libc::ENOSYS as u32, "clone3");
        assert_eq!(verdict(&f, AUDIT_AARCH64, 57, 0), ALLOW, "57 is not fork on aarch64");
    }
}
