# A parent with everything multiprocessing starts behind its back: the resource tracker (a
# Lock, a shared-memory segment), a Manager's server, a daemon with a Pool inside it
# (allow_children), and a plain daemon. It prints what it started, then waits to be SIGKILLed.
import json
import multiprocessing as mp
import os
import sys
import time
from multiprocessing import shared_memory

import daemonic  # noqa: F401


def square(x):
    return x * x


def pool_owner(ready):
    with mp.get_context("daemonic").Pool(2) as pool:
        pool.map(square, range(4))
        ready.put(sorted(c.pid for c in mp.active_children()))
        time.sleep(600)


def sleeper():
    time.sleep(600)


if __name__ == "__main__":
    ctx = mp.get_context("daemonic")
    lock = ctx.Lock()
    shm = shared_memory.SharedMemory(create=True, size=4096)
    manager = ctx.Manager()
    shared = manager.dict(a=1)
    ready = ctx.Queue()
    owner = ctx.Process(target=pool_owner, args=(ready,), daemon=True, allow_children=True)
    owner.start()
    workers = ready.get(timeout=60)
    plain = ctx.Process(target=sleeper, daemon=True)
    plain.start()
    from multiprocessing import resource_tracker
    report = {
        "parent": os.getpid(),
        "tracker": resource_tracker._resource_tracker._pid,
        "manager": manager._process.pid,
        "pool_owner": owner.pid,
        "pool_workers": workers,
        "daemon": plain.pid,
        "shm": "/dev/shm/" + shm.name.lstrip("/"),
        "sem": "/dev/shm/sem." + lock._semlock.name.lstrip("/"),
        "cgroup": open("/proc/self/cgroup").read().splitlines()[-1].split(":", 2)[2],
    }
    print(json.dumps(report), flush=True)
    time.sleep(600)
