"""The seed's long-running daemon task: report the daemon flag, then count every 0.1 s."""
import time

from current_process import current_process

print(f"Daemon process: {current_process().daemon}", flush=True)
for i in range(1000):
    print(i, flush=True)
    time.sleep(0.1)
