# A daemon with allow_children tries one way out of its family (tools/reliability/escapes.rs).
#
#   python3 escape.py KIND REPORT OUTSIDE PIDS_CGROUP
#
# KIND: double-fork | setsid | daemon3 | fork-bomb | move-cgroup. It sets up the escape, writes
# REPORT (JSON: the PIDs of the processes that try to get away, and what the kernel answered),
# and sleeps until the family ends. OUTSIDE is a cgroup2 directory outside the family that the
# mover may write; PIDS_CGROUP, for the fork bomb, a v1 pids cgroup with a small pids.max that it
# enters first, or `own:MOUNT`: its own cgroup v2 below the cgroup2 mount MOUNT already has the
# limit (daemonic's TasksMax=). The report names that cgroup ("cgroup").
import ctypes
import errno
import json
import os
import sys
import time

kind, report, outside, pids_cgroup = sys.argv[1:5]
pids = []
said = {}


def forever():
    while True:
        time.sleep(1000)


def hostpid():
    """This process's PID as the host sees it: in a contained daemon (a PID namespace of its
    own, /proc still the host's) os.getpid() is the namespace's number."""
    return int(os.readlink("/proc/self"))


def child(before):
    """Forks a child that runs before() and then sleeps; returns (pid, what before() said)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            msg = before()
        except OSError as e:
            msg = "refused: %s (%s)" % (errno.errorcode.get(e.errno, e.errno), e.strerror)
        os.write(w, ("%d %s" % (hostpid(), msg)).encode())
        os.close(w)
        forever()
    os.close(w)
    pid, msg = os.read(r, 4096).decode().split(" ", 1)
    os.close(r)
    return int(pid), msg


def errname(e):
    return "%s (%s)" % (errno.errorcode.get(e.errno, e.errno), e.strerror)


if kind == "double-fork":
    r, w = os.pipe()
    first = os.fork()
    if first == 0:
        if os.fork() == 0:
            os.write(w, str(hostpid()).encode())
            forever()
        os._exit(0)
    os.close(w)
    os.waitpid(first, 0)
    grandchild = int(os.read(r, 64))
    pids.append(grandchild)
    said["double fork"] = "allowed: grandchild %d orphaned, its parent exited" % grandchild
elif kind == "setsid":
    def new_session():
        os.setsid()
        return "allowed: new session %d" % os.getsid(0)
    pid, msg = child(new_session)
    pids.append(pid)
    said["setsid"] = msg
elif kind == "daemon3":
    r, w = os.pipe()
    first = os.fork()
    if first == 0:
        os.close(r)
        # daemon(3): fork, the parent exits, setsid, chdir /, stdio to /dev/null.
        if ctypes.CDLL(None, use_errno=True).daemon(0, 0) != 0:
            os.write(w, b"refused")
            os._exit(1)
        os.write(w, str(hostpid()).encode())
        os.close(w)
        forever()
    os.close(w)
    os.waitpid(first, 0)
    got = os.read(r, 64).decode()
    if got.isdigit():
        pids.append(int(got))
        said["daemon(3)"] = "allowed: daemon %s, session leader, parent exited" % got
    else:
        said["daemon(3)"] = got
elif kind == "fork-bomb":
    if pids_cgroup.startswith("own:"):
        with open("/proc/self/cgroup") as f:
            own = [l.strip()[3:] for l in f if l.startswith("0::")][0]
        pids_cgroup = pids_cgroup[4:].rstrip("/") + own
    else:
        with open(os.path.join(pids_cgroup, "cgroup.procs"), "w") as f:
            f.write(str(hostpid()))
    r, w = os.pipe()
    top = os.fork()
    if top == 0:
        os.close(r)
        os.write(w, ("%d\n" % hostpid()).encode())
        # Every process forks until the kernel refuses, then sleeps; each says how it was
        # refused (the first answer is read).
        while True:
            try:
                pid = os.fork()
            except OSError as e:
                os.write(w, (errname(e) + "\n").encode())
                forever()
            if pid == 0:
                continue
    os.close(w)
    top, first = os.read(r, 4096).decode().split("\n")[:2]
    while not first:
        first = os.read(r, 4096).decode().split("\n")[0]
    top = int(top)
    time.sleep(0.2)  # let the others hit the limit too
    with open(os.path.join(pids_cgroup, "pids.current")) as f:
        current = int(f.read())
    with open(os.path.join(pids_cgroup, "pids.max")) as f:
        limit = f.read().strip()
    said["fork bomb"] = "limited: %d tasks of pids.max %s, then fork failed with %s" % (current, limit, first)
    pids.append(top)
elif kind == "move-cgroup":
    def move():
        with open(os.path.join(outside, "cgroup.procs"), "w") as f:
            f.write("0")
        return "allowed: moved itself to %s" % outside
    pid, msg = child(move)
    pids.append(pid)
    said["move to another cgroup (uid %d)" % os.getuid()] = msg
else:
    sys.exit("unknown kind %r" % kind)

tmp = report + ".tmp"
with open(tmp, "w") as f:
    json.dump({"pids": pids, "said": said, "cgroup": pids_cgroup}, f)
os.rename(tmp, report)
forever()
