//! The tables of `docs/benchmarks.md`, the targets' verdicts and the chart's data, from the raw
//! results.

use std::fmt::Write as _;
use std::time::Duration;

use crate::chart::{Bar, Charts, Figure, Series};
use crate::proc::Machine;
use crate::stats::{median, over_runs, quantile, show};
use crate::{Plan, Results, SPAWN_VARIANTS, Teardown};

/// The teardown rows, in the order shown.
const TEARDOWNS: [Teardown; 7] = [
    Teardown::Reaped("cgroupfs"),
    Teardown::Shutdown("cgroupfs"),
    Teardown::Reaped("systemd"),
    Teardown::Shutdown("systemd"),
    Teardown::Python,
    Teardown::KillLoop,
    Teardown::KernelFloor,
];

/// Spawns of a growing family, grouped by the family's size when they happened.
const BUCKETS: [(usize, usize); 4] = [(1, 10), (11, 100), (101, 1000), (1001, 5000)];

/// One spawn variant's figures, in microseconds.
struct SpawnRow {
    label: &'static str,
    daemonic: bool,
    p50: Figure,
    p99: Figure,
    samples: usize,
    runs: usize,
}

pub(crate) struct Report<'a> {
    plan: &'a Plan,
    machine: &'a Machine,
    results: &'a Results,
    took: Duration,
    spawn: Vec<(&'static str, SpawnRow)>,
}

/// A target and what was measured against it.
struct Verdict {
    target: String,
    measured: String,
    met: Option<bool>,
}

fn us(ns: &[u64]) -> Vec<f64> {
    ns.iter().map(|&n| n as f64 / 1000.0).collect()
}

fn ms_of(ns: &[u64]) -> Vec<f64> {
    ns.iter().map(|&n| n as f64 / 1e6).collect()
}

