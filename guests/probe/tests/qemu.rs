//! Boots the probe guest under QEMU with KVM (the project's benchmark peer) and checks each
//! scenario's serial lines and how QEMU ended (QMP `SHUTDOWN` reason). Also audits the ring-0
//! code for instructions PVM cannot emulate.
//!
//! Needs `qemu-system-x86_64` (Debian `qemu-system-x86`), `/dev/kvm`, and binutils (`nm`,
//! `objdump`) for the audit; a missing one fails the test with a message saying so.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const PROBE: &str = env!("CARGO_BIN_EXE_domus-probe");
const QEMU: &str = "qemu-system-x86_64";
/// Bound on one boot-to-exit run. Generous: `-M pc` boots through SeaBIOS, whose ring-0 code
/// PVM emulates, and the 2-CPU CI machine may be busy with other tests.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound on waiting for one expected line.
const LINE_TIMEOUT: Duration = Duration::from_secs(120);

fn machine_args(machine: &str) -> &'static [&'static str] {
    match machine {
        "microvm" => &[
            "-M", "microvm", "-accel", "kvm", "-cpu", "qemu64", "-m", "64",
        ],
        "pc" => &[
            "-M", "pc", "-accel", "kvm", "-cpu", "qemu64", "-m", "64", "-vga", "none", "-nic",
            "none",
        ],
        other => panic!("unknown machine {other}"),
    }
}

fn check_prerequisites() {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        panic!("/dev/kvm is not usable ({e}): these tests boot the probe under QEMU with KVM");
    }
    if let Err(e) = Command::new(QEMU).arg("--version").output() {
        panic!("{QEMU} not runnable ({e}): install Debian's qemu-system-x86 (the benchmark peer)");
    }
}

/// A running QEMU with the probe: serial output collected, QMP connected.
struct Session {
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    qmp: BufReader<UnixStream>,
    events: Vec<String>,
    dir: PathBuf,
}

impl Session {
    fn start(machine: &str, extra: &[&str], cmdline: &str) -> Self {
        check_prerequisites();
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "domus-probe-qemu-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let qmp_path = dir.join("qmp.sock");
        let mut child = Command::new(QEMU)
            .args(machine_args(machine))
            .args(extra)
            .args(["-display", "none", "-serial", "stdio", "-no-reboot"])
            .args(["-action", "panic=shutdown"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_path.display()))
            .args(["-kernel", PROBE, "-append", cmdline])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("stderr")).expect("QEMU's stderr file"))
            .spawn()
            .expect("spawn qemu");
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().expect("qemu stdout");
        let sink = Arc::clone(&output);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("output lock")
                    .extend_from_slice(&buf[..n]);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let stream = loop {
            match UnixStream::connect(&qmp_path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => panic!("QMP socket never appeared: {e}"),
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        };
        let mut session = Self {
            child,
            output,
            qmp: BufReader::new(stream),
            events: Vec::new(),
            dir,
        };
        let mut greeting = String::new();
        session.qmp.read_line(&mut greeting).expect("QMP greeting");
        session.qmp_command("qmp_capabilities");
        session
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().expect("output lock")).into_owned()
    }

    fn qmp_command(&mut self, name: &str) {
        self.qmp_json(&format!("{{\"execute\": \"{name}\"}}"));
    }

    /// Sends one QMP command line; returns its reply line (events seen meanwhile are kept).
    fn qmp_json(&mut self, command: &str) -> String {
        let stream = self.qmp.get_mut();
        if let Err(e) = writeln!(stream, "{command}") {
            // QEMU went away: say how, with what the guest printed.
            let status = self.child.try_wait();
            let stderr = std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default();
            panic!(
                "QMP write of {command}: {e}; QEMU: {status:?}; its stderr:\n{stderr}\nconsole:\n{}",
                self.text()
            );
        }
        loop {
            let mut line = String::new();
            if self.qmp.read_line(&mut line).expect("QMP read") == 0 {
                panic!("QMP closed while waiting for the reply to {command}");
            }
            if line.contains("\"event\"") {
                self.events.push(line);
            } else if line.contains("\"return\"") || line.contains("\"error\"") {
                return line;
            }
        }
    }

    fn wait_for(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {timeout:?}; output:\n{}",
                self.text()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.child.stdin.as_mut().expect("qemu stdin");
        stdin.write_all(bytes).expect("write to serial");
        stdin.flush().expect("flush serial");
    }

    /// Waits for QEMU to exit (killing it after `timeout`) and returns the output and the
    /// SHUTDOWN reasons QMP reported.
    fn finish(mut self, timeout: Duration) -> (String, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let timed_out = loop {
            if self.child.try_wait().expect("wait for qemu").is_some() {
                break false;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break true;
            }
            thread::sleep(Duration::from_millis(10));
        };
        let mut rest = String::new();
        let _ = self
            .qmp
            .get_mut()
            .set_read_timeout(Some(Duration::from_secs(2)));
        let _ = self.qmp.read_to_string(&mut rest);
        self.events.extend(rest.lines().map(str::to_owned));
        thread::sleep(Duration::from_millis(50));
        let text = self.text();
        assert!(
            !timed_out,
            "QEMU did not exit within {timeout:?}; output:\n{text}"
        );
        let reasons = self
            .events
            .iter()
            .filter(|e| e.contains("\"SHUTDOWN\""))
            .filter_map(|e| e.split("\"reason\": \"").nth(1))
            .filter_map(|r| r.split('"').next())
            .map(str::to_owned)
            .collect();
        let _ = std::fs::remove_dir_all(&self.dir);
        (text, reasons)
    }
}

