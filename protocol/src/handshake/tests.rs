//! The handshake against itself, against `snow` (the reference Noise
//! implementation), and against what an attacker on the path can do.
#![allow(clippy::arithmetic_side_effects)]

extern crate std;
use std::vec::Vec;

use super::*;
use crate::codec::encode_frame;
use crate::message::{Message, Ping};
use crate::sign::{Context, Keypair};
use crate::{HandshakeError, SessionError, LEN_PREFIX_LEN};

const BUF: usize = 1024;
const NO_CACHE: Known<'static> = &|_, _| false;

fn intro(port: u16) -> Intro {
    Intro {
        listen_port: port,
        caps: Capabilities::default(),
    }
}

fn id(seed: u8) -> Identity {
    Identity::new(Keypair::from_seed([seed; 32]))
}

/// The message without its length prefix, checking the prefix.
fn msg(buf: &mut [u8], n: usize) -> &mut [u8] {
    let len = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
    assert_eq!(len + LEN_PREFIX_LEN, n);
    &mut buf[LEN_PREFIX_LEN..n]
}

/// The three messages as sent, and both sessions.
struct Run {
    m1: Vec<u8>,
    m2: Vec<u8>,
    m3: Vec<u8>,
    a: Session,
    b: Session,
    theirs_a: Intro,
    theirs_b: Intro,
}

fn run(a: &Identity, b: &Identity, expected: Option<NodeId>) -> Result<Run, HandshakeError> {
    let (mut oa, mut ob) = ([0u8; BUF], [0u8; BUF]);
    let (wait, n) = Initiator::new([1; 32], expected).write_hello(a, &mut oa)?;
    let m1 = oa[LEN_PREFIX_LEN..n].to_vec();
    let (pending, m) =
        Responder::new([2; 32]).read_hello(b, msg(&mut oa, n), &intro(2), &mut ob)?;
    let m2 = ob[LEN_PREFIX_LEN..m].to_vec();
    let confirm = wait.read_ack(a, msg(&mut ob, m), NO_CACHE)?;
    assert_eq!(confirm.peer(), b.node_id());
    let (sa, theirs_b, n) = confirm.confirm(a, &intro(1), &mut oa)?;
    let m3 = oa[LEN_PREFIX_LEN..n].to_vec();
    let (sb, theirs_a) = pending.read_confirm(b, msg(&mut oa, n), NO_CACHE)?;
    Ok(Run {
        m1,
        m2,
        m3,
        a: sa,
        b: sb,
        theirs_a,
        theirs_b,
    })
}

fn ping(n: u64) -> Message<'static> {
    Message::Ping(Ping { nonce: n })
}

/// `from` seals `m`; `to` opens it.
fn exchange(from: &mut Session, key: &Keypair, to: &mut Session, m: &Message<'_>) {
    let mut out = [0u8; BUF];
    let n = from.write(key, m, &mut out).unwrap();
    assert_eq!(to.read(&mut out[LEN_PREFIX_LEN..n]).unwrap(), *m);
}

#[test]
fn both_sides_reach_one_session_and_exchange_frames() {
    let (a, b) = (id(7), id(8));
    let mut r = run(&a, &b, Some(b.node_id())).unwrap();
    assert_eq!(r.a.id(), r.b.id());
    assert_eq!((r.a.peer(), r.b.peer()), (b.node_id(), a.node_id()));
    assert!(r.a.is_initiator() && !r.b.is_initiator());
    assert_eq!((r.theirs_a.listen_port, r.theirs_b.listen_port), (1, 2));
    assert_eq!(r.m1.len(), crate::HELLO_LEN);
    assert_eq!(r.m1[0], crate::PROTOCOL_VERSION);
    exchange(&mut r.a, a.keypair(), &mut r.b, &ping(5));
    exchange(&mut r.b, b.keypair(), &mut r.a, &ping(6));
    exchange(&mut r.a, a.keypair(), &mut r.b, &ping(7));
}

