//! Determinism: the same pair run several times (`cargo xtask test --repeat
//! N`) must give the same normalized outcome every time. A pair whose
//! outcomes differ is a flake, reported with the fields that differ and
//! what each run gave, so the fix goes into the normalization or the probe
//! rather than into a looser snapshot.

use std::collections::BTreeMap;

use crate::verdict::CaseRun;

/// One pair whose runs did not agree.
#[derive(Debug, Clone, PartialEq)]
pub struct Flake {
    pub case: String,
    pub kernel: String,
    /// Each differing field (a path into the outcome such as
    /// `steps[1].observation.direct_map`, or `verdict`) with the value each
    /// run gave, in run order (`<absent>` where a run had no such field).
    pub fields: Vec<(String, Vec<String>)>,
}

impl std::fmt::Display for Flake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} on {}:", self.case, self.kernel)?;
        for (field, values) in &self.fields {
            writeln!(f, "    {field}:")?;
            for (i, v) in values.iter().enumerate() {
                writeln!(f, "        run {}: {v}", i + 1)?;
            }
        }
        Ok(())
    }
}

/// What a run is compared by: its verdict and every leaf of its normalized
/// outcome (or, for a run that produced none, the reason it did not).
fn fields_of(run: &CaseRun) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("verdict".to_string(), run.verdict.label().to_string());
    match &run.outcome {
        Some(o) => match serde_json::to_value(o) {
            Ok(v) => flatten("", &v, &mut out),
            Err(e) => {
                out.insert("outcome".into(), format!("<not serializable: {e}>"));
            }
        },
        None => {
            out.insert(
                "error".into(),
                run.reason.clone().unwrap_or_else(|| "<none>".into()),
            );
        }
    }
    out
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    use serde_json::Value;
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                flatten(&join(k), v, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, v) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        leaf => {
            out.insert(prefix.to_string(), leaf.to_string());
        }
    }
}

/// Compares the rounds of a repeated run (each round: every pair once) and
/// returns the pairs whose outcomes differ, in the order of the first round.
pub fn find(rounds: &[Vec<CaseRun>]) -> Vec<Flake> {
    let Some(first) = rounds.first() else {
        return vec![];
    };
    let mut flakes = Vec::new();
    for run in first {
        let runs: Vec<&CaseRun> = rounds
            .iter()
            .filter_map(|r| {
                r.iter()
                    .find(|x| x.case == run.case && x.kernel == run.kernel)
            })
            .collect();
        let fields: Vec<BTreeMap<String, String>> = runs.iter().map(|r| fields_of(r)).collect();
        let mut names: Vec<&String> = fields.iter().flat_map(|f| f.keys()).collect();
        names.sort();
        names.dedup();
        let differing: Vec<(String, Vec<String>)> = names
            .into_iter()
            .filter_map(|n| {
                let values: Vec<String> = fields
                    .iter()
                    .map(|f| f.get(n).cloned().unwrap_or_else(|| "<absent>".into()))
                    .collect();
                values
                    .iter()
                    .any(|v| *v != values[0])
                    .then(|| (n.clone(), values))
            })
            .collect();
        if !differing.is_empty() || runs.len() != rounds.len() {
            let mut fields = differing;
            if runs.len() != rounds.len() {
                fields.push((
                    "runs".into(),
                    vec![format!("{} of {} rounds ran it", runs.len(), rounds.len())],
                ));
            }
            flakes.push(Flake {
                case: run.case.clone(),
                kernel: run.kernel.clone(),
                fields,
            });
        }
    }
    flakes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{End, Outcome, StepOutcome};
    use crate::verdict::Verdict;

    fn run(case: &str, observation: serde_json::Value, verdict: Verdict) -> CaseRun {
        CaseRun {
            outcome: Some(Outcome {
                case: case.into(),
                kernel: "k".into(),
                end: End::Completed,
                steps: vec![StepOutcome {
                    name: "s".into(),
                    probe: "p".into(),
                    result: "exited 0".into(),
                    observation: Some(observation),
                }],
                crashes: vec![],
                dmesg: vec![],
                guest_errors: vec![],
            }),
            ..CaseRun::for_test(case, verdict)
        }
    }

    #[test]
    fn equal_rounds_have_no_flake() {
        let obs = serde_json::json!({"a": 1, "b": [1, 2]});
        let r = vec![
            vec![run("c", obs.clone(), Verdict::Pass)],
            vec![run("c", obs.clone(), Verdict::Pass)],
            vec![run("c", obs, Verdict::Pass)],
        ];
        assert_eq!(find(&r), vec![]);
    }

    #[test]
    fn a_differing_leaf_is_named_with_every_runs_value() {
        let r = vec![
            vec![run(
                "c",
                serde_json::json!({"a": 1, "b": [1, 2]}),
                Verdict::Pass,
            )],
            vec![run(
                "c",
                serde_json::json!({"a": 1, "b": [1, 3]}),
                Verdict::Mismatch,
            )],
        ];
        let f = find(&r);
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].fields,
            vec![
                (
                    "steps[0].observation.b[1]".to_string(),
                    vec!["2".to_string(), "3".to_string()]
                ),
                (
                    "verdict".to_string(),
                    vec!["pass".to_string(), "FAIL (snapshot)".to_string()]
                ),
            ]
        );
        let text = f[0].to_string();
        assert!(
            text.contains("c on k:") && text.contains("run 2: 3"),
            "{text}"
        );
    }

    #[test]
    fn a_field_missing_in_one_run_is_a_difference() {
        let r = vec![
            vec![run("c", serde_json::json!({"a": 1}), Verdict::Pass)],
            vec![run(
                "c",
                serde_json::json!({"a": 1, "extra": true}),
                Verdict::Pass,
            )],
        ];
        let f = find(&r);
        assert_eq!(
            f[0].fields,
            vec![(
                "steps[0].observation.extra".to_string(),
                vec!["<absent>".to_string(), "true".to_string()]
            )]
        );
    }

    #[test]
    fn an_error_run_is_compared_by_its_reason() {
        let mut e = run("c", serde_json::json!({}), Verdict::Error);
        e.outcome = None;
        e.reason = Some("QEMU failed".into());
        let r = vec![
            vec![run("c", serde_json::json!({}), Verdict::Pass)],
            vec![e],
        ];
        let f = find(&r);
        let names: Vec<&str> = f[0].fields.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            names.contains(&"verdict") && names.contains(&"error"),
            "{names:?}"
        );
    }
}
