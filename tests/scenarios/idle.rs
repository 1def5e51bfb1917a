// The idle scenario shared by both backends: included by tests/idle.rs (cgroupfs) and
// tests/idle_systemd.rs (systemd), each of which defines `BACKEND` and `mod common`.
//
// It has a test binary of its own because it counts wake-ups, and on the systemd backend the
// guardian hears every unit removal of its manager: D-Bus match rules cannot pick a family's
// units out by name prefix, so the guardian filters them itself. Other tests' units, removed
// while this one watches, would wake it. Cargo runs test binaries one after another, so here
// the manager is quiet but for this family.

use std::time::Duration;

use common::*;

/// Every context switch so far of every thread of `pid`, by thread: a thread that sleeps in a
/// timed wait (a thread pool's idle timeout, a poll with a timeout) switches at each wake.
fn context_switches(pid: u32) -> Vec<(String, u64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap_or_else(|e| panic!("threads of {pid}: {e}"));
    let mut threads: Vec<(String, u64)> = tasks
        .flatten()
        .map(|task| {
            let read = |file: &str| std::fs::read_to_string(task.path().join(file)).unwrap_or_default();
            let switches = read("status")
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            let tid = task.file_name().to_string_lossy().into_owned();
            (format!("{pid}/{tid} {}", read("comm").trim()), switches)
        })
        .collect();
    threads.sort();
    threads
}

/// No polling loop (DESIGN: nothing wakes while a family is idle): with its main member and
/// daemons asleep, no thread of `daemonic run` or of its guardian wakes within 2 s.
#[harness::test]
fn idle_family_never_wakes() {
    require_cgroup();
    let name = family_name("idle");
    let dir = tempdir();
    let ready = dir.path().join("ready");
    let m = marker(60);
    let script = format!(
        "daemonic spawn --daemon -- sleep {m} &\n\
         daemonic spawn --daemon -- sleep {m} &\n\
         daemonic spawn -- sleep {m} &\n\
         echo ready > {}\n\
         sleep {m}",
        ready.display()
    );
    let run = daemonic(run_sh(&name, &script, &m)).timeout(60.0).spawn();
    wait_for_file(&ready, Duration::from_secs(20));
    // Ready means every member is its program: a `daemonic spawn` that has not exec'd yet
    // carries the marker too, and may still be talking to the manager.
    let sleeps = || marked_processes(&m).into_iter().filter(|(_, cmd)| cmd.starts_with("sleep ")).count();
    let sleeping = wait_until(Duration::from_secs(10), || sleeps() >= 4);
    assert!(sleeping, "expected 4 sleeps: {:?}\n{}", marked_processes(&m), run.stderr_now());
    let guardians = guardians_of(&name);
    assert_eq!(guardians.len(), 1, "one guardian expected: {guardians:?}");
    let pids = [run.pid(), guardians[0].0];
    // Let the spawns' own traffic (their exits, the units' start jobs, the guardian taking in
    // the new cgroups) settle, for longer on a slower host, then watch.
    std::thread::sleep(scaled(Duration::from_millis(500)));
    let before: Vec<_> = pids.iter().flat_map(|&p| context_switches(p)).collect();
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<_> = pids.iter().flat_map(|&p| context_switches(p)).collect();
    daemonic(["kill", &name]).timeout(10.0).run().assert_code(0);
    let out = run.wait();
    assert_eq!(out.code, Some(137), "run must exit 137 after `daemonic kill`\n{}", out.dump());
    let left = leftovers(&name, &[&m]);
    assert!(left.is_empty(), "family {name} left behind:\n  {}", left.join("\n  "));
    let woke: Vec<String> = after
        .iter()
        .filter_map(|(thread, n)| match before.iter().find(|(t, _)| t == thread) {
            Some((_, was)) if was == n => None,
            Some((_, was)) => Some(format!("{thread}: {} context switches", n - was)),
            None => Some(format!("{thread}: a new thread")),
        })
        .collect();
    assert!(
        woke.is_empty() && before.len() == after.len(),
        "an idle family woke within 2 s: {woke:#?}\nthreads before: {before:?}\nafter: {after:?}"
    );
}
