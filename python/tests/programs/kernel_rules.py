# What a daemon may do under each start method, and a Pool inside a daemon. Prints one JSON
# document.
import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading

import daemonic  # noqa: F401


def attempts(q):
    out = {"daemon": mp.current_process().daemon}
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        out["fork"] = "ok"
    except OSError as e:
        out["fork"] = type(e).__name__
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
    out["thread"] = "ok"
    try:
        subprocess.run(["/bin/true"], check=True)
        out["subprocess"] = "ok"
    except OSError as e:
        out["subprocess"] = type(e).__name__
    try:
        mp.Process(target=print).start()
        out["process"] = "ok"
    except AssertionError as e:
        out["process"] = str(e)
    out["cgroup"] = open("/proc/self/cgroup").read().splitlines()[-1].split(":", 2)[2]
    q.put(out)


def square(x):
    return x * x


def pooler(q):
    with mp.Pool(2) as pool:
        q.put(pool.map(square, range(5)))


if __name__ == "__main__":
    result = {}
    for method in ("daemonic", "daemonic-strict"):
        mp.set_start_method(method, force=True)
        q = mp.Queue()
        p = mp.Process(target=attempts, args=(q,), daemon=True)
        p.start()
        result[method] = q.get(timeout=60)
        p.join()
        result[method]["exitcode"] = p.exitcode
    ctx = mp.get_context("daemonic-strict")
    q = ctx.Queue()
    p = ctx.Process(target=pooler, args=(q,), daemon=True, allow_children=True)
    p.start()
    result["pool_in_daemon"] = q.get(timeout=60)
    p.join()
    p = ctx.Process(target=pooler, args=(q,), daemon=True)
    p.start()
    p.join()
    result["pool_in_daemon_without_allow_children"] = p.exitcode
    print(json.dumps(result), flush=True)
