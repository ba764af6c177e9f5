//! Time on the board from SysTick (the core clock, counting down over 24
//! bits), and a link that counts the ticks the worker spends working, not
//! waiting for bytes. Under `qemu-system-arm -icount shift=0` one
//! instruction takes one nanosecond of virtual time, so on the 25 MHz MPS2
//! a tick is 40 instructions: the benchmark's instruction counts.

use cortex_m::peripheral::{syst::SystClkSource, SYST};
use p2pa_tiny::Link;

use crate::uart::Uart;

/// SysTick's counter is 24 bits wide.
const MASK: u32 = 0x00FF_FFFF;

/// SysTick, free-running.
pub struct Clock {
    /// Owned, so nothing else reprograms it.
    _syst: SYST,
}

impl Clock {
    pub fn start(mut syst: SYST) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(MASK);
        syst.clear_current();
        syst.enable_counter();
        Self { _syst: syst }
    }

    /// The counter now (it counts down).
    pub fn now(&self) -> u32 {
        SYST::get_current() & MASK
    }

    /// Ticks from `earlier` to `later` (shorter than one wrap: 0.67 s at
    /// 25 MHz).
    pub fn ticks(earlier: u32, later: u32) -> u32 {
        earlier.wrapping_sub(later) & MASK
    }
}

/// The UART link, counting busy ticks: everything but the waits for a
/// first byte in `read`.
pub struct Metered<'c> {
    pub uart: Uart,
    clock: &'c Clock,
    last: u32,
    /// Ticks spent working since [`Metered::restart`].
    pub busy: u64,
}

impl<'c> Metered<'c> {
    pub fn new(uart: Uart, clock: &'c Clock) -> Self {
        let last = clock.now();
        Self {
            uart,
            clock,
            last,
            busy: 0,
        }
    }

    /// Starts counting afresh, from now.
    pub fn restart(&mut self) {
        self.busy = 0;
        self.last = self.clock.now();
    }

    /// Counts the work done since the last read.
    pub fn settle(&mut self) {
        let now = self.clock.now();
        self.busy += u64::from(Clock::ticks(self.last, now));
        self.last = now;
    }
}

impl Link for Metered<'_> {
    type Error = core::convert::Infallible;

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.settle();
        while !self.uart.readable() {}
        self.last = self.clock.now();
        self.uart.read(buf)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.uart.write_all(bytes)
    }
}
