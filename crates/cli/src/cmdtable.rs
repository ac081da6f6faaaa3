//! Command lookup as xl 4.17 does it (`cmdtable_lookup` in tools/xl/xl_cmdtable.c): a word selects a
//! command when it equals a command's name, or is a prefix of exactly one name in xl's *whole* table —
//! not just of the commands Domus implements, so `xl de nosuch` stays ambiguous (`destroy`,
//! `debug-keys`, `devd`) instead of destroying something. Ambiguous and unknown words get xl's
//! "command not implemented"; a command of xl's table that Domus lacks gets xl's
//! `command "NAME" not implemented`.
//!
//! `main` rewrites the word to the full name before clap parses the arguments (clap's own inference
//! is off: it only sees Domus's shorter list).

/// Every command name in xl 4.17's `cmd_table`, in its order (read from Debian's xl 4.17.5 build,
/// x86-64, so the PSR commands are in; this is what prefixes are matched against).
pub const XL_COMMANDS: [&str; 92] = [
    "create",
    "config-update",
    "list",
    "destroy",
    "shutdown",
    "reboot",
    "pci-attach",
    "pci-detach",
    "pci-list",
    "pci-assignable-add",
    "pci-assignable-remove",
    "pci-assignable-list",
    "pause",
    "unpause",
    "console",
    "vncviewer",
    "save",
    "migrate",
    "restore",
    "migrate-receive",
    "dump-core",
    "cd-insert",
    "cd-eject",
    "mem-max",
    "mem-set",
    "button-press",
    "vcpu-list",
    "vcpu-pin",
    "vcpu-set",
    "vm-list",
    "info",
    "sharing",
    "sched-credit",
    "sched-credit2",
    "sched-rtds",
    "domid",
    "domname",
    "rename",
    "trigger",
    "sysrq",
    "debug-keys",
    "set-parameters",
    "dmesg",
    "top",
    "network-attach",
    "network-list",
    "network-detach",
    "channel-list",
    "block-attach",
    "block-list",
    "block-detach",
    "vtpm-attach",
    "vtpm-list",
    "vtpm-detach",
    "vkb-attach",
    "vkb-list",
    "vkb-detach",
    "vdispl-attach",
    "vdispl-list",
    "vdispl-detach",
    "vsnd-attach",
    "vsnd-list",
    "vsnd-detach",
    "uptime",
    "claims",
    "cpupool-create",
    "cpupool-list",
    "cpupool-destroy",
    "cpupool-rename",
    "cpupool-cpu-add",
    "cpupool-cpu-remove",
    "cpupool-migrate",
    "cpupool-numa-split",
    "getenforce",
    "setenforce",
    "loadpolicy",
    "remus",
    "devd",
    "psr-hwinfo",
    "psr-cmt-attach",
    "psr-cmt-detach",
    "psr-cmt-show",
    "psr-cat-set",
    "psr-cat-show",
    "psr-mba-set",
    "psr-mba-show",
    "usbctrl-attach",
    "usbctrl-detach",
    "usbdev-attach",
    "usbdev-detach",
    "usb-list",
    "qemu-monitor-command",
];

/// Domus's own commands, not in xl's table: matched as if appended to it.
pub const DOMUS_COMMANDS: [&str; 2] = ["autostart", "disk"];

/// What a command word selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// This command (full name).
    Command(&'static str),
    /// Ambiguous or unknown: xl's "command not implemented".
    NotFound,
}

