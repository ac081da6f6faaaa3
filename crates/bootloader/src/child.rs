//! The sandboxed child's whole life: lock itself in, take the two descriptors, find and report.
//!
//! `domus-bootloader JAIL UID GID [--entry=..] [--kernel=..] [--ramdisk=..] [--args=..]` with the disk
//! read-only on descriptor 3 and the report memfd on descriptor 4 (see [`crate::launch`]). Exit status 0:
//! the report holds a kernel; 1: the report holds an error; 2: the child could not even report.

use std::fs::File;
use std::io::{Seek, Write};

use domus_sandbox::{filter, Jail};

use crate::disk::Region;
use crate::find::{self, chain};
use crate::protocol::{Limits, Tag, Writer};
use crate::request::BootRequest;

/// Descriptor of the boot disk in the child.
pub const DISK_FD: i32 = 3;
/// Descriptor of the report in the child.
pub const REPORT_FD: i32 = 4;

/// Runs the child with its arguments (without argv\[0\]); returns the exit status.
pub fn main(args: &[String]) -> i32 {
    // SAFETY: descriptor 4 is the report the launcher passed; nothing else in this process owns it.
    let report = match unsafe { crate::sys::inherited(REPORT_FD) } {
        Ok(f) => f,
        Err(_) => return 2,
    };
    // A bug in a filesystem or partition-table reader (a panic) still ends with a report saying so.
    if let Ok(hook_report) = report.try_clone() {
        std::panic::set_hook(Box::new(move |info| {
            let _ = write_error(
                &hook_report,
                &format!(
                    "the bootloader failed on this disk image (a bug in a disk reader): {info}"
                ),
            );
            std::process::exit(1);
        }));
    }
    match run(args, &report) {
        Ok(()) => 0,
        Err(message) => {
            if write_error(&report, &message).is_err() {
                return 2;
            }
            1
        }
    }
}

fn write_error(mut report: &File, message: &str) -> std::io::Result<()> {
    report.set_len(0)?;
    report.rewind()?;
    let mut w = Writer::new(report)?;
    w.text(Tag::Error, message)?;
    w.finish()?.flush()
}

fn run(args: &[String], report: &File) -> Result<(), String> {
    let [root, uid, gid, rest @ ..] = args else {
        return Err("usage: domus-bootloader JAIL UID GID [OPTIONS]".into());
    };
    let jail = Jail {
        root: root.into(),
        uid: uid.parse().map_err(|_| format!("bad uid {uid}"))?,
        gid: gid.parse().map_err(|_| format!("bad gid {gid}"))?,
    };
    // SAFETY: descriptor 3 is the disk the launcher passed; nothing else in this process owns it.
    let disk = unsafe { crate::sys::inherited(DISK_FD) }
        .map_err(|e| format!("boot disk descriptor: {e}"))?;
    let prog = filter::allow_list(filter::BASE_SYSCALLS).map_err(|e| chain(&e))?;
    jail.enter(&prog).map_err(|e| chain(&e))?;
    // From here on: no filesystem, no privileges, the filter installed. Only now touch the disk.
    let mut req = BootRequest::default();
    req.apply(rest).map_err(|e| e.to_string())?;
    let disk = Region::whole(disk).map_err(|e| format!("boot disk size: {e}"))?;
    let found = find::find(&disk, &req).map_err(|e| chain(&e))?;
    let mut w = Writer::new(report).map_err(|e| e.to_string())?;
    find::report(&found, Limits::default(), &mut w).map_err(|e| chain(&e))?;
    w.finish()
        .and_then(|mut f| f.flush())
        .map_err(|e| e.to_string())
}
