//! p2pa's firmware worker: `p2pa-tiny` on a Cortex-M4, serving echo and hash
//! tasks to the real `p2pa` CLI over a UART, each result a signed receipt.
//! Built for QEMU's `mps2-an386` (Cortex-M4, CMSDK UARTs):
//!
//! ```sh
//! qemu-system-arm -machine mps2-an386 -nographic \
//!     -serial tcp:127.0.0.1:7430,server,nowait -serial stdio \
//!     -kernel target/thumbv7em-none-eabihf/release/p2pa-firmware
//! p2pa submit --peer 127.0.0.1:7430 --kind hash --input hello
//! ```
//!
//! UART0 (the first `-serial`) carries the link, UART1 (the second) a log:
//! the node id at boot, then a line per session (tasks, work in SysTick
//! ticks, stack high-water mark).
//!
//! Keys and nonces: the Ed25519 seed is in flash, from a file at build time
//! (`build.rs`). The board has no random source, so each handshake's nonce
//! is SHA-256 over a domain string, the seed, a session counter and the
//! SysTick count when the peer's first byte arrived (host timing under
//! QEMU). The counter restarts at boot, so nonces may repeat across boots
//! if the arrival times do: a real board should take its nonces from its
//! hardware random generator (the STM32F4's RNG peripheral, say) or keep the
//! counter in flash.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::fmt::Write;

use cortex_m_rt::entry;
use p2pa_protocol::{Identity, Keypair};
use p2pa_tiny::{Buffers, Worker};

mod clock;
mod stack;
mod uart;

include!(concat!(env!("OUT_DIR"), "/seed.rs"));

/// The largest frame received and sent: 1 KiB each, which holds a
/// requester's handshake and a task whose input or output is up to about
/// 900 bytes (a larger offer ends the session with a frame-too-large
/// error). The host-side `p2pa-tiny` default is 2 KiB each.
type Frames = Buffers<1024, 1024>;

/// A fresh ephemeral secret for a handshake (see the crate's notes on keys
/// and nonces): secret because the seed is.
fn nonce(counter: u64, arrival: u32) -> [u8; 32] {
    let mut h = hmac_sha256::Hash::new();
    h.update(b"p2pa firmware ephemeral v2");
    h.update(SEED);
    h.update(counter.to_le_bytes());
    h.update(arrival.to_le_bytes());
    h.finalize()
}

/// Stops for good (a panic, or no key).
fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    halt()
}

#[entry]
fn main() -> ! {
    stack::paint();
    let Some(cp) = cortex_m::Peripherals::take() else {
        halt()
    };
    let clock = clock::Clock::start(cp.SYST);
    let mut log = uart::Uart::new(uart::UART1);
    let Some(key) = Keypair::try_from_seed(SEED) else {
        let _ = writeln!(log, "p2pa firmware: the seed in flash is no key");
        halt()
    };
    let _ = writeln!(
        log,
        "p2pa firmware: node {} (static RAM {} bytes)",
        key.node_id(),
        stack::static_ram()
    );
    // The handshake identity: the static X25519 key and its certificate,
    // made once at boot (one base multiplication, one signature).
    let id = Identity::new(key);
    let worker = Worker::new(&id, 0);
    // The frame buffers live in static RAM (on the stack the value would
    // also be copied while it is built).
    let Some(bufs) = cortex_m::singleton!(: Frames = Buffers::default()) else {
        halt()
    };
    let mut link = clock::Metered::new(uart::Uart::new(uart::UART0), &clock);
    let mut session = 0u64;
    loop {
        // The peer's first byte starts a session (and times its nonce).
        while !link.uart.readable() {}
        let arrival = clock.now();
        session = session.wrapping_add(1);
        link.restart();
        let served = worker.serve(&mut link, nonce(session, arrival), bufs);
        link.settle();
        match served {
            Ok(s) => {
                let _ = writeln!(
                    log,
                    "session {session}: {} completed, {} refused, busy {} ticks, stack {} bytes",
                    s.completed,
                    s.rejected,
                    link.busy,
                    stack::high_water()
                );
            }
            Err(e) => {
                let _ = writeln!(log, "session {session} failed: {e}");
            }
        }
    }
}
