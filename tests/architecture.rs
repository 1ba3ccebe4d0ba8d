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
