"""Python's current_process().name/.daemon for programs run by daemonic.

The truth is the process's cgroup path (contract C8), so this needs no fork and works in a
daemon, which cannot run `daemonic is-daemon`. Both backends are understood:
  cgroupfs  /daemonic-web-4242.family/main-1.member.daemons/logger-3.daemon
  systemd   /daemonic.slice/.../daemonic-web_4242.family-main_1.member.daemons-logger_3.daemon.scope
Run as a script, it prints the seed's line: `Daemon process: True`.
"""
import re
from collections import namedtuple

Process = namedtuple("Process", "name daemon family")


def _unescape(s):
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), s)


def current_process():
    with open("/proc/self/cgroup") as f:
        path = next(line[3:].strip() for line in f if line.startswith("0::"))
    leaf = path.rsplit("/", 1)[-1]
    if leaf.endswith(".scope"):  # systemd: the levels are joined by '-' in the unit name
        levels, sep = [_unescape(l) for l in leaf[: -len(".scope")].split("-")], "_"
    else:  # cgroupfs: one directory per level
        levels, sep = path.split("/"), "-"
    me = levels[-1]
    if not me.endswith((".member", ".daemon")):
        return Process("MainProcess", False, None)  # not started by daemonic (C2)
    family = [l for l in levels if l.endswith(".family")][-1][: -len(".family")]
    family = family.removeprefix("daemonic-")
    name, kind = me.rsplit(".", 1)
    return Process(name.rsplit(sep, 1)[0], kind == "daemon", "-".join(family.rsplit(sep, 1)))


if __name__ == "__main__":
    print(f"Daemon process: {current_process().daemon}", flush=True)
