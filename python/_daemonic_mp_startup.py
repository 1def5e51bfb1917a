"""Makes daemonic's start methods known in every interpreter that has the package installed
(``daemonic_mp.pth`` imports this module at startup), without importing anything then.

A process whose start method is ``daemonic`` can start a child with CPython's ``spawn`` or run
a program that calls ``set_start_method("daemonic")``: that interpreter never imported
``daemonic``, and CPython's ``spawn.prepare`` sets the start method before the program's own
imports. So the first import of ``multiprocessing.context`` registers the start methods,
whoever imports it; until then this module costs an entry in ``sys.meta_path``.
"""

import sys

_TARGET = "multiprocessing.context"


class _Loader:
    """Runs the real loader, then registers daemonic's contexts in the new module."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        try:
            from daemonic._context import register
        except ImportError:
            return  # the package was removed: nothing to register
        register()

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _Finder:
    """Finds ``multiprocessing.context`` with the other finders, once, and wraps its loader."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != _TARGET:
            return None
        try:
            sys.meta_path.remove(cls)
        except ValueError:
            pass
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def install():
    if _TARGET in sys.modules:
        try:
            from daemonic._context import register
            register()
        except ImportError:
            pass
    elif _Finder not in sys.meta_path:
        sys.meta_path.insert(0, _Finder)


install()
