#!/bin/sh
# Under PID 1, for real (a check of scripts/vm-suite, run as root in a scripts/vm host): the
# built .deb installed with dpkg, the example system service (Type=notify, Delegate=yes) started
# by systemd: READY and the STATUS counts in `systemctl status`, the family in `daemonic ps` and
# in the journal, `systemctl stop` ends it with nothing left; the same for the example user
# service under the test user's manager; `dpkg -r` removes the package. Exits 0 when every step
# holds; otherwise says which did not, and cleans up either way.
set -eu
cd "$(dirname "$0")/../.."
checkout=$(pwd)
user=daemonic-test
uid=$(id -u "$user")
say() { echo "pid1-package: $*"; }
fail() { say "FAILED: $*"; exit 1; }

[ "$(cat /proc/1/comm)" = systemd ] || fail "systemd is not PID 1 here"
deb=$(ls "$checkout"/target/debian/daemonic_*.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || fail "no .deb in target/debian: run scripts/build-packages"
if dpkg -s daemonic >/dev/null 2>&1; then fail "daemonic is installed already: not touching it"; fi

app=$(mktemp -d /tmp/daemonic-pid1-package.XXXXXX)
chmod 755 "$app"
userunits=/home/$user/.config/systemd/user
as_user() { runuser -u "$user" -- env XDG_RUNTIME_DIR=/run/user/$uid DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$uid/bus "$@"; }
cleanup() {
    rc=$?
    systemctl stop daemonic-example.service 2>/dev/null || true
    rm -f /run/systemd/system/daemonic-example.service
    systemctl daemon-reload || true
    as_user systemctl --user stop daemonic-example.service 2>/dev/null || true
    rm -f "$userunits/daemonic-example.service"
    as_user systemctl --user daemon-reload || true
    if dpkg -s daemonic >/dev/null 2>&1; then dpkg -r daemonic >/dev/null || rc=1; fi
    rm -rf "$app"
    exit "$rc"
}
trap cleanup EXIT

# The application: a daemon and a worker, then it waits; on SIGTERM it ends its worker and exits.
# Its sleeps carry a marker (1000 s and a fraction unique to this run) to be found by.
marker=1000.000$$
cat >"$app/example-app" <<EOF
#!/bin/sh
trap 'kill \$w; wait \$w; exit 0' TERM
daemonic spawn --daemon --name logger -- sleep $marker &
daemonic spawn --no-daemon --name worker -- sleep $marker &
w=\$!
while :; do sleep 1; done
EOF
chmod 755 "$app/example-app"

say "dpkg -i $(basename "$deb")"
dpkg -i "$deb" >/dev/null
[ -x /usr/bin/daemonic ] || fail "/usr/bin/daemonic is not installed"

# The processes of the example still running, as "PID: command line".
leftovers() {
    for p in /proc/[0-9]*; do
        cmd=$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
        case $cmd in *"$marker"* | *"$app/example-app"*) echo "${p#/proc/}: $cmd" ;; esac
    done
}

# $1: systemctl prefix (as root or as the user); $2: where the unit goes; $3: example unit file;
# $4: a label; $5: the journal field that names the unit. Starts the service, checks it, stops
# it, checks nothing is left.
service_check() {
    ctl=$1 dir=$2 unit=$3 label=$4 field=$5
    mkdir -p "$dir"
    # The installed example as it is, but for the program it runs (the last word of ExecStart).
    grep -q '^ExecStart=/usr/bin/daemonic run .* -- [^ ]*$' "$unit" || fail "$label: $unit has no ExecStart=/usr/bin/daemonic run ... -- PROGRAM"
    sed "s|^\(ExecStart=.* -- \)[^ ]*\$|\1$app/example-app|" "$unit" >"$dir/daemonic-example.service"
    grep '^ExecStart=' "$dir/daemonic-example.service"
    case $dir in /home/*) chown -R "$user:" "/home/$user/.config" ;; esac
    $ctl daemon-reload
    say "$label: systemctl start (Type=notify: returns once READY=1 came)"
    $ctl start daemonic-example.service
    [ "$($ctl show -p ActiveState --value daemonic-example.service)" = active ] || fail "$label: not active after start"
    i=0
    until $ctl show -p StatusText --value daemonic-example.service | grep -q '2 members running, 1 daemon'; do
        i=$((i + 1)); [ $i -lt 300 ] || fail "$label: StatusText is '$($ctl show -p StatusText --value daemonic-example.service)'"
        sleep 0.1
    done
    $ctl status --no-pager --lines=0 daemonic-example.service || true
    cgroup=$($ctl show -p ControlGroup --value daemonic-example.service)
    family=$(ls -d /sys/fs/cgroup"$cgroup"/daemonic-example-*.family) || fail "$label: no family directory in $cgroup"
    say "$label: the family is $family"
    ps=$(daemonic ps)
    echo "$ps"
    echo "$ps" | grep -q ' logger ' || fail "$label: daemonic ps does not list the daemon"
    i=0
    until journalctl "$field=daemonic-example.service" DAEMONIC_EVENT=spawned -o cat | grep -q 'daemon logger'; do
        i=$((i + 1)); [ $i -lt 100 ] || fail "$label: the journal has no spawned event of the daemon ($field)"
        sleep 0.1
    done
    say "$label: the journal has the family's events"
    say "$label: systemctl stop"
    $ctl stop daemonic-example.service
    [ ! -e "$family" ] || fail "$label: $family is still there after the stop"
    state=$($ctl show -p ActiveState --value daemonic-example.service)
    [ "$state" = inactive ] || fail "$label: $state after the stop, not inactive"
    left=$(leftovers)
    [ -z "$left" ] || fail "$label: processes of the example are left: $left"
    rm -f "$dir/daemonic-example.service"
    $ctl daemon-reload
}

service_check systemctl /run/systemd/system /usr/share/doc/daemonic/examples/daemonic-example.service \
    system _SYSTEMD_UNIT
as_user systemctl --user is-system-running --wait >/dev/null || true
service_check "as_user systemctl --user" "$userunits" /usr/share/doc/daemonic/examples/user/daemonic-example.service \
    user _SYSTEMD_USER_UNIT

say "dpkg -r daemonic"
dpkg -r daemonic >/dev/null
[ ! -e /usr/bin/daemonic ] || fail "/usr/bin/daemonic is still there after dpkg -r"
say "every step held"
