"""Prints `HH:MM:SS.s NAME: tick` every INTERVAL seconds (default 0.5): a daemon to watch."""
import sys
import time

name = sys.argv[1] if len(sys.argv) > 1 else "ticker"
interval = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
while True:
    now = time.time()
    print(time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 10)} {name}: tick", flush=True)
    time.sleep(interval)
