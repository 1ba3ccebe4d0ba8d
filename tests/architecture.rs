//! The layering DESIGN.md asks for, checked on the source: production code (all of src/
//! but the simulation and the CLI that starts `showroom dev`) never uses the simulation
//! nor reads what only the simulation writes; the domain knows neither kube nor axum.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn production_code_never_uses_the_simulation() {
    let mut offenders = Vec::new();
    for f in rust_files(&src()) {
        let rel = f.strip_prefix(src()).unwrap().to_string_lossy().to_string();
        if rel.starts_with("sim/") || rel == "main.rs" || rel == "lib.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.contains("sim::") || line.contains("sim.showroom.dev") {
                offenders.push(format!("src/{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

#[test]
fn the_domain_knows_neither_kube_nor_axum() {
    for f in rust_files(&src().join("domain")) {
        let text = std::fs::read_to_string(&f).unwrap();
        for bad in ["kube::", "k8s_openapi", "axum::"] {
            assert!(!text.contains(bad), "{} uses {bad}", f.display());
        }
    }
}

/// The Dockerfile builds the dependencies first, from the manifest and stub sources; a
/// target the manifest declares without its stub fails that build ("can't find `X`
/// bench"), and no machine here runs Docker to notice.
#[test]
fn the_image_build_stubs_every_target_the_manifest_declares() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let mut benches = Vec::new();
    let mut in_bench = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bench = line == "[[bench]]";
        } else if in_bench && let Some(v) = line.strip_prefix("name") {
            benches.push(
                v.trim_start_matches([' ', '='])
                    .trim_matches('"')
                    .to_string(),
            );
        }
    }
    assert!(!benches.is_empty(), "no [[bench]] found in Cargo.toml");
    for b in benches {
        assert!(
            // The stub is written (`> benches/X.rs`), not merely named elsewhere.
            dockerfile.contains(&format!("> benches/{b}.rs")),
            "Dockerfile: the dependency stage makes no stub benches/{b}.rs for the [[bench]] {b:?} of Cargo.toml"
        );
    }
}
