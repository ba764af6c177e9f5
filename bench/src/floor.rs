//! The floor: the least a signed, encrypted task round trip can cost. Plain
//! blocking std TCP on loopback, a 4-byte length prefix, the same signatures
//! p2pa makes per task (the request signed by the requester and verified by
//! the worker; the response, with the fields a receipt needs: requester,
//! model and input hash, signed by the worker and verified by the
//! requester: four signature operations, as the job needs), and each frame
//! sealed with the AEAD two p2pa nodes on this machine agree on (AES-256-GCM
//! where the CPU has AES in hardware, else ChaCha20-Poly1305:
//! [`crate::harness::aes`]) under
//! a per-direction key and counter, as a session's are. No framework, no event loop, no queues, no handshake.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use ed25519_compact::{KeyPair, PublicKey, Seed, Signature};

/// The AEAD a session between two nodes of this machine would use.
enum Aead {
    ChaCha(ChaCha20Poly1305),
    Aes(Box<ring::aead::LessSafeKey>),
}

/// One direction's AEAD key and counter.
pub struct Seal {
    aead: Aead,
    n: u64,
}

impl Seal {
    pub fn new(key: [u8; 32]) -> Self {
        let aead = if crate::harness::aes() {
            let key = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key).expect("key");
            Aead::Aes(Box::new(ring::aead::LessSafeKey::new(key)))
        } else {
            Aead::ChaCha(ChaCha20Poly1305::new(&key.into()))
        };
        Self { aead, n: 0 }
    }

    fn nonce(&mut self) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        match self.aead {
            Aead::ChaCha(_) => nonce[4..].copy_from_slice(&self.n.to_le_bytes()),
            Aead::Aes(_) => nonce[4..].copy_from_slice(&self.n.to_be_bytes()),
        }
        self.n += 1;
        nonce
    }

    /// Encrypts `buf` in place; returns the tag.
    pub fn seal(&mut self, buf: &mut [u8]) -> [u8; 16] {
        let nonce = self.nonce();
        match &self.aead {
            Aead::ChaCha(a) => a
                .encrypt_inout_detached(&nonce.into(), &[], buf.into())
                .expect("seal")
                .into(),
            Aead::Aes(k) => {
                let nonce = ring::aead::Nonce::assume_unique_for_key(nonce);
                let tag = k
                    .seal_in_place_separate_tag(nonce, ring::aead::Aad::empty(), buf)
                    .expect("seal");
                tag.as_ref().try_into().expect("16-byte tag")
            }
        }
    }

    /// Decrypts `buf` in place if `tag` authenticates it.
    pub fn open(&mut self, buf: &mut [u8], tag: &[u8]) -> bool {
        let nonce = self.nonce();
        let Ok(tag) = <[u8; 16]>::try_from(tag) else {
            return false;
        };
        match &self.aead {
            Aead::ChaCha(a) => a
                .decrypt_inout_detached(&nonce.into(), &[], buf.into(), &tag.into())
                .is_ok(),
            Aead::Aes(k) => {
                let nonce = ring::aead::Nonce::assume_unique_for_key(nonce);
                let aad = ring::aead::Aad::empty();
                k.open_in_place_separate_tag(nonce, aad, tag.into(), buf, 0..)
                    .is_ok()
            }
        }
    }
}

fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>, rx: &mut Seal) -> std::io::Result<()> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    buf.resize(u32::from_le_bytes(len) as usize, 0);
    s.read_exact(buf)?;
    let n = buf.len().saturating_sub(16);
    let (text, tag) = buf.split_at_mut(n);
    if !rx.open(text, tag) {
        return Err(std::io::Error::other("floor frame did not open"));
    }
    buf.truncate(n);
    Ok(())
}

