//! A node on the caller's thread (`NodeHandle::start_local`), pipelined
//! requests on one connection, and a node whose stdout went away.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use p2pa_node::core::{PeerState, TaskRequest};
use p2pa_node::io::{NodeEvent, NodeHandle};
use p2pa_node::protocol::{Keypair, KindSet, TaskKind, TaskStatus};
use p2pa_tests::{loopback_options, unique_port};

fn echo(input: Vec<u8>) -> TaskRequest {
    TaskRequest {
        kind: TaskKind::Echo,
        input: input.into(),
        model: None,
        timeout: Duration::from_secs(10),
        peer: None,
        needs: 0,
    }
}

#[test]
fn a_node_on_the_callers_thread_serves_many_pipelined_requests_and_persists_between_calls() {
    let port = unique_port();
    let mut w = loopback_options(port);
    w.multicast = None;
    w.core.kinds = KindSet::default().with(TaskKind::Echo);
    let worker = NodeHandle::start(Keypair::from_seed([1; 32]), w).unwrap();
    let mut r = loopback_options(port);
    r.multicast = None;
    r.core.kinds = KindSet::default();
    r.core.workers = 0;
    r.core.bootstrap = vec![worker.local_addr()];
    let (h, mut node) = NodeHandle::start_local(Keypair::from_seed([2; 32]), r).unwrap();

    // Nothing runs between block_on calls; the handshake happens inside.
    let up = node.block_on(async {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            let peers = h.peers().await.unwrap();
            if peers.iter().any(|p| p.state != PeerState::Known) {
                return true;
            }
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
        false
    });
    assert!(up, "the local requester never connected");

    // 200 requests in flight at once on one connection: the worker's reads
    // carry many frames, which the shell hands to the core one at a time.
    let n = 200u32;
    let outcomes = node.block_on(async {
        let ex = async_executor::LocalExecutor::new();
        ex.run(async {
            let tasks: Vec<_> = (0..n)
                .map(|i| ex.spawn(h.submit(echo(format!("item {i}").into_bytes()))))
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
        .await
    });
    assert_eq!(outcomes.len(), n as usize);
    let mut ids = std::collections::BTreeSet::new();
    for (i, o) in outcomes.iter().enumerate() {
        assert_eq!(o.status, TaskStatus::Completed, "{o:?}");
        assert_eq!(o.output, format!("item {i}").into_bytes(), "task {i}");
        assert!(ids.insert(o.task_id), "task id {} twice", o.task_id);
    }

    // A later call finds the node and its session where they were.
    let again = node.block_on(h.submit(echo(b"again".to_vec()))).unwrap();
    assert_eq!(again.status, TaskStatus::Completed);
    assert_eq!(again.output, b"again");

    // Each outcome went to its submit alone: none waits in the event queue
    // (which a batch never reads), so no output is held there.
    let mut events = 0;
    while let Ok(ev) = h.events().try_recv() {
        assert!(
            !matches!(ev, NodeEvent::TaskDone(_)),
            "a submitted task's outcome was queued as an event too"
        );
        events += 1;
    }
    assert!(
        events > 0,
        "the node told nothing at all (not even its peer)"
    );

    node.block_on(h.shutdown());
    async_io::block_on(worker.shutdown());
}

#[test]
fn a_node_whose_stdout_is_closed_keeps_serving() {
    let port = unique_port();
    let dir = p2pa_tests::scratch("stdout-closed");
    let mut child = std::process::Command::new(p2pa_tests::bin())
        .args(p2pa_tests::local_net(port))
        .arg("--data-dir")
        .arg(&dir)
        .args(["node", "--listen", "127.0.0.1:0"])
        .env_remove("P2PA_DATA_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    {
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    } // the read end is closed here: every later line gets EPIPE
      // "node 1a2b3c4d listening on 127.0.0.1:PORT (id …)"
    let addr = first
        .split_whitespace()
        .skip_while(|w| *w != "on")
        .nth(1)
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    // Each requester that connects makes the node print a line into the
    // closed pipe ("connected …", "lost …").
    for i in 0..3 {
        let input = format!("still here {i}");
        let o = p2pa_tests::p2pa_local(
            port,
            &[
                "submit", "--kind", "echo", "--input", &input, "--peer", &addr, "--json",
            ],
            Duration::from_secs(20),
        );
        assert!(o.status.success(), "{}", p2pa_tests::stderr(&o));
        let v: serde_json::Value = serde_json::from_str(p2pa_tests::stdout(&o).trim()).unwrap();
        assert_eq!(v["status"], "completed");
        assert_eq!(v["output"], input.as_str());
    }
    assert!(child.try_wait().unwrap().is_none(), "the node exited");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_submit_given_up_withdraws_its_task_and_the_worker_stops_it() {
    let port = unique_port();
    let mut w = loopback_options(port);
    w.multicast = None;
    w.core.kinds = KindSet::default().with(TaskKind::Sleep);
    let worker = NodeHandle::start(Keypair::from_seed([5; 32]), w).unwrap();
    let mut r = loopback_options(port);
    r.multicast = None;
    r.core.kinds = KindSet::default();
    r.core.workers = 0;
    r.core.bootstrap = vec![worker.local_addr()];
    let requester = NodeHandle::start(Keypair::from_seed([6; 32]), r).unwrap();
    let ready = async_io::block_on(requester.wait_for_workers(
        Some(TaskKind::Sleep),
        0,
        1,
        Duration::from_secs(10),
    ));
    assert_eq!(ready.len(), 1, "the worker never connected");
    let sleep = TaskRequest {
        kind: TaskKind::Sleep,
        input: b"20000".to_vec().into(),
        model: None,
        timeout: Duration::from_secs(30),
        peer: None,
        needs: 0,
    };
    // The caller waits 500 ms, then gives up (drops the future).
    let gave_up = async_io::block_on(futures_lite::future::or(
        async { Some(requester.submit(sleep).await) },
        async {
            async_io::Timer::after(Duration::from_millis(500)).await;
            None
        },
    ));
    assert!(gave_up.is_none(), "a 20 s sleep finished in 500 ms");
    // The worker ran it, and is told to stop it long before its 20 s.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let work = async_io::block_on(worker.work()).unwrap();
        if work.failed == 1 && work.running == 0 {
            assert_eq!(work.completed, 0, "{work:?}");
            break;
        }
        assert!(
            Instant::now() < end,
            "the withdrawn task still runs: {work:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    async_io::block_on(requester.shutdown());
    async_io::block_on(worker.shutdown());
}

#[test]
fn work_handed_to_the_nodes_thread_runs_there_and_ends_with_the_node() {
    let mut o = loopback_options(unique_port());
    o.multicast = None;
    let node = std::sync::Arc::new(NodeHandle::start(Keypair::from_seed([7; 32]), o).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let h = node.clone();
    assert!(node.run_on_node(move || {
        Box::pin(async move {
            let peers = h.peers().await.map(|p| p.len());
            let here = std::thread::current().name().map(str::to_owned);
            tx.send((here, peers)).unwrap();
        })
    }));
    let (thread, peers) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(thread.as_deref(), Some("p2pa-node"));
    assert_eq!(peers, Ok(0));
    async_io::block_on(node.stop());
    // A node that stopped takes no more work (once its thread has ended).
    let end = Instant::now() + Duration::from_secs(5);
    while node.run_on_node(|| Box::pin(async {})) {
        assert!(Instant::now() < end, "a stopped node still takes work");
        std::thread::sleep(Duration::from_millis(10));
    }
    // One started with start_local has no thread of its own to lend.
    let mut o = loopback_options(unique_port());
    o.multicast = None;
    let (local, _node) = NodeHandle::start_local(Keypair::from_seed([8; 32]), o).unwrap();
    assert!(!local.run_on_node(|| Box::pin(async {})));
}

#[test]
fn settling_waits_for_every_worker_it_has_heard_of_and_not_for_requesters() {
    let port = unique_port();
    let worker = |seed: u8| {
        let mut w = loopback_options(port);
        w.core.kinds = KindSet::default().with(TaskKind::Echo);
        NodeHandle::start(Keypair::from_seed([seed; 32]), w).unwrap()
    };
    let requester = |seed: u8| {
        let mut r = loopback_options(port);
        r.core.kinds = KindSet::default();
        r.core.workers = 0;
        NodeHandle::start(Keypair::from_seed([seed; 32]), r).unwrap()
    };
    let (a, b) = (worker(21), worker(22));
    let other = requester(23);
    let me = requester(24);
    let first = async_io::block_on(me.wait_for_workers(
        Some(TaskKind::Echo),
        0,
        1,
        Duration::from_secs(10),
    ));
    assert!(!first.is_empty(), "no worker found in 10 s");
    let settled =
        async_io::block_on(me.settle_workers(Some(TaskKind::Echo), 0, Duration::from_secs(10)));
    let mut got: Vec<_> = settled.iter().map(|p| p.id).collect();
    got.sort();
    let mut want = vec![a.id(), b.id()];
    want.sort();
    assert_eq!(
        got, want,
        "the settled pool is both workers and nothing else"
    );
    for h in [me, other, a, b] {
        async_io::block_on(h.shutdown());
    }
}
