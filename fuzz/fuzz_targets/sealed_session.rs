//! Fuzzes the encrypted side of a connection: handshake messages 1, 2 and 3
//! as the responder and the initiator read them, and sealed records through
//! the stream decoder into a session. Oracle: nothing panics, and nothing
//! but the one genuine message or record is ever accepted (the fuzzer cannot
//! forge a Poly1305 tag or an X25519 exchange).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use p2pa_protocol::*;

struct Fixture {
    a: Identity,
    b: Identity,
    /// The responder after a genuine message 1, and message 3 that completes it.
    resp: AwaitConfirm,
    m3: Vec<u8>,
    /// The initiator after sending message 1, and the genuine message 2.
    init: AwaitAck,
    m2: Vec<u8>,
    /// B's session, and A's first sealed record to it (no prefix).
    sb: Session,
    record: Vec<u8>,
}

const NONE: Known<'static> = &|_, _| false;

fn intro() -> Intro {
    Intro::default()
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let a = Identity::new(Keypair::from_seed([42; 32]));
        let b = Identity::new(Keypair::from_seed([43; 32]));
        let (mut oa, mut ob) = (vec![0u8; 4096], vec![0u8; 4096]);
        let (init, n) = Initiator::new([1; 32], None).write_hello(&a, &mut oa).unwrap();
        let (resp, m) = Responder::new([2; 32])
            .read_hello(&b, &mut oa[LEN_PREFIX_LEN..n], &intro(), &mut ob)
            .unwrap();
        let m2 = ob[LEN_PREFIX_LEN..m].to_vec();
        let confirm = init.clone().read_ack(&a, &mut ob[LEN_PREFIX_LEN..m], NONE).unwrap();
        let (mut sa, _, n) = confirm.confirm(&a, &intro(), &mut oa).unwrap();
        let m3 = oa[LEN_PREFIX_LEN..n].to_vec();
        let (sb, _) = resp.clone().read_confirm(&b, &mut m3.clone(), NONE).unwrap();
        let ping = Message::Ping(Ping { nonce: 7 });
        let n = sa.write(a.keypair(), &ping, &mut oa).unwrap();
        let record = oa[LEN_PREFIX_LEN..n].to_vec();
        Fixture { a, b, resp, m3, init, m2, sb, record }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let mut bytes = rest.to_vec();
    let mut out = vec![0u8; 4096];
    match mode % 5 {
        0 => {
            let _ = Responder::new([3; 32]).read_hello(&f.b, &mut bytes, &intro(), &mut out);
        }
        1 => {
            let ok = f.resp.clone().read_confirm(&f.b, &mut bytes, NONE).is_ok();
            assert!(!ok || rest == f.m3, "a forged message 3 was accepted");
        }
        2 => {
            let ok = f.init.clone().read_ack(&f.a, &mut bytes, NONE).is_ok();
            assert!(!ok || rest == f.m2, "a forged message 2 was accepted");
        }
        3 => {
            // Records from the stream, split as the first byte says.
            let Some((&split, stream)) = rest.split_first() else {
                return;
            };
            let mut dec = StreamDecoder::new(vec![0u8; MAX_RECORD_LEN]);
            let mut s = f.sb.clone();
            for mut piece in stream.chunks(usize::from(split % 64) + 1) {
                loop {
                    match dec.decode(&mut piece) {
                        Ok(Some(record)) => {
                            let genuine = *record == f.record[..] && s.counts().1 == 0;
                            let ok = s.read(record).is_ok();
                            assert!(!ok || genuine, "a forged record was opened");
                        }
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
            }
        }
        _ => {
            // The genuine record with bytes flipped where the input says.
            let mut record = f.record.clone();
            for pair in rest.chunks(2) {
                if let [at, x] = pair {
                    let i = usize::from(*at) % record.len();
                    record[i] ^= *x;
                }
            }
            let changed = record != f.record;
            let ok = f.sb.clone().read(&mut record).is_ok();
            assert!(!ok || !changed, "a changed record was opened");
        }
    }
});
