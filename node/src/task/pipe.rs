//! The frames between a node and its inference child, over the child's
//! stdin and stdout (the layout is in `child`'s documentation).

use std::io::{self, Read, Write};

use p2pa_protocol::{FailReason, TaskStatus};

use super::Ran;

use super::engine::{EngineInfo, EngineKind};

/// Largest frame either side accepts (a tensor set of 1 GiB and change).
pub const MAX_PIPE_FRAME: usize = (1 << 30) + 64;

pub(super) fn read_frame(r: &mut impl Read) -> io::Result<Vec<u8>> {
    read_frame_max(r, MAX_PIPE_FRAME)
}

/// A frame of at most `max` bytes (and never over [`MAX_PIPE_FRAME`]).
pub(super) fn read_frame_max(r: &mut impl Read, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = usize::try_from(u32::from_le_bytes(len)).unwrap_or(usize::MAX);
    if len > max.min(MAX_PIPE_FRAME) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut buf = Vec::new();
    r.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

pub(super) fn write_frame(w: &mut impl Write, parts: &[&[u8]]) -> io::Result<()> {
    let len = parts
        .iter()
        .map(|p| p.len())
        .fold(0usize, usize::saturating_add);
    let len = u32::try_from(len)
        .ok()
        .filter(|l| usize::try_from(*l).is_ok_and(|l| l <= MAX_PIPE_FRAME))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    w.write_all(&len.to_le_bytes())?;
    for p in parts {
        w.write_all(p)?;
    }
    w.flush()
}

pub(super) fn write_request(
    w: &mut impl Write,
    model: &[u8; 32],
    cpu: u32,
    input: &[u8],
) -> io::Result<()> {
    write_frame(w, &[model, &cpu.to_le_bytes(), input])
}

/// Status bytes of the hello frame.
pub(super) const HELLO_READY: u8 = 2;
pub(super) const HELLO_REFUSED: u8 = 3;

/// The child's first frame: what it runs, or why it cannot.
pub(super) fn parse_hello(f: Vec<u8>) -> io::Result<EngineInfo> {
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    let (status, text) = f.split_first().ok_or_else(|| bad("empty hello".into()))?;
    let text = String::from_utf8_lossy(text);
    match *status {
        HELLO_READY => {
            let mut parts = text.splitn(3, '\t');
            let kind = parts
                .next()
                .and_then(EngineKind::from_name)
                .ok_or_else(|| bad(format!("unknown engine in hello: {text}")))?;
            let version = parts.next().unwrap_or("unknown").to_owned();
            let note = parts.next().filter(|n| !n.is_empty()).map(str::to_owned);
            Ok(EngineInfo {
                kind,
                version,
                note,
            })
        }
        // Unsupported: the child runs, its engine does not (said as it is).
        HELLO_REFUSED => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            text.into_owned(),
        )),
        other => Err(bad(format!("hello with status {other}"))),
    }
}

pub(super) fn hello_frame(info: &EngineInfo) -> Vec<u8> {
    let note = info.note.as_deref().unwrap_or("");
    let mut f = vec![HELLO_READY];
    f.extend_from_slice(format!("{}\t{}\t{note}", info.kind, info.version).as_bytes());
    f
}

/// A reply's first byte: 0 for a completed job, else 1 + the index of its
/// [`FailReason`] in [`FailReason::ALL`].
pub(super) fn reply_code(ran: &Ran) -> u8 {
    let reason = ran.reason.unwrap_or(FailReason::Task);
    match ran.status {
        TaskStatus::Completed => 0,
        _ => FailReason::ALL
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| u8::try_from(i).ok())
            .map_or(1, |i| i.saturating_add(1)),
    }
}

/// A reply frame as a [`Ran`], the output moved out of the frame.
pub(super) fn parse_reply(mut f: Vec<u8>) -> io::Result<Ran> {
    let Some(&code) = f.first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "empty reply"));
    };
    f.drain(..1);
    let reason = usize::from(code)
        .checked_sub(1)
        .map(|i| FailReason::ALL.get(i));
    Ok(match reason {
        None => Ran::completed(f),
        Some(Some(&reason)) => Ran::failed(reason, f),
        Some(None) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unknown reply code",
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        let mut buf = Vec::new();
        write_request(&mut buf, &[7; 32], 5, b"input").unwrap();
        let f = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(&f[..32], &[7; 32]);
        assert_eq!(&f[36..], b"input");
        let mut short = 10u32.to_le_bytes().to_vec();
        short.extend_from_slice(b"abc");
        assert!(read_frame(&mut short.as_slice()).is_err());
        let huge = u32::MAX.to_le_bytes();
        assert!(read_frame(&mut huge.as_slice()).is_err());
        assert!(parse_reply(vec![]).is_err());
        assert_eq!(
            parse_reply(vec![1, b'x']).unwrap(),
            Ran::failed(FailReason::Task, b"x".to_vec())
        );
        for ran in [
            Ran::completed(b"y".to_vec()),
            Ran::failed(FailReason::Worker, b"w".to_vec()),
            Ran::failed(FailReason::OutputOverBudget, b"o".to_vec()),
        ] {
            let frame = [&[reply_code(&ran)][..], &ran.output].concat();
            assert_eq!(parse_reply(frame).unwrap(), ran);
        }
        assert!(parse_reply(vec![99, b'x']).is_err());
        let info = EngineInfo {
            kind: EngineKind::Onnxruntime,
            version: "1.32.0".into(),
            note: Some("/x/libonnxruntime.so".into()),
        };
        assert_eq!(parse_hello(hello_frame(&info)).unwrap(), info);
        let refused = [&[HELLO_REFUSED][..], b"no library"].concat();
        assert_eq!(parse_hello(refused).unwrap_err().to_string(), "no library");
        assert!(parse_hello(vec![0, b'x']).is_err(), "a reply is no hello");
    }
}