impl<'a> Report<'a> {
    pub(crate) fn new(plan: &'a Plan, machine: &'a Machine, results: &'a Results, took: Duration) -> Report<'a> {
        let spawn = SPAWN_VARIANTS
            .iter()
            .map(|v| {
                let runs = results.spawn.get(v.key).map(Vec::as_slice).unwrap_or_default();
                let p50: Vec<f64> = runs.iter().map(|r| median(&us(r))).collect();
                let p99: Vec<f64> = runs.iter().map(|r| quantile(&us(r), 0.99)).collect();
                let row = SpawnRow {
                    label: v.label,
                    daemonic: v.daemonic,
                    p50: over_runs(&p50),
                    p99: over_runs(&p99),
                    samples: runs.iter().map(Vec::len).sum(),
                    runs: runs.len(),
                };
                (v.key, row)
            })
            .collect();
        Report { plan, machine, results, took, spawn }
    }

    fn spawn_p50(&self, key: &str) -> f64 {
        self.spawn.iter().find(|(k, _)| *k == key).map_or(f64::NAN, |(_, r)| r.p50.median)
    }

    /// The CPU time `service` ("manager", "dbus-daemon") spent per spawn of `variant`, in ms.
    fn service_ms(&self, variant: &'static str, service: &'static str) -> Figure {
        let runs = self.results.service_cpu.get(&(variant, service)).map(Vec::as_slice).unwrap_or_default();
        over_runs(&ms_of(runs))
    }

    /// A teardown figure in milliseconds.
    fn teardown(&self, method: Teardown, n: usize) -> Figure {
        let runs = self.results.teardown.get(&(method, n)).map(Vec::as_slice).unwrap_or_default();
        over_runs(&ms_of(runs))
    }

    /// A footprint figure: RSS in MiB, or CPU in percent of one core over the idle window.
    fn footprint(&self, backend: &'static str, n: usize, process: &'static str, cpu: bool) -> Figure {
        let window = self.plan.idle_window.as_nanos() as f64;
        let runs = self.results.footprint.get(&(backend, n, process)).map(Vec::as_slice).unwrap_or_default();
        let values: Vec<f64> =
            runs.iter().map(|&(rss, ns)| if cpu { ns as f64 / window * 100.0 } else { rss as f64 / 1024.0 }).collect();
        over_runs(&values)
    }

    /// Per bucket of family sizes: the median spawn in µs over the runs of `backend`.
    fn scaling(&self, backend: &str) -> Vec<(usize, Figure)> {
        let runs = self.results.scaling.get(backend).map(Vec::as_slice).unwrap_or_default();
        BUCKETS
            .iter()
            .filter_map(|&(from, to)| {
                let per_run: Vec<f64> =
                    runs.iter().filter(|r| r.len() >= to).map(|r| median(&us(&r[from - 1..to]))).collect();
                (!per_run.is_empty()).then(|| (to, over_runs(&per_run)))
            })
            .collect()
    }

    fn verdicts(&self) -> Vec<Verdict> {
        let mut v = Vec::new();
        let floor = self.spawn_p50("fork-exec");
        let ratio = self.spawn_p50("lib-member") / floor;
        v.push(Verdict {
            target: "cgroupfs spawn+wait ≤ 1.3× the plain floor (fork+exec, p50)".into(),
            measured: format!(
                "{ratio:.2}× ({:.0} vs {floor:.0} µs); as a daemon {:.2}×",
                self.spawn_p50("lib-member"),
                self.spawn_p50("lib-daemon") / floor
            ),
            met: finite(ratio).map(|r| r <= 1.3),
        });
        let growth = self.scaling_growth("cgroupfs");
        v.push(Verdict {
            target: "cgroupfs spawn cost flat from 10 to 5000 members (last group ≤ 1.2× the first)".into(),
            measured: growth.map_or("not measured".into(), |(first, last)| {
                format!("{:.2}× ({first:.0} → {last:.0} µs)", last / first)
            }),
            met: growth.map(|(first, last)| last / first <= 1.2),
        });
        let systemd = self.spawn_p50("lib-systemd") / 1000.0;
        v.push(Verdict {
            target: "systemd backend ≤ 5 ms per member (p50)".into(),
            measured: format!("{systemd:.2} ms"),
            met: finite(systemd).map(|s| s <= 5.0),
        });
        let speedup = self.spawn_p50("systemd-run") / self.spawn_p50("lib-systemd");
        v.push(Verdict {
            target: "systemd backend ≥ 2× faster than `systemd-run --scope`".into(),
            measured: format!("{speedup:.1}× ({:.1} ms for systemd-run)", self.spawn_p50("systemd-run") / 1000.0),
            met: finite(speedup).map(|s| s >= 2.0),
        });
        let (run, run_systemd, systemd_run) =
            (self.spawn_p50("cli-run"), self.spawn_p50("cli-run-systemd"), self.spawn_p50("systemd-run"));
        v.push(Verdict {
            target: "`daemonic run -- /bin/true`, cgroupfs: ≥ 2× faster than `systemd-run --user --scope` and \
                     ≤ 6× fork+exec+wait (p50)"
                .into(),
            measured: format!(
                "{:.1}× faster, {:.1}× the floor ({:.2} vs {:.2} ms)",
                systemd_run / run,
                run / floor,
                run / 1000.0,
                systemd_run / 1000.0
            ),
            met: finite(systemd_run / run).zip(finite(run / floor)).map(|(fast, floor)| fast >= 2.0 && floor <= 6.0),
        });
        v.push(Verdict {
            target: "`daemonic run -- /bin/true`, systemd: no slower than `systemd-run --user --scope` (p50)".into(),
            measured: format!("{:.2}× ({:.2} ms)", run_systemd / systemd_run, run_systemd / 1000.0),
            met: finite(run_systemd / systemd_run).map(|r| r <= 1.0),
        });
        for backend in ["cgroupfs", "systemd"] {
            let reaped = self.teardown(Teardown::Reaped(backend), 1000).median;
            v.push(Verdict {
                target: format!("{backend}: 1000 daemons reaped ≤ 100 ms after the family ends"),
                measured: format!(
                    "{reaped:.1} ms ({:.1} ms with every cgroup removed)",
                    self.teardown(Teardown::Shutdown(backend), 1000).median
                ),
                met: finite(reaped).map(|r| r <= 100.0),
            });
        }
        let (daemonic, fork, spawn) =
            (self.spawn_p50("py-daemonic"), self.spawn_p50("py-fork"), self.spawn_p50("py-spawn"));
        v.push(Verdict {
            target: "Python, start method `daemonic`: start+join of a daemon ≤ `fork`'s (p50)".into(),
            measured: format!("{:.2}× ({:.2} vs {:.2} ms)", daemonic / fork, daemonic / 1000.0, fork / 1000.0),
            met: finite(daemonic / fork).map(|r| r <= 1.0),
        });
        v.push(Verdict {
            target: "Python, start method `daemonic`: ≥ 10× faster than `spawn` (p50)".into(),
            measured: format!("{:.1}× ({:.1} ms for spawn)", spawn / daemonic, spawn / 1000.0),
            met: finite(spawn / daemonic).map(|r| r >= 10.0),
        });
        let python = self.teardown(Teardown::Python, 1000).median;
        let reaped = self.teardown(Teardown::Reaped("cgroupfs"), 1000).median;
        v.push(Verdict {
            target: "1000 daemons reaped ≥ 5× faster than Python's exit handler".into(),
            measured: format!("{:.1}× ({python:.0} ms for Python)", python / reaped),
            met: finite(python / reaped).map(|s| s >= 5.0),
        });
        for backend in ["cgroupfs", "systemd"] {
            let cpu = ["daemonic run", "guardian"]
                .map(|p| self.footprint(backend, 1000, p, true).median)
                .into_iter()
                .fold(f64::NAN, f64::max);
            let rss = ["daemonic run", "guardian"].map(|p| self.footprint(backend, 1000, p, false).median);
            v.push(Verdict {
                target: format!("{backend}: 0 % CPU while 1000 members idle (run and guardian)"),
                measured: format!("{cpu:.3} % at most"),
                met: finite(cpu).map(|c| c < 0.01),
            });
            v.push(Verdict {
                target: format!("{backend}: ≤ 10 MiB RSS with 1000 members (run and guardian)"),
                measured: format!("run {:.1} MiB, guardian {:.1} MiB", rss[0], rss[1]),
                met: finite(rss[0].max(rss[1])).map(|r| r <= 10.0),
            });
        }
        v
    }

    pub(crate) fn markdown(&self) -> String {
        let m = self.machine;
        let mut t = String::new();
        let _ = writeln!(t, "# daemonic benchmarks\n");
        let _ = writeln!(
            t,
            "Written by `scripts/bench{}` ({} mode) in {:.0} s; every comparison below was measured in that one run, \
             the variants taking turns. Each figure is the median over repeated runs, each run a fresh process, with \
             the runs' min–max in brackets. The chart is [benchmarks.svg](benchmarks.svg).\n",
            if self.plan.quick { " --quick" } else { "" },
            if self.plan.quick { "quick" } else { "long" },
            self.took.as_secs_f64()
        );
        let _ = writeln!(t, "| machine | |\n|---|---|");
        let _ = writeln!(t, "| kernel | {} |", m.kernel);
        let _ = writeln!(t, "| CPUs | {} × {} |", m.cpus, m.cpu_model);
        let _ = writeln!(t, "| memory | {} |", m.memory);
        let _ = writeln!(t, "| cgroups | {} |", m.cgroup_mode);
        let _ = writeln!(t, "| systemd | {} (a `systemd --user` manager) |", m.systemd);
        let _ = writeln!(t, "| Python | {} |", m.python);
        let _ = writeln!(t, "| load at start / end | {} / {} |\n", m.load, crate::proc::load_average());

        let _ = writeln!(t, "## Targets\n\n| target | measured | |\n|---|---|---|");
        for v in self.verdicts() {
            let mark = match v.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "not measured",
            };
            let _ = writeln!(t, "| {} | {} | {mark} |", v.target, v.measured);
        }
        let _ = writeln!(t);
        self.reading(&mut t);
        self.spawn_table(&mut t);
        self.teardown_table(&mut t);
        self.scaling_table(&mut t);
        self.footprint_table(&mut t);
        if !self.results.failures.is_empty() {
            let _ = writeln!(t, "## Failures\n");
            for (what, why) in &self.results.failures {
                let _ = writeln!(t, "- {what}: {why}");
            }
            let _ = writeln!(t);
        }
        t
    }

