//! The CLI scenarios of `tests/scenarios/cli.rs` on the systemd backend, against the real
//! `systemd --user` manager that `scripts/user-manager` starts (`.ci/run` does), followed by what
//! only this backend has: unit names and descriptions, resource properties, `systemctl stop`
//! of a member's scope or a family's slice, `daemonic kill` without a guardian, the choice of
//! backend.
//!
//! Without that manager the tests are ignored, with the reason, and fail when `CI=true`.

mod common;
mod harness;

/// The backend the shared scenarios run on.
const BACKEND: common::Backend = common::Backend::Systemd;

fn main() -> std::process::ExitCode {
    harness::main()
}

include!("scenarios/cli.rs");

// =============================================================================================
// systemd only
// =============================================================================================

/// `systemctl ARGS` for the manager under test, its stdout.
fn systemctl_out(args: &[&str]) -> String {
    let out = systemctl().args(args).output().expect("run systemctl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The loaded units of family `name` whose name ends with `suffix`.
fn units_ending(name: &str, suffix: &str) -> Vec<String> {
    family_units(name).into_iter().filter(|u| u.ends_with(suffix)).collect()
}

/// One property of a unit, as `systemctl show --value` prints it.
fn unit_property(unit: &str, property: &str) -> String {
    systemctl_out(&["show", "--value", "-p", property, unit]).trim().to_string()
}

/// Starts a family whose main member runs `script` (with `extra` options of `run`) and returns
/// the running `daemonic run`.
/// Waits up to 10 s until the loaded units of family `name` satisfy `ready`; panics naming
/// `what`, the units and `run`'s stderr otherwise.
fn await_units(name: &str, run: &Running, what: &str, ready: impl Fn(&[String]) -> bool) {
    let ok = wait_until(Duration::from_secs(10), || ready(&family_units(name)));
    assert!(ok, "{what}: {:?}\n{}", family_units(name), run.stderr_now());
}

fn start_family(name: &str, script: &str, m: &str, extra: &[&str]) -> Running {
    let mut args = vec!["run".to_string(), "--name".into(), name.into()];
    args.extend(extra.iter().map(|a| a.to_string()));
    args.extend(["--".into(), "sh".into(), "-c".into(), script.into(), format!("sh-{m}")]);
    daemonic(&args).timeout(30.0).spawn()
}

/// Units read at a glance: `daemonic-<family>_<N>.family-…-<member>_<k>.member|.daemon.scope`,
/// described as `daemonic daemon "logger" of family "web"`; `systemctl status` shows the
/// process; `daemonic ps` lists the scopes. A daemon is a scope alone in its owner's `.daemons`
/// slice; a member, and a daemon that may have children, a scope in a slice of its own.
#[harness::test]
fn units_tell_family_member_and_kind_apart() {
    require_cgroup();
    let name = family_name("units");
    let m = marker(30);
    let script = tpl(
        "daemonic spawn --daemon --name logger -- sleep @M@ &\n\
         daemonic spawn --name worker -- sleep @M@ &\n\
         daemonic spawn --daemon --allow-children --name pool -- sleep @M@ &\n\
         sleep @M@",
        &[("M", &m)],
    );
    let run = start_family(&name, &script, &m, &[]);
    await_units(&name, &run, "four scopes expected", |u| u.iter().filter(|u| u.ends_with(".scope")).count() == 4);
    let escaped = daemonic::__internal::unit_name::escape(&name);
    let main = units_ending(&name, "-main_1.member.scope");
    let logger: Vec<_> = family_units(&name)
        .into_iter()
        .filter(|u| u.contains(".daemons-logger_") && u.ends_with(".daemon.scope"))
        .collect();
    let worker: Vec<_> =
        family_units(&name).into_iter().filter(|u| u.contains("-worker_") && u.ends_with(".member.scope")).collect();
    assert_eq!((main.len(), logger.len(), worker.len()), (1, 1, 1), "{:?}", family_units(&name));
    assert!(main[0].starts_with(&format!("daemonic-{escaped}_")), "{}", main[0]);
    assert_eq!(unit_property(&logger[0], "Description"), format!("daemonic daemon \"logger\" of family \"{name}\""));
    assert_eq!(unit_property(&worker[0], "Description"), format!("daemonic member \"worker\" of family \"{name}\""));
    let slice_of = |scope: &str| unit_property(scope, "Slice");
    assert!(slice_of(&logger[0]).ends_with("-main_1.member.daemons.slice"), "{}", slice_of(&logger[0]));
    assert_eq!(slice_of(&worker[0]), worker[0].replace(".scope", ".slice"));
    let pool = family_units(&name).into_iter().find(|u| u.contains(".daemons-pool_") && u.ends_with(".daemon.scope"));
    let pool = pool.unwrap_or_else(|| panic!("the pool daemon's scope: {:?}", family_units(&name)));
    assert_eq!(slice_of(&pool), pool.replace(".scope", ".slice"), "a daemon that may have children has a slice");
    assert_eq!(units_ending(&name, ".daemon.slice").len(), 1, "only the pool has a slice: {:?}", family_units(&name));
    let slice = units_ending(&name, ".family.slice");
    assert_eq!(slice.len(), 1, "{:?}", family_units(&name));
    assert_eq!(unit_property(&slice[0], "Description"), format!("daemonic family \"{name}\""));

    let status = systemctl_out(&["status", "--no-pager", "--lines=0", &logger[0]]);
    assert!(status.contains(&m), "systemctl status should show the daemon's process:\n{status}");

    let ps = daemonic(["ps"]).timeout(10.0).run();
    for unit in [&main[0], &logger[0], &worker[0]] {
        assert!(ps.stdout.contains(unit.as_str()), "ps should list {unit}\n{}", ps.dump());
    }
    let k = daemonic(["kill", &name]).timeout(10.0).run();
    k.assert_code(0);
    let out = run.wait();
    assert_eq!(out.code, Some(137), "{}", out.dump());
    assert_no_leftovers(&name, &[&m]);
}

/// `--property` reaches the scope; bad values are refused before anything exists.
#[harness::test]
fn properties_reach_the_scope_and_bad_ones_create_nothing() {
    require_cgroup();
    let name = family_name("props");
    let m = marker(30);
    let script = tpl("daemonic spawn -p TasksMax=7 -p MemoryMax=32M --name w -- sleep @M@ &\nsleep @M@", &[("M", &m)]);
    let run = start_family(&name, &script, &m, &["-p", "TasksMax=50", "-p", "MemoryMax=64M", "-p", "CPUWeight=50"]);
    await_units(&name, &run, "the worker never started", |u| {
        u.iter().any(|u| u.contains("-w_") && u.ends_with(".scope"))
    });
    let main = units_ending(&name, "-main_1.member.scope").pop().expect("main scope");
    let w = family_units(&name).into_iter().find(|u| u.contains("-w_") && u.ends_with(".scope")).expect("w scope");
    assert_eq!(unit_property(&main, "TasksMax"), "50");
    assert_eq!(unit_property(&main, "MemoryMax"), (64u64 << 20).to_string());
    assert_eq!(unit_property(&main, "CPUWeight"), "50");
    assert_eq!(unit_property(&w, "TasksMax"), "7");
    assert_eq!(unit_property(&w, "MemoryMax"), (32u64 << 20).to_string());
    daemonic(["kill", &name]).timeout(10.0).run().assert_code(0);
    run.wait();
    assert_no_leftovers(&name, &[&m]);

    for bad in ["MemoryMax=lots", "TasksMax=-1", "CPUWeight=0", "Nice=5", "MemoryMax"] {
        let out = daemonic(["run", "--name", &name, "-p", bad, "--", "echo", "ran"]).timeout(10.0).run();
        assert_clean_error(&out, &["property"]);
        assert_eq!(out.code, Some(2), "{}", out.dump());
        assert!(!out.stdout.contains("ran"), "{}", out.dump());
        assert_no_leftovers(&name, &[]);
    }
}

/// `systemctl stop` of a member's scope: the member ends by SIGTERM (its parent sees 143), its
/// daemon dies with it, the family goes on and `ps` shows it without the member.
#[harness::test]
fn systemctl_stop_of_a_member_scope_ends_that_member() {
    stop_the_workers_unit("stopscope", ".member.scope");
}

/// The same for the member's slice, its live part: systemd removes the slice's cgroup right
/// after its processes end. The guardian learns of the end from `populated 0`, or, when the
/// removal cancelled that event (it can), from the removal itself (`IN_DELETE`).
#[harness::test]
fn systemctl_stop_of_a_member_slice_ends_that_member() {
    stop_the_workers_unit("stopmslice", ".member.slice");
}

fn stop_the_workers_unit(name: &str, suffix: &str) {
    require_cgroup();
    let name = family_name(name);
    let dir = tempdir();
    let m = marker(30);
    let script = tpl(
        "daemonic spawn --name worker -- sh -c 'daemonic spawn --daemon --name wd -- sleep @M@ & sleep @M@'\n\
         echo worker-rc=$?\n\
         while [ ! -e @D@/done ]; do sleep 0.05; done",
        &[("M", &m), ("D", &d(&dir))],
    );
    let mut run = start_family(&name, &script, &m, &[]);
    await_units(&name, &run, "the worker's daemon never started", |u| {
        u.iter().filter(|u| u.ends_with(".daemon.scope")).count() == 1
    });
    let worker = family_units(&name).into_iter().find(|u| u.contains("-worker_") && u.ends_with(suffix));
    let worker = worker.unwrap_or_else(|| panic!("the worker's {suffix}: {:?}", family_units(&name)));
    let stopped = systemctl().args(["stop", &worker]).status().expect("stop");
    assert!(stopped.success());
    run.wait_stdout("worker-rc=143", Duration::from_secs(10));
    let sleeping = || marked_processes(&m).into_iter().filter(|(_, cmd)| cmd.starts_with("sleep")).count();
    assert!(
        wait_until(Duration::from_secs(5), || sleeping() == 0),
        "the worker's sleep and its daemon must have ended: {:?}",
        marked_processes(&m)
    );
    assert!(
        wait_until(Duration::from_secs(5), || units_ending(&name, ".scope").len() == 1),
        "only the main scope may remain: {:?}",
        family_units(&name)
    );
    let mut fam = Value::Null;
    let only_main = wait_until(Duration::from_secs(5), || {
        let doc = ps_json();
        fam = find_family(&doc, &name).cloned().unwrap_or_else(|| panic!("the family must go on: {doc}"));
        let members: Vec<&str> =
            fam["members"].as_array().expect("members").iter().filter_map(|x| x["name"].as_str()).collect();
        members == ["main"]
    });
    assert!(only_main, "ps must list main alone: {fam}\n{}", run.stderr_now());
    std::fs::write(dir.path().join("done"), "").expect("done");
    let out = run.wait();
    assert_eq!(out.code, Some(0), "{}", out.dump());
    assert_no_leftovers(&name, &[&m]);
}

/// `systemctl stop` of a family's slice ends the whole family: the main member gets SIGTERM
/// (run exits 143 and says it was stopped from outside), nothing of it remains.
#[harness::test]
fn systemctl_stop_of_the_family_slice_ends_the_family() {
    require_cgroup();
    let name = family_name("stopslice");
    let m = marker(30);
    let script = tpl("daemonic spawn --daemon --name d -- sleep @M@ &\nsleep @M@ & wait", &[("M", &m)]);
    let run = start_family(&name, &script, &m, &[]);
    await_units(&name, &run, "the daemon never started", |u| {
        u.iter().filter(|u| u.ends_with(".daemon.scope")).count() == 1
    });
    let slice = units_ending(&name, ".family.slice").pop().expect("family slice");
    let t = Instant::now();
    let stopped = systemctl().args(["stop", &slice]).status().expect("stop");
    assert!(stopped.success());
    let out = run.wait();
    eprintln!("stopslice: run ended {:?} after systemctl stop", t.elapsed());
    assert_eq!(out.code, Some(143), "{}", out.dump());
    assert!(out.stderr.contains("was killed by SIGTERM from outside daemonic"), "{}", out.dump());
    assert_no_leftovers(&name, &[&m]);
}

/// A family whose supervisor and guardian were SIGKILLed is still ended by `daemonic kill`,
/// its units stopped over D-Bus.
#[harness::test]
fn kill_stops_the_units_of_a_family_without_guardian() {
    require_cgroup();
    let name = family_name("orphan");
    let m = marker(30);
    let script = tpl("daemonic spawn --daemon --name d -- sleep @M@ &\nsleep @M@", &[("M", &m)]);
    let mut run = start_family(&name, &script, &m, &[]);
    let mut guardian = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let doc = ps_json();
            guardian = find_family(&doc, &name)
                .filter(|f| f["members"].as_array().is_some_and(|ms| ms.len() == 2))
                .and_then(|f| f["guardian"].as_u64());
            guardian.is_some()
        }),
        "family never listed with two members"
    );
    let guardian = guardian.expect("guardian") as i32;
    run.kill();
    let gpid = rustix::process::Pid::from_raw(guardian).expect("pid");
    let gfd = rustix::process::pidfd_open(gpid, rustix::process::PidfdFlags::empty()).expect("guardian pidfd");
    rustix::process::pidfd_send_signal(&gfd, Signal::KILL).expect("kill the guardian");
    assert!(!family_units(&name).is_empty(), "the units must still be there");
    let out = daemonic(["kill", &name]).timeout(15.0).run();
    out.assert_code(0);
    assert_no_leftovers(&name, &[&m]);
}

