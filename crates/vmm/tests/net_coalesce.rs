//! Receive-side UDP coalescing end to end: the host sends bursts of distinct random datagrams
//! through a TAP (in a namespace the test creates) to the probe's `net-rx`, which negotiates
//! GUEST_USO4/6 and prints the SHA-256 of the payloads it received, in arrival order, and how many
//! segmentation frames carried them (`runs=`). With coalescing on (the default) the digest must
//! be the host's own and some frames must have carried several datagrams (the VMM's log says how
//! many it built); with `DOMUS_NET_RX_COALESCE=0` the digest must match too and no frame may.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;
mod netns;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::temp_dir;
use netns::{field, Netns};

const BOOT: Duration = Duration::from_secs(60);
const MAC: &str = "00:16:3e:aa:21:02";

/// The datagrams for the guest's port 5001, in order, and where a datagram for port 7 (another
/// flow) goes between them: bursts of 32 of four shapes (all 1400 bytes; 31 and a short one; 16
/// of 1000 then 16 of 1400, larger after smaller; 10, one for port 7, 21).
fn traffic(bursts: usize) -> Vec<Vec<(u16, Vec<u8>)>> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut data = |n: usize| (0..n).map(|_| rnd().to_le_bytes()[0]).collect::<Vec<u8>>();
    (0..bursts)
        .map(|b| {
            let sizes: Vec<(u16, usize)> = match b % 4 {
                0 => vec![(5001, 1400); 32],
                1 => {
                    let mut v = vec![(5001, 1400); 31];
                    v.push((5001, 1 + usize::from(data(2)[0]) * 5));
                    v
                }
                2 => [vec![(5001, 1000); 16], vec![(5001, 1400); 16]].concat(),
                _ => [
                    vec![(5001, 1400); 10],
                    vec![(7, 300)],
                    vec![(5001, 1400); 21],
                ]
                .concat(),
            };
            sizes.into_iter().map(|(p, n)| (p, data(n))).collect()
        })
        .collect()
}

struct Outcome {
    done: String,
    digest: String,
    want_digest: String,
    want_bytes: usize,
    want_frames: usize,
    stderr: String,
}

fn stream(tag: &str, env: &[(&str, &str)]) -> Outcome {
    let ns = Netns::new(tag);
    ns.tap("tap0", Some("10.0.21.1/24"));
    // No ARP round trip: the first datagrams would wait in the neighbour queue (3 at most).
    ns.ip(&[
        "neigh",
        "add",
        "10.0.21.2",
        "lladdr",
        MAC,
        "dev",
        "tap0",
        "nud",
        "permanent",
    ]);
    let dir = temp_dir(&format!("net-{tag}"));
    let bursts = traffic(240);
    let mine: Vec<&Vec<u8>> = bursts
        .iter()
        .flatten()
        .filter(|(p, _)| *p == 5001)
        .map(|(_, d)| d)
        .collect();
    let want_bytes: usize = mine.iter().map(|d| d.len()).sum();
    let sent_path = dir.join("sent");
    std::fs::write(
        &sent_path,
        mine.iter().copied().flatten().copied().collect::<Vec<u8>>(),
    )
    .unwrap();
    let want_digest = sha256sum(&sent_path);
    let want_frames = mine.len();
    let mut env = env.to_vec();
    env.push(("RUST_LOG", "info"));
    let mut g = ns.guest_with_env(
        &dir,
        tag,
        &format!(
            "vif = ['mac={MAC},vifname=tap0']\nextra = \"probe=net-rx ip=10.0.21.2/24 port=5001 bytes={want_bytes} digest=sha256\""
        ),
        &env,
    );
    g.wait_line("PROBE net-rx ready", BOOT);
    ns.run(move || {
        let s = UdpSocket::bind("10.0.21.1:40000").unwrap();
        for burst in &bursts {
            // A burst in a tight loop (the TAP queues it while the device thread holds), then a
            // pause far longer than the guest needs for 32 datagrams: nothing is lost to a full
            // queue, so every byte must arrive.
            for (port, d) in burst {
                s.send_to(d, ("10.0.21.2", *port)).unwrap();
            }
            std::thread::sleep(Duration::from_millis(3));
        }
    });
    let done = g.wait_line("PROBE net-rx bytes=", BOOT);
    let digest = g.wait_line("PROBE net-rx sha256=", BOOT);
    assert_eq!(g.wait_exit(BOOT), 0, "{}", g.stderr());
    Outcome {
        done,
        digest: field(&digest, "sha256").to_owned(),
        want_digest,
        want_bytes,
        want_frames,
        stderr: g.stderr(),
    }
}

fn sha256sum(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum (coreutils) must be installed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// `key=N` of the VMM's "NIC stopped" log line.
fn logged(stderr: &str, key: &str) -> u64 {
    // Without the terminal colours the log may carry.
    let mut plain = String::with_capacity(stderr.len());
    let mut chars = stderr.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            plain.push(c);
        }
    }
    let line = plain
        .lines()
        .find(|l| l.contains("NIC stopped"))
        .unwrap_or_else(|| panic!("no 'NIC stopped' in the VMM's log:\n{stderr}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .and_then(|v| v.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

fn check_intact(o: &Outcome) {
    assert_eq!(
        field(&o.done, "bytes"),
        o.want_bytes.to_string(),
        "{}",
        o.done
    );
    assert_eq!(
        field(&o.done, "frames"),
        o.want_frames.to_string(),
        "{}",
        o.done
    );
    assert_eq!(
        o.digest, o.want_digest,
        "payloads differ from what was sent"
    );
}

#[test]
fn host_datagrams_reach_the_guest_coalesced_intact_and_in_order() {
    let o = stream("coal", &[]);
    eprintln!("{}", o.done);
    check_intact(&o);
    let runs: u64 = field(&o.done, "runs").parse().unwrap();
    assert!(runs > 0, "no datagrams were coalesced: {}", o.done);
    let built = logged(&o.stderr, "rx_coalesced_frames");
    assert!(built >= runs, "the VMM built {built}, the guest got {runs}");
    let datagrams = logged(&o.stderr, "rx_coalesced_datagrams");
    assert!(
        datagrams >= 2 * built,
        "{datagrams} datagrams in {built} frames"
    );
}

#[test]
fn with_coalescing_off_every_datagram_arrives_alone_and_intact() {
    let o = stream("nocoal", &[("DOMUS_NET_RX_COALESCE", "0")]);
    check_intact(&o);
    assert_eq!(field(&o.done, "runs"), "0", "{}", o.done);
    assert_eq!(logged(&o.stderr, "rx_coalesced_frames"), 0);
}
