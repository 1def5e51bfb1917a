# A resource tracker in miniature, for the guide (2.8): it ignores SIGTERM, as CPython's does,
# and cleans up once every client has closed its pipe (its standard input).
import signal, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("tracker: waiting for its clients", flush=True)
sys.stdin.read()
print("tracker: every client is gone, cleaning up", flush=True)
