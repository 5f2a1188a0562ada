//! One build of the third-party crates for every release build `cargo
//! xtask` makes: the demo's, the benchmarks' and the GPU kit's selections
//! of workspace members must resolve each crate they share with the same
//! features, or Cargo compiles it (and all that depends on it: the Burn
//! stack) once per selection. `crates/polymodal-workspace-hack` asks for
//! the union; the test below compares the selections with `cargo tree`.

use std::collections::{BTreeMap, BTreeSet};

use crate::cargo;

/// The release builds of `cargo xtask demo`, `cargo xtask bench …` and
/// `cargo xtask gpu-kit`, as `cargo` package selections.
const SELECTIONS: [(&str, &[&str]); 3] = [
    ("demo", &["-p", "polymodal"]),
    ("bench", &["-p", "polymodal-benches"]),
    (
        "gpu-kit",
        &["-p", "polymodal-benches", "--no-default-features"],
    ),
];

/// Each third-party package ("name version") of a selection → the feature
/// lists it is built with (a package built for the host, for a
/// proc-macro or build script, and for the target can have two).
type FeatureSets = BTreeMap<String, BTreeSet<String>>;

/// The feature sets of `cargo tree` output lines `package|features`;
/// workspace members (a path in the package) are left out.
fn parse(tree: &str) -> FeatureSets {
    let mut sets = FeatureSets::new();
    for line in tree.lines() {
        let line = line.trim_end_matches(" (*)");
        let Some((package, features)) = line.split_once('|') else {
            continue;
        };
        if package.contains("(/") || package.trim().is_empty() {
            continue;
        }
        sets.entry(package.trim().to_string())
            .or_default()
            .insert(features.to_string());
    }
    sets
}

/// The packages two selections build differently: present in both, and
/// neither selection's feature lists holding the other's (a selection may
/// lack one of the host/target builds the other has; that costs nothing).
fn disagreements(a: &FeatureSets, b: &FeatureSets) -> Vec<String> {
    a.iter()
        .filter_map(|(package, ours)| {
            let theirs = b.get(package)?;
            let nested = ours.is_subset(theirs) || theirs.is_subset(ours);
            (!nested).then(|| format!("{package}: {ours:?} against {theirs:?}"))
        })
        .collect()
}

/// The third-party feature sets of one selection, from `cargo tree`.
fn feature_sets(selection: &[&str]) -> Result<FeatureSets, String> {
    let output = cargo()
        .args(["tree", "-e", "normal,build", "--prefix", "none"])
        .args(["-f", "{p}|{f}"])
        .args(selection)
        .output()
        .map_err(|e| format!("cargo tree: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo tree {}: {}",
            selection.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(parse(&String::from_utf8_lossy(&output.stdout)))
}

/// Every package a pair of selections builds with different features,
/// named with the pair.
pub fn check() -> Result<Vec<String>, String> {
    let sets = SELECTIONS
        .iter()
        .map(|(name, selection)| Ok((*name, feature_sets(selection)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let mut found = Vec::new();
    for (i, (a_name, a)) in sets.iter().enumerate() {
        for (b_name, b) in &sets[i + 1..] {
            found.extend(
                disagreements(a, b)
                    .into_iter()
                    .map(|d| format!("{a_name} / {b_name}: {d}")),
            );
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_third_party_packages_and_both_builds() {
        let tree = "polymodal v0.1.0 (/w/crates/polymodal)|default\n\
                    syn v3.0.10|full,visit\n\
                    syn v3.0.10|full,visit (*)\n\
                    bitflags v2.13.2|\n\
                    bitflags v2.13.2|serde,std\n";
        let sets = parse(tree);
        assert_eq!(sets.len(), 2);
        assert_eq!(sets["syn v3.0.10"].len(), 1);
        assert_eq!(sets["bitflags v2.13.2"].len(), 2);
    }

    #[test]
    fn a_missing_host_build_agrees_and_a_different_feature_does_not() {
        let with_host = parse("bitflags v2|\nbitflags v2|serde\nsyn v3|fold,full\n");
        let target_only = parse("bitflags v2|serde\nsyn v3|full\n");
        assert_eq!(
            disagreements(&with_host, &target_only),
            vec![r#"syn v3: {"fold,full"} against {"full"}"#.to_string()]
        );
    }

    /// The demo, the benchmarks and the GPU kit build the Burn stack once
    /// between them. Fails with the packages to add to
    /// `crates/polymodal-workspace-hack/Cargo.toml` when a dependency
    /// change splits a feature set again.
    #[test]
    fn feature_sets_agree() {
        let found = check().expect("cargo tree runs");
        assert!(
            found.is_empty(),
            "selections resolve different features (add these to \
             polymodal-workspace-hack):\n{}",
            found.join("\n")
        );
    }
}
