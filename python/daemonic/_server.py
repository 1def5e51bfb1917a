"""The process's family, and the server that forks its children.

Each process that starts children has a server of its own, as with CPython's ``forkserver``:
a single-threaded interpreter that imported ``__main__`` (and the modules named with
``set_forkserver_preload``) once, so that a child runs its target without importing anything.
Unlike CPython's, it is reached through one connection kept open (not one per child), and it
keeps one child forked ahead, a *spare*, so that a start does not wait for a fork: the spare
gets the request's descriptors and its PID is the answer; the server forks the next spare
while the first one runs.

The server and the resource tracker are *helpers* of this process's member: nothing waits for
them, and they end after its daemons, so that a tracker can still clean up after them (see
daemonic's ``Command::helper``). The server ends when this process does (end of file on the
connection); a spare ends with its server.

A request is one byte with descriptors: the child's data pipe (read end), the status pipe
(write end), the resource tracker's pipe, then the descriptors the process object hands down
(``duplicate_for_child``). The server writes the child's PID to the status pipe at once, and
its exit code (``os.waitstatus_to_exitcode``) when it has reaped it, as CPython's
``forkserver`` does; the child writes its exit code there too, just before it ends, so that
its starter, which waits on the child's pidfd, has it without a round through the server.
"""

import atexit
import os
import pickle
import select
import selectors
import signal
import socket
import struct
import sys
import threading

from multiprocessing import forkserver, process, reduction, resource_tracker, spawn, util
from multiprocessing.context import set_spawning_popen

from . import _native

#: The most descriptors one request hands down to a child: the kernel passes at most 253 in one
#: message (SCM_MAX_FD), and a request adds 3 of its own.
MAXFDS_TO_SEND = 250

_lock = threading.Lock()
_place_lock = threading.Lock()
_preload = ["__main__"]
_server = None
_placed = set()
_launcher_set = False
_LENGTH = struct.Struct("!I")
#: True in a server and in the spares it forks (until a spare becomes a child): a server is a
#: helper and must not open the family (its children would inherit that handle, and with it the
#: server's place in the family), so it never places a tracker.
_in_server = False


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
    with _place_lock:
        if pid is not None and pid not in _placed:
            _native.place(pid, name, "helper")
            _placed.add(pid)


def _place_tracker():
    """Makes the resource tracker a helper. Left a plain process of this member, it would keep
    the member's live part going for as long as any child holds its pipe: its daemons included,
    which then never end."""
    tracker = resource_tracker._resource_tracker
    if tracker._pid is not None and tracker._pid not in _placed:
        ensure_family()
        _place_helper(tracker._pid, "resource_tracker")


def _track_tracker_restarts():
    """CPython starts a new tracker whenever it finds the old one gone (a test that kills it,
    an OOM kill), from whatever code registers a resource: each new one is placed as well."""
    tracker = resource_tracker._resource_tracker
    original = tracker.ensure_running

    def ensure_running():
        original()
        pid = tracker._pid
        if pid is None or pid in _placed or _in_server:
            return
        try:
            if (_server is not None and _server._sock is not None) or _native.position() is not None:
                _place_tracker()
        except Exception:
            pass  # CPython's registration goes on; the next start() places it, or says why not

    tracker.ensure_running = ensure_running


