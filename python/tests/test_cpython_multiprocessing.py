"""CPython's own multiprocessing tests (test._test_multiprocessing) for the daemonic start
method. DAEMONIC_CPYTHON_TYPE picks the tests: processes, manager, threads, misc (the untyped
ones), or all (the default; Pythons before 3.12 install all at once)."""
import os
import sys
import time
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

# CPython's tests skipped here, and why: one no start method outside the standard library can
# pass, and one of the thread pool (no process, so no start method) that stalls for 300 s when a
# worker thread takes a task before terminate() (seen in CI on a loaded host: 3.11's run took
# 391 s instead of 92).
_CANNOT = {
    ("TestFlags", "test_flags"):
        "runs `python -E -S`: without site-packages no third-party start method can be imported",
    ("WithThreadsTestPool", "test_terminate"):
        "threads only: a ThreadPool cannot interrupt time.sleep(300), so a worker that took a task "
        "before terminate() makes join() wait 300 s (timing, not the start method)",
}
def _skip_what_cannot_pass():
    # In a function: a module-level name bound to a test class would make unittest load that
    # class a second time.
    for (name, test), why in _CANNOT.items():
        cls = globals().get(name)
        if cls is not None and hasattr(cls, test):
            setattr(cls, test, unittest.skip("daemonic: " + why)(getattr(cls, test)))


_skip_what_cannot_pass()

# A test that takes long is named in the output (a wait that ran into a timeout shows there).
_SLOW = 5.0
_start_test = unittest.TextTestResult.startTest
_stop_test = unittest.TextTestResult.stopTest


def _timed_start(self, test):
    self._daemonic_started = time.monotonic()
    _start_test(self, test)


def _timed_stop(self, test):
    _stop_test(self, test)
    took = time.monotonic() - getattr(self, "_daemonic_started", time.monotonic())
    if took > _SLOW:
        self.stream.writeln("    slow: %s took %.1f s" % (test.id(), took))
        self.stream.flush()


unittest.TextTestResult.startTest = _timed_start
unittest.TextTestResult.stopTest = _timed_stop

if __name__ == "__main__":
    unittest.main()
