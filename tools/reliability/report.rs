//! The table of figures, as Markdown: printed, and written to `docs/reliability.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::Duration;

use crate::escapes::EscapeOutcome;
use crate::trial::{LATE, Outcome};
use crate::{Options, Results};

/// What every section adds up: trials, leaks, failed trials and the first failures in words.
#[derive(Default)]
pub(crate) struct Totals {
    trials: usize,
    leaked: usize,
    failed: usize,
    failures: Vec<String>,
}

impl Totals {
    /// Counts a row's outcomes; `label` names the row in the list of failures.
    fn add<T: Trial>(&mut self, label: &str, outcomes: &[T]) {
        self.trials += outcomes.len();
        self.leaked += outcomes.iter().map(Trial::leaks).sum::<usize>();
        for (i, o) in outcomes.iter().enumerate() {
            if o.failed() {
                self.failed += 1;
                if self.failures.len() < 30 {
                    self.failures.push(format!("- {label} (trial {i}): {o:?}"));
                }
            }
        }
    }
}

/// An outcome of any section.
pub(crate) trait Trial: std::fmt::Debug {
    /// Leaks as the final line counts them.
    fn leaks(&self) -> usize;
    /// Whether anything at all went wrong.
    fn failed(&self) -> bool;
}

pub(crate) struct Report {
    pub(crate) leaked: usize,
    pub(crate) failed: usize,
    text: String,
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// The q-th quantile (nearest rank) of sorted values.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().trim().to_string())
        .unwrap_or_default()
}

impl Report {
    pub(crate) fn new(o: &Options, all: &Results, took: Duration) -> Report {
        let mut text = String::new();
        let mut totals = Totals::default();
        // How it was run, as given (the harness's own --daemonic and --out left out).
        let mut given = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            if a == "--daemonic" || a == "--out" {
                args.next();
            } else {
                given.push(a);
            }
        }
        let given = if given.is_empty() { "long mode".to_string() } else { format!("`{}`", given.join(" ")) };
        let _ = writeln!(text, "# daemonic reliability\n");
        let _ = writeln!(
            text,
            "Written by `scripts/reliability` ({given}: {} trials per row, {} load rounds, {} at a time) on {}; it \
             took {:.0} s.\n",
            o.trials,
            o.load_rounds,
            o.jobs,
            command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            took.as_secs_f64()
        );
        let _ = writeln!(
            text,
            "Machine: kernel {}, {} cores, cgroups {}, {}.\n",
            command_output("uname", &["-r"]),
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            crate::host::cgroup_mode(),
            command_output("systemctl", &["--version"]),
        );
        if !all.resource_limits.is_empty() {
            let _ =
                writeln!(text, "Resource limits (chosen by asking the host: a v1 controller where there is one):\n");
            for line in &all.resource_limits {
                let _ = writeln!(text, "- {line}");
            }
            let _ = writeln!(text);
        }
        endings_section(&mut text, &all.endings, &mut totals);
        escapes_section(&mut text, &all.escapes, &mut totals);
        limits_section(&mut text, &all.limits);
        nofork_section(&mut text, &all.nofork, &mut totals);
        restart_section(&mut text, &all.restarts, &mut totals);
        load_section(&mut text, &all.load, &mut totals);
        let _ = writeln!(text);
        if totals.failures.is_empty() {
            let _ = writeln!(text, "Every trial passed.");
        } else {
            let _ = writeln!(text, "Failed trials ({}; at most 30 shown):\n", totals.failed);
            for f in &totals.failures {
                let _ = writeln!(text, "{f}");
            }
        }
        let _ = writeln!(text, "\nreliability: {} trials, {} leaked", totals.trials, totals.leaked);
        Report { leaked: totals.leaked, failed: totals.failed, text }
    }

    pub(crate) fn markdown(&self) -> String {
        self.text.clone()
    }
}

type EndingRows = BTreeMap<crate::Row, Vec<Outcome>>;

