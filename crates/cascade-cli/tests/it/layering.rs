//! The crate layering of STYLE.md, checked on `cargo metadata`: any dependency edge
//! between workspace crates that the table does not allow fails, naming the edge.

use std::collections::BTreeMap;

/// Which workspace crates each crate may depend on (normal and build dependencies).
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    let mid: &[&str] = &["cascade-spec", "cascade-plan"];
    BTreeMap::from([
        ("cascade-spec", &[][..]),
        ("cascade-plan", &["cascade-spec"][..]),
        ("cascade-engine", mid),
        ("cascade-store", mid),
        ("cascade-argo", mid),
        ("cascade-connect", &["cascade-plan", "cascade-spec"][..]),
        ("cascade-git", mid),
        (
            "cascade-server",
            &[
                "cascade-spec",
                "cascade-plan",
                "cascade-engine",
                "cascade-store",
                "cascade-argo",
                "cascade-connect",
                "cascade-git",
            ][..],
        ),
        (
            "cascade-cli",
            &[
                "cascade-spec",
                "cascade-plan",
                "cascade-engine",
                "cascade-store",
                "cascade-argo",
                "cascade-connect",
                "cascade-git",
                "cascade-server",
            ][..],
        ),
        ("cascade-test", &["cascade-spec", "cascade-plan"][..]),
    ])
}

#[test]
fn workspace_dependencies_follow_the_layering() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(crate::root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let allowed = allowed();
    let mut violations = Vec::new();
    let packages = meta["packages"].as_array().unwrap();
    assert!(packages.len() >= 2);
    for package in packages {
        let name = package["name"].as_str().unwrap();
        let Some(ok) = allowed.get(name) else {
            violations.push(format!("{name} is not in the layering table of STYLE.md"));
            continue;
        };
        for dep in package["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            let dev = dep["kind"].as_str() == Some("dev");
            if !dep_name.starts_with("cascade-") {
                continue;
            }
            // Dev-dependencies may also use the test helpers.
            if dev && (dep_name == "cascade-test" || ok.contains(&dep_name)) {
                continue;
            }
            if !ok.contains(&dep_name) {
                violations.push(format!("{name} → {dep_name}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "edges the layering does not allow: {violations:?}"
    );
}

#[test]
fn the_table_itself_forbids_sibling_edges() {
    let allowed = allowed();
    for sibling in [
        "cascade-engine",
        "cascade-store",
        "cascade-argo",
        "cascade-connect",
        "cascade-git",
    ] {
        for other in [
            "cascade-engine",
            "cascade-store",
            "cascade-argo",
            "cascade-connect",
            "cascade-git",
        ] {
            assert!(
                !allowed[sibling].contains(&other),
                "{sibling} → {other} must stay forbidden"
            );
        }
    }
}

#[test]
fn no_aws_lc_or_openssl_in_the_dependency_graph() {
    // Cargo.lock holds the whole resolved graph, for every platform.
    let lock = std::fs::read_to_string(crate::root().join("Cargo.lock")).unwrap();
    let names: Vec<&str> = lock
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|l| l.trim_end_matches('"'))
        .collect();
    assert!(names.contains(&"tokio"), "the lock file was read");
    for banned in [
        "aws-lc-rs",
        "aws-lc-sys",
        "openssl",
        "openssl-sys",
        "native-tls",
    ] {
        assert!(
            !names.contains(&banned),
            "{banned} is in the dependency graph; use ring-backed rustls"
        );
    }
}