    /// Where the missed targets' time goes, from this run's own figures where they exist.
    fn reading(&self, t: &mut String) {
        let floor = self.spawn_p50("fork-exec");
        let cgroup = self.spawn_p50("clone3-cgroup");
        let lib = self.spawn_p50("lib-member");
        let _ = writeln!(t, "## Reading the figures\n");
        let cpu = |variant, service| show(&self.service_ms(variant, service), 2);
        let _ = writeln!(
            t,
            "- **cgroupfs spawn.** A cgroup of its own per member is not free even without daemonic: mkdir, the \
             first process in a brand-new cgroup and rmdir make the floor with a cgroup {:.2}× plain fork+exec in \
             this run (the ratio moves by ±0.1 from run to run with the machine's load). A daemonic member is \
             {:.2}× plain fork+exec, {:.2}× that floor, because its child does not copy the parent's address \
             space: like `posix_spawn` (std's `Command`, {:.2}× here), it is cloned with `CLONE_VM | \
             CLONE_VFORK` and runs on a stack of its own until `execve` (x86_64; other architectures take a \
             copying clone), so no page tables are copied and the parent takes no copy-on-write faults \
             afterwards; with `CLONE_FILES` it copies only the descriptors below 1024, and with \
             `CLONE_INTO_CGROUP` it starts in its cgroup. CPU per spawn in the caller: {} ms for a member, {} \
             ms for the floor with a cgroup, which also pays for the rmdir that daemonic leaves to the \
             guardian ({} ms per member, on the other core). The fork fallback, for kernels or sandboxes \
             without `clone3` (a copying clone whose child writes itself into `cgroup.procs` before it \
             executes), is {:.2}×. A daemon costs {:.0} µs more than a member: the two seccomp filters of the \
             no-children rule (C3), installed in the child before `execve`.",
            cgroup / floor,
            lib / floor,
            lib / cgroup,
            self.spawn_p50("std-command") / floor,
            cpu("lib-member", "caller"),
            cpu("clone3-cgroup", "caller"),
            cpu("lib-member", "guardian"),
            self.spawn_p50("lib-fork") / floor,
            self.spawn_p50("lib-daemon") - lib
        );
        let run = self.spawn_p50("systemd-run") / 1000.0;
        let work: f64 = ["manager", "dbus-daemon", "caller", "guardian"]
            .iter()
            .map(|service| self.service_ms("lib-systemd", service).median)
            .sum();
        let p50 = self.spawn_p50("lib-systemd") / 1000.0;
        let _ = writeln!(
            t,
            "- **systemd spawn.** The daemon measured is a transient scope alone in its owner's `.daemons` \
             slice, created by the manager over the session bus and waited for before the daemon runs (a \
             member that can have members of its own also gets a slice, which costs the manager about as \
             much again: docs/systemd-backend.md). Neither the library nor the guardian subscribes to the \
             manager's signals: a job's `JobRemoved` comes to the client that asked for the job anyway, while \
             one subscriber makes the manager send every unit's signals to the bus. CPU per spawn in this \
             run: the user manager {} ms for daemonic and {} ms for `systemd-run --user --scope`; dbus-daemon \
             {} ms for daemonic and {} ms for systemd-run, which talks to the manager's private socket; \
             daemonic itself {} ms in the caller and {} ms in the guardian. Together that is {work:.1} ms of \
             CPU per member against a p50 of {p50:.1} ms: the steps run one after another (the call, \
             dbus-daemon relaying it, the manager making the scope, the job's signal back, the exec), so the \
             latency is about their sum. daemonic is {:.1}× faster than systemd-run ({run:.1} ms), which \
             starts a process and opens a new connection to the manager for every scope, and whose scope the \
             manager also has to collect. The private socket would save daemonic dbus-daemon's share, but \
             zbus 5.19 cannot use it yet (it rejects the messages systemd sends there, zbus issue #1497).",
            cpu("lib-systemd", "manager"),
            cpu("systemd-run", "manager"),
            cpu("lib-systemd", "dbus-daemon"),
            cpu("systemd-run", "dbus-daemon"),
            cpu("lib-systemd", "caller"),
            cpu("lib-systemd", "guardian"),
            run / p50,
        );
        let (fork, daemonic) = (self.spawn_p50("py-fork"), self.spawn_p50("py-daemonic"));
        let _ = writeln!(
            t,
            "- **Python's start methods.** A start and join of a daemon that does nothing takes {:.2} ms with \
             daemonic's start method and {:.2} ms with `fork` ({:.2}×), against {:.1} ms with `forkserver` and \
             {:.1} ms with `spawn`. `spawn` starts a new interpreter per child, which imports the program again. \
             `forkserver` forks a server, but up to 3.13 its server never imports the main module (it asks \
             for a key the preparation data does not have), so each child imports it. daemonic's server has \
             imported it, keeps a child forked ahead that took in what every child needs, and is reached over \
             a connection kept open; the start is the request, the placing of the waiting child into its \
             cgroup and the pickled process object. What is left is about what `fork` pays: the child's \
             first writes to pages it shares with its parent (a copy-on-write fault each, ~100 per child \
             here) and the teardown of its copied address space when it exits. The server holds the \
             program's modules, not its data: with the parent holding 200 MiB, `fork` takes {:.2} ms, \
             daemonic {:.2} ms.",
            daemonic / 1000.0,
            fork / 1000.0,
            daemonic / fork,
            self.spawn_p50("py-forkserver") / 1000.0,
            self.spawn_p50("py-spawn") / 1000.0,
            self.spawn_p50("py-fork-ballast") / 1000.0,
            self.spawn_p50("py-daemonic-ballast") / 1000.0,
        );
        let kernel = self.teardown(Teardown::KernelFloor, 1000).median;
        let python = self.teardown(Teardown::Python, 1000).median;
        let reaped = self.teardown(Teardown::Reaped("cgroupfs"), 1000).median;
        let systemd = self.teardown(Teardown::Reaped("systemd"), 1000).median;
        let _ = writeln!(
            t,
            "- **Teardown against Python.** Killing and reaping 1000 plain processes with one `cgroup.kill` and no \
             daemonic code takes the kernel {kernel:.1} ms in this run: that is the floor of any teardown here, \
             and Python's exit handler takes {python:.0} ms, so no mechanism could be more than {:.1}× faster \
             than Python on this machine. daemonic reaps its 1000 daemons in {reaped:.1} ms ({:.1}× the kernel's \
             floor; each daemon has a cgroup of its own). On systemd each daemon is a scope, and 1000 are \
             reaped in {systemd:.1} ms ({:.1}× the floor): the user manager, which watches every unit's cgroup \
             (inotify on `cgroup.events`), wakes as each one empties and collects its scope, on the same two \
             cores.",
            python / kernel,
            reaped / kernel,
            systemd / kernel,
        );
        if let Some((first, last)) = self.scaling_growth("cgroupfs") {
            let _ = writeln!(
                t,
                "- **Scaling.** On cgroupfs one spawn costs {first:.0} µs in a family of 10 and {last:.0} µs in one \
                 of 5000 ({:.2}×). The parent holds a pidfd per member, and a plain fork copies the whole \
                 descriptor table into the child, whose exec then closes the copies one by one: with the pidfds \
                 among the low descriptors, 5000 members made each spawn about 0.5 ms slower (and a pruning \
                 of the member list at every spawn another 0.3 ms, since amortized). daemonic keeps the \
                 pidfds from descriptor 1024 up and clones with `CLONE_FILES | CLONE_VFORK`; the child's first \
                 call, `close_range(1024, ~0, CLOSE_RANGE_UNSHARE)`, copies only the descriptors below 1024, \
                 so the pidfds are neither copied nor closed, and with `CLONE_VM` the member list's memory is \
                 not copied either. On systemd the manager's own cost per scope grows \
                 with the number of units in the slice: profiled apart from this run (perf, 1000 members), \
                 daemonic's CPU per spawn stayed the same from the first members to the last while the \
                 manager's grew 2.6×, in computing cgroup masks over the slice's units (`unit_get_own_mask`, \
                 `_hashmap_iterate`, `unit_has_dependency`).",
                last / first
            );
        }
        let _ = writeln!(t);
    }

