//! Builds boot disk images the way users make them, with Debian's tools: `mkfs.ext4 -d`, `mkfs.vfat` +
//! `mcopy`, `xorriso`, `sfdisk`. Each test lays out a directory (a kernel, a ramdisk, a boot config) and
//! turns it into an image.
#![allow(dead_code, clippy::unwrap_used)] // shared by several test files; tests may unwrap

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory tree to turn into a filesystem.
pub struct Tree {
    pub dir: tempfile::TempDir,
}

impl Tree {
    pub fn new() -> Self {
        Tree {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes `data` at `path` (relative, parents created).
    pub fn file(&self, path: &str, data: &[u8]) -> &Self {
        let p = self.dir.path().join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A deterministic "kernel" or "ramdisk" blob of `len` bytes.
pub fn blob(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (is the Debian package installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where images go.
pub struct Images {
    pub dir: tempfile::TempDir,
}

impl Images {
    pub fn new() -> Self {
        Images {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `mkfs.<kind> -d tree` (kind: ext2, ext3, ext4) into a `size_mib` image.
    pub fn ext(&self, kind: &str, tree: &Tree, size_mib: u64) -> PathBuf {
        let img = self.path(&format!("{kind}.img"));
        run(Command::new(format!("mkfs.{kind}"))
            .args(["-q", "-F", "-d"])
            .arg(tree.path())
            .arg(&img)
            .arg(format!("{size_mib}M")));
        img
    }

    /// `mkfs.vfat` + `mcopy -s` of the tree's top-level entries.
    pub fn fat(&self, tree: &Tree, size_mib: u64) -> PathBuf {
        let img = self.path("fat.img");
        run(Command::new("mkfs.vfat")
            .arg("-C")
            .arg(&img)
            .arg((size_mib * 1024).to_string()));
        for entry in fs::read_dir(tree.path()).unwrap() {
            run(Command::new("mcopy")
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-s", "-i"])
                .arg(&img)
                .arg(entry.unwrap().path())
                .arg("::/"));
        }
        img
    }

    /// `xorriso -as mkisofs -R` (Rock Ridge names).
    pub fn iso(&self, tree: &Tree) -> PathBuf {
        let img = self.path("cd.iso");
        run(Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-R", "-o"])
            .arg(&img)
            .arg(tree.path()));
        img
    }

    /// A disk with a partition table (`label` "dos" or "gpt") whose partitions hold the given filesystem
    /// images (or are left empty for `None`); `bootable` marks the active one (1-based).
    pub fn partitioned(
        &self,
        label: &str,
        parts: &[Option<&Path>],
        bootable: Option<usize>,
    ) -> PathBuf {
        let disk = self.path(&format!("{label}-disk.img"));
        let mut script = format!("label: {label}\n");
        let mut offset_mib = 1u64;
        let mut layout = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let size_mib = p.map_or(4, |p| fs::metadata(p).unwrap().len().div_ceil(1 << 20));
            let mut line = format!("start={}, size={}", offset_mib * 2048, size_mib * 2048);
            if label == "gpt" {
                line.push_str(&format!(", name=part{}", i + 1));
                if bootable == Some(i + 1) {
                    line.push_str(", attrs=LegacyBIOSBootable");
                }
            } else if bootable == Some(i + 1) {
                line.push_str(", bootable");
            }
            script.push_str(&line);
            script.push('\n');
            layout.push((offset_mib << 20, *p));
            offset_mib += size_mib;
        }
        let total = (offset_mib + 1) << 20;
        let f = fs::File::create(&disk).unwrap();
        f.set_len(total).unwrap();
        drop(f);
        let mut child = Command::new("sfdisk")
            .arg("-q")
            .arg(&disk)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "sfdisk: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let f = fs::OpenOptions::new().write(true).open(&disk).unwrap();
        for (off, p) in layout {
            if let Some(p) = p {
                f.write_all_at(&fs::read(p).unwrap(), off).unwrap();
            }
        }
        disk
    }

    /// A raw image holding `bytes` padded to `size` bytes.
    pub fn raw(&self, name: &str, bytes: &[(u64, &[u8])], size: u64) -> PathBuf {
        let img = self.path(name);
        let f = fs::File::create(&img).unwrap();
        f.set_len(size).unwrap();
        for (off, b) in bytes {
            f.write_all_at(b, *off).unwrap();
        }
        img
    }
}
