//! `net-ping ip=A.B.C.D/NN target=A.B.C.D [count=N] [gw=..] [nic=K]`: N ICMP echo requests (default
//! 10), each sent when the previous reply came (or after a 1 s timeout), then
//! `PROBE net-ping target=A.B.C.D sent=N received=M rtt_us_min=.. rtt_us_avg=.. rtt_us_max=..
//! rtt_us_median=..` and poweroff. The median comes from a 1 µs histogram (longer round trips share
//! its last bucket): on a busy host a few scheduling stalls of milliseconds move the average far
//! more than the typical round trip. Round trips are timed with the TSC; the first includes ARP resolution, as with ping(8).

use super::{setup, Event, Ip, Stack};
use crate::cmdline::Args;
use crate::io::rdtsc;
use crate::scenarios::Scenario;
use crate::Machine;
use domus_probe::inet;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario {
    name: "net-ping",
    run,
};

const IDENT: u16 = 0x7d0e;
const PAYLOAD: &[u8] = b"domus-probe-ping";
/// Most requests one run sends.
const MAX_COUNT: u64 = 100_000;
/// Histogram buckets for the median, one per microsecond; the last one holds everything longer.
const BUCKETS: usize = 1024;

/// The median of the round trips counted in `histogram` (`n` of them).
fn median(histogram: &[u32; BUCKETS], n: u64) -> u64 {
    let mut seen = 0u64;
    for (us, &c) in histogram.iter().enumerate() {
        seen += u64::from(c);
        if seen * 2 >= n {
            return us as u64;
        }
    }
    0
}

fn run(machine: &Machine, args: &Args<'_>) {
    let Some(target) = args.get("target").and_then(inet::parse_ipv4) else {
        return crate::report!(
            "error net-ping reason=bad-target value={}",
            args.get("target").unwrap_or("")
        );
    };
    let count = match args.get_u64("count", 10) {
        Ok(n) if (1..=MAX_COUNT).contains(&n) => n,
        Ok(n) => return crate::report!("error net-ping reason=bad-count value={n}"),
        Err(v) => return crate::report!("error net-ping reason=bad-count value={v}"),
    };
    let Some(mut stack) = setup(machine, args, "net-ping") else {
        return;
    };
    let hz = stack.clock.hz;
    let (mut received, mut min, mut max, mut total) = (0u64, u64::MAX, 0u64, 0u64);
    let mut histogram = [0u32; BUCKETS];
    for seq in 0..count {
        let seq = seq as u16;
        let t0 = rdtsc();
        let deadline = t0 + hz;
        if let Some(t1) = round_trip(&mut stack, target, seq, deadline) {
            let us = stack.clock.us(t1.wrapping_sub(t0));
            received += 1;
            min = min.min(us);
            max = max.max(us);
            total += us;
            let bucket = usize::try_from(us).unwrap_or(BUCKETS).min(BUCKETS - 1);
            histogram[bucket] = histogram[bucket].saturating_add(1);
        }
    }
    let avg = total.checked_div(received).unwrap_or(0);
    if received == 0 {
        min = 0;
    }
    crate::report!(
        "net-ping target={} sent={count} received={received} rtt_us_min={min} rtt_us_avg={avg} rtt_us_max={max} rtt_us_median={}",
        Ip(target),
        median(&histogram, received)
    );
}

/// Sends echo request `seq` (resolving the next hop first) and waits for its reply until
/// `deadline`; the TSC time the reply arrived.
fn round_trip(stack: &mut Stack, target: [u8; 4], seq: u16, deadline: u64) -> Option<u64> {
    let mut sent = false;
    while rdtsc() < deadline {
        if !sent {
            sent = stack.send_ping(target, IDENT, seq, PAYLOAD);
            stack.flush();
        }
        while let Some(e) = stack.poll() {
            if let Event::EchoReply { id: IDENT, seq: s } = e {
                if s == seq {
                    return Some(rdtsc());
                }
            }
        }
    }
    None
}
