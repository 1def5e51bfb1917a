"""Starting one child: as CPython's ``popen_forkserver`` does, with the child made a member of
the family between its fork and its start.

The server forks the child and tells its PID; the child then waits for its process object on
a pipe. Only once the child is placed (a cgroup of its own, or a scope) does this process
write the object, so the child never runs outside its member: if this process dies before,
the child reads end of file and exits.
"""

import io
import os
import re

from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.context import set_spawning_popen

from . import _native, _server


def _member_name(name):
    """A process name as a member name: 1 to 64 of ``A-Za-z0-9_.:@+-``."""
    safe = re.sub(r"[^A-Za-z0-9_.:@+-]", "_", name or "Process").lstrip(".-")
    return (safe or "Process")[:64].replace("..", "._")


def _kind(process_obj):
    """``helper`` for a Manager's server (nothing waits for it, and it outlives the daemons),
    else ``daemon`` or ``member``."""
    target = getattr(process_obj, "_target", None)
    owner = getattr(target, "__self__", None)
    if getattr(target, "__name__", None) == "_run_server" and isinstance(owner, type):
        from multiprocessing.managers import BaseManager
        if issubclass(owner, BaseManager):
            return "helper"
    return "daemon" if process_obj.daemon else "member"


class _Bootstrap:
    """What the child unpickles instead of its process object: it does what daemonic adds in
    the child before the process object's own ``_bootstrap`` runs the program."""

    def __init__(self, process_obj, no_fork, allow_children):
        self.process_obj = process_obj
        self.no_fork = no_fork
        self.allow_children = allow_children

    def _bootstrap(self, parent_sentinel=None):
        if self.no_fork:
            _native.install_no_fork_filter()
        if self.allow_children:
            _allow_children_here()
        return self.process_obj._bootstrap(parent_sentinel)


def _allow_children_here():
    """In a daemon started with ``allow_children``: CPython's ``start()`` asserts that a daemon
    starts no process; here it sees this daemon as non-daemonic for that one check, whatever
    the class of the process started (a ``Pool``'s workers are the default context's)."""
    from multiprocessing import process

    original = process.BaseProcess.start

    def start(self):
        config = process.current_process()._config
        if not config.get("daemon"):
            return original(self)
        config["daemon"] = False
        try:
            return original(self)
        finally:
            config["daemon"] = True

    process.BaseProcess.start = start


class Popen(popen_forkserver.Popen):
    method = "daemonic"
    strict = False

    def _launch(self, process_obj):
        prep_data = spawn.get_preparation_data(process_obj._name)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            allow = bool(getattr(process_obj, "allow_children", False))
            no_fork = self.strict and process_obj.daemon and not allow
            reduction.dump(prep_data, buf)
            reduction.dump(_Bootstrap(process_obj, no_fork, allow), buf)
        finally:
            set_spawning_popen(None)

        server = _server.get()
        self.sentinel, w = server.connect_to_new_process(self._fds)
        # Keep a duplicate of the data pipe: the child's parent_process().sentinel is ready
        # when this process is gone.
        _parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        try:
            pid = forkserver.read_signed(self.sentinel)
            _native.place(
                pid,
                _member_name(process_obj.name),
                _kind(process_obj),
                allow_children=allow,
            )
        except BaseException:
            os.close(w)
            raise
        self.pid = pid
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())


class StrictPopen(Popen):
    """The ``daemonic-strict`` start method's: a daemon cannot fork (C3) unless it was started
    with ``allow_children``."""

    method = "daemonic-strict"
    strict = True