    fn spawn_table(&self, t: &mut String) {
        let floor = self.spawn_p50("fork-exec");
        let _ = writeln!(
            t,
            "## 1. Spawn + wait, per child\n\nOne child started and waited for, again and again: `/bin/true` for every \
             variant but Python's, whose child runs a function that does nothing (`multiprocessing`'s unit of work). \
             p50 and p99 are taken per run, then the median over the {} runs with their min–max.\n",
            self.plan.spawn_rounds
        );
        let _ = writeln!(t, "| variant | p50 µs | p99 µs | × floor (p50) | spawns |\n|---|---|---|---|---|");
        for (_, r) in &self.spawn {
            let _ = writeln!(
                t,
                "| {} | {} | {} | {:.2} | {} in {} runs |",
                r.label,
                show(&r.p50, 0),
                show(&r.p99, 0),
                r.p50.median / floor,
                r.samples,
                r.runs
            );
        }
        let _ = writeln!(
            t,
            "\nCPU time per spawn, ms, of the process that spawns (\"caller\": the library's own work; the child \
             is not in it, so for the CLI rows and systemd-run, whose tool is the child, it is only the launch), the family's guardian, and the user manager and dbus-daemon, over the \
             same runs (a process that did not take part shows 0; – where it does not exist):\n"
        );
        let _ = writeln!(t, "| variant | caller | guardian | manager | dbus-daemon |\n|---|---|---|---|---|");
        for (key, r) in &self.spawn {
            if key.starts_with("py-") {
                continue;
            }
            let _ = write!(t, "| {} |", r.label);
            for service in crate::Services::NAMES_SHOWN {
                let _ = write!(t, " {} |", show(&self.service_ms(key, service), 2));
            }
            let _ = writeln!(t);
        }
        let _ = writeln!(t);
    }

