//! One of a batch's `--concurrency` feeders: takes the next line (or stack
//! of lines) off the shared queue, holds back while too many input bytes
//! are in flight, runs it (once, on K workers for `--redundancy K`, or
//! stacked for `--batch-size`) and sends each line's outcomes on.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::time::Duration;

use p2pa_node::core::{Hashed, TaskOutcome, TaskRequest};
use p2pa_node::io::{NodeHandle, NodeStopped};
use p2pa_node::protocol::NodeId;

use super::{group, Item, Plan};

/// Input bytes a batch holds in flight at most (one task always).
const MAX_INPUT_IN_FLIGHT: usize = 256 << 20;

/// Runs one item: once, or on `redundancy` distinct workers.
async fn run_item(
    h: &NodeHandle,
    plan: &Plan,
    item: &mut Item,
    request: impl Fn(Hashed, Option<NodeId>) -> TaskRequest,
) -> Result<Vec<TaskOutcome>, p2pa_node::io::NodeStopped> {
    let input = match item.load() {
        Ok(input) => input,
        Err(e) => {
            log::error!("line {}: {e}", item.line);
            Hashed::default() // fails on the worker, with the reason
        }
    };
    if plan.redundancy <= 1 {
        return h.submit(request(input, None)).await.map(|o| vec![o]);
    }
    // K copies on K distinct workers, rotating with the line.
    let copies: Vec<_> = (0..plan.redundancy)
        .map(|k| {
            let peer = plan
                .peers
                .get((item.line + k) % plan.peers.len().max(1))
                .copied();
            Box::pin(h.submit(request(input.clone(), peer)))
        })
        .collect();
    join_all(copies).await.into_iter().collect()
}

/// Polls all `futures` at once; their outputs in order.
async fn join_all<F: std::future::Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match std::pin::Pin::new(f).poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Feeds lines from `queue` until it is empty or the node stops.
pub async fn worker(
    h: &NodeHandle,
    plan: &Plan,
    queue: &RefCell<VecDeque<Item>>,
    request: &impl Fn(Hashed, Option<NodeId>) -> TaskRequest,
    in_flight: &Cell<usize>,
    stacking: &Cell<bool>,
    tx: async_channel::Sender<(Item, Vec<TaskOutcome>)>,
) -> Result<(), NodeStopped> {
    loop {
        let group = group::next(queue, plan.batch_size, stacking);
        if group.is_empty() {
            return Ok(());
        }
        // Large inputs: at most MAX_INPUT_IN_FLIGHT bytes of them held at
        // once (one task always), whatever --concurrency.
        let size = group
            .iter()
            .map(|(i, _)| i.size())
            .fold(0, usize::saturating_add);
        while in_flight.get() > 0 && in_flight.get().saturating_add(size) > MAX_INPUT_IN_FLIGHT {
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
        in_flight.set(in_flight.get().saturating_add(size));
        let results = if group.len() > 1 {
            group::run(h, group, request, stacking)
                .await
                .map(|r| r.into_iter().map(|(i, o)| (i, vec![o])).collect())
        } else {
            let mut one = Vec::new();
            for (mut item, _) in group {
                match run_item(h, plan, &mut item, request).await {
                    Ok(o) => one.push((item, o)),
                    Err(e) => {
                        in_flight.set(in_flight.get().saturating_sub(size));
                        return Err(e);
                    }
                }
            }
            Ok(one)
        };
        in_flight.set(in_flight.get().saturating_sub(size));
        for r in results? {
            if tx.send(r).await.is_err() {
                return Ok(());
            }
        }
    }
}