fn endings_section(text: &mut String, results: &EndingRows, totals: &mut Totals) {
    if results.is_empty() {
        return;
    }
    let _ = writeln!(text, "## Every way a supervising parent can end\n");
    let _ = writeln!(
        text,
        "Each trial starts a family: the main member, a plain daemon (`sleep`), a daemon with \
         `allow_children` that double-forks a `setsid` sleeper and backgrounds another, and a \
         non-daemonic worker that sleeps 0.3 s and then writes a file. The supervisor is either \
         `daemonic run` (the main member runs under it; signals go to `run`, which forwards \
         them) or a program using the library (supervisor and main member at once). Then it \
         ends one way. Times are taken from pidfds: *latency* runs from the death of the \
         family's last non-daemonic process to the death of its last daemon. A trial leaks when \
         a daemon outlives the family by more than {} ms, or when any process, cgroup \
         directory or transient unit of the family is left once its guardian has exited. *Early* \
         counts daemons killed before their family ended, *worker killed* non-daemonic workers \
         that did not finish (C7), *status* supervisors whose exit status was not the expected \
         one (C9).\n",
        LATE.as_millis()
    );
    let _ = writeln!(
        text,
        "| backend | supervisor | ending | trials | latency p50 / p99 / max (ms) | late | early | \
         leaked proc / cgroup / unit | worker killed | status | errors |"
    );
    let _ = writeln!(text, "|---|---|---|---:|---|---:|---:|---|---:|---:|---:|");
    for ((backend, sup, ending), outcomes) in results {
        let mut lat: Vec<Duration> = outcomes.iter().filter_map(|o| o.latency).collect();
        lat.sort();
        let count = |f: &dyn Fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
        let lat_text = if lat.is_empty() {
            "–".to_string()
        } else {
            format!("{} / {} / {}", ms(quantile(&lat, 0.5)), ms(quantile(&lat, 0.99)), ms(*lat.last().unwrap()))
        };
        let sum = |f: &dyn Fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
        let _ = writeln!(
            text,
            "| {backend} | {} | {} | {} | {lat_text} | {} | {} | {} / {} / {} | {} | {} | {} |",
            sup.label(),
            ending.label(*sup),
            outcomes.len(),
            count(&|o| o.latency.is_some_and(|l| l > LATE)),
            count(&|o| o.early),
            sum(&|o| o.leaked_processes),
            sum(&|o| o.leaked_cgroups),
            sum(&|o| o.leaked_units),
            count(&|o| o.worker_killed),
            count(&|o| o.wrong_status.is_some()),
            count(&|o| o.error.is_some() || o.not_oom),
        );
        totals.add(&format!("{backend} / {} / {}", sup.label(), ending.label(*sup)), outcomes);
    }
    let _ = writeln!(text);
    let oom: Vec<&Outcome> =
        results.iter().filter(|((_, _, e), _)| *e == crate::Ending::Oom).flat_map(|(_, v)| v).collect();
    if !oom.is_empty() {
        let _ = writeln!(
            text,
            "OOM killer confirmed in {} of {} trials of \"OOM killer on main\" (v1: `oom_kill` of the memory \
             cgroup; v2: the kernel's log names the main member's PID).\n",
            oom.iter().filter(|o| o.oom_confirmed).count(),
            oom.len()
        );
    }
}

type EscapeRows = BTreeMap<(String, crate::escapes::Escape), Vec<EscapeOutcome>>;

fn escapes_section(text: &mut String, rows: &EscapeRows, totals: &mut Totals) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(text, "## Escapes from a daemon with `allow_children`\n");
    let _ = writeln!(
        text,
        "The family's one daemon may have children and tries to get processes out of the family. \
         *The kernel said* is what the escaping process was told (every distinct answer over the \
         trials). *Caught* counts the processes that got away from their parent or session and \
         still died within {} ms of the family's end (the end of its library supervisor, which \
         kills the daemons with `cgroup.kill`); *survived* counts everything alive after that, \
         the fork bomb's tasks and anything in the cgroup outside the family included.\n",
        LATE.as_millis()
    );
    let _ = writeln!(
        text,
        "| backend | escape | trials | the kernel said | caught | latency p50 / max (ms) | survived | \
         leaked cgroup / unit | errors |"
    );
    let _ = writeln!(text, "|---|---|---:|---|---:|---|---:|---|---:|");
    for ((backend, escape), outcomes) in rows {
        // Distinct answers, with PIDs and tokens written as N.
        let said: BTreeSet<String> =
            outcomes.iter().flat_map(|o| o.said.iter().map(|(k, v)| numbers_as_n(&format!("{k}: {v}")))).collect();
        let said: Vec<String> = said.into_iter().take(3).collect();
        let mut lat: Vec<Duration> = outcomes.iter().filter_map(|o| o.latency).collect();
        lat.sort();
        let lat_text = if lat.is_empty() {
            "–".to_string()
        } else {
            format!("{} / {}", ms(quantile(&lat, 0.5)), ms(*lat.last().unwrap()))
        };
        let watched: usize = outcomes.iter().map(|o| o.watched).sum();
        let survived: usize = outcomes.iter().map(|o| o.survivors).sum();
        let _ = writeln!(
            text,
            "| {backend} | {} | {} | {} | {} of {watched} | {lat_text} | {survived} | {} / {} | {} |",
            escape.label(),
            outcomes.len(),
            said.join("<br>").replace('|', "\\|"),
            outcomes.iter().map(|o| o.caught).sum::<usize>(),
            outcomes.iter().map(|o| o.leaked_cgroups).sum::<usize>(),
            outcomes.iter().map(|o| o.leaked_units).sum::<usize>(),
            outcomes.iter().filter(|o| o.error.is_some()).count(),
        );
        totals.add(&format!("{backend} / {}", escape.label()), outcomes);
    }
}

