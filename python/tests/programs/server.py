# The server that starts this process's children: it imported the main module once, so children
# do not run it again; it keeps a child forked ahead (a new one if that is killed); killed, it is
# replaced at the next start.
# Prints one JSON document.
import json
import multiprocessing as mp
import os
import signal
import sys
import time

import daemonic  # noqa: F401

# Each import of this module as a program leaves a line: the parent's (__main__) and the
# server's (__mp_main__), and one per child that imported it again.
with open(os.environ["IMPORT_LOG"], "a") as log:
    log.write("%s %d\n" % (__name__, os.getpid()))


def child_pid(q):
    q.put(os.getpid())


def start_one(ctx, q):
    p = ctx.Process(target=child_pid, args=(q,), daemon=True)
    p.start()
    got = q.get(timeout=60)
    p.join()
    return {"pid": p.pid, "reported": got, "exitcode": p.exitcode}


def children_of(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(x) for x in f.read().split()]


if __name__ == "__main__":
    ctx = mp.get_context("daemonic")
    q = ctx.Queue()
    out = {"me": os.getpid(), "started": [start_one(ctx, q) for _ in range(5)]}
    server_pid = [pid for pid in children_of(os.getpid())
                  if "_server import serve" in open("/proc/%d/cmdline" % pid).read()]
    out["server"] = server_pid
    # The spare: a child of the server, waiting.
    time.sleep(0.2)
    spares = children_of(server_pid[0]) if server_pid else []
    out["spares"] = len(spares)
    if spares:  # a spare killed while it waits: the next start gets a new one
        os.kill(spares[0], signal.SIGKILL)
        time.sleep(0.1)
    out["after_spare_kill"] = start_one(ctx, q)
    os.kill(server_pid[0], signal.SIGKILL)
    os.waitpid(server_pid[0], 0)
    out["after_kill"] = start_one(ctx, q)
    print(json.dumps(out))
    sys.stdout.flush()
