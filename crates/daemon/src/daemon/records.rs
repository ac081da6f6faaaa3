//! Persistent domain records under `$DOMUS_STATE_DIR/domains/<domid>.json`, plus the next domid, so a
//! restarted domusd knows every domain (and which VMM to re-adopt).
//!
//! Each write goes to a temporary file (mode 0600) that is synced and renamed over the old one, and the
//! directory is synced after every rename and removal, so a kill -9 or a power cut leaves either the old or
//! the new record, never half of one, and a step the supervisor recorded is still recorded afterwards.
//! A write that fails (full or read-only file system) leaves the old record in place and says so: the
//! supervisor then refuses changes until [`Records::probe`] succeeds again.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::domain::DomainRecord;

/// Record store errors.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// File system failure.
    #[error("cannot {what} {path}")]
    Io {
        /// What we tried.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Serialisation failure.
    #[error("cannot encode the record of domain {domid}")]
    Encode {
        /// Which domain.
        domid: u32,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// The record directory.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RecordError {
    let path = path.to_path_buf();
    move |source| RecordError::Io { what, path, source }
}

fn sync_dir(dir: &Path) -> Result<(), RecordError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), RecordError> {
    write_replacing(path, data, true)
}

/// Writes `data` to a temporary file renamed over `path`; with `sync`, the file and then its
/// directory are synced too (durable against a host crash, not just visible to a restarted domusd).
fn write_replacing(path: &Path, data: &[u8], sync: bool) -> Result<(), RecordError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let written = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(data)?;
            if sync {
                f.sync_all()?;
            }
            Ok(())
        });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", &tmp)(e));
    }
    fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
    if !sync {
        return Ok(());
    }
    sync_dir(path.parent().unwrap_or(Path::new("/")))
}

