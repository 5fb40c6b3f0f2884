//! Crash-safe files for node-local state (journals, device records, mirrored profiles).
//!
//! A reader must never see a half-written file, and a file that `write_atomic` returned for
//! must survive a power cut: write a temporary file in the same directory, fsync it, rename it
//! over the target (atomic within one filesystem), then fsync the directory so the rename itself
//! is durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A failed state-file operation, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct PersistError {
    /// What was being done (`write`, `read`, `remove`, `parse`).
    pub op: &'static str,
    /// The file.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

fn err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PersistError + 'a {
    move |source| PersistError { op, path: path.to_owned(), source }
}

/// Writes `bytes` to `path` atomically and durably (mode 0600; parent directories are created
/// with mode 0700).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    create_private_dir(path.parent().unwrap_or(Path::new(".")))?;
    replace_with(path, 0o600, |f| f.write_all(bytes))
}

/// Replaces `path` (in an existing directory) with a file of mode `mode` that `fill` writes:
/// a reader, or a process exec'ing the file, sees the old file or the new one, never a partial
/// one. The temporary file is removed if anything fails.
pub fn replace_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), PersistError> {
    replace(path, mode, true, fill)
}

/// [`replace_with`], the directory fsync (the rename's durability) only if `sync_dir`.
fn replace(
    path: &Path,
    mode: u32,
    sync_dir: bool,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), PersistError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if sync_dir { File::open(dir)?.sync_all() } else { Ok(()) }
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        PersistError { op: "write", path: path.to_owned(), source: e }
    })
}

/// `value` as pretty JSON (state files are read by operators too); an error names `path`.
fn encode<T: serde::Serialize>(path: &Path, value: &T) -> Result<Vec<u8>, PersistError> {
    serde_json::to_vec_pretty(value).map_err(|e| PersistError { op: "encode", path: path.to_owned(), source: e.into() })
}

/// Serializes `value` as pretty JSON and writes it with [`write_atomic`].
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), PersistError> {
    let bytes = encode(path, value)?;
    write_atomic(path, &bytes)
}

/// Rewrites an existing state file that [`write_json`] made durable, without the directory fsync:
/// a reader sees the old content or the new (the rename is atomic), and after a power cut finds
/// one of the two complete (the data is fsynced; only the rename may be lost). For updates whose
/// loss on a power cut is harmless, such as a journal marked complete (a reboot ends the
/// attachment anyway). Saves one of the write's two fsyncs.
pub fn rewrite_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), PersistError> {
    let bytes = encode(path, value)?;
    replace(path, 0o600, false, |f| f.write_all(&bytes))
}

/// Reads JSON from `path`; `Ok(None)` if the file does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, PersistError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err("read", path)(e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| PersistError {
        op: "parse",
        path: path.to_owned(),
        source: e.into(),
    })
}

/// Removes `path` durably; a missing file is not an error.
pub fn remove(path: &Path) -> Result<(), PersistError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err("remove", path)(e)),
    }
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(err("sync", dir))?;
    }
    Ok(())
}

/// Creates a directory (and parents) readable only by root.
pub fn create_private_dir(dir: &Path) -> Result<(), PersistError> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(err("create directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_reads_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/state.json");
        write_json(&path, &serde_json::json!({"x": 1})).unwrap();
        let v: serde_json::Value = read_json(&path).unwrap().unwrap();
        assert_eq!(v["x"], 1);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temporary file left");
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert!(read_json::<serde_json::Value>(&path).unwrap().is_none());
    }

    #[test]
    fn a_rewrite_replaces_in_place_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vfs/j.json");
        write_json(&path, &serde_json::json!({"complete": false})).unwrap();
        rewrite_json(&path, &serde_json::json!({"complete": true})).unwrap();
        let v: serde_json::Value = read_json(&path).unwrap().unwrap();
        assert_eq!(v["complete"], true);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn corrupt_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        fs::write(&path, "{nope").unwrap();
        let e = read_json::<serde_json::Value>(&path).unwrap_err().to_string();
        assert!(e.starts_with(&format!("parse {}", path.display())), "{e}");
    }
}