    fn teardown_table(&self, t: &mut String) {
        let _ = writeln!(
            t,
            "## 2. Teardown: from \"the family ends\" to \"all N daemons reaped\", ms\n\n\
             N sleeping daemons (`/bin/sleep`, or a forked interpreter in `time.sleep` for Python). daemonic: the main \
             member's end, one `cgroup.kill` of its `.daemons` cgroup until every daemon is reaped, then the rest of \
             `Family::shutdown` (every cgroup or unit removed, the guardian gone). Python: `multiprocessing`'s exit \
             handler (`util._exit_function`: SIGTERM to each daemon, then `join` each), timed inside Python. The \
             naive loop: SIGKILL one PID, `waitpid` it, next.{}\n",
            if self.plan.systemd_max < self.plan.sizes.iter().copied().max().unwrap_or(0) {
                format!(" The systemd backend stops at N = {} in this mode.", self.plan.systemd_max)
            } else {
                String::new()
            }
        );
        let _ = write!(t, "| method |");
        for n in &self.plan.sizes {
            let _ = write!(t, " N = {n} |");
        }
        let _ = writeln!(t, "\n|---|{}", "---|".repeat(self.plan.sizes.len()));
        for method in TEARDOWNS {
            let _ = write!(t, "| {} |", method.label());
            for &n in &self.plan.sizes {
                let _ = write!(t, " {} |", show(&self.teardown(method, n), 1));
            }
            let _ = writeln!(t);
        }
        let _ = writeln!(t);
    }