impl Records {
    /// Opens (creating) the record directory under `state_dir`.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn open(state_dir: &Path) -> Result<Self, RecordError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir = state_dir.join("domains");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("create", &dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err("restrict", &dir))?;
        Ok(Self { dir })
    }

    fn path(&self, domid: u32) -> PathBuf {
        self.dir.join(format!("{domid}.json"))
    }

    /// Whether domain `domid` has a record on disk.
    pub fn exists(&self, domid: u32) -> bool {
        self.path(domid).exists()
    }

    /// Whether a record can be written now: writes, syncs and removes a small probe file.
    ///
    /// # Errors
    /// [`RecordError`] naming why not (no space, read-only, ...).
    pub fn probe(&self) -> Result<(), RecordError> {
        let p = self.dir.join("probe");
        write_atomic(&p, &[b'x'; 4096])?;
        fs::remove_file(&p).map_err(io_err("remove", &p))
    }

    /// Writes a record.
    ///
    /// # Errors
    /// [`RecordError`].
    pub fn save(&self, rec: &DomainRecord) -> Result<(), RecordError> {
        let data = serde_json::to_vec_pretty(rec).map_err(|source| RecordError::Encode {
            domid: rec.domid,
            source,
        })?;
        write_atomic(&self.path(rec.domid), &data)
    }

    /// Writes a record without syncing it: visible to a domusd restarted after a crash of this one,
    /// but not durable against a crash of the host. Only for a record that a synced
    /// [`Records::save`] replaces before anything it describes can outlive the host's crash (the
    /// "Creating" record of a domain, before its VMM runs: `lifecycle`).
    ///
    /// # Errors
    /// [`RecordError`].
    pub fn save_unsynced(&self, rec: &DomainRecord) -> Result<(), RecordError> {
        let data = serde_json::to_vec_pretty(rec).map_err(|source| RecordError::Encode {
            domid: rec.domid,
            source,
        })?;
        write_replacing(&self.path(rec.domid), &data, false)
    }

    /// Deletes a record (absent is fine).
    ///
    /// # Errors
    /// [`RecordError`].
    pub fn remove(&self, domid: u32) -> Result<(), RecordError> {
        let p = self.path(domid);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &p)(e)),
            Err(_) => Ok(()),
            Ok(()) => sync_dir(&self.dir),
        }
    }

    /// Loads every readable record; unreadable ones are returned as warnings.
    ///
    /// # Errors
    /// When the directory cannot be listed.
    pub fn load_all(&self) -> Result<(Vec<DomainRecord>, Vec<String>), RecordError> {
        let mut recs = Vec::new();
        let mut warnings = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err("list", &self.dir))? {
            let entry = entry.map_err(io_err("list", &self.dir))?;
            let p = entry.path();
            if p.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<DomainRecord>(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => recs.push(r),
                Err(e) => warnings.push(format!("{}: {e}", p.display())),
            }
        }
        recs.sort_by_key(|r| r.domid);
        Ok((recs, warnings))
    }

    /// Persists the next domid to try.
    ///
    /// # Errors
    /// [`RecordError`].
    pub fn save_next_domid(&self, next: u32) -> Result<(), RecordError> {
        write_atomic(&self.dir.join("next-domid"), next.to_string().as_bytes())
    }

    /// [`Records::save_next_domid`] without the sync: a domid in use has a record, which keeps a
    /// restarted domusd from giving it out again whatever this file says.
    ///
    /// # Errors
    /// [`RecordError`].
    pub fn save_next_domid_unsynced(&self, next: u32) -> Result<(), RecordError> {
        write_replacing(
            &self.dir.join("next-domid"),
            next.to_string().as_bytes(),
            false,
        )
    }

    /// The persisted next domid (0 when none).
    pub fn load_next_domid(&self) -> u32 {
        fs::read_to_string(self.dir.join("next-domid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn save_load_remove() {
        let dir = tempfile::tempdir().unwrap();
        let r = Records::open(dir.path()).unwrap();
        let rec = DomainRecord {
            domid: 3,
            name: "a".into(),
            uuid: "u".into(),
            config: domus_config::DomainConfig::with_defaults("a"),
            start_time: 1.5,
            maxmem_mib: 16,
            vmm: None,
            stopped: None,
            restarts: 2,
            affinity: BTreeMap::from([(0, vec![1])]),
            soft_affinity: BTreeMap::from([(0, vec![0])]),
            sched: crate::daemon::domain::SchedParams {
                weight: 512,
                cap: 25,
            },
            pending_config: None,
            reboot_requested: false,
            phase: super::super::domain::Phase::Running,
            restart: None,
        };
        r.save(&rec).unwrap();
        fs::write(dir.path().join("domains/9.json"), "{garbage").unwrap();
        let (recs, warnings) = r.load_all().unwrap();
        assert_eq!(recs, vec![rec.clone()]);
        assert_eq!(warnings.len(), 1);
        r.remove(3).unwrap();
        r.remove(3).unwrap();
        r.save_next_domid(42).unwrap();
        use std::os::unix::fs::PermissionsExt;
        r.save(&rec).unwrap();
        let mode = fs::metadata(dir.path().join("domains/3.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(r.exists(3) && !r.exists(4));
        r.probe().unwrap();
        assert_eq!(r.load_next_domid(), 42);
        // The unsynced writes are visible like the synced ones, and replaced by them.
        let mut creating = rec.clone();
        creating.domid = 4;
        creating.phase = super::super::domain::Phase::Creating;
        r.save_unsynced(&creating).unwrap();
        r.save_next_domid_unsynced(43).unwrap();
        assert!(r.exists(4));
        assert_eq!(r.load_next_domid(), 43);
        let (recs, _) = r.load_all().unwrap();
        assert!(recs.contains(&creating));
        creating.phase = super::super::domain::Phase::Running;
        r.save(&creating).unwrap();
        let (recs, _) = r.load_all().unwrap();
        assert!(recs.contains(&creating));
        assert!(!dir.path().join("domains/4.tmp").exists());
    }
}
