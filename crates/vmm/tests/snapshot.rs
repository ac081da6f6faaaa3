//! Machine snapshots end to end on the real VMM: a mem-soak probe is saved through the control socket
//! (the image descriptor sent with SCM_RIGHTS), a new VMM restores it and the guest carries on with the
//! next epochs and no corruption; damaged images (truncated, a flipped byte, another version, not an
//! image) are refused before anything runs.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// Sends `request` with `file`'s descriptor attached; returns the reply.
fn control_with_fd(ctl: &Path, request: &str, file: &std::fs::File) -> serde_json::Value {
    let s = common::connect(ctl);
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let line = format!("{request}\n");
    s.send_with_fd(line.as_bytes(), file.as_raw_fd()).unwrap();
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).unwrap();
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("bad reply {reply:?}: {e}"))
}

/// The epochs `PROBE mem-soak epoch=E ok` in `text`, and whether a corrupt line appeared.
fn epochs(text: &str) -> (Vec<u64>, bool) {
    let e = text
        .lines()
        .filter_map(|l| l.strip_prefix("PROBE mem-soak epoch="))
        .filter_map(|l| l.strip_suffix(" ok"))
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    (e, text.contains("mem-soak corrupt"))
}

fn soak_args<'a>(probe: &'a str, con: &'a str, ctl: &'a str) -> Vec<&'a str> {
    vec![
        "--kernel",
        probe,
        "--cmdline",
        "probe=mem-soak mib=48",
        "--memory",
        "96",
        "--console",
        con,
        "--control",
        ctl,
    ]
}

#[test]
fn save_then_restore_continues_the_guest() {
    let dir = common::temp_dir("snap");
    let probe = common::probe();
    let probe = probe.to_str().unwrap();
    let (ctl, con) = (dir.join("ctl.sock"), dir.join("con.sock"));
    let con_arg = format!("unix:{}", con.display());
    let ctl_arg = ctl.to_str().unwrap();
    let child = common::spawn(&soak_args(probe, &con_arg, ctl_arg));
    common::wait_for_path(&con, Duration::from_secs(30));
    let mut console = common::connect(&con);
    let before = common::read_until(&mut console, "epoch=2 ok", Duration::from_secs(60));
    let image = dir.join("image");
    let f = std::fs::File::create(&image).unwrap();
    let reply = control_with_fd(&ctl, r#"{"cmd":"save"}"#, &f);
    assert_eq!(reply["ok"], true, "{reply}");
    // Saved without `resume`: the source stays paused.
    assert_eq!(
        common::control(&ctl, r#"{"cmd":"state"}"#)["state"],
        "paused"
    );
    let mut rest = Vec::new();
    console
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let _ = console.read_to_end(&mut rest);
    let saved_text = format!("{before}{}", String::from_utf8_lossy(&rest));
    let (saved, corrupt) = epochs(&saved_text);
    assert!(!corrupt, "{saved_text}");
    let last = *saved.last().unwrap();
    assert_eq!(common::control(&ctl, r#"{"cmd":"destroy"}"#)["ok"], true);
    let run = common::wait_bounded(child, Duration::from_secs(30), "saved VMM");
    assert_eq!(run.code, 0, "{}", run.stderr);

    // A new VMM restores it: later epochs, all ok.
    let (ctl2, con2) = (dir.join("ctl2.sock"), dir.join("con2.sock"));
    let con2_arg = format!("unix:{}", con2.display());
    let mut args = soak_args(probe, &con2_arg, ctl2.to_str().unwrap());
    let image_arg = image.to_str().unwrap().to_owned();
    args.extend(["--restore", &image_arg]);
    let child = common::spawn(&args);
    common::wait_for_path(&con2, Duration::from_secs(30));
    let mut console = common::connect(&con2);
    let want = format!("epoch={} ok", last + 2);
    let text = common::read_until(&mut console, &want, Duration::from_secs(60));
    let (after, corrupt) = epochs(&text);
    assert!(!corrupt, "{text}");
    // The console backlog came along: the old epochs first, then the new ones, in order.
    assert!(after.windows(2).all(|w| w[1] == w[0] + 1), "{after:?}");
    assert!(after.contains(&(last + 1)), "{after:?} after {last}");
    common::control(&ctl2, r#"{"cmd":"destroy"}"#);
    let run = common::wait_bounded(child, Duration::from_secs(30), "restored VMM");
    assert_eq!(run.code, 0, "{}", run.stderr);

    // Damaged images are refused before anything runs.
    let good = std::fs::read(&image).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() / 2].to_vec(), "truncated"),
        (
            "flipped",
            {
                let mut b = good.clone();
                let i = b.len() - 4096;
                b[i] ^= 0x40;
                b
            },
            "checksum mismatch",
        ),
        (
            "version",
            {
                let mut b = good.clone();
                b[8] = 9;
                b
            },
            "version 9 is not supported",
        ),
        ("garbage", b"hello, world".to_vec(), "not a domus-vmm image"),
    ];
    for (name, bytes, want) in cases {
        let bad = dir.join(name);
        std::fs::File::create(&bad)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
        let bad = bad.to_str().unwrap().to_owned();
        let ctl3 = dir.join(format!("{name}.sock"));
        let mut args = soak_args(probe, "stdio", ctl3.to_str().unwrap());
        args.extend(["--restore", &bad]);
        let run = common::run_vmm(&args, Duration::from_secs(30));
        assert_eq!(run.code, 1, "{name}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{name}: {}", run.stderr);
        assert!(!run.stdout.contains("PROBE"), "{name} ran: {}", run.stdout);
        assert!(!ctl3.exists(), "{name}: a control socket was created");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