fn write_frame(
    s: &mut TcpStream,
    out: &mut Vec<u8>,
    parts: &[&[u8]],
    tx: &mut Seal,
) -> std::io::Result<()> {
    out.clear();
    let len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + 16;
    out.extend_from_slice(&(len as u32).to_le_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    let tag = tx.seal(&mut out[4..]);
    out.extend_from_slice(&tag);
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
        let (mut rx, mut tx) = (Seal::new([5; 32]), Seal::new([6; 32]));
        while read_frame(&mut s, &mut buf, &mut rx).is_ok() {
            if buf.len() < 64 {
                break;
            }
            let (payload, sig) = buf.split_at(buf.len() - 64);
            if !verify(&client, payload, sig) {
                break;
            }
            let response = [payload, &[7u8; 96]].concat();
            let rsig = sign(&key, &response);
            if write_frame(&mut s, &mut out, &[&response, &rsig], &mut tx).is_err() {
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
    tx: Seal,
    rx: Seal,
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
            tx: Seal::new([5; 32]),
            rx: Seal::new([6; 32]),
        }
    }

    pub fn send(&mut self, id: u64, input: &[u8]) {
        let payload = [&id.to_le_bytes()[..], input].concat();
        let sig = sign(&self.key, &payload);
        write_frame(&mut self.s, &mut self.out, &[&payload, &sig], &mut self.tx).expect("send");
    }

    /// Receives and checks one answer; returns its task id.
    pub fn recv(&mut self) -> u64 {
        read_frame(&mut self.s, &mut self.buf, &mut self.rx).expect("recv");
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

/// What a task's bytes cost in the wire's own cryptography, the least any
/// requester and worker pay whatever else they do: `input` bytes sealed at
/// the requester and opened at the worker, `output` bytes sealed at the
/// worker and opened at the requester (the sessions' AEAD over 32 KiB
/// records, as sessions carry blob chunks), and each side's SHA-256 of both
/// (the receipt signs their hashes, so each end hashes what it sends and
/// what it receives). Both ends on this thread, one after the other: ms of
/// CPU per task (the AEAD, the hashing), the medians of `rounds`.
pub fn crypto_floor_ms(input: usize, output: usize, rounds: usize) -> (f64, f64) {
    const RECORD: usize = 32 * 1024;
    fn carry(tx: &mut Seal, rx: &mut Seal, bytes: &mut [u8]) {
        for c in bytes.chunks_mut(RECORD) {
            let tag = tx.seal(c);
            assert!(rx.open(c, &tag), "crypto floor: a record opens");
        }
    }
    fn hash_both_ends(bytes: &[u8]) {
        std::hint::black_box(p2pa_node::core::sha256(bytes));
        std::hint::black_box(p2pa_node::core::sha256(bytes));
    }
    let mut a: Vec<u8> = (0..input).map(|i| (i * 131 % 251) as u8).collect();
    let mut b: Vec<u8> = (0..output).map(|i| (i * 137 % 241) as u8).collect();
    let (mut tx, mut rx) = (Seal::new([1; 32]), Seal::new([1; 32]));
    let (mut tx2, mut rx2) = (Seal::new([2; 32]), Seal::new([2; 32]));
    let (mut aead, mut hash) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        let t = std::time::Instant::now();
        carry(&mut tx, &mut rx, &mut a);
        carry(&mut tx2, &mut rx2, &mut b);
        aead.push(t.elapsed().as_secs_f64() * 1e3);
        let t = std::time::Instant::now();
        hash_both_ends(&a);
        hash_both_ends(&b);
        hash.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (
        crate::harness::median(&mut aead),
        crate::harness::median(&mut hash),
    )
}

/// What a task's bytes cost to move on one machine, the least any requester
/// and worker pay besides the cryptography: the input file read, `input`
/// bytes over loopback TCP one way and `output` bytes back (the sending
/// and the receiving end: on loopback the kernel does both in the
/// sender's call), both through a pipe to and from the process that runs
/// the model (untrusted work runs out of the node's process), and the
/// output written to a file. One thread, 64 KiB writes each read back at
/// once, buffers reused: ms of CPU per task for TCP, the pipes and the
/// files, the medians of `rounds`.
pub fn copy_floor_ms(input: usize, output: usize, rounds: usize) -> (f64, f64, f64) {
    const CHUNK: usize = 64 * 1024;
    fn through(w: &mut impl Write, r: &mut impl Read, bytes: &[u8], back: &mut [u8]) {
        for c in bytes.chunks(CHUNK) {
            w.write_all(c).expect("copy floor: write");
            r.read_exact(&mut back[..c.len()])
                .expect("copy floor: read");
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    let (mut pr, mut pw) = std::io::pipe().expect("pipe");
    let (mut cr, mut cw) = std::io::pipe().expect("pipe");
    let dir = std::env::temp_dir().join(format!("p2pa-copy-floor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (inf, outf) = (dir.join("input.npy"), dir.join("output.npy"));
    let a: Vec<u8> = (0..input).map(|i| (i * 131 % 251) as u8).collect();
    let b: Vec<u8> = (0..output).map(|i| (i * 137 % 241) as u8).collect();
    std::fs::write(&inf, &a).expect("input file");
    let mut back = vec![0u8; CHUNK];
    let mut read = Vec::with_capacity(input);
    let (mut tcp, mut pipe, mut file) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        let t = std::time::Instant::now();
        through(&mut client, &mut server, &a, &mut back);
        through(&mut server, &mut client, &b, &mut back);
        tcp.push(t.elapsed().as_secs_f64() * 1e3);
        let t = std::time::Instant::now();
        through(&mut pw, &mut pr, &a, &mut back);
        through(&mut cw, &mut cr, &b, &mut back);
        pipe.push(t.elapsed().as_secs_f64() * 1e3);
        let t = std::time::Instant::now();
        read.clear();
        std::fs::File::open(&inf)
            .and_then(|mut f| f.read_to_end(&mut read))
            .expect("read the input file");
        std::fs::write(&outf, &b).expect("write the output file");
        file.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let _ = std::fs::remove_dir_all(&dir);
    (
        crate::harness::median(&mut tcp),
        crate::harness::median(&mut pipe),
        crate::harness::median(&mut file),
    )
}
