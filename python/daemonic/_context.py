"""The start methods ``daemonic`` and ``daemonic-strict``: contexts and Process classes."""

import sys
from multiprocessing import context, process


class DaemonicProcess(process.BaseProcess):
    """A ``multiprocessing`` process started by daemonic (see the package's doc).

    Takes CPython's arguments and ``allow_children``: a daemon started with it may start
    processes of its own (a ``Pool``, say), which die with it. Without it, starting one raises
    CPython's ``daemonic processes are not allowed to have children``.
    """

    _start_method = "daemonic"

    def __init__(self, group=None, target=None, name=None, args=(), kwargs={}, *, daemon=None,
                 allow_children=False):
        super().__init__(group, target, name, args, kwargs, daemon=daemon)
        self._allow_children = bool(allow_children)

    @property
    def allow_children(self):
        """Whether this process may start processes of its own although it is a daemon."""
        return self._allow_children

    @staticmethod
    def _Popen(process_obj):
        from ._popen import Popen
        return Popen(process_obj)


class DaemonicStrictProcess(DaemonicProcess):
    """A process of the ``daemonic-strict`` start method: a daemon cannot fork at all."""

    _start_method = "daemonic-strict"

    @staticmethod
    def _Popen(process_obj):
        from ._popen import StrictPopen
        return StrictPopen(process_obj)


class DaemonicContext(context.BaseContext):
    """The ``daemonic`` start method's context."""

    _name = "daemonic"
    Process = DaemonicProcess

    def _check_available(self):
        if not sys.platform.startswith("linux"):
            raise ValueError("the daemonic start method needs Linux (cgroup v2)")

    def set_forkserver_preload(self, module_names):
        """Modules the server that starts this context's children imports once (as
        CPython's ``forkserver`` does); ``__main__`` by default."""
        from . import _server
        _server.set_preload(module_names)


class DaemonicStrictContext(DaemonicContext):
    """The ``daemonic-strict`` start method's context."""

    _name = "daemonic-strict"
    Process = DaemonicStrictProcess


def register():
    """Makes ``daemonic`` and ``daemonic-strict`` known to ``multiprocessing``
    (``get_context``, ``set_start_method``); done by ``import daemonic``."""
    for ctx in (DaemonicContext(), DaemonicStrictContext()):
        context._concrete_contexts.setdefault(ctx._name, ctx)