/// `text` with every run of digits replaced by `N`.
fn numbers_as_n(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            out.push(c);
            in_number = false;
        }
    }
    out
}

/// The limits shown once and not counted: what happens without `contain`.
fn limits_section(text: &mut String, rows: &EscapeRows) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        text,
        "\n### The limit `contain` is for (shown once per backend, not counted)\n\n\
         Root may move any process to any cgroup. A descendant of an `allow_children` daemon that \
         moves itself out of the family's tree is out of reach of the family's `cgroup.kill`, and \
         survives the family when the daemon was not started with `contain` (a PID namespace of \
         its own, whose end the kernel enforces on every process in it, wherever it moved). This \
         run saw:\n"
    );
    let _ = writeln!(text, "| backend | escape | the kernel said | survived the family |");
    let _ = writeln!(text, "|---|---|---|---:|");
    for ((backend, escape), outcomes) in rows {
        for o in outcomes {
            let said: Vec<String> = o.said.iter().map(|(k, v)| numbers_as_n(&format!("{k}: {v}"))).collect();
            let _ = writeln!(
                text,
                "| {backend} | {} | {} | {}{} |",
                escape.label(),
                said.join("<br>").replace('|', "\\|"),
                o.survivors,
                o.error.as_deref().map(|e| format!(" (error: {e})")).unwrap_or_default()
            );
        }
    }
}

fn restart_section(
    text: &mut String,
    rows: &BTreeMap<String, Vec<crate::restart::RestartOutcome>>,
    totals: &mut Totals,
) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        text,
        "\n## Restart safety: `ps` and `kill` after the supervisor's SIGKILL\n\n\
         A family (main member, a daemon, a non-daemonic worker) under `daemonic run`; `run` is \
         SIGKILLed. A new `daemonic ps --json` must list the same members with the same PIDs \
         (read from the cgroup tree), and `daemonic kill FAMILY` must end them all and leave \
         nothing (its guardian included). *Kill* is from the start of `daemonic kill` to the \
         death of the last member.\n"
    );
    let _ = writeln!(
        text,
        "| backend | trials | ps unchanged | kill p50 / max (ms) | leaked proc / cgroup / unit | errors |"
    );
    let _ = writeln!(text, "|---|---:|---:|---|---|---:|");
    for (backend, outcomes) in rows {
        let mut lat: Vec<Duration> = outcomes.iter().filter_map(|o| o.kill_latency).collect();
        lat.sort();
        let lat_text = if lat.is_empty() {
            "–".to_string()
        } else {
            format!("{} / {}", ms(quantile(&lat, 0.5)), ms(*lat.last().unwrap()))
        };
        let _ = writeln!(
            text,
            "| {backend} | {} | {} | {lat_text} | {} / {} / {} | {} |",
            outcomes.len(),
            outcomes.iter().filter(|o| o.ps_ok).count(),
            outcomes.iter().map(|o| o.leaked_processes).sum::<usize>(),
            outcomes.iter().map(|o| o.leaked_cgroups).sum::<usize>(),
            outcomes.iter().map(|o| o.leaked_units).sum::<usize>(),
            outcomes.iter().filter(|o| o.error.is_some()).count(),
        );
        totals.add(&format!("{backend} / restart"), outcomes);
    }
}

