//! How a process ended, in the one convention daemonic uses everywhere: Python's
//! `Process.exitcode` (the exit code, or minus the signal that killed it), turned into the
//! shell's (128 + signal) where a status leaves daemonic, and into words for people.

/// The status of a child that has ended, as `wait` and `waitid` report it.
pub(crate) trait Ended {
    fn exit_status(&self) -> Option<i32>;
    fn terminating_signal(&self) -> Option<i32>;
}

impl Ended for rustix::process::WaitStatus {
    fn exit_status(&self) -> Option<i32> {
        rustix::process::WaitStatus::exit_status(*self)
    }
    fn terminating_signal(&self) -> Option<i32> {
        rustix::process::WaitStatus::terminating_signal(*self)
    }
}

impl Ended for rustix::process::WaitIdStatus {
    fn exit_status(&self) -> Option<i32> {
        rustix::process::WaitIdStatus::exit_status(self)
    }
    fn terminating_signal(&self) -> Option<i32> {
        rustix::process::WaitIdStatus::terminating_signal(self)
    }
}

/// Python's exit code of an ended child: its exit code, or minus the signal that killed it;
/// `None` for a status that is neither (stopped, continued).
pub(crate) fn exitcode(status: &impl Ended) -> Option<i32> {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => Some(code),
        (None, Some(sig)) => Some(-sig),
        (None, None) => None,
    }
}

/// Python's exit code in the shell's convention: a signal `n` becomes `128 + n`.
pub(crate) fn shell_status(exitcode: i32) -> i32 {
    if exitcode < 0 { 128 - exitcode } else { exitcode }
}

/// `SIGTERM` for 15, `signal 40` for what has no name here.
pub(crate) fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// "exited with code 3", "was killed by SIGTERM".
pub(crate) fn describe(exitcode: i32) -> String {
    if exitcode < 0 {
        format!("was killed by {}", signal_name(-exitcode))
    } else {
        format!("exited with code {exitcode}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_shell() {
        assert_eq!(shell_status(0), 0);
        assert_eq!(shell_status(7), 7);
        assert_eq!(shell_status(-9), 137);
        assert_eq!(shell_status(-15), 143);
    }

    #[test]
    fn exits_are_described_in_words() {
        assert_eq!(describe(0), "exited with code 0");
        assert_eq!(describe(3), "exited with code 3");
        assert_eq!(describe(-15), "was killed by SIGTERM");
        assert_eq!(describe(-40), "was killed by signal 40");
    }
}
