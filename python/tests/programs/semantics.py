# CPython's Process API through the daemonic context: exitcode, sentinel, join(timeout),
# terminate, kill, is_alive, close, active_children, parent_process. Prints one JSON document.
import json
import multiprocessing as mp
import os
import signal
import sys
import time
from multiprocessing.connection import wait

import daemonic  # noqa: F401


def exit_with(code):
    sys.exit(code)


def sleep_for(secs):
    time.sleep(secs)


def parent_info(q):
    parent = mp.parent_process()
    q.put({"parent_pid": parent.pid if parent else None, "name": mp.current_process().name,
           "daemon": mp.current_process().daemon})


if __name__ == "__main__":
    ctx = mp.get_context("daemonic")
    out = {}
    p = ctx.Process(target=exit_with, args=(7,), name="seven")
    p.start()
    p.join()
    out["exitcode"] = p.exitcode
    p.close()
    try:
        p.is_alive()
        out["closed"] = "usable"
    except ValueError:
        out["closed"] = "ValueError"
    p = ctx.Process(target=sleep_for, args=(30,), daemon=True)
    p.start()
    t0 = time.monotonic()
    p.join(0.2)
    out["join_timeout_returned"] = p.is_alive() and time.monotonic() - t0 < 5
    out["active_children"] = [c.pid for c in mp.active_children()] == [p.pid]
    p.terminate()
    out["sentinel_ready"] = wait([p.sentinel], timeout=10) == [p.sentinel]
    p.join()
    out["terminated"] = p.exitcode
    p = ctx.Process(target=sleep_for, args=(30,))
    p.start()
    p.kill()
    p.join()
    out["killed"] = p.exitcode
    q = ctx.Queue()
    p = ctx.Process(target=parent_info, args=(q,), name="child", daemon=True)
    p.start()
    out["child"] = q.get(timeout=30)
    p.join()
    # An exit status is a byte: sys.exit(-1) and sys.exit(256) end as 255 and 0, as with fork.
    out["wrapped"] = []
    for code in (-1, 256):
        p = ctx.Process(target=exit_with, args=(code,))
        p.start()
        p.join()
        out["wrapped"].append(p.exitcode)
    out["me"] = os.getpid()
    out["main_daemon"] = mp.current_process().daemon
    print(json.dumps(out), flush=True)
