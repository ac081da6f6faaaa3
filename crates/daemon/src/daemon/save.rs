//! `xl save` and `xl restore`: a domain written to an image file and recreated from it.
//!
//! Save: domusd creates `FILE.tmp-<pid>` next to FILE (owner-only, never an existing file), writes the
//! image header with the domain's configuration (`image.rs`), hands the descriptor to the VMM with the
//! `save` control request (the VMM pauses the guest and appends its snapshot stream: it never opens a
//! path), syncs, and only then renames it to FILE. Any failure removes the temporary file and leaves
//! the domain running as it was. Then the domain is destroyed, unless `keep` (`-c`), which leaves it
//! running, or paused with `paused` (`-p`).
//!
//! Restore: the header is read and checked (a bad one is refused before anything is allocated); the
//! embedded configuration (or the one given) goes through the same create path as `xl create` — the
//! name must be free, the UUID is kept, a new domid is allocated, vifs' TAPs are made again — and the
//! VMM gets the rest of the file as its restore stream. A damaged stream makes the VMM refuse to start:
//! the domain is removed again, nothing is left.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use domus_api::messages::{DomainInfo, RestoreRequest, SaveRequest};
use domus_vmm_api::Request;
use tracing::info;

use super::vmm::Control;
use super::{ApiError, Daemon};
use domus_api::image;

/// Removes the temporary image unless disarmed.
struct TempImage(Option<PathBuf>);

impl Drop for TempImage {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn absolute(path: &str, what: &str) -> Result<PathBuf, ApiError> {
    let p = PathBuf::from(path);
    if !p.is_absolute() {
        return Err(ApiError::bad_request(format!(
            "{what}: {path} is not an absolute path"
        )));
    }
    Ok(p)
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

impl Daemon {
    /// Saves domain `spec` to the image `req.path` (see the module docs).
    ///
    /// # Errors
    /// 400 for a relative path or an unwritable place, 404/409 as for other operations on a domain,
    /// 500 when the VMM cannot write its state (the domain then runs on).
    pub fn save_image(self: &Arc<Self>, spec: &str, req: &SaveRequest) -> Result<(), ApiError> {
        Self::refuse_domain0(spec, "save")?;
        let path = absolute(&req.path, "save")?;
        let (config, mib) = {
            let t = self.lock();
            let (_, d) = t.lookup(spec)?;
            (d.rec.config.clone(), d.info().memory_mib)
        };
        let config = req.config.clone().unwrap_or(config);
        let target = self.running_target(spec, "save")?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| {
                ApiError::bad_request(format!("save: cannot create {}: {e}", tmp.display()))
            })?;
        let mut guard = TempImage(Some(tmp.clone()));
        let io_err = |e: std::io::Error| {
            ApiError::internal(format!("save: cannot write {}: {e}", tmp.display()))
        };
        image::write_header(&mut file, &config).map_err(io_err)?;
        info!(domid = target.domid, path = %path.display(), "saving domain");
        let started = std::time::Instant::now();
        let fail = |e: super::vmm::VmmError| {
            ApiError::internal(format!(
                "save: domain {}: {:#}",
                target.domid,
                anyhow::Error::from(e)
            ))
        };
        let mut c = Control::connect(&target.control).map_err(fail)?;
        // About 1 s per 50 MiB of guest memory, at least 60 s.
        c.set_reply_timeout(Duration::from_secs((mib / 50).max(60)))
            .map_err(fail)?;
        let resume = req.keep && !req.paused;
        c.send_with_file(&Request::Save { resume }, &file)
            .map_err(fail)?;
        // The VMM wrote through its copy of the descriptor: same file offset, so the size tells.
        file.seek(SeekFrom::End(0)).map_err(io_err)?;
        file.flush().map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(|e| {
            ApiError::internal(format!(
                "save: cannot rename {} to {}: {e}",
                tmp.display(),
                path.display()
            ))
        })?;
        guard.0 = None;
        sync_dir(&path);
        info!(
            domid = target.domid,
            ms = started.elapsed().as_millis(),
            "domain saved"
        );
        if !req.keep {
            return self.destroy(&target.domid.to_string());
        }
        // The VMM paused the guest for the save; record what it is now.
        self.set_paused(&target.domid.to_string(), req.paused)
    }

    /// Restores a domain from the image `req.path` (see the module docs).
    ///
    /// # Errors
    /// 400 for a relative path or a damaged image header, 409 when the name or UUID is in use, 500 when
    /// the VMM refuses the image's state.
    pub fn restore_image(self: &Arc<Self>, req: &RestoreRequest) -> Result<DomainInfo, ApiError> {
        tracing::debug!(path = %req.path, "restore request");
        let path = absolute(&req.path, "restore")?;
        let mut file = File::open(&path).map_err(|e| {
            ApiError::bad_request(format!("restore: cannot open {}: {e}", path.display()))
        })?;
        let embedded = image::read_header(&mut file)
            .map_err(|e| ApiError::bad_request(format!("restore: {}: {e}", path.display())))?;
        let mut config = req.config.clone().unwrap_or(embedded.clone());
        if req.config.is_some() {
            // A replacement config keeps the saved domain's identity.
            config.uuid.clone_from(&embedded.uuid);
        }
        info!(domname = %config.name, path = %path.display(), "restoring domain");
        tracing::debug!(domname = %config.name, "restore: image header read");
        self.create_restored(config, req.paused, file, req.incoming)
    }
}
