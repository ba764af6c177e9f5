//! The CMSDK APB UART of Arm's MPS2 boards, which QEMU's `mps2-an386` wires
//! to its `-serial` options in order: UART0 carries the p2pa link, UART1 a
//! log. Polled, one byte at a time (the device holds one byte each way;
//! QEMU feeds the next received byte only once the last was read, so
//! nothing is lost).

// Register access is the one place this firmware needs `unsafe`: each use
// below says why it is sound.
#![allow(unsafe_code)]

use core::convert::Infallible;

use p2pa_tiny::Link;

/// UART0's registers: the p2pa link.
pub const UART0: usize = 0x4000_4000;
/// UART1's registers: the log.
pub const UART1: usize = 0x4000_5000;

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;
const TX_FULL: u32 = 1 << 0;
const RX_FULL: u32 = 1 << 1;
const TX_EN: u32 = 1 << 0;
const RX_EN: u32 = 1 << 1;
/// The smallest divider the device accepts (QEMU drops bytes below it).
const MIN_BAUDDIV: u32 = 16;

/// One UART, by the address of its registers.
#[derive(Debug)]
pub struct Uart {
    base: usize,
}

impl Uart {
    /// Enables transmit and receive on the UART at `base` ([`UART0`] or
    /// [`UART1`]).
    pub fn new(base: usize) -> Self {
        let u = Self { base };
        u.write_reg(BAUDDIV, MIN_BAUDDIV);
        u.write_reg(CTRL, TX_EN | RX_EN);
        u
    }

    fn read_reg(&self, offset: usize) -> u32 {
        // SAFETY: `base` is one of the UARTs of the MPS2 memory map and
        // `offset` one of its registers: a 4-byte-aligned device address
        // that is always mapped. Volatile, so every read reaches the device.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write_reg(&self, offset: usize, value: u32) {
        // SAFETY: as in `read_reg`; writing DATA, CTRL or BAUDDIV has no
        // effect on memory, only on the device.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// Whether a received byte waits to be read.
    pub fn readable(&self) -> bool {
        self.read_reg(STATE) & RX_FULL != 0
    }

    fn read_byte(&mut self) -> u8 {
        while !self.readable() {}
        (self.read_reg(DATA) & 0xff) as u8
    }

    fn write_byte(&mut self, b: u8) {
        while self.read_reg(STATE) & TX_FULL != 0 {}
        self.write_reg(DATA, u32::from(b));
    }
}

impl Link for Uart {
    type Error = Infallible;

    /// Waits for one byte, then takes what else has arrived (a UART never
    /// says the peer closed: a session ends with its `Goodbye`).
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let mut n = 0;
        for slot in buf.iter_mut() {
            if n > 0 && !self.readable() {
                break;
            }
            *slot = self.read_byte();
            n += 1;
        }
        Ok(n)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Infallible> {
        bytes.iter().for_each(|&b| self.write_byte(b));
        Ok(())
    }
}

impl core::fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        s.bytes().for_each(|b| self.write_byte(b));
        Ok(())
    }
}
