#!/bin/sh
# The reliability harness's rows that need resource limits, on cgroup v2 controllers (a check of
# scripts/vm-suite, run as root in a scripts/vm host, where no v1 controller exists): the OOM
# killer ending the main member (MemoryMax=64M) and the fork bomb under TasksMax=64, on both
# backends; the systemd rows against root's own user manager (user@0.service, which systemd
# delegates the controllers to), started here and stopped again if it was not running.
# Exits with the harness's status: 1 when a trial leaked or failed.
set -eu
cd "$(dirname "$0")/../.."
say() { echo "reliability-limits: $*"; }
harness=target/release/examples/reliability
daemonic=target/release/daemonic
[ -x "$harness" ] && [ -x "$daemonic" ] || { say "FAILED: build them first: cargo build --release --bin daemonic --example reliability"; exit 1; }

started=
if ! systemctl -q is-active user@0.service; then
    systemctl start user@0.service
    started=1
fi
cleanup() {
    rc=$?
    [ -z "$started" ] || systemctl stop user@0.service || rc=1
    exit "$rc"
}
trap cleanup EXIT
export XDG_RUNTIME_DIR=/run/user/0 DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/0/bus
say "user@0.service gets: $(cat /sys/fs/cgroup/user.slice/user-0.slice/user@0.service/cgroup.controllers)"
out=$(mktemp /tmp/reliability-limits.XXXXXX.md)
status=0
"$harness" --daemonic "$daemonic" --rows "OOM,fork bomb" --trials "${DAEMONIC_VM_RELIABILITY_TRIALS:-5}" \
    --backends cgroupfs,systemd --out "$out" || status=$?
cat "$out"
rm -f "$out"
exit "$status"
