//! Helpers shared by the integration tests that start `itc-gateway`
//! processes.

use std::sync::atomic::{AtomicU16, Ordering};

/// The kernel hands out ephemeral ports (outgoing connections' local
/// ports, and `bind(…:0)`) from `ip_local_port_range`, 32768–60999 by
/// default. A port found free there and released for a child process to
/// bind can be taken meanwhile by any outgoing connection, a gateway's own
/// dial to a peer included (seen in CI: "binding the API address …: Address
/// already in use"). Ports below the range are never handed out that way.
const FIRST: u16 = 20_000;
const LAST: u16 = 32_000;

/// The next candidate: each test process starts at its own offset, so test
/// binaries that overlap do not walk the same ports.
static NEXT: AtomicU16 = AtomicU16::new(0);

/// A loopback port below the ephemeral range that nothing listens on now,
/// never the same twice in one test process.
pub fn free_port() -> u16 {
    let span = LAST - FIRST;
    let start = (std::process::id() % u32::from(span)) as u16;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = FIRST + offset;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{LAST}");
}