#[test]
fn the_session_id_is_both_ephemeral_keys() {
    let (a, b) = (id(7), id(8));
    let r = run(&a, &b, None).unwrap();
    assert_eq!(r.a.id().initiator, r.m1[1..33]);
    assert_eq!(r.a.id().responder, r.m2[..32]);
}

#[test]
fn a_record_replayed_or_flipped_is_refused_and_changes_nothing() {
    let (a, b) = (id(7), id(8));
    let mut r = run(&a, &b, None).unwrap();
    let mut out = [0u8; BUF];
    let n = r.a.write(a.keypair(), &ping(1), &mut out).unwrap();
    let record = out[LEN_PREFIX_LEN..n].to_vec();
    for i in [0, 1, 20, record.len() - 1] {
        let mut bad = record.clone();
        bad[i] ^= 0x01;
        assert_eq!(
            r.b.read(&mut bad),
            Err(SessionError::Open),
            "bit flipped at {i}"
        );
    }
    assert_eq!(
        r.b.counts().1,
        0,
        "a refused record does not move the counter"
    );
    assert_eq!(r.b.read(&mut record.clone()), Ok(ping(1)));
    assert_eq!(
        r.b.read(&mut record.clone()),
        Err(SessionError::Open),
        "replay"
    );
}

#[test]
fn an_answer_from_another_key_than_expected_fails() {
    let (a, b, c) = (id(7), id(8), id(9));
    assert_eq!(
        run(&a, &b, Some(c.node_id())).err(),
        Some(HandshakeError::WrongPeer {
            expected: c.node_id(),
            got: b.node_id()
        })
    );
}

#[test]
fn a_handshake_with_ourselves_fails() {
    let a = id(7);
    assert_eq!(
        run(&a, &a, None).err(),
        Some(HandshakeError::SelfConnection)
    );
}

#[test]
fn tampered_handshake_messages_fail() {
    let (a, b) = (id(7), id(8));
    let good = run(&a, &b, None).unwrap();
    // Message 1: a changed ephemeral key makes message 2 unreadable for A; a
    // changed pad byte is refused at once.
    let mut m1 = good.m1.clone();
    m1[5] ^= 1;
    let (mut oa, mut ob) = ([0u8; BUF], [0u8; BUF]);
    let (wait, _) = Initiator::new([1; 32], None)
        .write_hello(&a, &mut oa)
        .unwrap();
    let (_, m) = Responder::new([2; 32])
        .read_hello(&b, &mut m1, &intro(2), &mut ob)
        .unwrap();
    assert_eq!(
        wait.read_ack(&a, msg(&mut ob, m), NO_CACHE).err(),
        Some(HandshakeError::Decrypt)
    );
    let mut m1 = good.m1.clone();
    m1[60] ^= 1;
    let r = Responder::new([2; 32]).read_hello(&b, &mut m1, &intro(2), &mut ob);
    assert_eq!(r.err(), Some(HandshakeError::Malformed));
    // Message 2 and 3: any flipped bit fails authentication.
    for at in [0usize, 40, 100] {
        let (wait, _) = Initiator::new([1; 32], None)
            .write_hello(&a, &mut oa)
            .unwrap();
        let mut m2 = good.m2.clone();
        m2[at] ^= 0x80;
        let r = wait.read_ack(&a, &mut m2, NO_CACHE);
        assert!(
            matches!(r, Err(HandshakeError::Decrypt | HandshakeError::WeakKey)),
            "message 2, byte {at}: {:?}",
            r.err()
        );
    }
    for at in [0usize, 50, good.m3.len() - 1] {
        let (pending, _) = Responder::new([2; 32])
            .read_hello(&b, &mut good.m1.clone(), &intro(2), &mut ob)
            .unwrap();
        let mut m3 = good.m3.clone();
        m3[at] ^= 0x80;
        let r = pending.read_confirm(&b, &mut m3, NO_CACHE);
        assert_eq!(
            r.err(),
            Some(HandshakeError::Decrypt),
            "message 3, byte {at}"
        );
    }
}

