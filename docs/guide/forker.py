"""What a process may create: a child with os.fork(), a program with subprocess, a thread."""
import os
import subprocess
import threading

from current_process import current_process

me = current_process()
print(f"{me.name}: daemon={me.daemon}", flush=True)
try:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    print("os.fork(): ok", flush=True)
except OSError as e:
    print(f"os.fork(): {type(e).__name__}: {e}", flush=True)
try:
    subprocess.run(["true"], check=True)
    print("subprocess.run(): ok", flush=True)
except OSError as e:
    print(f"subprocess.run(): {type(e).__name__}: {e}", flush=True)
t = threading.Thread(target=lambda: print("thread: ok", flush=True))
t.start()
t.join()
