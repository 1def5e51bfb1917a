//! Scenario tests of the `daemonic` command line against the contract (C1–C10) in DESIGN.md.
//!
//! Every test uses its own family name and its own marker strings, so the tests can run in
//! parallel and never confuse each other's processes. Nothing is ever killed by name: only the
//! PIDs the tests started, or a family through `daemonic kill`.
//!
//! Note on daemons written as shell loops: a daemon cannot fork (C3), so a daemon that is a
//! `sh` loop calling the external `sleep` or `date` would fail at its first fork. Daemons that
//! loop are therefore small python3 programs (the real interpreter, not a forking pyenv shim).

mod common;
mod harness;

/// The backend the shared scenarios run on.
const BACKEND: common::Backend = common::Backend::Cgroupfs;

fn main() -> std::process::ExitCode {
    harness::main()
}

include!("scenarios/cli.rs");

// =============================================================================================
// cgroupfs only: the base cgroup, the fork placement
// =============================================================================================

#[harness::test]
fn bad_input_cgroup_not_a_cgroup() {
    require_cgroup();
    let name = family_name("badcg");
    let dir = tempdir();
    let tmp = d(&dir);
    for base in [tmp.as_str(), "/proc"] {
        let out = daemonic(["run", "--name", &name, "--cgroup", base, "--", "echo", "ran"]).timeout(10.0).run();
        assert_clean_error(&out, &[base]);
        assert!(!out.stdout.contains("ran"), "{}", out.dump());
        let out =
            daemonic(["run", "--name", &name, "--", "echo", "ran"]).env("DAEMONIC_CGROUP", base).timeout(10.0).run();
        assert_clean_error(&out, &[base]);
        assert_clean_at_exit(&name, &[]);
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("read tmpdir").flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "daemonic wrote into a non-cgroup directory: {left:?}");
}

/// An explicit, writable --cgroup / DAEMONIC_CGROUP is used as the base (even though our
/// own cgroup is writable too: an explicit choice wins).
#[harness::test]
fn explicit_cgroup_base_is_used() {
    require_cgroup();
    let name = family_name("cgbase");
    let own = cgroup_of("self").expect("own cgroup");
    let own_dir = cgroup_dir(&own).expect("own cgroup dir");
    for via_env in [false, true] {
        let base = CgroupDirGuard::create(&own_dir, &format!("daemonic-test-base-{}", marker(0).replace('.', "_")));
        let base_s = base.as_str().to_string();
        let r = if via_env {
            daemonic(["run", "--name", &name, "--", "cat", "/proc/self/cgroup"]).env("DAEMONIC_CGROUP", &base_s)
        } else {
            daemonic(["run", "--name", &name, "--cgroup", &base_s, "--", "cat", "/proc/self/cgroup"])
        };
        let out = r.timeout(10.0).run();
        let base_name = base.path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let left = base.children();
        assert_eq!(out.code, Some(0), "via_env={via_env}\n{}", out.dump());
        assert!(
            out.stdout.contains(&format!("/{base_name}/daemonic-{name}-")),
            "via_env={via_env}: the family should be under {base_s}\n{}",
            out.dump()
        );
        assert!(left.is_empty(), "via_env={via_env}: leftovers under the base: {left:?}");
        assert_clean_at_exit(&name, &[]);
    }
}

