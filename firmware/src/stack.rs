//! The stack's high-water mark: at start the free stack is painted with a
//! pattern; the lowest word no longer holding it is as deep as the stack
//! has been.

// Reading and writing the free stack through raw pointers, between the
// linker's symbols, is the other place this firmware needs `unsafe`.
#![allow(unsafe_code)]

const PAINT: u32 = 0xA5A5_5A5A;
/// Left unpainted below the stack pointer at the time of painting (the
/// frames of `paint` itself).
const MARGIN: usize = 64;

extern "C" {
    // cortex-m-rt's link.x: the end of .bss/.uninit (the stack may grow down
    // to here) and the top of the stack.
    static __sheap: u32;
    static _stack_start: u32;
}

fn bottom() -> usize {
    // Only the symbol's address is taken, never its value.
    core::ptr::addr_of!(__sheap) as usize
}

fn top() -> usize {
    core::ptr::addr_of!(_stack_start) as usize
}

/// Paints the free stack, from the end of static RAM up to just below the
/// caller's frame. Call it first thing.
pub fn paint() {
    let sp = cortex_m::register::msp::read() as usize;
    let mut addr = (bottom() + 3) & !3;
    while addr + 4 <= sp.saturating_sub(MARGIN) {
        // SAFETY: `addr` is 4-byte aligned and between the end of static
        // RAM and below the live stack: memory no one else uses.
        unsafe { core::ptr::write_volatile(addr as *mut u32, PAINT) };
        addr += 4;
    }
}

/// The most stack used since [`paint`], in bytes.
pub fn high_water() -> usize {
    let mut addr = (bottom() + 3) & !3;
    let top = top();
    while addr < top {
        // SAFETY: aligned, inside RAM, below the top of the stack; reading
        // it disturbs nothing.
        if unsafe { core::ptr::read_volatile(addr as *const u32) } != PAINT {
            break;
        }
        addr += 4;
    }
    top - addr
}

/// Static RAM: .data, .bss and .uninit, in bytes.
pub fn static_ram() -> usize {
    bottom() - 0x2000_0000
}
