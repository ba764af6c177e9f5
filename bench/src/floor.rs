//! The floor: the least a signed task round trip can cost. Plain blocking std
//! TCP on loopback, a 4-byte length prefix, and the same signatures p2pa makes
//! per task: the request signed by the requester and verified by the worker;
//! the response (the output and the fields a receipt needs: requester, model
//! and input hash) signed by the worker and verified by the requester. Four
//! signature operations, as the job needs. No framework, no event loop, no
//! queues.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use ed25519_compact::{KeyPair, PublicKey, Seed, Signature};

fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    buf.resize(u32::from_le_bytes(len) as usize, 0);
    s.read_exact(buf)
}

fn write_frame(s: &mut TcpStream, out: &mut Vec<u8>, parts: &[&[u8]]) -> std::io::Result<()> {
    out.clear();
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    s.write_all(out)
}

fn sign(k: &KeyPair, msg: &[u8]) -> [u8; 64] {
    *k.sk.sign(msg, None)
}

fn verify(pk: &PublicKey, msg: &[u8], sig: &[u8]) -> bool {
    Signature::from_slice(sig).is_ok_and(|s| pk.verify(msg, &s).is_ok())
}

/// A floor worker on `listener`: verifies each request, answers with the
/// payload and 96 bytes standing in for the requester, model and input hash,
/// signed once.
pub fn serve(listener: TcpListener, client: PublicKey) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let key = KeyPair::from_seed(Seed::new([2; 32]));
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let _ = s.set_nodelay(true);
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        while read_frame(&mut s, &mut buf).is_ok() {
            if buf.len() < 64 {
                break;
            }
            let (payload, sig) = buf.split_at(buf.len() - 64);
            if !verify(&client, payload, sig) {
                break;
            }
            let response = [payload, &[7u8; 96]].concat();
            let rsig = sign(&key, &response);
            if write_frame(&mut s, &mut out, &[&response, &rsig]).is_err() {
                break;
            }
        }
    })
}

/// A connected floor client.
pub struct Client {
    s: TcpStream,
    key: KeyPair,
    server: PublicKey,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Client {
    pub fn connect(addr: std::net::SocketAddr, key: KeyPair) -> Self {
        let s = TcpStream::connect(addr).expect("connect floor");
        s.set_nodelay(true).expect("nodelay");
        let server = KeyPair::from_seed(Seed::new([2; 32])).pk;
        Self {
            s,
            key,
            server,
            buf: Vec::new(),
            out: Vec::new(),
        }
    }

    pub fn send(&mut self, id: u64, input: &[u8]) {
        let payload = [&id.to_le_bytes()[..], input].concat();
        let sig = sign(&self.key, &payload);
        write_frame(&mut self.s, &mut self.out, &[&payload, &sig]).expect("send");
    }

    /// Receives and checks one answer; returns its task id.
    pub fn recv(&mut self) -> u64 {
        read_frame(&mut self.s, &mut self.buf).expect("recv");
        let n = self.buf.len();
        let (response, sig) = self.buf.split_at(n - 64);
        assert!(
            verify(&self.server, response, sig),
            "floor response signature"
        );
        u64::from_le_bytes(response[..8].try_into().expect("id"))
    }

    pub fn round_trip(&mut self, id: u64, input: &[u8]) {
        self.send(id, input);
        assert_eq!(self.recv(), id);
    }
}

/// Starts a floor worker; returns a client connected to it.
pub fn start() -> (Client, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let key = KeyPair::from_seed(Seed::new([1; 32]));
    let server = serve(listener, key.pk);
    (Client::connect(addr, key), server)
}
