"""Python's side of daemonic's benchmarks (run by tools/bench, one interpreter per run).

  peers.py spawn METHOD N      N timed Process(daemon=True) start+join, METHOD fork|forkserver|spawn|
                               daemonic (the package must be on PYTHONPATH), with -ballast: the
                               parent holds 200 MiB of data first: prints a JSON list of nanoseconds
  peers.py teardown N          N daemonic Processes (fork) sleeping, then the exit handler
                               multiprocessing runs at interpreter exit, timed: prints JSON
"""
import json
import multiprocessing
import multiprocessing.util
import os
import resource
import signal
import sys
import time


def noop():
    pass


def sleeper(ready_fd):
    os.write(ready_fd, b".")
    time.sleep(1000)


def spawn(method, n):
    ballast = None
    if method.endswith("-ballast"):
        method = method[: -len("-ballast")]
        ballast = bytearray(200 << 20)  # a program's data: touched, so resident
        ballast[::4096] = b"x" * len(ballast[::4096])
    if method.startswith("daemonic"):
        import daemonic  # noqa: F401  (registers the start method)
    ctx = multiprocessing.get_context(method)
    for _ in range(3):  # warm-up: the forkserver starts, imports settle
        p = ctx.Process(target=noop, daemon=True)
        p.start()
        p.join()
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        p = ctx.Process(target=noop, daemon=True)
        p.start()
        p.join()
        out.append(time.perf_counter_ns() - t)
        if p.exitcode != 0:
            sys.exit(f"a {method} child exited with {p.exitcode}")
    print(json.dumps(out))


def teardown(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * n + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    ctx = multiprocessing.get_context("fork")
    r, w = os.pipe()
    procs = [ctx.Process(target=sleeper, args=(w,), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    got = 0
    while got < n:  # every child is in its sleep
        got += len(os.read(r, n - got))
    time.sleep(0.2)
    t = time.perf_counter_ns()
    # What runs at the interpreter's exit (atexit): terminate every daemonic child, join each.
    multiprocessing.util._exit_function()
    took = time.perf_counter_ns() - t
    bad = [p.exitcode for p in procs if p.exitcode != -signal.SIGTERM]
    if bad:
        sys.exit(f"{len(bad)} daemons did not end by SIGTERM: {bad[:5]}")
    print(json.dumps({"took_ns": took}))


if __name__ == "__main__":
    if sys.argv[1] == "spawn":
        spawn(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "teardown":
        teardown(int(sys.argv[2]))
    else:
        sys.exit(f"unknown command {sys.argv[1]!r}")