#[test]
fn a_replayed_message_1_leads_nowhere() {
    // An eavesdropper replays A's message 1 to B: B answers with a fresh
    // ephemeral key, and A's recorded message 3 does not fit that answer.
    let (a, b) = (id(7), id(8));
    let good = run(&a, &b, None).unwrap();
    let mut ob = [0u8; BUF];
    let (pending, _) = Responder::new([3; 32])
        .read_hello(&b, &mut good.m1.clone(), &intro(2), &mut ob)
        .unwrap();
    let r = pending.read_confirm(&b, &mut good.m3.clone(), NO_CACHE);
    assert_eq!(r.err(), Some(HandshakeError::Decrypt));
}

#[test]
fn a_refusal_reaches_the_responder_as_goodbye() {
    let (a, b) = (id(7), id(8));
    let (mut oa, mut ob) = ([0u8; BUF], [0u8; BUF]);
    let (wait, n) = Initiator::new([1; 32], None)
        .write_hello(&a, &mut oa)
        .unwrap();
    let (pending, m) = Responder::new([2; 32])
        .read_hello(&b, msg(&mut oa, n), &intro(2), &mut ob)
        .unwrap();
    let confirm = wait.read_ack(&a, msg(&mut ob, m), NO_CACHE).unwrap();
    let n = confirm
        .refuse(&a, GoodbyeReason::NotAllowed, &mut oa)
        .unwrap();
    assert!(n - LEN_PREFIX_LEN >= crate::MIN_RECORD_LEN);
    assert_eq!(
        pending.read_confirm(&b, msg(&mut oa, n), NO_CACHE).err(),
        Some(HandshakeError::Goodbye(GoodbyeReason::NotAllowed))
    );
}

#[test]
fn a_version_3_hello_is_named_and_answered_with_a_version_notice() {
    let b = id(8);
    // A version-3 Hello: version byte 3, kind 2, then key, sequence, body, signature.
    let mut v3 = [0u8; 140];
    v3[0] = 3;
    v3[1] = 2;
    let mut ob = [0u8; BUF];
    let err = Responder::new([2; 32])
        .read_hello(&b, &mut v3, &intro(2), &mut ob)
        .unwrap_err();
    assert_eq!(err, HandshakeError::Version { got: 3 });
    assert_eq!(
        std::format!("{err}"),
        "peer speaks wire version 3, this node 7: upgrade it"
    );
    let n = version_notice(&mut ob).unwrap();
    assert_eq!(n, LEN_PREFIX_LEN + 106);
    assert_eq!(&ob[..5], &[106, 0, 0, 0, crate::PROTOCOL_VERSION]);
}

#[test]
fn network_keys_must_match() {
    let (a, b) = (id(7), id(8));
    let (ak, bk) = (
        a.clone().with_network_key([5; 32]),
        b.clone().with_network_key([5; 32]),
    );
    let mut r = run(&ak, &bk, None).unwrap();
    assert_eq!(r.m1.len(), crate::HELLO_LEN + 16);
    exchange(&mut r.a, a.keypair(), &mut r.b, &ping(1));
    let other = b.clone().with_network_key([6; 32]);
    assert_eq!(run(&ak, &other, None).err(), Some(HandshakeError::Decrypt));
    assert_eq!(
        run(&ak, &b, None).err(),
        Some(HandshakeError::NetworkKey { ours: false })
    );
    assert_eq!(
        run(&a, &bk, None).err(),
        Some(HandshakeError::NetworkKey { ours: true })
    );
}

#[test]
fn a_known_certificate_is_not_checked_again() {
    let (a, b) = (id(7), id(8));
    let (mut oa, mut ob) = ([0u8; BUF], [0u8; BUF]);
    let seen = core::cell::Cell::new(0);
    let known = |node: NodeId, statik: &[u8; 32]| {
        seen.set(seen.get() + 1);
        node == b.node_id() && statik == b.static_key()
    };
    let (wait, n) = Initiator::new([1; 32], None)
        .write_hello(&a, &mut oa)
        .unwrap();
    let (_, m) = Responder::new([2; 32])
        .read_hello(&b, msg(&mut oa, n), &intro(2), &mut ob)
        .unwrap();
    wait.read_ack(&a, msg(&mut ob, m), &known).unwrap();
    assert_eq!(seen.get(), 1);
}