    /// The median spawn of the first and of the last group of family sizes, when the family
    /// reached 5000 members.
    fn scaling_growth(&self, backend: &str) -> Option<(f64, f64)> {
        let points = self.scaling(backend);
        match (points.first(), points.last()) {
            (Some((_, first)), Some((5000, last))) if points.len() > 1 => Some((first.median, last.median)),
            _ => None,
        }
    }

    fn scaling_table(&self, t: &mut String) {
        let _ = writeln!(
            t,
            "## 3. Spawn cost per member as the family grows, µs\n\n\
             The spawns of section 2's largest families, one `/bin/sleep` daemon after another (the spawn only, no \
             wait), grouped by how many members the family had: the median spawn within each group.\n"
        );
        let _ = write!(t, "| backend |");
        for (from, to) in BUCKETS {
            let _ = write!(t, " members {from}–{to} |");
        }
        let _ = writeln!(t, "\n|---|{}", "---|".repeat(BUCKETS.len()));
        for backend in ["cgroupfs", "systemd"] {
            let points = self.scaling(backend);
            let _ = write!(t, "| {backend} |");
            for (_, to) in BUCKETS {
                let cell = points.iter().find(|(x, _)| *x == to).map_or("–".into(), |(_, f)| show(f, 0));
                let _ = write!(t, " {cell} |");
            }
            let _ = writeln!(t);
        }
        let _ = writeln!(t);
    }

