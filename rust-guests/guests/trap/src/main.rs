//! `trap MODE [ARG]`: misbehaves on purpose so a host can test how it copes.
//!
//! * `panic`          - `panic!` (message on stderr, then the abort traps)
//! * `unreachable`    - executes the wasm `unreachable` instruction
//! * `stack-overflow` - unbounded recursion
//! * `loop`           - busy loop forever, never calls the host
//! * `sleep-loop`     - loops forever calling `sleep(10 ms)`
//! * `compute MS`     - busy-computes for about MS ms, prints `computed`, exits 0
//! * `grow MIB`       - grows linear memory by MIB MiB in 1 MiB steps, prints
//!                      `grew N MiB` (and `memory.grow failed after N MiB` if a
//!                      step failed), exits 0
use std::io::Write;
use std::process::exit;
use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!(
        "usage: trap panic|unreachable|stack-overflow|loop|sleep-loop|compute MS|grow MIB"
    );
    exit(2);
}

fn number_arg(args: &[String]) -> u64 {
    match args.get(2).map(|a| a.parse::<u64>()) {
        Some(Ok(n)) => n,
        _ => usage(),
    }
}

static mut SINK: u64 = 0;

/// Unbounded recursion that exhausts the engine's *wasm* call stack (so the
/// host sees a stack-overflow trap, not a shadow-stack memory fault): no
/// locals live in linear memory, and the volatile accesses around the call
/// keep the optimiser from removing it or turning it into a loop.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let step = unsafe { std::ptr::read_volatile(&SINK) } | 1;
    let below = recurse(depth.wrapping_add(step));
    unsafe { std::ptr::write_volatile(&mut SINK, below) };
    below ^ depth
}

fn busy_loop() -> ! {
    let mut counter: u64 = 0;
    loop {
        unsafe {
            let v = std::ptr::read_volatile(&counter);
            std::ptr::write_volatile(&mut counter, v.wrapping_add(1));
        }
    }
}

fn compute(ms: u64) {
    let limit = Duration::from_millis(ms);
    let start = Instant::now();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    loop {
        for _ in 0..100_000 {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        unsafe { std::ptr::write_volatile(&mut x, x) };
        if start.elapsed() >= limit {
            break;
        }
    }
    println!("computed");
}

fn grow(mib: u64) {
    let mut grown: u64 = 0;
    let mut failed = false;
    while grown < mib {
        // 16 pages of 64 KiB = 1 MiB
        if core::arch::wasm32::memory_grow(0, 16) == usize::MAX {
            failed = true;
            break;
        }
        grown += 1;
    }
    println!("grew {} MiB", grown);
    if failed {
        println!("memory.grow failed after {} MiB", grown);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = match args.get(1) {
        Some(m) => m.as_str(),
        None => usage(),
    };
    match mode {
        "panic" => panic!("guest panicked on purpose"),
        "unreachable" => core::arch::wasm32::unreachable(),
        "stack-overflow" => {
            let r = recurse(0);
            println!("unexpectedly returned {}", r);
        }
        "loop" => busy_loop(),
        "sleep-loop" => loop {
            std::thread::sleep(Duration::from_millis(10));
        },
        "compute" => compute(number_arg(&args)),
        "grow" => grow(number_arg(&args)),
        _ => usage(),
    }
    let _ = std::io::stdout().flush();
}
