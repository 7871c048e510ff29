//! Every SPEC rule is traceable: a test named after it (`as_20_...`,
//! `se_6_...`, anywhere in a test's name), or an entry in [`NOT_OFFERED`]
//! with the reason. The rule ids are those of `../shared/SPEC.md`; a copy
//! of the list is kept here for checkouts without it, and checked against
//! it where it is present.

use std::path::Path;

use crate::common::root;

/// The rule ids of SPEC.md, in order.
const RULES: &[&str] = &[
    "SO-1", "SO-2", "SO-3", "SO-4", "SO-5", "SO-6", "SO-7", "SO-8", "SO-9", "SE-1", "SE-2", "SE-3",
    "SE-4", "SE-5", "SE-6", "SE-7", "SE-8", "SE-9", "SE-10", "SE-11", "JL-1", "JL-2", "JL-3",
    "JL-4", "JL-5", "JL-6", "JL-7", "JL-8", "JL-9", "JL-10", "AS-1", "AS-2", "AS-3", "AS-4",
    "AS-5", "AS-6", "AS-7", "AS-8", "AS-9", "AS-10", "AS-11", "AS-12", "AS-13", "AS-14", "AS-15",
    "AS-16", "AS-17", "AS-18", "AS-19", "AS-20", "AS-21", "AS-22", "AS-23", "AS-24", "AS-25",
    "AS-26",
];

/// The rules wasp does not offer yet, and why.
const NOT_OFFERED: &[(&str, &str)] = &[(
    "JL-10",
    "WSPSelect is not part of the interface; join completion is reported by WSPAsyncSelect (JL-5)",
)];

/// The names of every function in the Rust files below `dir`.
fn function_names(dir: &Path, names: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            function_names(&path, names);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            names.extend(text.split("fn ").skip(1).map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            }));
        }
    }
}

/// Whether `name` is named after `rule` (`as_1_...` but not `as_10_...`).
fn named_after(name: &str, rule: &str) -> bool {
    let token = format!("{}_", rule.to_lowercase().replace('-', "_"));
    name.match_indices(&token)
        .any(|(at, _)| at == 0 || name.as_bytes()[at - 1] == b'_')
}

#[test]
fn the_rule_list_is_spec_md_s() {
    let spec = root().parent().unwrap().join("shared/SPEC.md");
    let Ok(text) = std::fs::read_to_string(&spec) else {
        eprintln!(
            "{} is not in this checkout: the copy here is used",
            spec.display()
        );
        return;
    };
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("- ")?.split_whitespace().next())
        .filter(|id| {
            ["SO-", "SE-", "JL-", "AS-"]
                .iter()
                .any(|p| id.starts_with(p))
        })
        .collect();
    assert_eq!(ids, RULES, "the rule ids of {}", spec.display());
}

#[test]
fn every_spec_rule_has_a_test_or_a_reason() {
    let mut names = Vec::new();
    for dir in ["tests/host", "tests/hostile", "host/src"] {
        function_names(&root().join(dir), &mut names);
    }
    let mut missing = Vec::new();
    for rule in RULES {
        let tested = names.iter().any(|n| named_after(n, rule));
        let reason = NOT_OFFERED.iter().find(|(id, _)| id == rule);
        match (tested, reason) {
            (false, None) => missing.push(*rule),
            (true, Some(_)) => {
                panic!("{rule} has a test: take it off the list of rules not offered")
            }
            _ => {}
        }
    }
    assert!(
        missing.is_empty(),
        "rules with neither a test nor a reason: {missing:?}"
    );
    assert!(named_after("jl_1_jl_3_x", "JL-3") && !named_after("as_10_x", "AS-1"));
}