#[test]
fn the_states_fit_a_microcontroller() {
    use core::mem::size_of;
    assert!(size_of::<Initiator>() <= 65);
    assert!(size_of::<Responder>() <= 32);
    assert!(size_of::<AwaitAck>() <= 216);
    assert!(
        size_of::<AwaitConfirm>() <= 248,
        "{}",
        size_of::<AwaitConfirm>()
    );
    // Its capabilities: 8 model hashes and their run times.
    assert!(size_of::<Confirm>() <= 600, "{}", size_of::<Confirm>());
    assert!(size_of::<Session>() <= 248);
}

// ---- against snow -------------------------------------------------------

fn params(psk: bool) -> snow::params::NoiseParams {
    let name = if psk {
        "Noise_XXpsk0_25519_ChaChaPoly_SHA256"
    } else {
        "Noise_XX_25519_ChaChaPoly_SHA256"
    };
    name.parse().unwrap()
}

fn encode(p: &Payload) -> Vec<u8> {
    let mut buf = [0u8; BUF];
    postcard::to_slice(p, &mut buf).unwrap().to_vec()
}

fn payload_of(who: &Identity, port: u16) -> Vec<u8> {
    encode(&intro_payload(who, &intro(port), Transport::ChaChaPoly))
}

#[test]
fn our_initiator_completes_a_handshake_with_snow_and_talks_in_session() {
    for psk in [false, true] {
        let (a, b) = (id(7), id(8));
        let (a, b) = if psk {
            (a.with_network_key([9; 32]), b.with_network_key([9; 32]))
        } else {
            (a, b)
        };
        let secret = b.statik.secret();
        let mut builder = snow::Builder::new(params(psk))
            .local_private_key(&secret)
            .unwrap()
            .prologue(PROLOGUE)
            .unwrap();
        if psk {
            builder = builder.psk(0, &[9; 32]).unwrap();
        }
        let mut snow_b = builder.build_responder().unwrap();
        let mut oa = [0u8; BUF];
        let (wait, n) = Initiator::new([1; 32], Some(b.node_id()))
            .write_hello(&a, &mut oa)
            .unwrap();
        let (mut buf, mut pay) = ([0u8; BUF], [0u8; BUF]);
        let p = snow_b
            .read_message(&oa[LEN_PREFIX_LEN + 1..n], &mut pay)
            .unwrap();
        assert_eq!(
            &pay[..p],
            &[0u8; 73][..],
            "message 1's payload: the zero pad"
        );
        let m = snow_b.write_message(&payload_of(&b, 2), &mut buf).unwrap();
        let confirm = wait.read_ack(&a, &mut buf[..m], NO_CACHE).unwrap();
        let (mut sa, theirs, n) = confirm.confirm(&a, &intro(1), &mut oa).unwrap();
        assert_eq!(theirs.listen_port, 2);
        let p = snow_b
            .read_message(&oa[LEN_PREFIX_LEN..n], &mut pay)
            .unwrap();
        assert_eq!(&pay[..p], &payload_of(&a, 1)[..]);
        assert_eq!(snow_b.get_remote_static().unwrap(), a.static_key());
        let mut tb = snow_b.into_transport_mode().unwrap();
        // Our record opens in snow: flags 0, then the signed frame.
        let n = sa.write(a.keypair(), &ping(3), &mut oa).unwrap();
        let p = tb.read_message(&oa[LEN_PREFIX_LEN..n], &mut pay).unwrap();
        assert_eq!(pay[0], 0);
        let v = crate::verify_frame(&pay[1..p], Context::Session(sa.id())).unwrap();
        assert_eq!(v.into_message(), ping(3));
        // And snow's record of a signed frame opens in our session.
        let mut plain = [0u8; BUF];
        let f = encode_frame(
            b.keypair(),
            Context::Session(sa.id()),
            0,
            &ping(4),
            &mut plain[1..],
        )
        .unwrap();
        let m = tb.write_message(&plain[..=f], &mut buf).unwrap();
        assert_eq!(sa.read(&mut buf[..m]), Ok(ping(4)));
    }
}

