//! The verifier on a Cortex-M4, measured.
//!
//! Runs under QEMU's `mps2-an386` (see `run.sh`). It follows the chain in
//! `fixture.bin` (made by `chain/tests/verifier.rs` from the real chain
//! core) header by header, skips across it in one step, checks a
//! transaction's inclusion and a state proof, and prints over semihosting
//! what it used: peak stack (by painting the stack before and looking for
//! the high-water mark after) and peak heap (by counting in the allocator).
//! Flash is read off the ELF by `run.sh`.
//!
//! A wrong result exits with a failure status, so the run is a test too.

#![no_std]
#![no_main]

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use embedded_alloc::LlffHeap;
use itc_verify::{Software, Verifier};

static FIXTURE: &[u8] = include_bytes!("../fixture.bin");

/// The heap the verifier may use. A bulb's budget is 32 KiB of RAM in all.
const HEAP_SIZE: usize = 8 * 1024;

/// An allocator that remembers its peak.
struct Counting {
    heap: LlffHeap,
    used: AtomicUsize,
    peak: AtomicUsize,
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = self.heap.alloc(layout);
        if !ptr.is_null() {
            let used = self.used.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            self.peak.fetch_max(used, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.heap.dealloc(ptr, layout);
        self.used.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static HEAP: Counting = Counting {
    heap: LlffHeap::empty(),
    used: AtomicUsize::new(0),
    peak: AtomicUsize::new(0),
};

const PAINT: u32 = 0xC0DE_F00D;
/// How much of the stack below the current frame is painted and watched.
const WATCHED: usize = 64 * 1024;

extern "C" {
    static _stack_start: u32;
}

/// Paints `WATCHED` bytes below the current stack pointer.
fn paint_stack() -> usize {
    let sp = cortex_m::register::msp::read() as usize;
    let bottom = sp - WATCHED;
    let mut at = bottom;
    // Leave the live frame (and a margin) alone.
    while at < sp - 256 {
        // SAFETY: the addresses lie in RAM below the live stack, which
        // nothing else uses (the heap and statics are far below).
        unsafe { core::ptr::write_volatile(at as *mut u32, PAINT) };
        at += 4;
    }
    bottom
}

/// The deepest point the stack reached since `paint_stack`, in bytes below
/// the stack's top.
fn stack_high_water(bottom: usize) -> usize {
    let mut at = bottom;
    // SAFETY: reads of the painted region only.
    while unsafe { core::ptr::read_volatile(at as *const u32) } == PAINT {
        at += 4;
    }
    let top = core::ptr::addr_of!(_stack_start) as usize;
    top - at
}

/// The fixture's length-prefixed records.
fn records(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    core::iter::from_fn(move || {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let (record, rest) = rest.split_at_checked(len)?;
        bytes = rest;
        Some(record)
    })
}

fn fail(what: &str) -> ! {
    hprintln!("FAIL: {}", what);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}

/// Everything the device checks. Returns the number of headers followed.
#[inline(never)]
fn verify_all() -> Result<usize, itc_verify::VerifyError> {
    let mut it = records(FIXTURE);
    let mut next = || it.next().unwrap_or(&[]);
    let (genesis, set) = (next(), next());
    let tx_id: [u8; 32] = next().try_into().unwrap_or([0; 32]);
    let (tx_proof, state_proof) = (next(), next());

    let mut device = Verifier::<Software>::new(genesis, set)?;
    let mut first = None;
    let mut last = None;
    loop {
        let (header, cert) = (next(), next());
        if header.is_empty() {
            break;
        }
        device.verify_next(header, cert, None)?;
        first.get_or_insert_with(|| device.tip().header.clone());
        last = Some((header, cert));
    }
    let followed = device.tip().header.height as usize;

    // The transaction is in block 1; the state proof is at the tip.
    let block1 = first.ok_or(itc_verify::VerifyError::NotNext { expected: 1, found: 0 })?;
    let proof = itc_verify::wire::InclusionProof::decode(tx_proof)?;
    itc_verify::client::verify_tx::<Software>(&block1, &tx_id, &proof)?;
    let entry = device.verify_state(state_proof)?;
    if entry.value.is_none() {
        fail("the account should be present");
    }

    // A second device, from genesis straight to the tip.
    let (header, cert) = last.unwrap_or((&[], &[]));
    let mut skipper = Verifier::<Software>::new(genesis, set)?;
    let now = device.tip().header.time_ms;
    skipper.verify_skipping(header, cert, None, now, 3_600_000)?;
    if skipper.tip().hash != device.tip().hash {
        fail("skipping reached another tip");
    }

    // And a forgery: the tip's certificate on a header with one byte
    // changed is refused.
    let mut forged = [0u8; 512];
    let forged = &mut forged[..header.len()];
    forged.copy_from_slice(header);
    forged[20] ^= 1;
    let mut fresh = Verifier::<Software>::new(genesis, set)?;
    if fresh.verify_skipping(forged, cert, None, now, 3_600_000).is_ok() {
        fail("a forged header was accepted");
    }
    Ok(followed)
}

#[entry]
fn main() -> ! {
    static mut ARENA: [u8; HEAP_SIZE] = [0; HEAP_SIZE];
    // SAFETY: `ARENA` is handed to the allocator once, here, before any
    // allocation (cortex-m-rt gives `main`'s `static mut` exclusively).
    unsafe { HEAP.heap.init(core::ptr::addr_of_mut!(*ARENA) as usize, HEAP_SIZE) };

    let bottom = paint_stack();
    let followed = match verify_all() {
        Ok(n) => n,
        Err(e) => {
            hprintln!("FAIL: {}", e);
            debug::exit(debug::EXIT_FAILURE);
            loop {}
        }
    };
    let stack = stack_high_water(bottom);
    hprintln!("headers followed: {}", followed);
    hprintln!("peak stack: {} bytes", stack);
    hprintln!("peak heap: {} bytes", HEAP.peak.load(Ordering::Relaxed));
    hprintln!("fixture: {} bytes", FIXTURE.len());
    hprintln!("OK");
    debug::exit(debug::EXIT_SUCCESS);
    loop {}
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("PANIC: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}