/// An unwritable base cgroup: an error naming the path and mentioning Delegate=yes.
/// Runs the binary as uid 65534 (via setpriv) so root's cgroups are not writable for it.
#[harness::test]
fn unwritable_base_cgroup_mentions_delegate() {
    require_cgroup();
    let Some(setpriv) = ["/usr/bin/setpriv", "/bin/setpriv"].into_iter().find(|p| Path::new(p).exists()) else {
        skip("setpriv is not installed");
    };
    let nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"];
    let probe = daemonic_via(&nobody, ["--help"]).timeout(10.0).run();
    if probe.code != Some(0) {
        skip(&format!("uid 65534 cannot run {}:\n{}", bin(), probe.dump()));
    }
    let name = family_name("unwritable");
    let own = cgroup_of("self").expect("own cgroup");
    let own_dir = cgroup_dir(&own).expect("own cgroup dir");
    let own_s = own_dir.to_str().expect("utf-8").trim_end_matches('/').to_string();

    // Our own cgroup is not writable for uid 65534, and no --cgroup is given.
    let out = daemonic_via(&nobody, ["run", "--name", &name, "--", "echo", "ran"]).timeout(10.0).run();
    assert_clean_error(&out, &["Delegate=yes"]);
    let line = out.error_lines()[0].to_string();
    assert!(
        line.contains(&own_s) || line.contains(&own),
        "the error should name the unwritable cgroup ({own_s}): {line}"
    );
    assert!(!out.stdout.contains("ran"), "{}", out.dump());

    // An explicit --cgroup that is a real cgroup, but not writable for uid 65534.
    let base = CgroupDirGuard::create(&own_dir, &format!("daemonic-test-ro-{}", marker(0).replace('.', "_")));
    let out = daemonic_via(&nobody, ["run", "--name", &name, "--cgroup", base.as_str(), "--", "echo", "ran"])
        .timeout(10.0)
        .run();
    assert_clean_error(&out, &["Delegate=yes"]);
    assert!(out.error_lines()[0].contains(base.as_str()), "the error should name {}\n{}", base.as_str(), out.dump());
    assert!(base.children().is_empty(), "something was created in {}", base.as_str());
    assert_clean_at_exit(&name, &[]);
}

/// The systemd backend without a manager on the chosen bus is a clear error that creates
/// nothing; auto then falls back to cgroupfs and says why with `-v`.
#[harness::test]
fn backend_selection() {
    require_cgroup();
    let name = family_name("backend");
    let nowhere = "unix:path=/nonexistent/daemonic-test-bus";
    let out = daemonic(["run", "--name", &name, "--backend", "systemd", "--user", "--", "echo", "ran"])
        .env("DBUS_SESSION_BUS_ADDRESS", nowhere)
        .timeout(10.0)
        .run();
    assert_clean_error(&out, &["systemd manager"]);
    assert!(!out.stdout.contains("ran"), "{}", out.dump());
    let out = daemonic(["run", "--name", &name, "--user", "--", "echo", "ran"])
        .env("DAEMONIC_BACKEND", "systemd")
        .env("DBUS_SESSION_BUS_ADDRESS", nowhere)
        .timeout(10.0)
        .run();
    assert_clean_error(&out, &["systemd manager"]);
    let out = daemonic(["run", "--name", &name, "--backend", "bogus", "--", "echo", "ran"]).timeout(10.0).run();
    assert_clean_error(&out, &["bogus", "backend"]);
    assert_clean_at_exit(&name, &[]);
    let out = daemonic(["-v", "run", "--name", &name, "--backend", "auto", "--user", "--", "daemonic", "is-daemon"])
        .env("DBUS_SESSION_BUS_ADDRESS", nowhere)
        .timeout(10.0)
        .run();
    assert_eq!(out.stdout.trim(), "false", "{}", out.dump());
    // Inside a unit delegated to the test (a scripts/vm host runs it in one), auto takes
    // cgroupfs before it asks any manager.
    let why = match marked_delegated_unit() {
        Some(unit) => format!("backend auto: cgroupfs, as this process runs in {unit}, delegated to it"),
        None => "backend auto: cgroupfs, as cannot reach the user's systemd manager".to_string(),
    };
    assert!(out.stderr.contains(&why), "auto must say what it picked and why: {why}\n{}", out.dump());
    assert_clean_at_exit(&name, &[]);
    let out =
        daemonic(["run", "--name", &name, "--backend", "cgroupfs", "--", "daemonic", "is-daemon"]).timeout(10.0).run();
    assert_eq!(out.stdout.trim(), "false", "{}", out.dump());
    assert!(out.stderr.is_empty(), "nothing is said without -v\n{}", out.dump());
    assert_clean_at_exit(&name, &[]);
}

