"""A daemon that cleans up on SIGTERM (it takes `delay` seconds) and ticks every 0.5 s."""
import signal
import sys
import time

delay = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5


def on_term(signum, frame):
    print(f"got SIGTERM, flushing for {delay} s", flush=True)
    time.sleep(delay)
    print("flushed, exiting", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
print("graceful: running", flush=True)
while True:
    time.sleep(0.5)
