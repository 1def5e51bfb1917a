"""Kernel-enforced daemon processes for Python's multiprocessing.

``import daemonic`` registers two start methods:

- ``"daemonic"``: every child is a member of its own cgroup (or systemd scope) in the
  process's daemonic family; ``Process(daemon=True)`` children are killed with
  ``cgroup.kill`` when their parent and its non-daemonic descendants have ended, however the
  parent ended, SIGKILL included. A daemon may still run programs (``subprocess``), as in
  CPython: they stay in its cgroup and die with it.
- ``"daemonic-strict"``: the same, and a daemon cannot create processes at all (a seccomp
  filter: fork fails with EPERM; threads work), unless it was started with
  ``allow_children=True``.

Use ``multiprocessing.get_context("daemonic")`` or ``multiprocessing.set_start_method("daemonic")``;
the context's ``Process``, ``Pool``, ``Queue``, ``Lock``, ``Manager``, ... are CPython's,
with children started from a server process as CPython's ``forkserver`` starts them.
"""

from ._context import (
    DaemonicContext,
    DaemonicProcess,
    DaemonicStrictContext,
    DaemonicStrictProcess,
    register,
)

__all__ = [
    "DaemonicContext",
    "DaemonicProcess",
    "DaemonicStrictContext",
    "DaemonicStrictProcess",
    "register",
]

register()
