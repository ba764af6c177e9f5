//! `--batch-size`: which queued lines run together as one stacked task,
//! and turning that task's one outcome back into one outcome per line. A
//! model whose outputs do not follow its batch axis is said once and run
//! one line per task from then on.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::Arc;

use p2pa_node::core::{TaskOutcome, TaskRequest};
use p2pa_node::io::{NodeHandle, NodeStopped};
use p2pa_node::protocol::{NodeId, TaskStatus};
use p2pa_node::task::tensor::{self, Tensor};

use super::inputs::{Batched, Item};
use super::stack;

/// Lines to run as one task: the first queued line, and after it up to
/// `max - 1` more whose inputs have the same names, dtypes and shapes. With
/// stacking off or an input that cannot stack, the first line alone.
pub fn next(
    queue: &RefCell<VecDeque<Item>>,
    max: usize,
    on: &Cell<bool>,
) -> Vec<(Item, Vec<Tensor>)> {
    let Some(first) = queue.borrow_mut().pop_front() else {
        return Vec::new();
    };
    let load = |i: &Item| i.load().ok().and_then(|b| tensor::decode(&b).ok());
    let set = if max > 1 && on.get() {
        load(&first)
    } else {
        None
    };
    let Some((sig, _)) = set.as_deref().and_then(stack::rows_of) else {
        return vec![(first, set.unwrap_or_default())];
    };
    let mut group = vec![(first, set.unwrap_or_default())];
    while group.len() < max {
        let next = queue.borrow().front().and_then(load);
        match next {
            Some(s) if stack::rows_of(&s).is_some_and(|(other, _)| other == sig) => {
                if let Some(item) = queue.borrow_mut().pop_front() {
                    group.push((item, s));
                }
            }
            _ => break,
        }
    }
    group
}

/// Runs a group as one stacked task; one outcome per line, each line told
/// where its rows were. If the outputs do not split, says why once, turns
/// stacking off and runs the lines one by one.
pub async fn run(
    h: &NodeHandle,
    group: Vec<(Item, Vec<Tensor>)>,
    request: impl Fn(Vec<u8>, Option<NodeId>) -> TaskRequest,
    on: &Cell<bool>,
) -> Result<Vec<(Item, TaskOutcome)>, NodeStopped> {
    let rows: Vec<usize> = group
        .iter()
        .map(|(_, s)| stack::rows_of(s).map_or(0, |(_, r)| r))
        .collect();
    let sets: Vec<Vec<Tensor>> = group.iter().map(|(_, s)| s.clone()).collect();
    let Some(stacked) = stack::stack(&sets) else {
        return one_by_one(h, group, request).await;
    };
    let o = h.submit(request(tensor::encode(&stacked), None)).await?;
    let parts = match o.status {
        TaskStatus::Completed => match tensor::decode(&o.output)
            .map_err(|e| e.to_string())
            .and_then(|out| stack::split(&out, &rows))
        {
            Ok(parts) => Some(parts),
            Err(why) => {
                if on.replace(false) {
                    eprintln!("--batch-size: the model's outputs do not split along axis 0 ({why}); running one line per task");
                }
                return one_by_one(h, group, request).await;
            }
        },
        _ => None, // a failed task fails each of its lines
    };
    let lines: Vec<usize> = group.iter().map(|(i, _)| i.line).collect();
    let task_output = Arc::new(o.output.clone());
    let mut at = 0usize;
    let mut parts = parts.map(Vec::into_iter);
    Ok(group
        .into_iter()
        .zip(rows)
        .map(|((mut item, _), r)| {
            let mut mine = o.clone();
            if let Some(p) = parts.as_mut().and_then(Iterator::next) {
                mine.output = tensor::encode(&p);
            }
            item.batched = Some(Batched {
                lines: lines.clone(),
                rows: (at, at.saturating_add(r)),
                task_output: task_output.clone(),
            });
            at = at.saturating_add(r);
            (item, mine)
        })
        .collect())
}

async fn one_by_one(
    h: &NodeHandle,
    group: Vec<(Item, Vec<Tensor>)>,
    request: impl Fn(Vec<u8>, Option<NodeId>) -> TaskRequest,
) -> Result<Vec<(Item, TaskOutcome)>, NodeStopped> {
    let mut out = Vec::with_capacity(group.len());
    for (item, set) in group {
        let o = h.submit(request(tensor::encode(&set), None)).await?;
        out.push((item, o));
    }
    Ok(out)
}
