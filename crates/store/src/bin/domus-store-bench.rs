//! `domus-store-bench`: a xenstore-protocol load generator, used against domus-xenstored and against Xen's
//! own xenstored alike (both are just a socket speaking the same protocol).
//!
//! `domus-store-bench --socket PATH --op read|write|directory|txrmw --conns N [--seconds S]`
//! Each of N connections runs in its own thread, sends one request at a time, and times every request.
//! `txrmw` is TRANSACTION_START, READ, WRITE(value+1), TRANSACTION_END on a key of its own (conflicts are
//! retried and counted). Prints one line: `op= conns= ops_per_s= p50_us= p99_us= errors= retries= total_ops=` (total_ops includes warm-up, for
//! per-operation CPU accounting of the server).
//! Never run by `cargo test`; see BENCHMARKS.md for the command that drives it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use domus_store::client::{Client, TxId};
use domus_store::wire::XsError;

/// xenstore load generator.
#[derive(Debug, Parser)]
#[command(name = "domus-store-bench")]
struct Args {
    /// Server socket (XENSTORED_PATH of the server under test).
    #[arg(long)]
    socket: PathBuf,
    /// read, write, directory or txrmw.
    #[arg(long)]
    op: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Measured seconds per window (after a short warm-up).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Measured windows; the one with the median throughput is reported.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
    Directory,
    TxRmw,
}

struct Outcome {
    done: u64,
    latencies_ns: Vec<u64>,
    errors: u64,
    retries: u64,
}

fn setup(socket: &PathBuf, conns: usize) -> anyhow::Result<()> {
    let mut c = Client::connect(socket)?;
    for i in 0..conns {
        c.write(
            TxId::NONE,
            &format!("/bench/c{i}/key"),
            b"0123456789abcdef0123456789abcdef",
        )?;
        c.write(TxId::NONE, &format!("/bench/c{i}/counter"), b"0")?;
    }
    for j in 0..16 {
        c.write(TxId::NONE, &format!("/bench/dir/entry-{j}"), b"")?;
    }
    Ok(())
}

fn one(
    c: &mut Client,
    op: Op,
    key: &str,
    counter: &str,
    n: u64,
    retries: &mut u64,
) -> anyhow::Result<()> {
    match op {
        Op::Read => {
            c.read(TxId::NONE, key)?;
        }
        Op::Write => c.write(TxId::NONE, key, format!("value-{n}").as_bytes())?,
        Op::Directory => {
            c.directory(TxId::NONE, "/bench/dir")?;
        }
        Op::TxRmw => loop {
            let tx = c.transaction_start()?;
            let v = c.read(tx, counter)?;
            let v: u64 = std::str::from_utf8(&v)?.parse()?;
            c.write(tx, counter, (v + 1).to_string().as_bytes())?;
            match c.transaction_end(tx, true) {
                Ok(()) => break,
                Err(e) if e.xs_error() == Some(XsError::Again) => *retries += 1,
                Err(e) => return Err(e.into()),
            }
        },
    }
    Ok(())
}

fn worker(
    socket: PathBuf,
    op: Op,
    i: usize,
    warmup_until: Instant,
    until: Instant,
) -> anyhow::Result<Outcome> {
    let mut c = Client::connect(&socket)?;
    let key = format!("/bench/c{i}/key");
    let counter = format!("/bench/c{i}/counter");
    let mut out = Outcome {
        done: 0,
        latencies_ns: Vec::with_capacity(1 << 20),
        errors: 0,
        retries: 0,
    };
    let mut n = 0u64;
    loop {
        let t0 = Instant::now();
        if t0 >= until {
            break;
        }
        let r = one(&mut c, op, &key, &counter, n, &mut out.retries);
        n += 1;
        out.done = n;
        if t0 < warmup_until {
            continue;
        }
        match r {
            Ok(()) => out
                .latencies_ns
                .push(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX)),
            Err(_) => out.errors += 1,
        }
    }
    Ok(out)
}

/// One measured window: sorted latencies, errors, conflict retries.
fn measure(args: &Args, op: Op) -> anyhow::Result<(Vec<u64>, u64, u64, u64)> {
    let start = Instant::now();
    let warmup_until = start + Duration::from_millis(300);
    let until = warmup_until + Duration::from_secs_f64(args.seconds);
    let threads: Vec<_> = (0..args.conns)
        .map(|i| {
            let s = args.socket.clone();
            std::thread::spawn(move || worker(s, op, i, warmup_until, until))
        })
        .collect();
    let mut all = Vec::new();
    let (mut errors, mut retries, mut done) = (0, 0, 0);
    for t in threads {
        let o = t.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
        done += o.done;
        all.extend(o.latencies_ns);
        errors += o.errors;
        retries += o.retries;
    }
    all.sort_unstable();
    Ok((all, errors, retries, done))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let op = match args.op.as_str() {
        "read" => Op::Read,
        "write" => Op::Write,
        "directory" => Op::Directory,
        "txrmw" => Op::TxRmw,
        other => bail!("--op {other:?}: expected read, write, directory or txrmw"),
    };
    if args.conns == 0 || args.seconds <= 0.0 {
        bail!("--conns and --seconds must be positive");
    }
    setup(&args.socket, args.conns)
        .with_context(|| format!("preparing /bench on {}", args.socket.display()))?;
    let mut windows = Vec::new();
    for _ in 0..args.repeat.max(1) {
        windows.push(measure(&args, op)?);
    }
    let total_ops: u64 = windows.iter().map(|w| w.3).sum();
    windows.sort_by_key(|w| w.0.len());
    let (all, errors, retries, _) = &windows[windows.len() / 2];
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let idx = ((all.len() as f64 - 1.0) * p).round() as usize;
        all[idx.min(all.len() - 1)] as f64 / 1000.0
    };
    println!(
        "op={} conns={} ops_per_s={:.0} p50_us={:.1} p99_us={:.1} errors={} retries={} total_ops={}",
        args.op,
        args.conns,
        all.len() as f64 / args.seconds,
        pct(0.50),
        pct(0.99),
        errors,
        retries,
        total_ops
    );
    Ok(())
}