/// A failed assertion must not leave QEMU running: kill it whenever the session goes away.
impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `key=` in the first line that starts with `prefix`.
fn field<'a>(text: &'a str, prefix: &str, key: &str) -> Option<&'a str> {
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    line.split(' ')
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Asserts that `lines` appear as whole lines, in this order.
fn assert_lines(text: &str, lines: &[&str]) {
    let mut rest = text.lines();
    for want in lines {
        assert!(
            rest.any(|l| l == *want),
            "missing line {want:?} (in order); output:\n{text}"
        );
    }
}

fn run(machine: &str, extra: &[&str], cmdline: &str) -> (String, Vec<String>) {
    Session::start(machine, extra, cmdline).finish(RUN_TIMEOUT)
}

fn assert_end(reasons: &[String], want: &str, text: &str) {
    assert!(
        reasons.iter().any(|r| r == want),
        "QEMU ended with {reasons:?}, want {want}; output:\n{text}"
    );
}

#[test]
fn hello_reports_vcpus_and_memory_then_powers_off() {
    let (text, reasons) = run("microvm", &["-smp", "2", "-m", "96"], "probe=hello");
    assert_lines(&text, &["PROBE boot", "PROBE hello vcpus=2 mem_mib=96"]);
    assert_end(&reasons, "guest-shutdown", &text);
}

#[test]
fn hello_on_pc_machine() {
    let (text, reasons) = run("pc", &[], "probe=hello");
    // SeaBIOS reserves the top 128 KiB below 64 MiB: 63.5 MiB of RAM rounds to 63 or 64.
    let mem = field(&text, "PROBE hello", "mem_mib").expect("hello line");
    assert!(mem == "63" || mem == "64", "mem_mib={mem}; output:\n{text}");
    assert_eq!(field(&text, "PROBE hello", "vcpus"), Some("1"));
    assert_end(&reasons, "guest-shutdown", &text);
}

#[test]
fn poweroff_uses_acpi_s5() {
    let (text, reasons) = run("microvm", &[], "console=ttyS0 probe=poweroff");
    assert_lines(
        &text,
        &["PROBE boot", "PROBE poweroff s5=5 via=sleep-control"],
    );
    assert_end(&reasons, "guest-shutdown", &text);
    let (text, reasons) = run("pc", &[], "probe=poweroff");
    assert_eq!(
        field(&text, "PROBE poweroff", "via"),
        Some("pm1"),
        "output:\n{text}"
    );
    assert_end(&reasons, "guest-shutdown", &text);
}

#[test]
fn loop_reports_cycles() {
    let (text, reasons) = run("microvm", &[], "probe=loop iters=50000000");
    assert_eq!(
        field(&text, "PROBE loop", "iters"),
        Some("50000000"),
        "output:\n{text}"
    );
    let cycles: u64 = field(&text, "PROBE loop", "cycles")
        .and_then(|c| c.parse().ok())
        .expect("cycles");
    // At least one cycle per iteration: the loop really ran.
    assert!(cycles >= 50_000_000, "cycles={cycles}");
    assert_end(&reasons, "guest-shutdown", &text);
}