/// `daemonic kill` of a family of the user manager, by root whose own default is the system
/// manager (absent here): the family's bus is read from the family, and a tree its guardian
/// already removed is not an error. (It printed "cannot reach the system's systemd manager" and
/// exited 1 after killing everything.)
#[harness::test]
fn kill_uses_the_familys_bus_not_the_callers() {
    require_cgroup();
    let name = family_name("killbus");
    let m = marker(30);
    let script = tpl("daemonic spawn --daemon --name d -- sleep @M@ &\nsleep @M@", &[("M", &m)]);
    let run = start_family(&name, &script, &m, &[]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            find_family(&ps_json(), &name).is_some_and(|f| f["members"].as_array().is_some_and(|ms| ms.len() == 2))
        }),
        "family never listed with two members"
    );
    let out = daemonic(["kill", &name]).env_remove("DAEMONIC_BUS").timeout(15.0).run();
    out.assert_code(0);
    assert_eq!(out.error_lines(), Vec::<&str>::new(), "{}", out.dump());
    let status = run.wait();
    assert_eq!(status.code, Some(137), "{}", status.dump());
    assert_no_leftovers(&name, &[&m]);
}

/// A name whose unit would exceed systemd's 255 bytes is refused with a clear error, and
/// nothing of that member is created.
#[harness::test]
fn names_too_long_for_a_unit_are_refused() {
    require_cgroup();
    // At least 9 + 20 bytes of family slice, 14 of main member, 72 per member level below:
    // the third level needs a slice of at least 265 bytes.
    let name = family_name("long");
    let long = "n".repeat(64);
    // Each level a script file: main -> a -> b -> c, where c's unit name is too long.
    let dir = tempdir();
    let level = |next: &str| format!("#!/bin/sh\ndaemonic spawn --name {long} -- {next}\necho rc=$?\n");
    let c = write_file(dir.path(), "c.sh", &level("echo ran"), 0o755);
    let b = write_file(dir.path(), "b.sh", &level(&c), 0o755);
    let script = level(&b);
    let out = daemonic(run_sh(&name, &script, &marker(0))).timeout(20.0).run();
    out.assert_code(0);
    assert!(out.stdout.contains("rc=2"), "{}", out.dump());
    assert!(!out.stdout.contains("ran"), "{}", out.dump());
    assert!(out.stderr.contains("systemd allows 255"), "{}", out.dump());
    assert_clean_at_exit(&name, &[]);
}