#[harness::test]
fn fork_fallback_placement_works() {
    require_cgroup();
    let name = family_name("forkplace");
    let dir = tempdir();
    let dp = d(&dir);
    let m = marker(30);
    let script = tpl(
        &format!(
            "daemonic is-daemon\n\
             daemonic spawn --daemon -- daemonic is-daemon\n\
             daemonic spawn -- daemonic is-daemon\n\
             daemonic spawn --daemon --name fd -- grep ^0:: /proc/self/cgroup\n\
             daemonic spawn --daemon -- sh -c 'echo a; /bin/echo second'\n\
             daemonic spawn --daemon -- sh -c 'echo x > @D@/started; exec sleep @M@' &\n\
             {}\n\
             echo end",
            wait_nonempty_sh("@D@/started")
        ),
        &[("D", &dp), ("M", &m)],
    );
    let out = daemonic(run_sh(&name, &script, &m)).env("DAEMONIC_PLACEMENT", "fork").timeout(15.0).run();
    out.assert_code(0);
    let lines = out.lines();
    assert_eq!(&lines[..3.min(lines.len())], &["false", "true", "false"], "{}", out.dump());
    let cg = lines.get(3).and_then(|l| l.strip_prefix("0::")).unwrap_or_else(|| panic!("{}", out.dump()));
    assert!(cg.contains("/main-1.member.daemons/fd-") && cg.ends_with(".daemon"), "{cg}");
    assert_eq!(lines.get(4).copied(), Some("a"), "{}", out.dump());
    assert!(!out.stdout.contains("second"), "fork placement must still forbid forks in daemons\n{}", out.dump());
    assert!(out.stdout.ends_with("end\n"), "{}", out.dump());
    assert_clean_at_exit(&name, &[&m]);
}

/// The unit (`.service`, `.scope`) nearest to this process's cgroup, when systemd marked it
/// delegated (`user.delegate` or `trusted.delegate` is `1`): the tests' own reading of it.
fn marked_delegated_unit() -> Option<String> {
    let dir = cgroup_dir(&cgroup_of("self")?)?;
    let mount = cgroup2_mount()?;
    let unit = dir
        .ancestors()
        .take_while(|d| *d != mount)
        .find(|d| d.extension().is_some_and(|e| e == "service" || e == "scope"))?;
    let marked = |name: &str| {
        let mut value = [0u8; 8];
        rustix::fs::getxattr(unit, name, &mut value[..]).is_ok_and(|n| &value[..n] == b"1")
    };
    (marked("user.delegate") || marked("trusted.delegate")).then(|| unit.file_name()?.to_str().map(str::to_string))?
}

// =============================================================================================
// cgroupfs only: resource properties
// =============================================================================================

/// A cgroup made by the test directly below the cgroup2 root, handing `pids memory cpu` to its
/// children, as a service with `Delegate=yes` whose main process moved into a leaf hands them to
/// its own; its processes are killed and it is removed when dropped.
struct ControllerBase(PathBuf);

