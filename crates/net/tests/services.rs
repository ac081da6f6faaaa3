//! dnsmasq start/adopt/stop inside a test namespace, and Xen hotplug scripts run with libxl's
//! arguments and environment.

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Netns;
use domus_net::dnsmasq::{self, DhcpNet, Dnsmasq};
use domus_net::hotplug::{self, HotplugError, Invocation, Mode};
use domus_net::netlink::Netlink;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("domus-net-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

/// Kills a dnsmasq the test started if the test fails before stopping it.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // SAFETY: kill(2) of the dnsmasq this test started.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn dnsmasq_serves_the_nat_bridge_is_adopted_and_stops() {
    let ns = Netns::new("dns");
    let dir = tmpdir("dns");
    let d2 = dir.clone();
    ns.run(move || {
        let net = DhcpNet {
            bridge: "domusnat0".into(),
            network: Ipv4Addr::new(192, 168, 150, 0),
            prefix: 24,
        };
        // Without the bridge's address dnsmasq cannot bind: a clear error, nothing left running.
        let e = Dnsmasq::start(&d2, &net).expect_err("no bridge");
        assert!(e.to_string().contains("dnsmasq exited at start-up"), "{e}");
        assert!(e.to_string().contains("192.168.150.1"), "{e}");

        let mut nl = Netlink::open().expect("netlink");
        nl.add_bridge("domusnat0").expect("bridge");
        nl.add_address("domusnat0", net.host_addr(), 24)
            .expect("addr");
        nl.set_up("domusnat0", true).expect("up");
        let mut d = Dnsmasq::start(&d2, &net).expect("start");
        let _guard = KillOnDrop(d.pid());
        assert!(d.running());
        let pid = d.pid();
        let pidfile = std::fs::read_to_string(&d.files().pid).expect("pid file");
        assert_eq!(pidfile.trim(), pid.to_string());
        // A restarted domusd adopts it instead of starting another.
        let mut adopted = Dnsmasq::adopt(&d2).expect("adopt");
        assert_eq!(adopted.pid(), pid);
        assert!(adopted.running());
        let again = Dnsmasq::start(&d2, &net).expect("start adopts");
        assert_eq!(again.pid(), pid);
        let mac = [0x00, 0x16, 0x3e, 1, 2, 3];
        d.set_static_leases(&[(mac, Ipv4Addr::new(192, 168, 150, 9))])
            .expect("leases");
        assert_eq!(
            std::fs::read_to_string(&d.files().hosts).expect("hosts"),
            "00:16:3e:01:02:03,192.168.150.9\n"
        );
        std::thread::sleep(Duration::from_millis(100));
        assert!(d.running(), "SIGHUP re-reads, dnsmasq keeps running");
        assert!(dnsmasq::leases(d.files()).is_empty());
        d.stop();
        assert!(
            !alive(pid)
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(" Z "))
                    .unwrap_or(true)
        );
        assert!(Dnsmasq::adopt(&d2).is_none());
    });
    std::fs::remove_dir_all(&dir).ok();
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

fn inv(path: &Path, timeout: Duration) -> Invocation<'_> {
    Invocation {
        path,
        domid: 4,
        devid: 1,
        ifname: "vif4.1",
        gatewaydev: Some("eth0"),
        xenstored_path: Some(Path::new("/run/domus/store.sock")),
        timeout,
    }
}

#[test]
fn script_names_resolve_like_xen() {
    let dir = tmpdir("resolve");
    let other = tmpdir("resolve2");
    let s = script(&other, "my-vif", "exit 0");
    let dirs = [dir.as_path(), other.as_path()];
    assert_eq!(
        hotplug::resolve("vif-bridge", &dirs).expect("b"),
        Mode::Bridge
    );
    assert_eq!(
        hotplug::resolve("vif-route", &dirs).expect("r"),
        Mode::Route
    );
    assert_eq!(hotplug::resolve("vif-nat", &dirs).expect("n"), Mode::Nat);
    assert_eq!(
        hotplug::resolve("my-vif", &dirs).expect("found"),
        Mode::Script(s.clone())
    );
    assert_eq!(
        hotplug::resolve(&s.display().to_string(), &dirs).expect("abs"),
        Mode::Script(s)
    );
    let e = hotplug::resolve("nope", &dirs).expect_err("missing");
    assert!(
        e.to_string()
            .contains("`nope` not found in /etc/domus/scripts or /etc/xen/scripts"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&other).ok();
}

#[test]
fn scripts_get_libxl_arguments_and_environment() {
    let dir = tmpdir("hp");
    let out = dir.join("out");
    let s = script(
        &dir,
        "record",
        &format!(
            "echo \"$1 $2|$script|$XENBUS_TYPE|$XENBUS_PATH|$XENBUS_BASE_PATH|$netdev|$INTERFACE|$vif|$XENSTORED_PATH\" >> {}",
            out.display()
        ),
    );
    hotplug::run(&inv(&s, Duration::from_secs(5)), "add").expect("add");
    hotplug::run(&inv(&s, Duration::from_secs(5)), "remove").expect("remove");
    let text = std::fs::read_to_string(&out).expect("out");
    let sp = s.display();
    assert_eq!(
        text,
        format!(
            "add type_if=tap|{sp}|vif|backend/vif/4/1|backend|eth0|vif4.1|vif4.1|/run/domus/store.sock\n\
             remove type_if=tap|{sp}|vif|backend/vif/4/1|backend|eth0|vif4.1|vif4.1|/run/domus/store.sock\n"
        )
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn failing_and_hanging_scripts_are_errors_with_their_stderr() {
    let dir = tmpdir("hpfail");
    let s = script(
        &dir,
        "fail",
        "echo \"bridge xenbr9 does not exist\" >&2; exit 3",
    );
    let e = hotplug::run(&inv(&s, Duration::from_secs(5)), "add").expect_err("fails");
    assert!(matches!(e, HotplugError::Failed { .. }), "{e:?}");
    let m = e.to_string();
    assert!(
        m.contains("add failed")
            && m.contains("exit status: 3")
            && m.contains("bridge xenbr9 does not exist"),
        "{m}"
    );

    let pidfile = dir.join("child.pid");
    let s = script(
        &dir,
        "hang",
        &format!(
            "echo starting >&2; sleep 30 & echo $! > {}; wait",
            pidfile.display()
        ),
    );
    let t = Instant::now();
    let e = hotplug::run(&inv(&s, Duration::from_millis(300)), "add").expect_err("times out");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let m = e.to_string();
    assert!(
        m.contains("did not finish") && m.contains("starting"),
        "{m}"
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid")
        .trim()
        .parse()
        .expect("num");
    std::thread::sleep(Duration::from_millis(50));
    let gone = !alive(pid)
        || std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true);
    assert!(gone, "the script's children were killed with it");
    let e =
        hotplug::run(&inv(&dir.join("absent"), Duration::from_secs(1)), "add").expect_err("absent");
    assert!(e.to_string().contains("running vif script"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