#[test]
fn loop_on_every_vcpu() {
    let (text, reasons) = run(
        "microvm",
        &["-smp", "2"],
        "probe=loop iters=20000000 cpus=all",
    );
    for cpu in ["0", "1"] {
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("PROBE loop iters=20000000 cycles=")
                    && l.ends_with(&format!(" cpu={cpu}"))
            })
            .unwrap_or_else(|| panic!("no loop line from cpu {cpu}; output:\n{text}"));
        assert!(line.contains(" cycles="), "{line}");
    }
    assert_lines(&text, &["PROBE loop cpus=2 done=2"]);
    assert_end(&reasons, "guest-shutdown", &text);
}

#[test]
fn bad_input_is_reported() {
    let (text, reasons) = run("microvm", &[], "probe=no-such-thing");
    assert_lines(&text, &["PROBE error unknown-scenario name=no-such-thing"]);
    assert_end(&reasons, "guest-shutdown", &text);
    let (text, _) = run("microvm", &[], "probe=loop iters=12x");
    assert_lines(&text, &["PROBE error bad-argument key=iters value=12x"]);
}

#[test]
fn triple_fault_resets() {
    let (text, reasons) = run("microvm", &[], "probe=triple-fault");
    assert_lines(&text, &["PROBE triple-fault"]);
    assert_end(&reasons, "guest-reset", &text);
}

#[test]
fn reboot_through_i8042() {
    let (text, reasons) = run("pc", &[], "probe=reboot");
    assert_lines(&text, &["PROBE reboot"]);
    assert!(
        !text.contains("reboot-ignored"),
        "i8042 reset was ignored; output:\n{text}"
    );
    assert_end(&reasons, "guest-reset", &text);
}

#[test]
fn panic_through_pvpanic() {
    let (text, reasons) = run("pc", &["-device", "pvpanic"], "probe=panic");
    assert_lines(&text, &["PROBE panic pvpanic=present"]);
    assert_end(&reasons, "guest-panic", &text);
}

#[test]
fn faults_are_reported_then_crash() {
    for (kind, vector) in [("pf", "14"), ("gp", "13"), ("ud", "6")] {
        let (text, reasons) = run(
            "microvm",
            &["-device", "pvpanic"],
            &format!("probe=fault kind={kind}"),
        );
        assert_lines(&text, &[&format!("PROBE fault kind={kind}")]);
        assert_eq!(
            field(&text, "PROBE fatal", "vector"),
            Some(vector),
            "output:\n{text}"
        );
        assert_end(&reasons, "guest-panic", &text);
    }
    let (text, reasons) = run("microvm", &[], "probe=fault kind=panic");
    assert!(
        text.contains("PROBE fatal panic at=guests/probe/src/scenarios/fault.rs:"),
        "output:\n{text}"
    );
    // Without a pvpanic device the probe ends with a triple fault.
    assert_end(&reasons, "guest-reset", &text);
}

#[test]
fn smp_brings_up_every_vcpu() {
    let (text, reasons) = run("pc", &["-smp", "3"], "probe=smp");
    assert_lines(&text, &["PROBE cpu 0 up", "PROBE smp vcpus=3 up=3"]);
    for id in 1..3 {
        assert!(
            text.lines().any(|l| l == format!("PROBE cpu {id} up")),
            "cpu {id} missing:\n{text}"
        );
    }
    assert_end(&reasons, "guest-shutdown", &text);
    let (text, _) = run("microvm", &["-smp", "2"], "probe=smp");
    assert_lines(
        &text,
        &["PROBE cpu 0 up", "PROBE cpu 1 up", "PROBE smp vcpus=2 up=2"],
    );
}

/// Boots `probe=idle`, checks that it stays idle, presses the power button over QMP.
fn idle_until_power_button(machine: &str) {
    let mut session = Session::start(machine, &[], "probe=idle");
    session.wait_for("PROBE idle ready\r\n", LINE_TIMEOUT);
    thread::sleep(Duration::from_millis(300));
    assert!(
        !session.text().contains("power-button"),
        "left idle before the button"
    );
    session.qmp_command("system_powerdown");
    let (text, reasons) = session.finish(RUN_TIMEOUT);
    assert_lines(&text, &["PROBE idle ready", "PROBE idle power-button"]);
    assert_end(&reasons, "guest-shutdown", &text);
}

#[test]
fn idle_waits_for_the_fixed_power_button() {
    idle_until_power_button("pc");
}

#[test]
fn idle_waits_for_the_ged_power_button() {
    idle_until_power_button("microvm");
}

