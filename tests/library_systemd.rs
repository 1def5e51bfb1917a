//! The library scenarios of `tests/scenarios/library.rs` on the systemd backend: each
//! re-executed child opens its family with `DAEMONIC_BACKEND=systemd` on the test user manager
//! that `scripts/user-manager` starts (`.ci/run` does). Without that manager the tests are
//! ignored, with the reason, and fail when `CI=true`.

mod common;
mod harness;

/// The backend the shared scenarios run on.
const BACKEND: common::Backend = common::Backend::Systemd;

fn main() -> std::process::ExitCode {
    harness::main()
}

include!("scenarios/library.rs");

// =============================================================================================
// A program alone in its scope (systemd only)
// =============================================================================================

/// A program that is the only process of its scope (`systemd-run --scope`, a service's main
/// process) opens a family: moving it into the family's main member leaves its scope empty for
/// a moment, and systemd collects an empty scope. The guardian still starts in that scope, the
/// program is back in it after `shutdown`, and the scope ends only when the program does.
#[harness::test]
fn a_program_alone_in_its_scope_opens_a_family() {
    if let Some(s) = child_scenario() {
        assert_eq!(s, "alone");
        let own = common::own_cgroup_dir().expect("own cgroup");
        report("own_before", own.display());
        let family = open_family();
        report("own_exists", own.exists());
        let guardians = common::guardians_of(&child_family());
        report("guardians", guardians.len());
        for (pid, _) in &guardians {
            let cg = common::cgroup_of(&pid.to_string()).unwrap_or_default();
            report(
                "guardian_cgroup",
                common::cgroup2_mount().expect("cgroup2").join(cg.trim_start_matches('/')).display(),
            );
        }
        let mut daemon = Command::new("sleep");
        daemon.arg("60").daemon(true);
        spawn(&family, &mut daemon);
        family.shutdown().expect("shutdown");
        report("own_after", common::own_cgroup_dir().expect("own cgroup after shutdown").display());
        return;
    }
    require_cgroup();
    let tag = common::unique("alone");
    let unit = format!("daemonic-test-{tag}.scope");
    let launcher = ["systemd-run", common::bus_flag(), "--scope", "--quiet", "--collect", "--unit", &unit, "--"];
    let test = harness::current_test();
    let mut child = Child::start_via(&launcher, &test, "alone", "alone", &[]);
    child.expect_success(CHILD_TIMEOUT);
    let own = child.expect_value("own_before");
    assert!(own.ends_with(&format!("/{unit}")), "the program ran in {own}, not in {unit}\n{}", child.dump());
    assert_eq!(child.expect_value("own_exists"), "true", "its scope was collected\n{}", child.dump());
    assert_eq!(child.expect_value("guardians"), "1", "{}", child.dump());
    assert_eq!(
        child.expect_value("guardian_cgroup"),
        own,
        "the guardian is not in the program's scope\n{}",
        child.dump()
    );
    assert_eq!(child.expect_value("own_after"), own, "shutdown did not bring the program back\n{}", child.dump());
    child.assert_no_leftovers();
    assert!(
        common::wait_until(common::scaled(Duration::from_secs(3)), || !std::path::Path::new(&own).exists()),
        "{own} remains after the program ended"
    );
}
