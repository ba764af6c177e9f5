//! `--batch-size`: which queued lines run together as one stacked task,
//! and turning that task's one outcome back into one outcome per line. A
//! model whose outputs do not follow its batch axis is said once and run
//! one line per task from then on.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::Arc;

use p2pa_node::core::{Hashed, TaskOutcome, TaskRequest};
use p2pa_node::io::{NodeHandle, NodeStopped};
use p2pa_node::protocol::{NodeId, TaskStatus};
use p2pa_node::task::tensor::{self, Tensor};

use super::stack;
use crate::inputs::{Batched, Item};

/// Lines to run as one task: the first queued line, and after it up to
/// `max - 1` more whose inputs have the same names, dtypes and shapes. With
/// stacking off or an input that cannot stack, the first line alone. Each
/// input is read once: a line looked at and left stays in the queue with
/// its input in memory, for the task that takes it next.
pub fn next(
    queue: &RefCell<VecDeque<Item>>,
    max: usize,
    on: &Cell<bool>,
) -> Vec<(Item, Vec<Tensor>)> {
    let Some(first) = queue.borrow_mut().pop_front() else {
        return Vec::new();
    };
    if max <= 1 || !on.get() {
        return vec![(first, Vec::new())];
    }
    let (first, set) = decoded(first);
    let Some((sig, _)) = stack::rows_of(&set) else {
        return vec![(first, set)];
    };
    let mut group = vec![(first, set)];
    while group.len() < max {
        let Some(item) = queue.borrow_mut().pop_front() else {
            break;
        };
        let (item, s) = decoded(item);
        if stack::rows_of(&s).is_some_and(|(other, _)| other == sig) {
            group.push((item, s));
        } else {
            queue.borrow_mut().push_front(item);
            break;
        }
    }
    group
}

/// The item with its input read (kept in memory from now on) and decoded;
/// an item whose input cannot be read is left as it was (it runs alone, and
/// fails with the reason).
fn decoded(mut item: Item) -> (Item, Vec<Tensor>) {
    let Ok(bytes) = item.load() else {
        return (item, Vec::new());
    };
    let set = tensor::decode(bytes.bytes()).unwrap_or_default();
    item.hold(bytes);
    (item, set)
}

/// Runs a group as one stacked task; one outcome per line, each line told
/// where its rows were. If the outputs do not split, says why once, turns
/// stacking off and runs the lines one by one.
pub async fn run(
    h: &NodeHandle,
    group: Vec<(Item, Vec<Tensor>)>,
    request: impl Fn(Hashed, Option<NodeId>) -> TaskRequest,
    on: &Cell<bool>,
) -> Result<Vec<(Item, TaskOutcome)>, NodeStopped> {
    let rows: Vec<usize> = group
        .iter()
        .map(|(_, s)| stack::rows_of(s).map_or(0, |(_, r)| r))
        .collect();
    let sets: Vec<&[Tensor]> = group.iter().map(|(_, s)| s.as_slice()).collect();
    let Some(stacked) = stack::stack(&sets) else {
        return one_by_one(h, group, request).await;
    };
    let o = h
        .submit(request(tensor::encode(&stacked).into(), None))
        .await?;
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
    request: impl Fn(Hashed, Option<NodeId>) -> TaskRequest,
) -> Result<Vec<(Item, TaskOutcome)>, NodeStopped> {
    let mut out = Vec::with_capacity(group.len());
    for (mut item, _) in group {
        // decoded() kept each input in memory: load() only hands it over.
        let input = item.load().unwrap_or_default();
        let o = h.submit(request(input, None)).await?;
        out.push((item, o));
    }
    Ok(out)
}