/// The probe's balloon driver against QEMU's own virtio-balloon (the benchmark peer): it follows
/// QMP `balloon` both ways and reports `actual` as QEMU expects it (`query-balloon`).
#[test]
fn balloon_follows_qemus_virtio_balloon() {
    let mut session = Session::start(
        "microvm",
        &[
            "-global",
            "virtio-mmio.force-legacy=false",
            "-device",
            "virtio-balloon-device",
        ],
        "probe=idle",
    );
    session.wait_for("PROBE idle ready\r\n", LINE_TIMEOUT);
    let r = session.qmp_json(r#"{"execute": "balloon", "arguments": {"value": 33554432}}"#);
    assert!(r.contains("\"return\""), "{r}");
    session.wait_for(
        "PROBE balloon target_mib=32 actual_mib=32\r\n",
        LINE_TIMEOUT,
    );
    let q = session.qmp_json(r#"{"execute": "query-balloon"}"#);
    assert!(q.contains("\"actual\": 33554432"), "{q}");
    session.qmp_json(r#"{"execute": "balloon", "arguments": {"value": 67108864}}"#);
    session.wait_for(
        "PROBE balloon target_mib=64 actual_mib=64\r\n",
        LINE_TIMEOUT,
    );
    session.qmp_command("system_powerdown");
    let (text, reasons) = session.finish(RUN_TIMEOUT);
    assert_lines(
        &text,
        &[
            "PROBE idle ready",
            "PROBE balloon target_mib=32 actual_mib=32",
            "PROBE balloon target_mib=64 actual_mib=64",
            "PROBE idle power-button",
        ],
    );
    assert_end(&reasons, "guest-shutdown", &text);
}

#[test]
fn echo_returns_console_input() {
    let mut session = Session::start("microvm", &[], "probe=echo");
    session.wait_for("PROBE echo ready\r\n", LINE_TIMEOUT);
    session.send(b"ping-123\n");
    session.wait_for("ping-123\n", LINE_TIMEOUT);
    // Waiting for input sleeps in `hlt`: QEMU (vCPU thread included) stays nearly idle.
    let before = cpu_time_ticks(session.child.id());
    thread::sleep(Duration::from_secs(2));
    let used = cpu_time_ticks(session.child.id()) - before;
    session.send(b"pong-456\n");
    session.wait_for("pong-456\n", LINE_TIMEOUT);
    let _ = session.child.kill();
    let (text, _) = session.finish(RUN_TIMEOUT);
    assert_lines(&text, &["PROBE echo ready", "ping-123", "pong-456"]);
    // 2 s of busy polling would be ~200 ticks (USER_HZ = 100); allow QEMU's own housekeeping.
    assert!(
        used < 50,
        "echo burned {used} CPU ticks in 2 s while waiting for input"
    );
}

/// utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
fn cpu_time_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let after_comm = stat.rsplit_once(')').expect("stat has (comm)").1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |i: usize| fields[i].parse::<u64>().expect("numeric stat field");
    field(11) + field(12)
}

/// The virtio-rng driver against QEMU's virtio-rng-device (the same lines as under domus-vmm);
/// a block device in front of it checks that the driver finds the entropy device by type.
#[test]
fn rng_reads_entropy_from_qemu() {
    let dir = std::env::temp_dir().join(format!("domus-probe-rng-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let img = dir.join("d.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).expect("disk image");
    let drive = format!("id=d0,file={},format=raw,if=none", img.display());
    let args = [
        "-global",
        "virtio-mmio.force-legacy=false",
        "-drive",
        &drive,
        "-device",
        "virtio-blk-device,drive=d0",
        "-device",
        "virtio-rng-device",
    ];
    let mut hashes = Vec::new();
    for _ in 0..2 {
        let (text, reasons) = run("microvm", &args, "probe=rng bytes=4096");
        let hash = text
            .lines()
            .find_map(|l| l.trim_end().strip_prefix("PROBE rng bytes=4096 sha256="))
            .unwrap_or_else(|| panic!("no rng line in:\n{text}"))
            .to_owned();
        assert_eq!(hash.len(), 64, "{hash}");
        assert_end(&reasons, "guest-shutdown", &text);
        hashes.push(hash);
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_ne!(hashes[0], hashes[1], "two boots read the same bytes");
}

#[test]
fn virtio_scan_finds_mmio_devices() {
    let dir = std::env::temp_dir().join(format!("domus-probe-virtio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut args: Vec<String> = vec!["-global".into(), "virtio-mmio.force-legacy=false".into()];
    for i in 0..2 {
        let img = dir.join(format!("d{i}.img"));
        std::fs::write(&img, vec![0u8; 1 << 20]).expect("disk image");
        args.push("-drive".into());
        args.push(format!("id=d{i},file={},format=raw,if=none", img.display()));
        args.push("-device".into());
        args.push(format!("virtio-blk-device,drive=d{i}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (text, reasons) = run("microvm", &args, "probe=virtio-scan");
    let _ = std::fs::remove_dir_all(&dir);
    assert_lines(&text, &["PROBE virtio-scan devices=2"]);
    let devs: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("PROBE virtio-scan dev="))
        .collect();
    assert_eq!(devs.len(), 2, "output:\n{text}");
    for line in devs {
        assert!(line.ends_with(" version=2 device_id=2"), "{line}");
        assert!(line.contains(" addr=0xfeb0"), "{line}");
    }
    assert_end(&reasons, "guest-shutdown", &text);
    let (text, _) = run("microvm", &[], "probe=virtio-scan");
    assert_lines(&text, &["PROBE virtio-scan devices=0"]);
}

#[test]
fn ring0_code_avoids_instructions_pvm_cannot_emulate() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/audit-cpl0.sh");
    let out = Command::new(&script)
        .arg(PROBE)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "audit failed:\n{stdout}{stderr}");
    let checked: usize = stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("audit prints the instruction count");
    assert!(
        checked > 200,
        "audit saw only {checked} instructions:\n{stdout}"
    );
}

/// A network namespace for one test, deleted on drop (every interface the test makes lives in it).
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("domus-probe-{tag}-{}", std::process::id());
        let ns = Self(name);
        ns.sh(&["ip", "netns", "add", &ns.0]);
        ns
    }

    fn sh(&self, argv: &[&str]) {
        let ok = Command::new(argv[0])
            .args(&argv[1..])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{argv:?} failed");
    }

    fn ip(&self, args: &[&str]) {
        let mut argv = vec!["ip", "-n", self.0.as_str()];
        argv.extend_from_slice(args);
        self.sh(&argv);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The probe's virtio-net driver and IPv4 stack against QEMU's virtio-net-device on a TAP in a
/// test namespace: the guest pings the host side (ARP, ICMP, checksum offload, the control queue).
#[test]
fn net_ping_through_qemu_virtio_net() {
    check_prerequisites();
    let ns = Netns::new("net");
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&["tuntap", "add", "dev", "tap0", "mode", "tap"]);
    ns.ip(&["addr", "add", "10.7.0.1/24", "dev", "tap0"]);
    ns.ip(&["link", "set", "tap0", "up"]);
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0, QEMU])
        .args(machine_args("microvm"))
        .args([
            "-nographic",
            "-nodefaults",
            "-serial",
            "stdio",
            "-no-reboot",
            "-kernel",
            PROBE,
        ])
        .args([
            "-append",
            "probe=net-ping ip=10.7.0.2/24 target=10.7.0.1 count=3",
        ])
        .args(["-global", "virtio-mmio.force-legacy=false"])
        .args([
            "-netdev",
            "tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=off",
        ])
        .args([
            "-device",
            "virtio-net-device,netdev=n0,mac=02:00:00:07:00:02",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qemu");
    let out = child.stdout.take().expect("qemu stdout");
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(out).read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
    let text = reader.join().expect("reader");
    assert!(
        text.contains("PROBE net link mac=02:00:00:07:00:02 mtu=1500"),
        "{text}"
    );
    assert!(
        text.contains("PROBE net-ping target=10.7.0.1 sent=3 received=3 "),
        "{text}"
    );
}

#[test]
fn mem_soak_rewrites_and_verifies_until_the_power_button() {
    let mut session = Session::start("microvm", &["-m", "96"], "probe=mem-soak mib=32");
    session.wait_for("PROBE mem-soak epoch=2 ok\r\n", Duration::from_secs(60));
    session.qmp_command("system_powerdown");
    let (text, reasons) = session.finish(RUN_TIMEOUT);
    assert!(text.contains("PROBE mem-soak ready mib=32"), "{text}");
    assert!(text.contains("PROBE mem-soak power-button"), "{text}");
    assert!(!text.contains("corrupt"), "{text}");
    assert_end(&reasons, "guest-shutdown", &text);
}
