//! Facts about the host shared by the developer tools (tools/bench, tools/reliability).

/// unified, hybrid or legacy, from where cgroup2 is mounted and whether v1 hierarchies exist.
pub(crate) fn cgroup_mode() -> String {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v2 = None;
    let mut v1 = 0;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let fstype = right.split_whitespace().next().unwrap_or_default();
        let mount = left.split_whitespace().nth(4).unwrap_or_default();
        match fstype {
            "cgroup2" if v2.is_none() => v2 = Some(mount.to_string()),
            "cgroup" => v1 += 1,
            _ => {}
        }
    }
    match (v2, v1) {
        (Some(m), 0) => format!("unified (cgroup2 at {m})"),
        (Some(m), n) => format!("hybrid (cgroup2 at {m}, {n} v1 hierarchies)"),
        (None, _) => "legacy (no cgroup2)".into(),
    }
}
