//! Property tests (proptest) of the two places where untrusted names become paths and unit
//! names: systemd's escaping (`daemonic::__internal::unit_name`) and the cgroup directory names of a family
//! (`daemonic::__internal::layout`). A name that passes `validate_name` must always be one directory level
//! that reads back as itself, on both backends; any other string must be refused with a
//! one-line message, never a panic.

use std::path::{Component, Path};

use daemonic::__internal::layout::{self, Kind, Node};
use daemonic::__internal::unit_name::{UNIT_NAME_MAX, escape, unescape};
use proptest::prelude::*;

/// Names as `validate_name` accepts them (and some it refuses: leading `.`/`-`, `..`).
fn name_like() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:@+-]{1,64}"
}

/// Any kind of member.
fn any_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Member), Just(Kind::Daemon), Just(Kind::Helper)]
}

proptest! {
    // No regression files: a failure prints its minimal input, which belongs in a unit test.
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn escaping_round_trips(s in any::<String>()) {
        let e = escape(&s);
        prop_assert_eq!(unescape(&e), Some(s.clone()));
        // Only what systemd keeps in a unit name, and never a leading dot.
        prop_assert!(e.bytes().all(|b| b.is_ascii_alphanumeric() || b":_.\\-".contains(&b)), "{:?}", e);
        prop_assert!(!e.starts_with('.'));
    }

    #[test]
    fn any_string_is_checked_without_panic(s in any::<String>()) {
        match layout::validate_name("member", &s) {
            Ok(()) => {
                prop_assert!(!s.is_empty() && s.len() <= layout::MAX_NAME);
                prop_assert!(!s.contains('/') && !s.contains('\0') && !s.contains(".."));
                let dir = Path::new("/sys/fs/cgroup/base").join(layout::member_dir_name(&s, 7, Kind::Member));
                prop_assert!(dir.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
                prop_assert_eq!(dir.components().count(), 6);
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.contains('\n') && msg.starts_with("invalid member name"), "{:?}", msg);
            }
        }
    }

    #[test]
    fn directory_names_read_back(name in name_like(), seq in any::<u64>(), kind in any_kind(), n in any::<u64>()) {
        prop_assume!(layout::validate_name("member", &name).is_ok());
        let member = layout::member_dir_name(&name, seq, kind);
        prop_assert_eq!(Node::parse(&member), Some(Node::Member { name: name.clone(), seq, kind }));
        let id = format!("{name}-{n}");
        prop_assert_eq!(Node::parse(&layout::family_dir_name(&id)), Some(Node::Family { id: id.clone(), name: name.clone() }));
        // A daemon's container reads back as its owner's.
        let daemons = layout::daemons_dir(Path::new(&member));
        prop_assert_eq!(Node::of_dir(&daemons), Some(Node::Daemons { owner: member.clone() }));
        let helpers = layout::helpers_dir(Path::new(&member));
        prop_assert_eq!(Node::of_dir(&helpers), Some(Node::Helpers { owner: member.clone() }));
    }

    #[test]
    fn unit_names_read_back(name in name_like(), seq in any::<u64>(), kind in any_kind(), n in any::<u64>()) {
        prop_assume!(layout::validate_name("member", &name).is_ok());
        let family = layout::family_unit(None, &name, n).expect("a valid name makes a family slice");
        prop_assert!(family.as_str().len() <= UNIT_NAME_MAX);
        prop_assert_eq!(Node::parse(family.as_str()), Some(Node::Family { id: format!("{name}-{n}"), name: name.clone() }));
        let family_dir = Path::new("/sys/fs/cgroup/daemonic.slice").join(family.as_str());
        // A name of 64 characters that all need escaping (4 bytes each) can make a member's
        // slice longer than systemd allows: then it is refused, with the reason.
        let member = match layout::member_unit(&family_dir, &name, seq, kind) {
            Ok(member) => member,
            Err(e) => {
                prop_assert!(e.to_string().contains("systemd allows 255"), "{}", e);
                return Ok(());
            }
        };
        prop_assert!(member.as_str().len() <= UNIT_NAME_MAX);
        prop_assert!(member.as_str().starts_with(family.as_str().trim_end_matches(".slice")));
        prop_assert_eq!(Node::parse(member.as_str()), Some(Node::Member { name: name.clone(), seq, kind }));
        let member_dir = family_dir.join(member.as_str());
        let daemons_dir = layout::daemons_dir(&member_dir);
        prop_assert_eq!(Node::of_dir(&daemons_dir).map(|n| matches!(n, Node::Daemons { .. })), Some(true));
        let helpers_dir = layout::helpers_dir(&member_dir);
        prop_assert_eq!(Node::of_dir(&helpers_dir), Some(Node::Helpers { owner: member.to_string() }));
        // A lone daemon's scope in the `.daemons` slice reads back as the daemon; the scope of a
        // member's own slice is not a member.
        if let Ok(lone) = layout::daemon_scope(&daemons_dir, &name, seq) {
            prop_assert_eq!(Node::of_dir(&daemons_dir.join(lone.as_str())), Some(Node::Member { name: name.clone(), seq, kind: Kind::Daemon }));
        }
        let own = member_dir.join(layout::scope_of(&member_dir).expect("a slice has a scope"));
        prop_assert_eq!(Node::of_dir(&own), None);
        // Nesting: a family below the member's slice stays within 255 bytes or is refused.
        match layout::family_unit(Some(&member_dir), &name, n) {
            Ok(nested) => prop_assert!(nested.as_str().len() <= UNIT_NAME_MAX),
            Err(e) => prop_assert!(e.to_string().contains("systemd allows 255")),
        }
    }
}
