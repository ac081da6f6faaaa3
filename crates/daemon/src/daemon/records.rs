//! Persistent domain records under `$DOMUS_STATE_DIR/domains/<domid>.json`, plus the next domid, so a
//! restarted domusd knows every domain (and which VMM to re-adopt).
//!
//! Each write goes to a temporary file that is renamed over the old one, so a kill -9 leaves either the old
//! or the new record, never half of one.

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

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), RecordError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data).map_err(io_err("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("rename into place", path))
}

impl Records {
    /// Opens (creating) the record directory under `state_dir`.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn open(state_dir: &Path) -> Result<Self, RecordError> {
        let dir = state_dir.join("domains");
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        Ok(Self { dir })
    }

    fn path(&self, domid: u32) -> PathBuf {
        self.dir.join(format!("{domid}.json"))
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

    /// Deletes a record (absent is fine).
    ///
    /// # Errors
    /// [`RecordError`].
    pub fn remove(&self, domid: u32) -> Result<(), RecordError> {
        let p = self.path(domid);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &p)(e)),
            _ => Ok(()),
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
        };
        r.save(&rec).unwrap();
        fs::write(dir.path().join("domains/9.json"), "{garbage").unwrap();
        let (recs, warnings) = r.load_all().unwrap();
        assert_eq!(recs, vec![rec]);
        assert_eq!(warnings.len(), 1);
        r.remove(3).unwrap();
        r.remove(3).unwrap();
        r.save_next_domid(42).unwrap();
        assert_eq!(r.load_next_domid(), 42);
    }
}
