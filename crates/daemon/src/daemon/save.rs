//! `xl save` and `xl restore`: a domain written to an image file and recreated from it.
//!
//! Save: domusd creates `FILE.tmp-<pid>` next to FILE (owner-only, never an existing file), writes the
//! image header with the domain's configuration (`image.rs`), hands the descriptor to the VMM with the
//! `save` control request (the VMM pauses the guest and appends its snapshot stream: it never opens a
//! path; it writes past the page cache, `O_DIRECT`, so little is left for the sync), syncs
//! (`fdatasync`; for what did go through the page cache, writeback is started early, as the VMM's
//! progress reports come in: `writeback.rs`), and only then renames it to FILE. Any failure removes the
//! temporary file and leaves the domain running as it was. Then the domain is destroyed, unless `keep`
//! (`-c`), which leaves it running, or paused with `paused` (`-p`): its record removed (synced), the
//! VMM asked for `destroy-unlocked` (it answers once the guest is paused and its disk locks are
//! released), the domain taken out of the table at once, and the VMM's exit — freeing guest memory
//! and the VM, 30-60 ms — left to the background (the watcher reaps it, the cgroup goes once empty).
//! So a `restore` right after `save` finds the name free and the disks unlocked.
//!
//! Restore: the header is read and checked (a bad one is refused before anything is allocated); the
//! embedded configuration (or the one given) goes through the same create path as `xl create` — the
//! name must be free, the UUID is kept, a new domid is allocated, vifs' TAPs are made again — and the
//! VMM gets the rest of the file as its restore stream. A damaged stream makes the VMM refuse to start:
//! the domain is removed again, nothing is left. The image may also come as a descriptor passed with
//! the request (`RestoreRequest::passed`: `migrate-receive` hands over its stdin, the migration
//! stream, with no copy in between), with a second one the VMM tells once it reads the stream.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use domus_api::messages::{DomainInfo, RestoreRequest, SaveRequest};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use domus_api::messages::ProgressReply;
use domus_vmm_api::{Progress, Request};
use tracing::info;

use super::vmm::Control;
use super::writeback::Writeback;
use super::{ApiError, Daemon};
use domus_api::image;

/// The latest progress report of each save in progress, by domid (served to `save` clients, which
/// poll it while their request runs).
#[derive(Debug, Default)]
pub struct SaveProgress(Mutex<HashMap<u32, Progress>>);

impl SaveProgress {
    fn set(&self, domid: u32, p: Option<Progress>) {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match p {
            Some(p) => m.insert(domid, p),
            None => m.remove(&domid),
        };
    }

    fn get(&self, domid: u32) -> Option<Progress> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&domid)
            .copied()
    }
}

/// Forgets a save's progress when the save ends, however it ends.
struct ProgressGuard<'a>(&'a SaveProgress, u32);

impl Drop for ProgressGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.1, None);
    }
}