#[test]
fn snow_as_initiator_completes_a_handshake_with_our_responder() {
    let (a, b) = (id(7), id(8));
    let secret = a.statik.secret();
    let mut snow_a = snow::Builder::new(params(false))
        .local_private_key(&secret)
        .unwrap()
        .prologue(PROLOGUE)
        .unwrap()
        .build_initiator()
        .unwrap();
    let (mut buf, mut ob, mut pay) = ([0u8; BUF], [0u8; BUF], [0u8; BUF]);
    buf[0] = crate::PROTOCOL_VERSION;
    let m = snow_a.write_message(&[0u8; 73], &mut buf[1..]).unwrap();
    let (pending, n) = Responder::new([2; 32])
        .read_hello(&b, &mut buf[..=m], &intro(2), &mut ob)
        .unwrap();
    let p = snow_a
        .read_message(&ob[LEN_PREFIX_LEN..n], &mut pay)
        .unwrap();
    assert_eq!(&pay[..p], &payload_of(&b, 2)[..]);
    let m = snow_a.write_message(&payload_of(&a, 1), &mut buf).unwrap();
    let (mut sb, theirs) = pending.read_confirm(&b, &mut buf[..m], NO_CACHE).unwrap();
    assert_eq!((sb.peer(), theirs.listen_port), (a.node_id(), 1));
    let mut ta = snow_a.into_transport_mode().unwrap();
    let n = sb.write(b.keypair(), &ping(8), &mut ob).unwrap();
    let p = ta.read_message(&ob[LEN_PREFIX_LEN..n], &mut pay).unwrap();
    let v = crate::verify_frame(&pay[1..p], Context::Session(sb.id())).unwrap();
    assert_eq!(v.into_message(), ping(8));
}

/// `a` dials a snow responder holding `b`'s static key, which answers with
/// `answer` as its payload: what `a` makes of message 2.
fn snow_answers(a: &Identity, b: &Identity, answer: &Payload) -> Option<HandshakeError> {
    let secret = b.statik.secret();
    let mut snow_b = snow::Builder::new(params(false))
        .local_private_key(&secret)
        .unwrap()
        .prologue(PROLOGUE)
        .unwrap()
        .build_responder()
        .unwrap();
    let mut oa = [0u8; BUF];
    let (wait, n) = Initiator::new([1; 32], None)
        .write_hello(a, &mut oa)
        .unwrap();
    let (mut buf, mut pay) = ([0u8; BUF], [0u8; BUF]);
    snow_b
        .read_message(&oa[LEN_PREFIX_LEN + 1..n], &mut pay)
        .unwrap();
    let m = snow_b.write_message(&encode(answer), &mut buf).unwrap();
    wait.read_ack(a, &mut buf[..m], NO_CACHE).err()
}

#[test]
fn a_certificate_by_another_key_is_refused() {
    // A responder proves static key S in Noise but presents node C's id with
    // B's certificate: the certificate does not bind S to C.
    let (a, b, c) = (id(7), id(8), id(9));
    let forged = Payload::Intro {
        node: c.node_id(),
        cert: b.cert,
        listen_port: 2,
        caps: Capabilities::default(),
        transport: 0,
    };
    assert_eq!(
        snow_answers(&a, &b, &forged),
        Some(HandshakeError::BadCertificate {
            claimed: c.node_id()
        })
    );
}

// ---- the session's transport ------------------------------------------