class Server:
    """This process's connection to its server."""

    def __init__(self):
        self._sock = None
        self._owner = None
        self._pid = None

    def ensure_running(self):
        if self._sock is not None and self._owner == os.getpid():
            return
        ensure_family()
        resource_tracker.ensure_running()
        _place_tracker()
        if self._sock is not None:
            # A fork of the process that started it: that process's server is not this one's.
            self._sock.close()
            self._sock = None
        if self._pid is not None and self._owner == os.getpid():
            try:  # a server that was killed: collect it
                os.waitpid(self._pid, os.WNOHANG)
            except ChildProcessError:
                pass
            self._pid = None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            cmd = ("import sys; sys.path.insert(0, %r); from daemonic._server import serve; serve(%d)"
                   % (here, theirs.fileno()))
            exe = spawn.get_executable()
            args = [exe] + util._args_from_interpreter_flags() + ["-c", cmd]
            pid = util.spawnv_passfds(exe, args, [theirs.fileno()])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        try:
            prep = spawn.get_preparation_data("server")
            config = {
                "preload": list(dict.fromkeys(_preload + ["daemonic"])),
                "prep": {k: v for k, v in prep.items()
                         if k in ("sys_path", "init_main_from_path", "init_main_from_name")},
                "sample": prep,
            }
            set_spawning_popen(self)  # the authentication key may be pickled for a child
            try:
                data = reduction.ForkingPickler.dumps(config)
            finally:
                set_spawning_popen(None)
            ours.sendall(_LENGTH.pack(len(data)) + data)
            _place_helper(pid, "server")
        except BaseException:
            ours.close()
            raise
        self._sock, self._owner, self._pid = ours, os.getpid(), pid
        atexit.register(_keep_open, ours)

    def request(self, data_r, status_w, fds):
        """Asks for a child that reads its work from ``data_r`` and whose PID and exit code come
        on ``status_w``'s pipe."""
        if len(fds) > MAXFDS_TO_SEND:
            raise ValueError("too many descriptors to hand down: %d (at most %d)" % (len(fds), MAXFDS_TO_SEND))
        tracker_fd = resource_tracker._resource_tracker._fd
        if tracker_fd is None:  # a fork of this process, say
            tracker_fd = resource_tracker.getfd()
        _place_tracker()
        fds = [data_r, status_w, tracker_fd, *fds]
        with _lock:  # get() made it run; another thread may have replaced it since
            sock = self._sock
        try:
            if sock is None:
                raise ConnectionError("the server was replaced")
            socket.send_fds(sock, [b"\0"], fds)
        except (BrokenPipeError, ConnectionError):
            # The server is gone (killed, say): this process gets a new one.
            with _lock:
                if sock is not None and self._sock is sock:
                    sock.close()
                    self._sock = None
                self.ensure_running()
                sock = self._sock
            socket.send_fds(sock, [b"\0"], fds)


def _keep_open(sock):
    """At exit: the connection stays open until this process is gone, so that the server,
    which reports the exit codes of children killed by a signal, outlives multiprocessing's exit
    handler (it joins the children, after this). Detached, the socket object does not warn
    about an unclosed socket as the interpreter ends."""
    if sock.fileno() != -1:
        sock.detach()


_track_tracker_restarts()


def get():
    """This process's server, running and placed."""
    global _server
    with _lock:
        if _server is None:
            _server = Server()
        _server.ensure_running()
        return _server


# The server's side.


