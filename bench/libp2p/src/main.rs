//! rust-libp2p doing p2pa's job, measured the way `p2pa-bench rtt` measures
//! p2pa and the floor: a 64-byte echo, the request signed by the requester
//! and verified by the worker, the response (payload and 96 bytes standing
//! for the receipt's fields) signed by the worker and verified by the
//! requester; tcp + noise + yamux + request-response, one connection, the
//! worker in its own process, both on a single-threaded runtime.
//!
//! `p2pa-libp2p-echo bench N` prints one line of `key=value` figures:
//! round trip p50/p99 (µs), CPU per task of both processes (µs), pipelined
//! tasks/s with 32 in flight, and connect + handshake p50 (µs).

use std::io;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ed25519_compact::{KeyPair, PublicKey, Seed, Signature};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{Swarm, SwarmEvent};
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol};

const PROTOCOL: StreamProtocol = StreamProtocol::new("/p2pa-bench/echo/1");
/// Requests in flight in the pipelined figure (as `p2pa-bench rtt`).
const WINDOW: usize = 32;
/// Largest message either side accepts.
const MAX_LEN: u32 = 1 << 20;

#[derive(Clone, Default)]
struct Codec;

async fn read_msg<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len);
    if len > MAX_LEN {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "too long"));
    }
    let mut buf = vec![0u8; len as usize];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_msg<T: AsyncWrite + Unpin + Send>(io: &mut T, msg: &[u8]) -> io::Result<()> {
    let len = u32::try_from(msg.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    io.write_all(&len.to_le_bytes()).await?;
    io.write_all(msg).await
    // request-response closes the stream after this returns.
}

#[async_trait]
impl request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_msg(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_msg(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        write_msg(io, &req).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        write_msg(io, &res).await
    }
}

type Echo = request_response::Behaviour<Codec>;

fn swarm() -> Swarm<Echo> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(|_| {
            let cfg = request_response::Config::default()
                .with_request_timeout(Duration::from_secs(30))
                .with_max_concurrent_streams(WINDOW * 4);
            Echo::with_codec(Codec, [(PROTOCOL, ProtocolSupport::Full)], cfg)
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

fn key(seed: u8) -> KeyPair {
    KeyPair::from_seed(Seed::new([seed; 32]))
}

fn sign(k: &KeyPair, msg: &[u8]) -> Vec<u8> {
    [msg, &k.sk.sign(msg, None)[..]].concat()
}

/// The message of a signed `msg`, if its signature by `pk` holds.
fn open<'a>(pk: &PublicKey, msg: &'a [u8]) -> Option<&'a [u8]> {
    let (body, sig) = msg.split_at_checked(msg.len().checked_sub(64)?)?;
    let sig = Signature::from_slice(sig).ok()?;
    pk.verify(body, &sig).ok().map(|()| body)
}

/// The worker: answers every verified request with the payload and 96 bytes,
/// signed. Prints `LISTEN <addr>` once it listens.
async fn serve() {
    let (me, client) = (key(2), key(1).pk);
    let mut s = swarm();
    s.listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .expect("listen");
    loop {
        match s.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => {
                println!("LISTEN {address}/p2p/{}", s.local_peer_id());
            }
            SwarmEvent::Behaviour(request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) => {
                let Some(payload) = open(&client, &request) else {
                    return;
                };
                let response = sign(&me, &[payload, &[7u8; 96]].concat());
                let _ = s.behaviour_mut().send_response(channel, response);
            }
            _ => {}
        }
    }
}

/// CPU seconds (user + system) of a process, from `/proc/PID/stat`.
fn cpu(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

/// Waits for the next response and checks it; returns the task id.
async fn response(s: &mut Swarm<Echo>, server: &PublicKey) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ev = tokio::time::timeout_at(deadline, s.select_next_some())
            .await
            .expect("a response within 30 s");
        match ev {
            SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            }) => {
                let body = open(server, &response).expect("response signature");
                return u64::from_le_bytes(body[..8].try_into().expect("id"));
            }
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) => {
                panic!("request failed: {error}")
            }
            _ => {}
        }
    }
}

/// Dials `addr` and waits until the connection is up (noise and yamux done).
async fn connect(s: &mut Swarm<Echo>, addr: &Multiaddr) -> PeerId {
    s.dial(addr.clone()).expect("dial");
    loop {
        match s.select_next_some().await {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => return peer_id,
            SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dial: {error}"),
            _ => {}
        }
    }
}

async fn bench(n: usize) {
    let exe = std::env::current_exe().expect("own path");
    let mut child = std::process::Command::new(exe)
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the worker");
    let pid = child.id().to_string();
    let mut line = String::new();
    {
        use std::io::BufRead;
        let out = child.stdout.take().expect("stdout");
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .expect("LISTEN line");
    }
    let addr: Multiaddr = line
        .trim()
        .strip_prefix("LISTEN ")
        .expect("LISTEN line")
        .parse()
        .expect("multiaddr");
    let (me, server) = (key(1), key(2).pk);
    let input = [0x5au8; 64];
    let request = |id: u64| sign(&me, &[&id.to_le_bytes()[..], &input].concat());

    // Connect + handshake, each on a fresh connection.
    let mut connects = Vec::new();
    for _ in 0..50 {
        let mut s = swarm();
        let t = Instant::now();
        connect(&mut s, &addr).await;
        connects.push(t.elapsed().as_secs_f64() * 1e6);
    }
    connects.sort_by(f64::total_cmp);

    let mut s = swarm();
    let peer = connect(&mut s, &addr).await;
    for id in 0..(n / 10).max(10) as u64 {
        s.behaviour_mut().send_request(&peer, request(id));
        assert_eq!(response(&mut s, &server).await, id);
    }
    let cpu0 = cpu("self") + cpu(&pid);
    let mut lat = Vec::with_capacity(n);
    for id in 0..n as u64 {
        let t = Instant::now();
        s.behaviour_mut().send_request(&peer, request(id));
        assert_eq!(response(&mut s, &server).await, id);
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let cpu_us = (cpu("self") + cpu(&pid) - cpu0) / n as f64 * 1e6;
    lat.sort_by(f64::total_cmp);

    let total = n * 4;
    let t = Instant::now();
    let mut sent = 0u64;
    for _ in 0..WINDOW {
        s.behaviour_mut().send_request(&peer, request(sent));
        sent += 1;
    }
    for _ in 0..total {
        response(&mut s, &server).await;
        if (sent as usize) < total {
            s.behaviour_mut().send_request(&peer, request(sent));
            sent += 1;
        }
    }
    let tps = total as f64 / t.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "p50_us={:.1} p99_us={:.1} cpu_us={:.1} tps={:.0} connect_p50_us={:.1}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        cpu_us,
        tps,
        percentile(&connects, 0.5)
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve().await,
        Some("bench") => {
            let n = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(2000);
            bench(n).await;
        }
        _ => eprintln!("usage: p2pa-libp2p-echo bench [N] | serve"),
    }
}