impl ControllerBase {
    fn new(test: &str) -> ControllerBase {
        let mount = cgroup2_mount().expect("cgroup2 mount");
        let dir = mount.join(format!("daemonic-test-{test}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let base = ControllerBase(dir);
        std::fs::write(base.0.join("cgroup.subtree_control"), "+pids +memory +cpu")
            .unwrap_or_else(|e| panic!("enable pids memory cpu in {}: {e}", base.0.display()));
        base
    }
}

impl Drop for ControllerBase {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
        let removed = wait_until(Duration::from_secs(5), || {
            let mut dirs = cgroup_dirs_where(&|_| true);
            dirs.retain(|d| d.starts_with(&self.0));
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            dirs.iter().for_each(|d| drop(std::fs::remove_dir(d)));
            !self.0.exists()
        });
        if !removed {
            eprintln!("WARNING: could not remove {}", self.0.display());
        }
    }
}

/// `-p` on cgroupfs: where the controllers reach the family, the limits are written to the
/// member's own cgroup (`pids.max`, `memory.max`, `cpu.weight`), for the main member and for a
/// daemon, and a non-daemonic child, whose parent's cgroup holds processes, is refused with the
/// reason. Where they do not reach it (a hybrid host's cgroup2 has no controllers; a base that
/// does not hand them down), `run` fails with one line naming the missing controller and
/// creates nothing. Which case this host is, is read from the cgroup2 root: as root, with
/// `pids memory cpu` in its `cgroup.subtree_control` (every systemd host), the limits are
/// checked; elsewhere the error.
#[harness::test]
fn properties_on_cgroupfs_limit_the_members_own_cgroup() {
    require_cgroup();
    let name = family_name("limits");
    let mount = cgroup2_mount().expect("cgroup2 mount");
    let at_root = std::fs::read_to_string(mount.join("cgroup.subtree_control")).unwrap_or_default();
    let reach = ["pids", "memory", "cpu"].iter().all(|c| at_root.split_whitespace().any(|e| e == *c));
    if !reach || !rustix::process::geteuid().is_root() {
        eprintln!("the cgroup2 root hands down {at_root:?}: checking the error for a missing controller");
        let out = daemonic(["run", "--name", &name, "--backend", "cgroupfs", "-p", "TasksMax=5", "--", "echo", "ran"])
            .timeout(10.0)
            .run();
        assert_clean_error(&out, &["TasksMax needs the pids controller"]);
        assert_eq!(out.code, Some(1), "the host lacks it: not bad input\n{}", out.dump());
        assert!(!out.stdout.contains("ran"), "{}", out.dump());
        assert_clean_at_exit(&name, &[]);
        return;
    }
    let base = ControllerBase::new("limits");
    let m = marker(30);
    let script = tpl(
        r#"cg=@MOUNT@$(sed -n 's/^0:://p' /proc/self/cgroup)
echo "main $(cat $cg/pids.max) $(cat $cg/memory.max) $(cat $cg/cpu.weight)"
daemonic spawn --daemon -p TasksMax=7 -p MemoryMax=32M --name w -- sleep @M@ &
i=0; until [ -d $cg.daemons ] && ls -d $cg.daemons/w-*.daemon >/dev/null 2>&1; do sleep 0.05; i=$((i+1)); [ $i -lt 400 ] || exit 9; done
d=$(ls -d $cg.daemons/w-*.daemon)
i=0; until grep -q '^7$' $d/pids.max; do sleep 0.05; i=$((i+1)); [ $i -lt 400 ] || exit 10; done
echo "daemon $(cat $d/pids.max) $(cat $d/memory.max) $(test -e $d/cpu.weight && echo cpu)"
daemonic spawn -p TasksMax=3 --name c -- true
echo "child exit $?""#,
        &[("MOUNT", &mount.display().to_string()), ("M", &m)],
    );
    let cgroup = base.0.display().to_string();
    let out = daemonic([
        "run",
        "--name",
        &name,
        "--backend",
        "cgroupfs",
        "--cgroup",
        &cgroup,
        "-p",
        "TasksMax=50",
        "-p",
        "MemoryMax=64M",
        "-p",
        "CPUWeight=50",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .timeout(30.0)
    .run();
    out.assert_code(0);
    assert!(out.stdout.contains(&format!("main 50 {} 50\n", 64u64 << 20)), "{}", out.dump());
    // Only the controllers asked for are enabled for the daemon: it has no cpu.weight.
    assert!(out.stdout.contains(&format!("daemon 7 {} \n", 32u64 << 20)), "{}", out.dump());
    assert!(out.stdout.contains("child exit 1\n"), "{}", out.dump());
    assert!(out.stderr.contains("has processes of its own"), "the refusal says why\n{}", out.dump());
    assert_clean_at_exit(&name, &[&m]);
}