/// `auto` takes systemd when the manager answers, and says so with `-v`.
#[harness::test]
fn auto_picks_systemd_when_a_manager_answers() {
    require_cgroup();
    let name = family_name("auto");
    // In a scope of the manager that is not delegated, wherever the test itself runs.
    let scope = ["systemd-run", bus_flag(), "--scope", "--quiet", "--collect", "--"];
    let out = daemonic_via(&scope, ["-v", "run", "--name", &name, "--", "grep", "^0::", "/proc/self/cgroup"])
        .env("DAEMONIC_BACKEND", "auto")
        .timeout(10.0)
        .run();
    out.assert_code(0);
    let said = format!("backend auto: systemd, the {} manager answers", test_bus().as_str());
    assert!(out.stderr.contains(&said), "{}", out.dump());
    assert!(out.stdout.contains(".family.slice/") && out.stdout.contains(".member.scope"), "{}", out.dump());
    assert_clean_at_exit(&name, &[]);
}

/// Inside a unit delegated to it (here a scope with `Delegate=yes`; a service with it is the
/// recommended setup), `auto` takes cgroupfs even though the manager answers, so that the family
/// stays inside the unit, and `-v` says why.
#[harness::test]
fn auto_in_a_delegated_unit_keeps_the_family_inside_it() {
    require_cgroup();
    let name = family_name("autodeleg");
    let scope = ["systemd-run", bus_flag(), "--scope", "--quiet", "--collect", "-p", "Delegate=yes", "--"];
    let out = daemonic_via(&scope, ["-v", "run", "--name", &name, "--", "grep", "^0::", "/proc/self/cgroup"])
        .env("DAEMONIC_BACKEND", "auto")
        .timeout(10.0)
        .run();
    out.assert_code(0);
    assert!(out.stderr.contains("backend auto: cgroupfs, as this process runs in run-"), "{}", out.dump());
    assert!(out.stderr.contains(".scope, delegated to it (Delegate=yes)"), "{}", out.dump());
    let cgroup = out.stdout.trim();
    let family = format!("/daemonic-{name}-");
    assert!(
        cgroup.contains(".scope/") && cgroup.contains(&family) && cgroup.ends_with("/main-1.member"),
        "the family is not a directory inside the scope: {cgroup}\n{}",
        out.dump()
    );
    assert_clean_at_exit(&name, &[]);
}
