//! The SQLite file as a file: which one the process opened (so that its deletion or
//! replacement is noticed), who may read it, and the lock that keeps one runner on it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::StoreError;

/// The identity (device and inode) of the database file a process opened.
///
/// SQLite keeps writing to the file it opened, even once its name is gone: after an `rm` of
/// the database (and its `-wal` and `-shm`), commits, checkpoints included, land in an
/// unlinked inode and vanish at exit, while every probe says all is well. Comparing the
/// identity behind the path with the one opened shows it at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileIdentity {
    path: String,
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    /// The identity of the file at `path` now; `None` if it cannot be read.
    pub(super) fn of(path: &str) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileIdentity {
            path: path.to_string(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Fails with [`StoreError::Replaced`] when `path` names no file any more, or another
    /// file than the one opened.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        let how = match std::fs::metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => return Ok(()),
            Ok(_) => "replaced by another file",
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "deleted",
            // Unreadable for a moment (a permission change, say): not proof of anything.
            Err(_) => return Ok(()),
        };
        Err(StoreError::Replaced {
            path: self.path.clone(),
            how,
        })
    }
}

/// Makes the database and its `-wal` and `-shm` readable by their owner only, if they are
/// not already: files made by versions before 0600 (or copied in with a umask of 022) keep
/// phone numbers world-readable otherwise, and SQLite gives new `-wal`/`-shm` files the
/// database's mode. Logged once per file tightened. The database must exist.
pub(super) fn tighten_modes(path: &str) {
    for file in [
        path.to_string(),
        format!("{path}-wal"),
        format!("{path}-shm"),
    ] {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            continue;
        }
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700)) {
            Ok(()) => tracing::warn!(
                file = %file,
                was = format!("{mode:o}"),
                now = format!("{:o}", mode & 0o700),
                "Database file was readable by other users; made it private."
            ),
            Err(e) => tracing::warn!(
                file = %file,
                mode = format!("{mode:o}"),
                error = %e,
                "Database file is readable by other users and could not be made private."
            ),
        }
    }
}

/// Takes an exclusive `flock` on the database file itself, held while `File` lives: the
/// file's identity, so that a hard link (another path, the same inode) meets the same lock.
///
/// `flock` and SQLite's POSIX record locks are independent on Linux, so this takes nothing
/// from SQLite. But POSIX locks have one trap: closing *any* descriptor of a file drops every
/// record lock the process holds on it. So this descriptor is held until the store closes,
/// after its connections are gone, and never opened and closed in between.
pub(super) fn identity_lock(path: &Path) -> Result<Option<std::fs::File>, StoreError> {
    let file = std::fs::OpenOptions::new().read(true).open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// The runner's two locks, held for the life of the process (see
/// `SqlStore::claim_runner_lock`): the `.lock` sidecar older binaries take, and the lock on
/// the database file itself, which a hard link cannot dodge.
pub(super) struct RunnerLock {
    pub(super) _sidecar: std::fs::File,
    pub(super) _identity: std::fs::File,
}
