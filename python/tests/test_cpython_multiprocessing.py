"""CPython's own multiprocessing tests (test._test_multiprocessing) for the daemonic start
method. DAEMONIC_CPYTHON_TYPE picks the tests: processes, manager, threads, misc (the untyped
ones), or all (the default; Pythons before 3.12 install all at once)."""
import os
import sys
import unittest

import daemonic  # noqa: F401
import test._test_multiprocessing as tm

_kind = os.environ.get("DAEMONIC_CPYTHON_TYPE", "all")
if _kind == "all" or sys.version_info < (3, 12):
    tm.install_tests_in_module_dict(globals(), "daemonic")
elif _kind == "misc":
    tm.install_tests_in_module_dict(globals(), "daemonic", exclude_types=True)
else:
    tm.install_tests_in_module_dict(globals(), "daemonic", only_type=_kind)

# CPython's tests that no start method outside the standard library can pass, and why.
_CANNOT = {
    ("TestFlags", "test_flags"):
        "runs `python -E -S`: without site-packages no third-party start method can be imported",
}
for (_cls, _test), _why in _CANNOT.items():
    _c = globals().get(_cls)
    if _c is not None and hasattr(_c, _test):
        setattr(_c, _test, unittest.skip("daemonic: " + _why)(getattr(_c, _test)))

if __name__ == "__main__":
    unittest.main()
