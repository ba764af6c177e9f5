//! The router's stream input: bytes arriving on a connection, decoded into
//! frames, each handed to the sessions part and what it yields routed on.

use std::time::Instant;

use p2pa_protocol::{GoodbyeReason, Intro};

use crate::core::output::bump;
use crate::core::sessions::Step;
use crate::core::stats::{add, BadInput};
use crate::core::{CloseReason, ConnId, Core};

impl Core {
    /// Bytes arrived on a connection (all used; a partial frame is buffered).
    pub fn handle_stream_data(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let _ = self.handle_stream_frames(now, conn, data, usize::MAX);
    }

    /// Like [`handle_stream_data`](Self::handle_stream_data), but stops after
    /// `max_frames` complete frames and returns how many bytes of `data` it
    /// used; the caller feeds the rest later. A shell uses it to send each
    /// result before it decodes the next request, which keeps a pipelined
    /// peer busy (see `FRAMES_PER_TURN` in the shell). Returns `data.len()`
    /// once the connection is gone (the rest is of no use).
    pub fn handle_stream_frames(
        &mut self,
        now: Instant,
        conn: ConnId,
        data: &[u8],
        max_frames: usize,
    ) -> usize {
        let used = self.stream_frames(now, conn, data, max_frames);
        add(&mut self.conn_stats.stream_bytes_in, used);
        used
    }

    fn stream_frames(
        &mut self,
        now: Instant,
        conn: ConnId,
        data: &[u8],
        max_frames: usize,
    ) -> usize {
        let total = data.len();
        let mut data = data;
        let Some(mut decoder) = self.sessions.take_decoder(conn) else {
            return total;
        };
        let mut frames = 0usize;
        while frames < max_frames {
            match decoder.decode(&mut data) {
                Ok(Some(frame)) => {
                    frames = frames.saturating_add(1);
                    if !self.handle_frame(now, conn, frame) {
                        return total; // connection closed; drop its decoder
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.fail(now, conn, CloseReason::Stream(e));
                    return total;
                }
            }
        }
        self.sessions.put_decoder(conn, decoder);
        total.saturating_sub(data.len())
    }

    /// Routes one frame; returns false if the connection was closed.
    fn handle_frame(&mut self, now: Instant, conn: ConnId, frame: &mut [u8]) -> bool {
        let (cfg, worker, blobs) = (&self.cfg, &self.worker, &self.blobs);
        let intro = || Intro {
            listen_port: cfg.listen_port,
            caps: worker.capabilities(blobs),
        };
        let step = self.sessions.read(now, conn, frame, &intro, &mut self.out);
        match step {
            Step::Handled => true,
            Step::Up(up) => self.session_up(now, up),
            Step::Refused(peer) => {
                bump(&mut self.conn_stats.peers_refused);
                self.out.warn_once(
                    BadInput::Refused,
                    format_args!("refused {peer}: not in the allowlist (--trust allowlist)"),
                );
                self.close(now, conn, CloseReason::Sent(GoodbyeReason::NotAllowed));
                false
            }
            Step::Message(peer, message, seal) => self.on_message(now, conn, peer, message, &seal),
            Step::Close(reason) => {
                self.fail(now, conn, reason);
                false
            }
        }
    }
}