def _recv_config(sock):
    def exactly(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("the starting process went away")
            buf += chunk
        return buf

    (length,) = _LENGTH.unpack(exactly(_LENGTH.size))
    return pickle.loads(exactly(length))


def _preload_modules(config):
    """Imports ``__main__`` (as ``__mp_main__``, as a spawned child would) and the other
    modules. A main module that fails here is not fatal: each child then imports it again and
    reports the error as CPython's ``spawn`` children do."""
    prep = dict(config["prep"])
    if "__main__" not in config["preload"]:
        prep.pop("init_main_from_path", None)
        prep.pop("init_main_from_name", None)
    process.current_process()._inheriting = True
    try:
        spawn.prepare(prep)
    except BaseException:
        pass
    finally:
        del process.current_process()._inheriting
    for name in config["preload"]:
        if name != "__main__":
            try:
                __import__(name)
            except ImportError:
                pass
    from . import _popen  # noqa: F401  (what a child unpickles first: its _Bootstrap)


def _samples(config):
    """What a spare unpickles and runs while it waits, as a child does it when it starts: the
    starting process's preparation data and a process object of this context. A child of a
    fork first writes to the pages it shares with its parent (reference counts, allocators),
    and each such copy-on-write fault is paid in the child's start; a spare pays them ahead."""
    from ._context import DaemonicProcess
    from ._popen import _Bootstrap
    set_spawning_popen(_samples)
    try:
        process_obj = reduction.ForkingPickler.dumps(
            _Bootstrap(DaemonicProcess(target=_sample_target, name="sample", daemon=True), False, False))
        prep = reduction.ForkingPickler.dumps(config["sample"])
    finally:
        set_spawning_popen(None)
    return prep, process_obj


def _sample_target():
    pass


def _warm_up(samples):
    prep, process_obj = samples
    preparation_data = pickle.loads(prep)
    # No program code outside a member; and no logging set up twice (the child's own data does).
    for key in _MAIN_KEYS + ("log_to_stderr", "log_level"):
        preparation_data.pop(key, None)
    spawn.prepare(preparation_data)
    pickle.loads(process_obj)
    util._close_stdin()


def serve(fd):
    """The server's life: preload, then a child per request until the starting process ends."""
    global _in_server
    _in_server = True
    sock = socket.socket(fileno=fd)
    config = _recv_config(sock)
    _preload_modules(config)
    try:
        samples = _samples(config)
    except Exception:
        samples = None
    util._close_stdin()
    # Protected from ^C, as CPython's server; and reaping its own children whatever the main
    # module did to SIGCHLD (SIG_IGN would make the kernel reap them). A child gets both back.
    handlers = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
        signal.SIGCHLD: signal.signal(signal.SIGCHLD, signal.SIG_DFL),
    }
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, None)
    running = {}  # pidfd -> (pid, status_w)

    def fork_spare(request_fds=()):
        try:
            return _Spare.fork(sock, selector, running, handlers, samples, request_fds)
        except OSError as e:  # EAGAIN, ENOMEM: the next request tries again
            print("daemonic server: cannot fork a child: %s" % e, file=sys.stderr, flush=True)
            return None

    spare = fork_spare()
    try:
        while True:
            for key, _events in selector.select():
                if key.data is not None:
                    _ended(key.fd, key.data, selector, running)
                    continue
                try:
                    msg, fds, flags, _addr = socket.recv_fds(sock, 1, MAXFDS_TO_SEND + 3)
                except OSError as e:  # EMFILE, say: the request's descriptors are lost with it
                    print("daemonic server: cannot take a request: %s" % e, file=sys.stderr, flush=True)
                    continue
                if not msg:
                    return  # the starting process has ended
                if flags & socket.MSG_CTRUNC or len(fds) < 3:
                    # Descriptors lost on the way (this process's limit): no child can run it.
                    print("daemonic server: a request lost its descriptors (too many open files?)",
                          file=sys.stderr, flush=True)
                    for fd in fds[:1] + fds[2:]:
                        os.close(fd)
                    if len(fds) >= 2:
                        os.close(fds[1])  # its status pipe: the starter reports the failure
                    continue
                spare = _start(fds, spare, fork_spare, selector, running)
    finally:
        if spare is not None:
            spare.close()


def _start(fds, spare, fork_spare, selector, running):
    """Answers a request with the spare's PID first (the starter places it meanwhile), then
    hands it the request, and forks the next spare. Returns the next spare. A spare that was
    killed is answered all the same: it is the child, and it ended by that signal. A request
    no child could take gets no answer: its status pipe is closed, which the starter reports."""
    data_r, status_w, *rest = fds
    try:
        if spare is not None and not spare.alive():
            spare.reap()  # killed while it waited: a new one takes the request
            spare = None
        if spare is None:
            spare = fork_spare(fds)
            if spare is None:
                os.close(status_w)
                return None
        try:
            forkserver.write_signed(status_w, spare.pid)
        except BrokenPipeError:
            pass  # the starter went away: the child reads end of file and exits
        running[spare.pidfd] = (spare.pid, status_w)
        selector.register(spare.pidfd, selectors.EVENT_READ, (spare.pid, status_w))
        spare.hand(data_r, status_w, rest)
    finally:
        os.close(data_r)
        for fd in rest:
            os.close(fd)
    return fork_spare()


def _ended(pidfd, data, selector, running):
    pid, status_w = data
    selector.unregister(pidfd)
    del running[pidfd]
    os.close(pidfd)
    try:
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
    except ChildProcessError:
        code = 255  # reaped by someone else: unknown, as CPython says then
    try:
        forkserver.write_signed(status_w, code)
    except BrokenPipeError:
        pass  # the starter went away
    os.close(status_w)


