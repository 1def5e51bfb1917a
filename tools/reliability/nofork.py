# The no-fork policy seen from Python, run as a daemon (tools/reliability/nofork.rs):
#
#   python3 nofork.py OUT
#
# One line per way to make a process (or a thread) to OUT, as nofork.c writes them.
import concurrent.futures
import errno
import os
import subprocess
import sys
import threading

out = open(sys.argv[1], "w", buffering=1)


def refused(name, e):
    out.write("%s: refused %s\n" % (name, errno.errorcode.get(e.errno, str(e.errno))))


try:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    out.write("os.fork(): allowed\n")
except OSError as e:
    refused("os.fork()", e)

try:
    subprocess.run(["/bin/true"], check=True)
    out.write("subprocess.run(): allowed\n")
except OSError as e:
    refused("subprocess.run()", e)

try:
    pid = os.posix_spawn("/bin/true", ["true"], dict(os.environ))
    os.waitpid(pid, 0)
    out.write("os.posix_spawn(): allowed\n")
except OSError as e:
    refused("os.posix_spawn()", e)

seen = []
threads = [threading.Thread(target=lambda i=i: seen.append(i)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
out.write("threading.Thread x4: %s\n" % ("works" if sorted(seen) == [0, 1, 2, 3] else "broken"))

with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
    squares = list(pool.map(lambda x: x * x, range(16)))
ok = squares == [x * x for x in range(16)]
out.write("ThreadPoolExecutor(4): %s\n" % ("works" if ok else "broken"))
out.close()