fn nofork_section(text: &mut String, rows: &BTreeMap<String, Vec<crate::nofork::NoForkOutcome>>, totals: &mut Totals) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        text,
        "\n## The no-fork policy ({})\n\n\
         A daemon without `allow_children` tries every way to make a process, from C, a shell, \
         Python and Rust; each must be refused, and threads must keep working. *Seen* lists every \
         distinct answer over the trials; *as wanted* counts the trials that got the wanted one.\n",
        std::env::consts::ARCH
    );
    let _ = writeln!(text, "| backend | probe / call | wanted | seen | as wanted |");
    let _ = writeln!(text, "|---|---|---|---|---:|");
    for (backend, outcomes) in rows {
        let mut names: BTreeSet<&String> = BTreeSet::new();
        for o in outcomes {
            names.extend(o.verdicts.keys());
        }
        for name in names {
            let seen: BTreeSet<&String> = outcomes.iter().filter_map(|o| o.verdicts.get(name)).collect();
            let ok = outcomes
                .iter()
                .filter(|o| o.verdicts.get(name).is_some_and(|v| crate::nofork::verdict_ok(name, v)))
                .count();
            let wanted = if crate::nofork::verdict_ok(name, "works") { "works" } else { "refused" };
            let seen: Vec<String> = seen.into_iter().map(|v| v.replace('|', "\\|")).collect();
            let _ = writeln!(
                text,
                "| {backend} | {} | {wanted} | {} | {ok} of {} |",
                name.replace('|', "\\|"),
                seen.join("<br>"),
                outcomes.len()
            );
        }
        totals.add(&format!("{backend} / no-fork"), outcomes);
    }
}

fn load_section(text: &mut String, rows: &crate::load::LoadRows, totals: &mut Totals) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        text,
        "\n## Load: {} members at once, three levels deep\n\n\
         Under `daemonic run`, the main member starts 10 nodes; each starts 10 nodes and 10 daemons; \
         each of those starts 9 waiting leaves and 9 daemons: {} members, about half of them \
         daemons, all alive at once, then torn down by letting the leaves go (the nodes join them \
         and end, their daemons are killed), in rounds, one at a time and alone on the machine. \
         *Up* is from the start of `run` until every member runs; RSS and CPU are those of \
         `daemonic run` and of the family's guardian, the CPU measured over 2 s while the members \
         idle; *teardown* is from the release to the exit of `run`.\n",
        crate::load::MEMBERS,
        crate::load::MEMBERS
    );
    let _ = writeln!(
        text,
        "| backend | rounds | failed | up p50 / max (s) | peak processes | RSS run / guardian (MiB) | idle CPU run / guardian | teardown p50 / max (s) | leaked proc / cgroup / unit |"
    );
    let _ = writeln!(text, "|---|---:|---:|---|---:|---|---|---|---|");
    let secs = |v: &mut Vec<Duration>| {
        v.sort();
        if v.is_empty() {
            "–".to_string()
        } else {
            format!("{:.1} / {:.1}", quantile(v, 0.5).as_secs_f64(), v.last().unwrap().as_secs_f64())
        }
    };
    for (backend, outcomes) in rows {
        let mut up: Vec<Duration> = outcomes.iter().filter_map(|o| o.start).collect();
        let mut down: Vec<Duration> = outcomes.iter().filter_map(|o| o.teardown).collect();
        let max_f = |f: &dyn Fn(&crate::load::LoadOutcome) -> f64| outcomes.iter().map(f).fold(0.0, f64::max);
        let _ = writeln!(
            text,
            "| {backend} | {} | {} | {} | {} | {:.1} / {:.1} | {:.1} % / {:.1} % | {} | {} / {} / {} |",
            outcomes.len(),
            outcomes.iter().filter(|o| o.failed()).count(),
            secs(&mut up),
            outcomes.iter().map(|o| o.peak).max().unwrap_or(0),
            max_f(&|o| o.rss_run_kib as f64 / 1024.0),
            max_f(&|o| o.rss_guardian_kib as f64 / 1024.0),
            max_f(&|o| o.cpu_run),
            max_f(&|o| o.cpu_guardian),
            secs(&mut down),
            outcomes.iter().map(|o| o.leaked_processes).sum::<usize>(),
            outcomes.iter().map(|o| o.leaked_cgroups).sum::<usize>(),
            outcomes.iter().map(|o| o.leaked_units).sum::<usize>(),
        );
        totals.add(&format!("{backend} / load"), outcomes);
    }
    let _ = writeln!(text, "\nRSS and CPU are the maxima over the rounds.");
}
