//! A batch's result line: an item's outcomes (one, or K with redundancy)
//! merged into the journal's JSON, with its tensors, files and stamp.

use std::path::Path;

use p2pa_node::core::TaskOutcome;
use p2pa_node::protocol::TaskStatus;

use super::Item;
use crate::journal::{self, Stamp};
use crate::output;

/// Merges redundant outcomes: the output most workers agree on wins; the
/// others are dissenters. Returns the line's JSON, whether all agreed, and
/// the winning output.
fn merge(outcomes: Vec<TaskOutcome>, body: output::Body) -> (serde_json::Value, bool, Vec<u8>) {
    use p2pa_node::task::tensor::outputs_agree;
    let k = outcomes.len();
    let mut best = 0;
    let mut best_votes = 0;
    for (i, o) in outcomes.iter().enumerate() {
        let votes = outcomes
            .iter()
            .filter(|p| {
                p.status == TaskStatus::Completed
                    && o.status == TaskStatus::Completed
                    && outputs_agree(&p.output, &o.output)
            })
            .count();
        if votes > best_votes {
            best = i;
            best_votes = votes;
        }
    }
    let winner = outcomes.get(best).cloned();
    let id = |o: &TaskOutcome| o.worker.map_or("-".to_owned(), |w| w.to_string());
    // A dissenter completed with another output; a copy that failed is a
    // failure, not a disagreement.
    let dissenters: Vec<String> = outcomes
        .iter()
        .filter(|o| {
            o.status == TaskStatus::Completed
                && !winner.as_ref().is_some_and(|w| {
                    w.status == TaskStatus::Completed && outputs_agree(&o.output, &w.output)
                })
        })
        .map(id)
        .collect();
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.status != TaskStatus::Completed)
        .map(id)
        .collect();
    let agree = dissenters.is_empty();
    // A disagreement writes no files: its output stays in the line.
    let body = match body {
        output::Body::Omit if !agree => output::Body::Raw,
        other => other,
    };
    let mut v = winner
        .as_ref()
        .map_or(serde_json::json!({}), |w| output::outcome_json(w, body));
    let winning_output = winner.map(|w| w.output).unwrap_or_default();
    if k > 1 {
        v["redundancy"] = serde_json::json!({
            "k": k,
            "agree": agree,
            "workers": outcomes.iter().map(id).collect::<Vec<_>>(),
            "dissenters": dissenters,
            "failed": failed,
            "receipts": outcomes.iter().filter_map(|o| o.receipt.as_ref().map(|r| crate::verify::receipt_json(r, &o.output))).collect::<Vec<_>>(),
        });
        if !agree {
            v["status"] = serde_json::json!("disagreement");
        }
    }
    (v, agree, winning_output)
}

/// An item's result line in the journal (`p2pa batch --out`), from its
/// outcomes (one, or K with redundancy): the merged outcome, a stacked
/// task's rows and receipt, the `.npy` files written under `out_dir`, its
/// input line and stamp. Also whether redundant workers agreed, and the
/// (winning) output.
pub fn result_line(
    item: &Item,
    outcomes: Vec<TaskOutcome>,
    infer: bool,
    stamp: Option<&Stamp>,
    out_dir: Option<&Path>,
) -> ResultLine {
    let npy = out_dir.map(|d| d.join(item.line.to_string()));
    let receipt = outcomes.first().and_then(|o| o.receipt);
    let body = match (npy.is_some(), infer) {
        (true, _) => output::Body::Omit,
        (false, true) => output::Body::Deferred,
        (false, false) => output::Body::Raw,
    };
    let (mut v, agree, output) = merge(outcomes, body);
    // Deferred: a winner whose output reads as tensors got no "output"
    // text; those tensors go under "outputs" when the line is written.
    let outputs = (body == output::Body::Deferred
        && v.get("output").is_none()
        && v.get("output_hex").is_none())
    .then(|| p2pa_node::task::tensor::decode(&output).ok())
    .flatten();
    if let Some(b) = &item.batched {
        // The receipt signs the stacked task's result; kept whole, so it
        // verifies as it is (its inline output is the task's).
        v["batched"] = serde_json::json!({"lines": b.lines, "rows": [b.rows.0, b.rows.1]});
        if let Some(r) = &receipt {
            v["receipt"] = crate::verify::receipt_json(r, &b.task_output);
        }
    }
    if let (Some(dir), Some("completed")) = (&npy, v["status"].as_str()) {
        match crate::tensors::write_npy_dir(&output, dir) {
            Ok(files) => v["files"] = serde_json::json!(files),
            Err(e) => v["error"] = serde_json::json!(e),
        }
    }
    v["line"] = serde_json::json!(item.line);
    if let Some(s) = stamp {
        s.write_into(&mut v);
    }
    ResultLine {
        fields: v,
        outputs,
        agree,
        output,
    }
}

/// A result line: its fields, and the output tensors the writer puts under
/// `"outputs"` (kept out of the [`serde_json::Value`]: 100 000 floats as
/// `Value` numbers cost more than writing them).
#[derive(Debug)]
pub struct ResultLine {
    pub fields: serde_json::Value,
    pub outputs: Option<Vec<p2pa_node::task::tensor::Tensor>>,
    /// Whether redundant workers agreed (true without redundancy).
    pub agree: bool,
    /// The (winning) output's bytes.
    pub output: Vec<u8>,
}

impl ResultLine {
    /// The line as the journal stores it, newline included.
    pub fn bytes(&self) -> Vec<u8> {
        journal::line_bytes(&self.fields, self.outputs.as_deref())
    }
}