    fn footprint_table(&self, t: &mut String) {
        let _ = writeln!(
            t,
            "## 4. Footprint with idle members\n\n\
             `daemonic run` whose main member keeps N daemonic `/bin/sleep` members; once all sleep and both \
             processes are idle, their VmRSS and the CPU time they use over {} s.\n",
            self.plan.idle_window.as_secs()
        );
        let _ = write!(t, "| backend | process |");
        for n in &self.plan.idle {
            let _ = write!(t, " {n} members: RSS MiB, CPU % |");
        }
        let _ = writeln!(t, "\n|---|---|{}", "---|".repeat(self.plan.idle.len()));
        for backend in ["cgroupfs", "systemd"] {
            for process in ["daemonic run", "guardian"] {
                let _ = write!(t, "| {backend} | {process} |");
                for &n in &self.plan.idle {
                    let _ = write!(
                        t,
                        " {}, {} |",
                        show(&self.footprint(backend, n, process, false), 1),
                        show(&self.footprint(backend, n, process, true), 3)
                    );
                }
                let _ = writeln!(t);
            }
        }
        let _ = writeln!(t);
    }

    /// The chart's data.
    pub(crate) fn charts(&self) -> Charts {
        let m = self.machine;
        let spawn = self
            .spawn
            .iter()
            .filter(|(_, r)| r.runs > 0)
            .map(|(_, r)| Bar {
                label: r.label.to_string(),
                p50: r.p50.clone(),
                p99: Some(r.p99.median),
                daemonic: r.daemonic,
            })
            .collect();
        let teardown = TEARDOWNS
            .iter()
            .map(|&method| Series {
                label: method.label(),
                points: self.plan.sizes.iter().map(|&n| (n as f64, self.teardown(method, n))).collect(),
                daemonic: matches!(method, Teardown::Reaped(_) | Teardown::Shutdown(_)),
            })
            .collect();
        let scaling = ["cgroupfs", "systemd"]
            .into_iter()
            .map(|b| Series {
                label: format!("daemonic {b}"),
                points: self.scaling(b).into_iter().map(|(x, f)| (x as f64, f)).collect(),
                daemonic: true,
            })
            .collect();
        let footprint = ["cgroupfs", "systemd"]
            .into_iter()
            .flat_map(|b| ["daemonic run", "guardian"].map(|p| (b, p)))
            .map(|(b, p)| Series {
                label: format!("{p} ({b})"),
                points: self.plan.idle.iter().map(|&n| (n as f64, self.footprint(b, n, p, false))).collect(),
                daemonic: true,
            })
            .collect();
        Charts {
            subtitle: format!(
                "{} × {} · {} · {} cgroups · {} · medians over runs, whiskers min–max",
                m.cpus,
                m.cpu_model,
                m.kernel,
                m.cgroup_mode.split_whitespace().next().unwrap_or("?"),
                if self.plan.quick { "quick mode" } else { "long mode" }
            ),
            spawn,
            teardown,
            scaling,
            footprint,
        }
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}