class _Spare:
    """A child forked ahead, waiting on its socket for a request's descriptors."""

    def __init__(self, pid, pidfd, sock):
        self.pid, self.pidfd, self.sock = pid, pidfd, sock

    @classmethod
    def fork(cls, server_sock, selector, running, handlers, samples, request_fds=()):
        """A new spare. It closes what the server holds for others: its connection, the
        running children's pidfds and status pipes, and ``request_fds`` (a request waiting)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = os.fork()
        except BaseException:
            ours.close()
            theirs.close()
            raise
        if pid == 0:
            code = 1
            try:
                ours.close()
                server_sock.close()
                selector.close()
                for pidfd, (_pid, status_w) in running.items():
                    os.close(pidfd)
                    os.close(status_w)
                for fd in request_fds:
                    os.close(fd)
                code = _wait_and_run(theirs, handlers, samples)
            except BaseException:
                sys.excepthook(*sys.exc_info())
                sys.stderr.flush()
            finally:
                os._exit(code)
        theirs.close()
        try:
            pidfd = os.pidfd_open(pid)
        except BaseException:
            ours.close()  # it reads end of file and exits
            os.waitpid(pid, 0)
            raise
        return cls(pid, pidfd, ours)

    def alive(self):
        """Whether it still waits (a pidfd is readable once its process has ended)."""
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        return not poller.poll(0)

    def reap(self):
        self.close()
        os.close(self.pidfd)
        os.waitpid(self.pid, 0)

    def hand(self, data_r, status_w, fds):
        """Gives the spare its work (if it is gone, its end is reported as any child's)."""
        try:
            socket.send_fds(self.sock, [b"\0"], [data_r, status_w, *fds])
        except OSError:
            pass
        self.close()

    def close(self):
        """Without work, the spare reads end of file and exits."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _wait_and_run(sock, handlers, samples):
    """The spare's life: warms up, waits for its descriptors, then runs the process object
    that the starter writes to the data pipe (CPython's ``spawn._main``)."""
    if samples is not None:
        try:
            _warm_up(samples)
        except Exception:
            pass
    msg, fds, _flags, _addr = socket.recv_fds(sock, 1, MAXFDS_TO_SEND + 3)
    sock.close()
    if not msg:
        return 0  # the server ended before a request came
    global _in_server
    _in_server = False  # a child now, of its own member
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    data_r, status_w, resource_tracker._resource_tracker._fd, *forkserver._forkserver._inherited_fds = fds
    for fd in (data_r, status_w):
        os.set_inheritable(fd, False)  # as they were in the starter: not for programs run here
    status = os.fstat(status_w)
    parent_sentinel = os.dup(data_r)
    if _CHILD_RUNS_ATEXIT:
        atexit._clear()  # the server's, inherited
        atexit.register(util._exit_function)
    try:
        code = _child_main(data_r, parent_sentinel)
    finally:
        if _CHILD_RUNS_ATEXIT:
            atexit._run_exitfuncs()
    # The exit code as the wait status will carry it, for the starter to read once this
    # process is gone (its pidfd says when); the server writes it again from the wait status,
    # which is what counts when a signal ends this process before it gets here. Only if the
    # descriptor is still that pipe: the program may have closed it and opened another file.
    code &= 0xFF
    try:
        now = os.fstat(status_w)
        if (now.st_dev, now.st_ino) == (status.st_dev, status.st_ino):
            forkserver.write_signed(status_w, code)
    except OSError:
        pass
    return code


_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")

#: From 3.13 on, a forked child runs its atexit functions, multiprocessing's exit handler among
#: them (it joins a Queue's feeder thread, so that what a child put is sent); before, the child's
#: ``_bootstrap`` calls that handler itself. A child here does as CPython's own ``forkserver``
#: children do in the running version.
_CHILD_RUNS_ATEXIT = hasattr(forkserver, "atexit")


def _child_main(fd, parent_sentinel):
    """CPython's ``spawn._main``, in two steps: the preparation data is taken in at once (its
    own part of it: no program code runs), the main module and the process object once the
    starter has placed this process and writes the object. The server imported the main module
    already, so that is mostly a check; if the server could not, the program's main module runs
    here, in the member, as a ``spawn`` child runs it."""
    with os.fdopen(fd, "rb", closefd=True) as from_parent:
        process.current_process()._inheriting = True
        try:
            preparation_data = reduction.pickle.load(from_parent)
            main = {k: preparation_data.pop(k) for k in _MAIN_KEYS if k in preparation_data}
            spawn.prepare(preparation_data)
            if not from_parent.peek(1):
                return 1  # the starter could not place this process, or went away
            spawn.prepare(main)
            self = reduction.pickle.load(from_parent)
        finally:
            del process.current_process()._inheriting
    return self._bootstrap(parent_sentinel)