/// xl's `cmdtable_lookup` over xl's table followed by [`DOMUS_COMMANDS`]: an exact name wins even when it
/// also prefixes another (`list` vs `list-…` would), else a prefix of exactly one name.
pub fn lookup(word: &str) -> Lookup {
    let mut found = None;
    let mut count = 0;
    for name in XL_COMMANDS.iter().chain(DOMUS_COMMANDS.iter()) {
        if name.starts_with(word) {
            if name.len() == word.len() {
                return Lookup::Command(name);
            }
            found = Some(*name);
            count += 1;
        }
    }
    match found {
        Some(name) if count == 1 => Lookup::Command(name),
        _ => Lookup::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_and_unique_prefixes_select() {
        for name in XL_COMMANDS.iter().chain(DOMUS_COMMANDS.iter()) {
            assert_eq!(lookup(name), Lookup::Command(name), "{name}");
        }
        assert_eq!(lookup("cr"), Lookup::Command("create"));
        assert_eq!(lookup("li"), Lookup::Command("list"));
        assert_eq!(lookup("dest"), Lookup::Command("destroy"));
        assert_eq!(lookup("shu"), Lookup::Command("shutdown"));
        assert_eq!(lookup("vm"), Lookup::Command("vm-list"));
        assert_eq!(lookup("au"), Lookup::Command("autostart"));
        // sched-credit is a prefix of sched-credit2 but matches exactly.
        assert_eq!(lookup("sched-credit"), Lookup::Command("sched-credit"));
    }

    #[test]
    fn ambiguous_prefixes_are_refused_as_xl_refuses_them() {
        // `de`: destroy, debug-keys, devd. `sh`: shutdown, sharing. `s`: many.
        for word in [
            "de", "sh", "s", "d", "re", "c", "pci", "vcpu-", "mem", "", "xyz", "lists",
        ] {
            assert_eq!(lookup(word), Lookup::NotFound, "{word:?}");
        }
    }

    #[test]
    fn every_prefix_agrees_with_a_brute_force_count() {
        let all: Vec<&str> = XL_COMMANDS
            .iter()
            .chain(DOMUS_COMMANDS.iter())
            .copied()
            .collect();
        for name in &all {
            for end in 1..=name.len() {
                let p = &name[..end];
                let hits: Vec<&&str> = all.iter().filter(|n| n.starts_with(p)).collect();
                let want = if all.contains(&p) {
                    Lookup::Command(all.iter().copied().find(|n| *n == p).unwrap_or(p))
                } else if hits.len() == 1 {
                    Lookup::Command(hits[0])
                } else {
                    Lookup::NotFound
                };
                assert_eq!(lookup(p), want, "{p}");
            }
        }
    }

    /// The table against xl's own manual (Debian's xl 4.17 xl(1), from DOMUS_TESTDEPS or the fetched
    /// test deps): every command the manual documents is in the table, and the table's extras are the
    /// three commands the manual leaves out.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn table_matches_xls_manual() {
        let deps = std::env::var_os("DOMUS_TESTDEPS").map_or_else(
            || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/testdeps"),
            std::path::PathBuf::from,
        );
        let man = deps.join("xen/usr/share/man/man1/xl.1.gz");
        assert!(
            man.exists(),
            "{} missing: run scripts/fetch-test-deps.sh",
            man.display()
        );
        let out = std::process::Command::new("zcat")
            .arg(&man)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        // Items of the manual's lists that are not commands (options, global settings, COLO params).
        let not_commands = [
            "active-disk",
            "autoballoon",
            "colo-export",
            "colo-host",
            "colo-port",
            "forwarddev",
            "help",
            "hidden-disk",
        ];
        let mut documented: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(".IP \"\\fB")?.split("\\fR").next())
            .filter(|n| {
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
            .filter(|n| !not_commands.contains(n))
            .collect();
        documented.sort_unstable();
        documented.dedup();
        assert!(documented.len() > 80, "manual parse found {documented:?}");
        for n in &documented {
            assert!(
                XL_COMMANDS.contains(n),
                "xl(1) documents `{n}`, missing from XL_COMMANDS"
            );
        }
        let mut extra: Vec<&str> = XL_COMMANDS
            .iter()
            .copied()
            .filter(|n| !documented.contains(n))
            .collect();
        extra.sort_unstable();
        assert_eq!(extra, ["devd", "migrate-receive", "sched-credit2"]);
    }
}