/// How often the VMM reports while it writes an image, ms (each report starts writeback).
const WRITEBACK_MS: u64 = 50;

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
        let _forget = ProgressGuard(&self.saving, target.domid);
        // Progress reports come at least every WRITEBACK_MS: each starts writeback of what is new.
        let request = Request::Save {
            resume,
            progress_ms: Some(
                req.progress_ms
                    .map_or(WRITEBACK_MS, |ms| ms.min(WRITEBACK_MS)),
            ),
        };
        let header = file.stream_position().map_err(io_err)?;
        let mut writeback = Writeback::new(&file, header);
        let sent = c.send_with_file_progress(&request, &file, &mut |p| {
            writeback.advance(header + p.bytes);
            self.saving.set(target.domid, Some(p));
        });
        match sent {
            // A VMM started before progress reports existed: without them (it wrote nothing).
            Err(super::vmm::VmmError::Refused { message, .. })
                if domus_vmm_api::refuses_progress(&message) =>
            {
                let request = Request::Save {
                    resume,
                    progress_ms: None,
                };
                c.send_with_file(&request, &file).map_err(fail)?;
            }
            other => other.map_err(fail)?,
        }
        // The VMM wrote through its copy of the descriptor: same file offset, so the size tells.
        file.seek(SeekFrom::End(0)).map_err(io_err)?;
        file.flush().map_err(io_err)?;
        // The data and the size (fdatasync covers what is needed to read the data back): the image
        // is complete on disk before it gets its name.
        let written = started.elapsed();
        file.sync_data().map_err(io_err)?;
        let synced = started.elapsed();
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
            written_ms = written.as_millis(),
            sync_ms = (synced - written).as_millis(),
            "domain saved"
        );
        if !req.keep {
            // xl's save destroys the domain: the reply may come once its disks are free and it is
            // recorded as gone, before its VMM has finished exiting.
            return self.destroy_with(&target.domid.to_string(), true);
        }
        // The VMM paused the guest for the save; record what it is now.
        self.set_paused(&target.domid.to_string(), req.paused)
    }

    /// The `destroy-unlocked` step of destroying a saved domain (its record is already removed):
    /// once the VMM confirms that its guest is paused and every disk lock is released, the domain
    /// leaves the table (store nodes, vifs, runtime directory: `remove_locked`) while the VMM still
    /// exits — freeing guest memory and the VM took 30-60 ms of each save — and its cgroup is removed
    /// once it is empty, off this thread; the watcher reaps the process. False when the VMM refused
    /// (one that predates the request, or a guest that could not be paused): the caller destroys it
    /// the old way and waits for the exit.
    pub(super) fn destroy_unlocked(self: &Arc<Self>, target: &super::ops::Target) -> bool {
        match Self::send(target, &Request::DestroyUnlocked) {
            Ok(()) => {}
            Err(e) => {
                if !domus_vmm_api::refuses_destroy_unlocked(&e.message) {
                    tracing::warn!(domid = target.domid, error = %e.message, "destroy-unlocked refused; destroying and waiting for the VMM's exit");
                }
                return false;
            }
        }
        tracing::debug!(
            domid = target.domid,
            "disk locks released; the VMM exits in the background"
        );
        let leaf = {
            let mut t = self.lock();
            let Some(d) = t
                .get_mut(target.domid)
                .filter(|d| d.generation == target.generation)
            else {
                // The watcher saw the exit first and removed it.
                return true;
            };
            let leaf = d.rec.vmm.as_mut().and_then(|v| v.cgroup.take());
            self.remove_locked(&mut t, target.domid);
            leaf
        };
        if let Some(leaf) = leaf {
            let daemon = Arc::clone(self);
            let domid = target.domid;
            let spawned = std::thread::Builder::new()
                .name(format!("cgroup-release-{domid}"))
                .spawn(move || daemon.release_cgroup(domid, &leaf));
            if let Err(e) = spawned {
                tracing::warn!(domid, error = %e, "cannot start the cgroup release; the domain's cgroup stays");
            }
        }
        true
    }

    /// The latest progress report of domain `spec`'s save, if one runs.
    ///
    /// # Errors
    /// 404 for an unknown domain.
    pub fn save_progress(&self, spec: &str) -> Result<ProgressReply, ApiError> {
        let domid = {
            let t = self.lock();
            let (domid, _) = t.lookup(spec)?;
            domid
        };
        Ok(ProgressReply {
            progress: self.saving.get(domid),
        })
    }

    /// Restores a domain from the image `req.path` (see the module docs).
    ///
    /// # Errors
    /// 400 for a relative path or a damaged image header, 409 when the name or UUID is in use, 500 when
    /// the VMM refuses the image's state.
    pub fn restore_image(
        self: &Arc<Self>,
        req: &RestoreRequest,
        fds: Vec<std::os::fd::OwnedFd>,
    ) -> Result<DomainInfo, ApiError> {
        tracing::debug!(path = %req.path, passed = req.passed, "restore request");
        let (path, mut file, ready) = if req.passed {
            let (file, ready) = passed_stream(fds)?;
            (PathBuf::from(&req.path), file, ready)
        } else {
            let path = absolute(&req.path, "restore")?;
            let file = File::open(&path).map_err(|e| {
                ApiError::bad_request(format!("restore: cannot open {}: {e}", path.display()))
            })?;
            (path, file, None)
        };
        let embedded = image::read_header(&mut file)
            .map_err(|e| ApiError::bad_request(format!("restore: {}: {e}", path.display())))?;
        let mut config = req.config.clone().unwrap_or(embedded.clone());
        if req.config.is_some() {
            // A replacement config keeps the saved domain's identity.
            config.uuid.clone_from(&embedded.uuid);
        }
        info!(domname = %config.name, path = %path.display(), "restoring domain");
        tracing::debug!(domname = %config.name, "restore: image header read");
        self.create_restored(config, req.paused, file, req.incoming, ready)
    }
}

/// The stream and the optional notifier a restore passed: a pipe, FIFO, socket or regular file
/// first, then a pipe, FIFO or socket.
///
/// # Errors
/// 400 when the stream is missing or a descriptor is of another kind.
fn passed_stream(fds: Vec<std::os::fd::OwnedFd>) -> Result<(File, Option<File>), ApiError> {
    use std::os::unix::fs::FileTypeExt;
    let mut fds = fds.into_iter().map(File::from);
    let kind = |f: &File, files: bool, what: &str| {
        let t = f
            .metadata()
            .map_err(|e| ApiError::bad_request(format!("restore: the passed {what}: {e}")))?
            .file_type();
        if t.is_fifo() || t.is_socket() || (files && t.is_file()) {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!(
                "restore: the passed {what} is not a {}",
                if files {
                    "pipe, socket or regular file"
                } else {
                    "pipe or socket"
                }
            )))
        }
    };
    let stream = fds.next().ok_or_else(|| {
        ApiError::bad_request("restore: no descriptor came with a request for a passed stream")
    })?;
    kind(&stream, true, "stream")?;
    let ready = fds.next();
    if let Some(r) = &ready {
        kind(r, false, "notifier")?;
    }
    Ok((stream, ready))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::fd::OwnedFd;
    use std::os::unix::fs::FileTypeExt;

    fn pipe() -> (OwnedFd, OwnedFd) {
        let (r, w) = std::io::pipe().unwrap();
        (OwnedFd::from(r), OwnedFd::from(w))
    }

    #[test]
    fn a_passed_stream_is_a_pipe_or_file_and_its_notifier_a_pipe() {
        let (r, w) = pipe();
        let (stream, ready) = passed_stream(vec![r, w]).unwrap();
        assert!(stream.metadata().unwrap().file_type().is_fifo());
        assert!(ready.is_some());
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("image")).unwrap();
        let (_, ready) = passed_stream(vec![OwnedFd::from(file)]).unwrap();
        assert!(ready.is_none());
        // Nothing passed, a directory, a regular file as the notifier: refused, named.
        let e = passed_stream(Vec::new()).unwrap_err();
        assert!(e.message.contains("no descriptor came"), "{}", e.message);
        let d = File::open(dir.path()).unwrap();
        let e = passed_stream(vec![OwnedFd::from(d)]).unwrap_err();
        assert!(
            e.message.contains("the passed stream is not"),
            "{}",
            e.message
        );
        let (r, _w) = pipe();
        let f = File::open(dir.path().join("image")).unwrap();
        let e = passed_stream(vec![r, OwnedFd::from(f)]).unwrap_err();
        assert!(
            e.message.contains("the passed notifier is not"),
            "{}",
            e.message
        );
    }
}
