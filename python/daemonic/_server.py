"""The process's family, and the server that forks its children.

The server is CPython's ``forkserver`` (a single-threaded process that imported ``__main__``
once and forks a child per request), started with ``daemonic`` preloaded so that its
children know the start method. It and the resource tracker are *helpers* of this process's
member: nothing waits for them, and they end after its daemons, so a tracker can still clean
up after them (see daemonic's ``Command::helper``).
"""

import os
import sys
import threading

from multiprocessing import forkserver, resource_tracker

from . import _native

_lock = threading.Lock()
_preload = ["__main__"]
_server = None
_placed = set()
_launcher_set = False


def set_preload(module_names):
    """The modules the server imports (``daemonic`` is always added)."""
    global _preload
    if not all(type(m) is str for m in module_names):
        raise TypeError("module_names must be a list of strings")
    _preload = list(module_names)


def _family_name():
    """The family's name: the main module's (`python -m pkg` gives `pkg`), else the main
    script's file name, else `python`."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        stem = spec.name[: -len(".__main__")] if spec.name.endswith(".__main__") else spec.name
    else:
        path = getattr(main, "__file__", None) or sys.argv[0] or ""
        stem = os.path.splitext(os.path.basename(path))[0]
    from ._popen import _member_name
    return _member_name(stem or "python")


def ensure_family():
    """Joins this process's family, or creates one (this process becomes its main member,
    with a guardian that an interpreter hosts)."""
    global _launcher_set
    if not _launcher_set:
        here = os.path.dirname(os.path.abspath(_native.__file__))
        code = ("import sys; sys.path.insert(0, %r); import _native; _native.guardian_main(sys.argv[1:])"
                % here)
        try:
            _native.set_guardian_launcher(sys.executable, ["-I", "-S", "-c", code])
        except ValueError:
            pass  # set already (a second import of the package)
        _launcher_set = True
    return _native.ensure_family(_family_name())


def _place_helper(pid, name):
    if pid is not None and pid not in _placed:
        _native.place(pid, name, "helper")
        _placed.add(pid)


class _Server(forkserver.ForkServer):
    def ensure_running(self):
        ensure_family()
        self._preload_modules = list(dict.fromkeys(_preload + ["daemonic"]))
        super().ensure_running()
        _place_helper(resource_tracker._resource_tracker._pid, "resource_tracker")
        _place_helper(self._forkserver_pid, "forkserver")


def get():
    """This process's server, running and placed."""
    global _server
    with _lock:
        if _server is None:
            _server = _Server()
        _server.ensure_running()
        return _server
