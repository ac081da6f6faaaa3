//! `net-echo ip=A.B.C.D/NN [gw=A.B.C.D] [nic=K]`: prints
//! `PROBE net-echo ready mac=XX:XX:XX:XX:XX:XX ip=A.B.C.D[ gw=A.B.C.D]` (the address given or
//! leased with `ip=dhcp`; gw when there is one), then answers ARP, ICMP echo and UDP echo
//! on port 7 until the ACPI power button, then prints `PROBE net-echo rx=<frames> tx=<frames>` and
//! powers off.
//!
//! Runs on the shared event loop with the NIC as a polled source: the loop does not sleep (the
//! driver polls its used rings; CPL3 polling is native speed here), the power button ends it.

use super::{counters, setup, Event, Ip, Stack, FRAME};
use crate::cmdline::Args;
use crate::event_loop::{EventLoop, Events, Flow};
use crate::scenarios::Scenario;
use crate::sync::SpinLock;
use crate::Machine;
use domus_probe::inet;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario {
    name: "net-echo",
    run,
};

/// The UDP echo port (RFC 862).
const ECHO_PORT: u16 = 7;

/// The stack, for the loop's hook.
static STATE: SpinLock<Option<Stack>> = SpinLock::new(None);

fn hook(ev: &mut Events) -> Flow {
    STATE.with(|st| {
        let Some(stack) = st.as_mut() else {
            return Flow::Stop;
        };
        if ev.power_button {
            let (rx, tx) = counters(stack);
            crate::report!("net-echo rx={rx} tx={tx}");
            return Flow::Stop;
        }
        while let Some(e) = stack.poll() {
            if let Event::Udp {
                src,
                sport,
                dport: ECHO_PORT,
                len,
            } = e
            {
                let mut buf = [0u8; FRAME];
                buf[..len].copy_from_slice(stack.payload());
                stack.send_udp(src, ECHO_PORT, sport, &buf[..len]);
            }
        }
        stack.flush();
        Flow::Continue
    })
}

fn run(machine: &Machine, args: &Args<'_>) {
    let Some(stack) = setup(machine, args, "net-echo") else {
        return;
    };
    let mut lp = EventLoop::new();
    if let Err(reason) = lp.watch_power_button(machine) {
        return crate::report!("error net-echo reason={reason}");
    }
    lp.poll_continuously(machine);
    lp.watch_cpu_hotplug(machine);
    if let Err(reason) = lp.hook("net-echo", hook) {
        return crate::report!("error net-echo reason={reason}");
    }
    lp.attach_drivers(machine, args);
    let mut mac = [0u8; 17];
    inet::format_mac(stack.net.mac, &mut mac);
    let (ip, gw) = (stack.ip, stack.gw());
    STATE.with(|s| *s = Some(stack));
    match gw {
        Some(g) => crate::report!(
            "net-echo ready mac={} ip={} gw={}",
            core::str::from_utf8(&mac).unwrap_or("?"),
            Ip(ip),
            Ip(g)
        ),
        None => crate::report!(
            "net-echo ready mac={} ip={}",
            core::str::from_utf8(&mac).unwrap_or("?"),
            Ip(ip)
        ),
    }
    lp.run();
}