/// What each side offers decides the session's AEAD: AES-256-GCM only when
/// both offer it, ChaChaPoly otherwise; the offer is byte 0 of message 1's
/// padding. Frames pass either way.
#[cfg(feature = "aes-gcm")]
#[test]
fn the_transport_is_aes_gcm_only_when_both_sides_offer_it() {
    let (a, b) = (id(7), id(8));
    for (offer_a, offer_b) in [(false, false), (true, false), (false, true), (true, true)] {
        let (ia, ib) = (
            a.clone().with_aes_gcm(offer_a),
            b.clone().with_aes_gcm(offer_b),
        );
        let mut r = run(&ia, &ib, None).unwrap();
        let want = if offer_a && offer_b {
            Transport::AesGcm
        } else {
            Transport::ChaChaPoly
        };
        assert_eq!((r.a.transport(), r.b.transport()), (want, want));
        assert_eq!(r.m1[33], u8::from(offer_a), "the offer byte");
        exchange(&mut r.a, a.keypair(), &mut r.b, &ping(1));
        exchange(&mut r.b, b.keypair(), &mut r.a, &ping(2));
    }
    // With a network key the offer travels encrypted, and still counts.
    let (ka, kb) = (
        a.clone().with_network_key([5; 32]).with_aes_gcm(true),
        b.clone().with_network_key([5; 32]).with_aes_gcm(true),
    );
    let mut r = run(&ka, &kb, None).unwrap();
    assert_eq!(r.a.transport(), Transport::AesGcm);
    exchange(&mut r.a, a.keypair(), &mut r.b, &ping(3));
}

/// A path attacker who clears the offer (to force ChaChaPoly) or sets it
/// changes the handshake hash: the initiator cannot open message 2.
#[cfg(feature = "aes-gcm")]
#[test]
fn a_changed_offer_fails_the_handshake() {
    for offer in [false, true] {
        let (a, b) = (id(7).with_aes_gcm(offer), id(8).with_aes_gcm(true));
        let (mut oa, mut ob) = ([0u8; BUF], [0u8; BUF]);
        let (wait, n) = Initiator::new([1; 32], None)
            .write_hello(&a, &mut oa)
            .unwrap();
        oa[LEN_PREFIX_LEN + 33] ^= 1;
        let (_, m) = Responder::new([2; 32])
            .read_hello(&b, msg(&mut oa, n), &intro(2), &mut ob)
            .unwrap();
        assert_eq!(
            wait.read_ack(&a, msg(&mut ob, m), NO_CACHE).err(),
            Some(HandshakeError::Decrypt)
        );
    }
}

/// Offer bits this version does not know, or a non-zero reserved byte, are
/// refused as malformed.
#[test]
fn unknown_offer_bits_are_refused() {
    let (a, b) = (id(7), id(8));
    for (at, bit) in [(33, 2u8), (33, 0x80), (34, 1), (105, 1)] {
        let (mut oa, mut ob) = ([0u8; BUF], [0u8; BUF]);
        let (_, n) = Initiator::new([1; 32], None)
            .write_hello(&a, &mut oa)
            .unwrap();
        oa[LEN_PREFIX_LEN + at] |= bit;
        assert_eq!(
            Responder::new([2; 32])
                .read_hello(&b, msg(&mut oa, n), &intro(2), &mut ob)
                .err(),
            Some(HandshakeError::Malformed),
            "byte {at} bit {bit:#x}"
        );
    }
}

/// A responder (here snow, writing its own payload) that answers with
/// AES-256-GCM the initiator never offered, or with an unknown transport,
/// is refused: the choice must be one that was offered.
#[test]
fn a_transport_that_was_not_offered_is_refused() {
    for transport in [Transport::AesGcm.byte(), 9] {
        let (a, b) = (id(7), id(8));
        let answer = Payload::Intro {
            node: b.node_id(),
            cert: b.cert,
            listen_port: 2,
            caps: Capabilities::default(),
            transport,
        };
        assert_eq!(
            snow_answers(&a, &b, &answer),
            Some(HandshakeError::Malformed),
            "transport {transport}"
        );
    }
}
