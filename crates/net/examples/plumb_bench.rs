//! Cost of one bridged vif's host side: domus-net's netlink plumbing (create TAP, MAC, MTU,
//! bridge port, up; then delete) against the same steps done the way Xen's `vif-bridge` hotplug
//! script does them (`ip` commands from a shell), in a private network namespace this program
//! creates for itself (unshare(CLONE_NEWNET) on its own thread; nothing outside it is touched).
//!
//! `cargo run --release -p domus-net --example plumb_bench [ITERATIONS]`

use std::process::Command;
use std::time::{Duration, Instant};

use domus_net::globalconf::NetDefaults;
use domus_net::netlink::Netlink;
use domus_net::tap;
use domus_net::vif::{VifPlan, VifRequest};

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let med = v[v.len() / 2].as_secs_f64() * 1e3;
    let mean = v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len() as f64 * 1e3;
    (med, mean)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map_or(Ok(200), |a| a.parse())?;
    std::thread::spawn(move || -> Result<(), String> {
        // SAFETY: unshare(2) moves only this thread into a new, empty network namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!("unshare: {}", std::io::Error::last_os_error()));
        }
        let mut nl = Netlink::open().map_err(|e| e.to_string())?;
        nl.add_bridge("bridge0").map_err(|e| e.to_string())?;
        nl.set_up("bridge0", true).map_err(|e| e.to_string())?;
        let req = VifRequest {
            bridge: Some("bridge0"),
            ..Default::default()
        };
        let plan = VifPlan::resolve(1, 0, &req, &NetDefaults::default(), &[]).map_err(|e| e.to_string())?;
        let t = Duration::from_secs(5);
        let mut ours = Vec::with_capacity(n);
        let mut up = Vec::with_capacity(n);
        for _ in 0..n {
            let t0 = Instant::now();
            let fd = plan.plumb(&mut nl, None, t).map_err(|e| e.to_string())?;
            up.push(t0.elapsed());
            drop(fd);
            plan.unplumb(&mut nl, None, t).map_err(|e| e.to_string())?;
            ours.push(t0.elapsed());
        }
        let mut script = Vec::with_capacity(n);
        let mut script_up = Vec::with_capacity(n);
        for _ in 0..n {
            let t0 = Instant::now();
            let fd = tap::create_tap("vif1.0").map_err(|e| e.to_string())?;
            let ok = Command::new("sh")
                .args(["-c", "ip link set dev vif1.0 address fe:ff:ff:ff:ff:ff && ip link set dev vif1.0 mtu 1500 && ip link set dev vif1.0 master bridge0 && ip link set dev vif1.0 up"])
                .status()
                .map_err(|e| e.to_string())?
                .success();
            script_up.push(t0.elapsed());
            drop(fd);
            let ok2 = Command::new("ip").args(["link", "del", "vif1.0"]).status().map_err(|e| e.to_string())?.success();
            if !(ok && ok2) {
                return Err("ip failed".into());
            }
            script.push(t0.elapsed());
        }
        let (a, am) = stats(up);
        let (b, bm) = stats(script_up);
        let (c, cm) = stats(ours);
        let (d, dm) = stats(script);
        println!("iterations: {n}");
        println!("set-up      domus-net netlink: median {a:.3} ms mean {am:.3} ms | ip from sh (vif-bridge style): median {b:.3} ms mean {bm:.3} ms | ratio {:.1}x", b / a);
        println!("set-up+down domus-net netlink: median {c:.3} ms mean {cm:.3} ms | ip from sh (vif-bridge style): median {d:.3} ms mean {dm:.3} ms | ratio {:.1}x", d / c);
        Ok(())
    })
    .join()
    .map_err(|_| "bench thread panicked")??;
    Ok(())
}
