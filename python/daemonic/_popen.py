"""Starting one child: as CPython's ``popen_forkserver`` does, with the child made a member of
the family between its fork and its start.

The server hands the request to a child it forked ahead and answers its PID. The child takes in
the preparation data (``sys.path``, the main module, the process's name) while this process
makes it a member (a cgroup of its own, or a scope); only then does this process write the
process object, so nothing of the child's program runs outside its member. If this process
dies before, the child reads end of file and exits.
"""

import os
import re
import signal

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
        set_spawning_popen(self)
        try:
            allow = bool(getattr(process_obj, "allow_children", False))
            no_fork = self.strict and process_obj.daemon and not allow
            prep = reduction.ForkingPickler.dumps(prep_data)
            work = reduction.ForkingPickler.dumps(_Bootstrap(process_obj, no_fork, allow))
        finally:
            set_spawning_popen(None)

        server = _server.get()
        data_r, data_w = os.pipe()
        status_r, status_w = os.pipe()
        try:
            server.request(data_r, status_w, self._fds)
        except BaseException:
            util.close_fds(data_w, status_r)
            raise
        finally:
            util.close_fds(data_r, status_w)
        self._status = status_r
        self.sentinel = status_r  # until the child's pidfd is open
        # Keep a duplicate of the data pipe: the child's parent_process().sentinel is ready
        # when this process is gone.
        parent_w = os.dup(data_w)
        fds = [parent_w, status_r]
        # Closes what is in the list when it runs (the pidfd is added once it is open). Not a
        # bound method: the finalizer would keep this object alive.
        self.finalizer = util.Finalize(self, _close_each, (fds,))
        # On error the child reads end of file where its process object should be, and exits;
        # the finalizer closes this process's descriptors at once.
        try:
            self._start_child(process_obj, data_w, prep, work, allow, fds)
        except BaseException:
            self.finalizer()
            raise

    def _start_child(self, process_obj, data_w, prep, work, allow, fds):
        try:
            # The preparation data first: the child takes it in while this process places it.
            # The process object only once the child is placed: nothing of its program runs
            # outside its member.
            try:
                _write_all(data_w, prep)
            except BrokenPipeError:
                pass  # no child took the request: the status pipe says so
            try:
                pid = forkserver.read_signed(self._status)
            except EOFError:
                raise OSError("daemonic's server could not start a child (it could not fork, or it has ended; "
                              "its standard error says which)") from None
            self.pid = pid
            try:
                # The sentinel: ready when the child has ended, without a round through the server.
                self.sentinel = os.pidfd_open(pid)
            except ProcessLookupError:
                # Killed before it got its work, and reaped already: the status pipe has how it
                # ended, as for any child that a signal ended.
                return
            fds.append(self.sentinel)
            _native.place(pid, _member_name(process_obj.name), _kind(process_obj), allow_children=allow)
            try:
                _write_all(data_w, work)
            except BrokenPipeError:
                pass  # killed meanwhile: its sentinel and exit code say so
        finally:
            os.close(data_w)

    def poll(self, flag=os.WNOHANG):
        if self.returncode is None:
            from multiprocessing.connection import wait
            timeout = 0 if flag == os.WNOHANG else None
            if not wait([self.sentinel], timeout):
                return None
            try:
                # Written by the child as it ends, or by the server from its wait status.
                self.returncode = forkserver.read_signed(self._status)
            except (OSError, EOFError):
                self.returncode = 255  # the server itself was killed
        return self.returncode

    def _send_signal(self, sig):
        if self.returncode is None and self.sentinel != self._status:
            try:
                signal.pidfd_send_signal(self.sentinel, sig)
            except ProcessLookupError:
                pass
            except OSError:
                if self.wait(timeout=0.1) is None:
                    raise


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _close_each(fds):
    util.close_fds(*fds)


class StrictPopen(Popen):
    """The ``daemonic-strict`` start method's: a daemon cannot fork (C3) unless it was started
    with ``allow_children``."""

    method = "daemonic-strict"
    strict = True
