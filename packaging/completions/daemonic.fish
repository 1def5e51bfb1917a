# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_daemonic_global_optspecs
    string join \n v/verbose q/quiet h/help V/version
end

function __fish_daemonic_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_daemonic_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_daemonic_using_subcommand
    set -l cmd (__fish_daemonic_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c daemonic -n "__fish_daemonic_needs_command" -s v -l verbose -d 'Say more: what was decided and done (which backend and why, each spawn and exit)'
complete -c daemonic -n "__fish_daemonic_needs_command" -s q -l quiet -d 'Say nothing but errors'
complete -c daemonic -n "__fish_daemonic_needs_command" -s h -l help -d 'Print help'
complete -c daemonic -n "__fish_daemonic_needs_command" -s V -l version -d 'Print version'
complete -c daemonic -n "__fish_daemonic_needs_command" -f -a "run" -d 'Run PROGRAM as the main member of a new family; exit when the family has ended'
complete -c daemonic -n "__fish_daemonic_needs_command" -f -a "spawn" -d 'From inside a member: become PROGRAM as a new member, child of the caller'
complete -c daemonic -n "__fish_daemonic_needs_command" -f -a "ps" -d 'List running families and their members; another user\'s family is one line, its details hidden (root sees every family in full)'
complete -c daemonic -n "__fish_daemonic_needs_command" -f -a "is-daemon" -d 'Print whether the calling process is daemonic; exit 0 when it is, 1 when not'
complete -c daemonic -n "__fish_daemonic_needs_command" -f -a "kill" -d 'Kill a whole family (members of both kinds) at once and remove its cgroups; only your own families (root: any)'
complete -c daemonic -n "__fish_daemonic_needs_command" -f -a "doctor" -d 'Check this host (cgroup v2, delegation, kernel features, systemd managers) and explain what works, what is missing and how to fix it; exit 0 when `daemonic run` can work here on its default backend, 1 when not'
complete -c daemonic -n "__fish_daemonic_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c daemonic -n "__fish_daemonic_using_subcommand run" -l name -d 'The family\'s name (default: PROGRAM\'s file name)' -r
complete -c daemonic -n "__fish_daemonic_using_subcommand run" -l backend -d 'Where the family\'s cgroups come from: cgroupfs (directories below a delegated cgroup), systemd (a transient scope per member), or auto (systemd when a manager answers)' -r
complete -c daemonic -n "__fish_daemonic_using_subcommand run" -s p -l property -d 'A resource property of the main member, as `systemd-run -p` (TasksMax=, MemoryMax=, CPUWeight=): its unit\'s on systemd, its cgroup\'s pids.max, memory.max, cpu.weight on cgroupfs (where the base hands the controller down); repeatable' -r
complete -c daemonic -n "__fish_daemonic_using_subcommand run" -l cgroup -d 'cgroupfs backend: the cgroup to create the family under (default: the caller\'s own cgroup)' -r -F
complete -c daemonic -n "__fish_daemonic_using_subcommand run" -l stop-timeout -d 'Send SIGTERM to daemons and wait this long before SIGKILL (default: immediate SIGKILL)' -r
complete -c daemonic -n "__fish_daemonic_using_subcommand run" -l user -d 'systemd backend: use the calling user\'s manager (the default for non-root callers)'
complete -c daemonic -n "__fish_daemonic_using_subcommand run" -l system -d 'systemd backend: use the system manager (the default for root)'
complete -c daemonic -n "__fish_daemonic_using_subcommand run" -s v -l verbose -d 'Say more: what was decided and done (which backend and why, each spawn and exit)'
complete -c daemonic -n "__fish_daemonic_using_subcommand run" -s q -l quiet -d 'Say nothing but errors'
complete -c daemonic -n "__fish_daemonic_using_subcommand run" -s h -l help -d 'Print help'
complete -c daemonic -n "__fish_daemonic_using_subcommand spawn" -l name -d 'The member\'s name (default: PROGRAM\'s file name)' -r
complete -c daemonic -n "__fish_daemonic_using_subcommand spawn" -l stop-timeout -d 'For a daemon: SIGTERM and this long before SIGKILL when its family ends; for a helper, how long it has after SIGTERM (default 1)' -r
complete -c daemonic -n "__fish_daemonic_using_subcommand spawn" -s p -l property -d 'A resource property of the new member, as `systemd-run -p` (TasksMax=, MemoryMax=, CPUWeight=): its unit\'s on systemd, its cgroup\'s on cgroupfs (a daemon, or a member of a main member\'s family dir; the controller must reach the family); repeatable' -r
complete -c daemonic -n "__fish_daemonic_using_subcommand spawn" -l daemon -d 'Make the new member daemonic'
complete -c daemonic -n "__fish_daemonic_using_subcommand spawn" -l no-daemon -d 'Make the new member non-daemonic'
complete -c daemonic -n "__fish_daemonic_using_subcommand spawn" -l helper -d 'Make the new member a helper of the caller (a server its children talk to): not waited for, stopped (SIGTERM, then SIGKILL after its stop timeout) only after the caller\'s daemons are gone'
complete -c daemonic -n "__fish_daemonic_using_subcommand spawn" -l allow-children -d 'Let a daemonic member have children, confined to its cgroup'
complete -c daemonic -n "__fish_daemonic_using_subcommand spawn" -l contain -d 'Run the member in a PID namespace of its own, so that none of its descendants can outlive it, even one that moves itself to another cgroup (needs root)'
complete -c daemonic -n "__fish_daemonic_using_subcommand spawn" -s v -l verbose -d 'Say more: what was decided and done (which backend and why, each spawn and exit)'
complete -c daemonic -n "__fish_daemonic_using_subcommand spawn" -s q -l quiet -d 'Say nothing but errors'
complete -c daemonic -n "__fish_daemonic_using_subcommand spawn" -s h -l help -d 'Print help'
complete -c daemonic -n "__fish_daemonic_using_subcommand ps" -l json -d 'Print JSON: {"families":[{"id","name","owner","hidden","cgroup","guardian","members":[{"name","pid","daemon","kind","state","cgroup","unit","start_time"}]}]} ("unit", the member\'s scope, only on the systemd backend; another user\'s family is "hidden": true, with "cgroup" and "guardian" null and no members, except for root)'
complete -c daemonic -n "__fish_daemonic_using_subcommand ps" -s v -l verbose -d 'Say more: what was decided and done (which backend and why, each spawn and exit)'
complete -c daemonic -n "__fish_daemonic_using_subcommand ps" -s q -l quiet -d 'Say nothing but errors'
complete -c daemonic -n "__fish_daemonic_using_subcommand ps" -s h -l help -d 'Print help'
complete -c daemonic -n "__fish_daemonic_using_subcommand is-daemon" -s v -l verbose -d 'Say more: what was decided and done (which backend and why, each spawn and exit)'
complete -c daemonic -n "__fish_daemonic_using_subcommand is-daemon" -s q -l quiet -d 'Say nothing but errors'
complete -c daemonic -n "__fish_daemonic_using_subcommand is-daemon" -s h -l help -d 'Print help'
complete -c daemonic -n "__fish_daemonic_using_subcommand kill" -s v -l verbose -d 'Say more: what was decided and done (which backend and why, each spawn and exit)'
complete -c daemonic -n "__fish_daemonic_using_subcommand kill" -s q -l quiet -d 'Say nothing but errors'
complete -c daemonic -n "__fish_daemonic_using_subcommand kill" -s h -l help -d 'Print help'
complete -c daemonic -n "__fish_daemonic_using_subcommand doctor" -s v -l verbose -d 'Say more: what was decided and done (which backend and why, each spawn and exit)'
complete -c daemonic -n "__fish_daemonic_using_subcommand doctor" -s q -l quiet -d 'Say nothing but errors'
complete -c daemonic -n "__fish_daemonic_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c daemonic -n "__fish_daemonic_using_subcommand help; and not __fish_seen_subcommand_from run spawn ps is-daemon kill doctor help" -f -a "run" -d 'Run PROGRAM as the main member of a new family; exit when the family has ended'
complete -c daemonic -n "__fish_daemonic_using_subcommand help; and not __fish_seen_subcommand_from run spawn ps is-daemon kill doctor help" -f -a "spawn" -d 'From inside a member: become PROGRAM as a new member, child of the caller'
complete -c daemonic -n "__fish_daemonic_using_subcommand help; and not __fish_seen_subcommand_from run spawn ps is-daemon kill doctor help" -f -a "ps" -d 'List running families and their members; another user\'s family is one line, its details hidden (root sees every family in full)'
complete -c daemonic -n "__fish_daemonic_using_subcommand help; and not __fish_seen_subcommand_from run spawn ps is-daemon kill doctor help" -f -a "is-daemon" -d 'Print whether the calling process is daemonic; exit 0 when it is, 1 when not'
complete -c daemonic -n "__fish_daemonic_using_subcommand help; and not __fish_seen_subcommand_from run spawn ps is-daemon kill doctor help" -f -a "kill" -d 'Kill a whole family (members of both kinds) at once and remove its cgroups; only your own families (root: any)'
complete -c daemonic -n "__fish_daemonic_using_subcommand help; and not __fish_seen_subcommand_from run spawn ps is-daemon kill doctor help" -f -a "doctor" -d 'Check this host (cgroup v2, delegation, kernel features, systemd managers) and explain what works, what is missing and how to fix it; exit 0 when `daemonic run` can work here on its default backend, 1 when not'
complete -c daemonic -n "__fish_daemonic_using_subcommand help; and not __fish_seen_subcommand_from run spawn ps is-daemon kill doctor help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
