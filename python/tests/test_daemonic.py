"""Tests of daemonic's start method, each program run in an interpreter of its own as a user
would run it: the seed's programs with only the start method changed, SIGKILL of a parent with
a resource tracker, a Manager and a pool alive, the kernel's rules for daemons in both modes,
CPython's Process API, and a clear error outside any writable cgroup.

Run by tests/python.rs (``scripts/test``) for every CPython 3.9+ on the machine, with
``PYTHONPATH`` pointing at the package built from this checkout. Time bounds scale with
``DAEMONIC_TEST_SLOWNESS`` (the host's measured slowness, 1 on the machine the bounds were
taken on).
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = os.path.join(HERE, "programs")
SLOWNESS = max(1.0, float(os.environ.get("DAEMONIC_TEST_SLOWNESS", "1")))
NOT_ALLOWED = "daemonic processes are not allowed to have children"


def scaled(secs):
    return secs * SLOWNESS


def program(name):
    return os.path.join(PROGRAMS, name + ".py")


def run(name, *args, timeout=60, env=None):
    """Runs a program to its end; returns the CompletedProcess."""
    return subprocess.run([sys.executable, program(name), *args], capture_output=True, text=True,
                          timeout=scaled(timeout), env=env)


def cgroup2_root():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2":
                return fields[4]
    raise unittest.SkipTest("no cgroup2 mount")


def family_dirs(stem):
    """The cgroup directories of families whose name is `stem` (a program's file name)."""
    root = cgroup2_root()
    pattern = re.compile(r"^daemonic-%s[-_]\d+\.family(\.slice)?$" % re.escape(stem).replace("_", "(_|\\\\x5f)"))
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            if pattern.match(d) or pattern.match(d.replace("\\x2d", "-")):
                found.append(os.path.join(dirpath, d))
        dirnames[:] = [d for d in dirnames if not d.startswith("daemonic-") or d.endswith(".slice")]
    return found


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def read_to_eof(f, secs):
    """What is left to read on pipe `f` until every writer has closed it, or None when one
    still holds it after `secs` (scaled)."""
    import select
    fd, data = f.fileno(), b""
    deadline = time.monotonic() + scaled(secs)
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return data.decode()
        data += chunk


def wait_until(secs, cond):
    deadline = time.monotonic() + scaled(secs)
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


class Family(unittest.TestCase):
    """Checks that a program's family is gone at the end of each test."""

    stem = None

    def tearDown(self):
        if self.stem:
            left = []
            wait_until(3, lambda: not family_dirs(self.stem))
            left = family_dirs(self.stem)
            self.assertEqual(left, [], "family %s left cgroups behind" % self.stem)


class Seeds(Family):
    """The seed's programs print what the seed says, with only the start method changed."""

    def check(self, name, expected):
        self.stem = name
        out = run(name)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.splitlines(), expected, out.stderr)

    def test_current_process_is_not_a_daemon(self):
        self.check("seed_current_process", ["Daemon process: False"])

    def test_new_process_inherits_non_daemon(self):
        self.check("seed_new_process", ["Daemon process: False"])

    def test_daemon_argument(self):
        self.check("seed_daemon_argument", ["Daemon process: True"])

    def test_daemon_property(self):
        self.check("seed_daemon_property", ["Daemon process: True"])

    def test_changing_the_running_main_process(self):
        self.check("seed_change_current", ["Daemon process: False", "Daemon process: True"])

    def test_a_daemon_cannot_start_a_process(self):
        self.stem = "seed_daemon_from_daemon"
        out = run(self.stem)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.splitlines(), ["Daemon process 1: True"], out.stderr)
        self.assertIn("Traceback (most recent call last):", out.stderr)
        self.assertIn("AssertionError: " + NOT_ALLOWED, out.stderr)

    def test_daemon_terminated_abruptly(self):
        self.stem = "seed_terminated_abruptly"
        out = run(self.stem)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.splitlines()
        self.assertEqual(lines[0], "Daemon process: True")
        self.assertEqual(lines[-1], "Main process exiting...")
        counts = lines[1:-1]
        self.assertEqual(counts, [str(i) for i in range(len(counts))], "the counter skipped or repeated")
        # 3 s at 10 lines a second, started a moment after the main process.
        self.assertGreaterEqual(len(counts), 20, out.stdout)
        self.assertLessEqual(len(counts), 31, out.stdout)

    def test_terminated_abruptly_also_when_the_main_process_is_sigkilled(self):
        self.stem = "seed_terminated_abruptly"
        # Unbuffered, so that nothing the daemon printed is read ahead and missed below.
        proc = subprocess.Popen([sys.executable, program(self.stem)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, bufsize=0)
        try:
            first = proc.stdout.readline().decode()
            self.assertEqual(first.strip(), "Daemon process: True")
            time.sleep(1)
        finally:
            proc.kill()
            killed = time.monotonic()
            proc.wait()
        # The daemon's copy of the pipe closes when it dies: read to the end.
        rest = read_to_eof(proc.stdout, 3)
        ended = time.monotonic() - killed
        proc.stdout.close()
        self.assertIsNotNone(rest, "the daemon still holds its output 3 s after its parent's SIGKILL")
        self.assertNotIn("Main process exiting...", rest)
        counts = rest.split()
        self.assertLessEqual(len(counts), 15, "the daemon counted on after its parent's SIGKILL: %s" % rest)
        self.assertLess(ended, scaled(1.0), "the daemon outlived its SIGKILLed parent by %.1f s" % ended)


class SigkillOfTheParent(Family):
    """After a SIGKILL of the parent nothing is left: the daemon, the pool inside a daemon and
    its workers, the Manager's server, the resource tracker, their cgroups, and the parent's
    semaphore and shared-memory segment in /dev/shm (the tracker unlinks them)."""

    stem = "sigkill_family"

    def test_nothing_is_left(self):
        # Standard error to a file: a pipe would be held by anything that survived.
        errfile = tempfile.TemporaryFile("w+")
        self.addCleanup(errfile.close)
        proc = subprocess.Popen([sys.executable, program(self.stem)], stdout=subprocess.PIPE,
                                stderr=errfile, text=True)
        try:
            line = proc.stdout.readline()
            self.assertTrue(line, "the program printed nothing")
            report = json.loads(line)
            pids = [report["parent"], report["tracker"], report["manager"], report["pool_owner"], report["daemon"]]
            pids += report["pool_workers"]
            self.assertEqual(len(report["pool_workers"]), 2, report)
            self.assertEqual([p for p in pids if not alive(p)], [], "not running before the SIGKILL: %s" % report)
            for path in (report["shm"], report["sem"]):
                self.assertTrue(os.path.exists(path), path)
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
            errfile.seek(0)
            err = errfile.read()
        gone = wait_until(3, lambda: not any(alive(p) for p in pids))
        self.assertTrue(gone, "still running after the parent's SIGKILL: %s\n%s"
                        % ([p for p in pids if alive(p)], err))
        cleaned = wait_until(3, lambda: not any(os.path.exists(p) for p in (report["shm"], report["sem"])))
        self.assertTrue(cleaned, "the tracker did not unlink %s" % [report["shm"], report["sem"]])


class KernelRules(Family):
    """A daemon's children: allowed and confined by default (CPython lets a daemon run
    subprocess), refused by the kernel in strict mode; a Pool inside a daemon only with
    allow_children."""

    stem = "kernel_rules"

    def test_rules(self):
        out = run(self.stem)
        self.assertEqual(out.returncode, 0, out.stderr)
        r = json.loads(out.stdout.splitlines()[-1])
        default, strict = r["daemonic"], r["daemonic-strict"]
        self.assertEqual((default["daemon"], default["fork"], default["thread"], default["subprocess"]),
                         (True, "ok", "ok", "ok"), default)
        self.assertEqual((strict["daemon"], strict["fork"], strict["thread"], strict["subprocess"]),
                         (True, "PermissionError", "ok", "PermissionError"), strict)
        for mode in (default, strict):
            self.assertEqual(mode["process"], NOT_ALLOWED)
            self.assertRegex(mode["cgroup"], r"\.daemons(\.slice)?/.*\.daemon(\.scope)?$")
        self.assertEqual(r["pool_in_daemon"], [0, 1, 4, 9, 16])
        self.assertEqual(r["pool_in_daemon_without_allow_children"], 1)
        self.assertIn("AssertionError: " + NOT_ALLOWED, out.stderr)


class ProcessApi(Family):
    """exitcode, close, join(timeout), active_children, terminate, sentinel, kill,
    parent_process and current_process as CPython documents them."""

    stem = "semantics"

    def test_api(self):
        out = run(self.stem)
        self.assertEqual(out.returncode, 0, out.stderr)
        r = json.loads(out.stdout.splitlines()[-1])
        self.assertEqual(r["exitcode"], 7)
        self.assertEqual(r["closed"], "ValueError")
        self.assertTrue(r["join_timeout_returned"])
        self.assertTrue(r["active_children"])
        self.assertTrue(r["sentinel_ready"])
        self.assertEqual(r["terminated"], -signal.SIGTERM)
        self.assertEqual(r["killed"], -signal.SIGKILL)
        self.assertEqual(r["child"], {"parent_pid": r["me"], "name": "child", "daemon": True})
        self.assertFalse(r["main_daemon"])
        self.assertEqual(r["wrapped"], [255, 0])


class Server(Family):
    """The server imports the main module once (a child does not run it again), keeps one
    child forked ahead (a new one when that was killed), and is replaced at the next start when
    it was killed itself."""

    stem = "server"

    def test_server(self):
        with tempfile.NamedTemporaryFile("r") as log:
            out = run(self.stem, env=dict(os.environ, IMPORT_LOG=log.name))
            self.assertEqual(out.returncode, 0, out.stderr)
            imports = [line.split()[0] for line in log.read().splitlines()]
        r = json.loads(out.stdout.splitlines()[-1])
        for started in r["started"] + [r["after_kill"]]:
            self.assertEqual((started["reported"], started["exitcode"]), (started["pid"], 0), started)
        # The program, its server, and the server that replaced it: never a child.
        self.assertEqual(imports, ["__main__", "__mp_main__", "__mp_main__"], "the main module's imports, by name")
        self.assertEqual(len(r["server"]), 1, r)
        self.assertEqual(r["spares"], 1, r)
        self.assertEqual((r["after_spare_kill"]["reported"], r["after_spare_kill"]["exitcode"]),
                         (r["after_spare_kill"]["pid"], 0), r)


class OutsideAnyWritableCgroup(unittest.TestCase):
    """The import works anywhere; start() fails with daemonic's error, and nothing is left."""

    def test_start_fails_clearly(self):
        env = dict(os.environ, DAEMONIC_BACKEND="cgroupfs", DAEMONIC_CGROUP="/sys/fs/cgroup/no-such-cgroup-here")
        code = ("import multiprocessing as mp, daemonic\n"
                "p = mp.get_context('daemonic').Process(target=print)\n"
                "try:\n    p.start()\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                             timeout=scaled(60))
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("no-such-cgroup-here", out.stdout)
        self.assertNotIn("Traceback", out.stderr)


if __name__ == "__main__":
    unittest.main()
