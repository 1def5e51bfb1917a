#!/bin/sh
# The main member of the example service in docs/guide.md: a daemon (logger) and a
# non-daemonic worker. On SIGTERM (`systemctl stop`, forwarded by `daemonic run`) it stops the
# worker and returns; daemonic then ends the daemons (SIGTERM, and cgroup.kill once the
# --stop-timeout has passed). Non-daemonic members are never signalled by daemonic itself.
set -u
here=$(cd "$(dirname "$0")" && pwd)
# A daemon cannot fork, so it must be started as the real interpreter, not a wrapper script.
py=${PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}
daemonic spawn --daemon --name logger -- "$py" "$here/ticker.py" logger 5 &
daemonic spawn --name worker -- "$py" "$here/graceful.py" 0.2 &
worker=$!
trap 'kill -TERM "$worker"' TERM INT HUP
wait "$worker"   # returns early when a trapped signal arrives ...
wait "$worker"   # ... then waits for the worker to finish its cleanup
