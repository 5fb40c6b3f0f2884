//! The node configuration: the admin's settings of the plugin on this node, in a root-owned file
//! at a path fixed at build time ([`vfnet_types::layout::NODE_CONFIG`], `/etc/vfnet/node.json`,
//! written by the DaemonSet's init container from its ConfigMap, `vfnet install --node-config`).
//!
//! Network definitions are written by tenants (a NetworkAttachmentDefinition is a namespaced
//! object, and Multus hands its JSON to the plugin verbatim), while the plugin runs as root. So
//! every setting that names a host path or an endpoint lives here, not in the network
//! definition: the state, run and profile directories, the log file, the PodResources socket;
//! and so does the node's policy (`requireDeviceRecords`). A network definition that sets one of
//! those keys is refused, naming the key and this file, unless `allowNetworkOverrides` is set
//! (test set-ups and single-user nodes).
//!
//! A missing file means the defaults (every directory at its default, no overrides, records not
//! required). A file that anyone but root could have written is refused: trusting it would hand
//! the plugin's root to whoever can write it. The same holds for its directory (whoever can write
//! the directory can replace the file). (Owned by the plugin's own user is as good as root: that
//! is root on a node, and lets the plugin's tests run unprivileged.)

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vfnet_types::{ProfileDir, RunDir, StateDir};

/// The node configuration. Every key is optional; each has one default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeConfig {
    /// The file it was read from (for messages that say where a setting lives).
    #[serde(skip)]
    pub path: PathBuf,
    /// Journals (default `/var/lib/vfnet`).
    #[serde(default)]
    pub state_dir: StateDir,
    /// Device records, locks, the daemon's socket (default `/run/vfnet`).
    #[serde(default)]
    pub run_dir: RunDir,
    /// Profiles (default `<runDir>/profiles`, where the node daemon mirrors them).
    #[serde(default)]
    pub profile_dir: Option<ProfileDir>,
    /// Where the plugin logs (default stderr, which the runtime keeps).
    #[serde(default)]
    pub log_file: Option<PathBuf>,
    /// kubelet's PodResources socket, for `resourceName` (default
    /// `/var/lib/kubelet/pod-resources/kubelet.sock`).
    #[serde(default)]
    pub pod_resources_socket: Option<PathBuf>,
    /// Refuse every VF without a device record (written by the node daemon when kubelet
    /// allocates it): on such a node only VFs of vfnet's pools can be attached, so every VF is
    /// under its pool's rules (`requireProfile`, `allowedProfiles`, `physicalNetwork`).
    #[serde(default)]
    pub require_device_records: bool,
    /// Let network definitions set the keys above (`stateDir`, `runDir`, `profileDir`,
    /// `logFile`, `podResourcesSocket`). For test set-ups and single-user nodes only: with it,
    /// whoever writes a network definition chooses paths the root plugin writes to.
    #[serde(default)]
    pub allow_network_overrides: bool,
}

/// Why the node configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    /// It could not be read.
    #[error("cannot read the node configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Someone other than root owns it or could write it (or its directory).
    #[error(
        "the node configuration {path} is not safe: {what} (it must be owned by root and writable by root only, as must its directory)"
    )]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// Owner and mode of the offending file or directory.
        what: String,
    },
    /// It is not a valid node configuration.
    #[error("the node configuration {path} is invalid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// Largest node configuration read (a handful of paths).
const MAX_BYTES: u64 = 64 * 1024;

/// Refuses `meta` (of `path`) unless root (or the plugin's own user) owns it and neither group
/// nor others may write it.
fn check_owner(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    let mode = meta.mode() & 0o7777;
    if meta.uid() != 0 && meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(format!("{} is owned by uid {} (mode {mode:04o})", path.display(), meta.uid()));
    }
    if mode & 0o022 != 0 {
        return Err(format!("{} is writable by group or others (mode {mode:04o})", path.display()));
    }
    Ok(())
}

impl NodeConfig {
    /// Reads the node configuration at `path`: the defaults if there is none.
    pub fn load(path: &Path) -> Result<Self, NodeConfigError> {
        let unsafe_ = |what: String| NodeConfigError::Unsafe { path: path.to_owned(), what };
        let read = |source| NodeConfigError::Read { path: path.to_owned(), source };
        // O_NOFOLLOW: a symlink planted at the path is refused, not followed.
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self { path: path.to_owned(), ..Self::default() });
            }
            Err(e) => return Err(read(e)),
        };
        let meta = file.metadata().map_err(read)?;
        if !meta.is_file() {
            return Err(unsafe_(format!("{} is not a regular file", path.display())));
        }
        check_owner(path, &meta).map_err(unsafe_)?;
        let dir = path.parent().unwrap_or(Path::new("/"));
        check_owner(dir, &std::fs::metadata(dir).map_err(read)?).map_err(unsafe_)?;
        let mut bytes = Vec::new();
        file.take(MAX_BYTES + 1).read_to_end(&mut bytes).map_err(read)?;
        if bytes.len() as u64 > MAX_BYTES {
            return Err(NodeConfigError::Invalid { path: path.to_owned(), message: format!("over {MAX_BYTES} bytes") });
        }
        let config =
            Self::parse(&bytes).map_err(|message| NodeConfigError::Invalid { path: path.to_owned(), message })?;
        Ok(Self { path: path.to_owned(), ..config })
    }

    /// Parses the file's JSON; every path must be absolute.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let config: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let paths: [(&str, Option<&Path>); 5] = [
            ("stateDir", Some(config.state_dir.path())),
            ("runDir", Some(config.run_dir.path())),
            ("profileDir", config.profile_dir.as_ref().map(ProfileDir::path)),
            ("logFile", config.log_file.as_deref()),
            ("podResourcesSocket", config.pod_resources_socket.as_deref()),
        ];
        for (key, path) in paths {
            if let Some(p) = path
                && !p.is_absolute()
            {
                return Err(format!("{key}: {:?} is not an absolute path", p.display().to_string()));
            }
        }
        Ok(config)
    }

    /// The profile directory: `profileDir`, else `<runDir>/profiles`.
    pub fn profile_dir(&self) -> ProfileDir {
        self.profile_dir.clone().unwrap_or_else(|| self.run_dir.profiles())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn defaults_and_keys() {
        let c = NodeConfig::parse(b"{}").unwrap();
        assert_eq!(c, NodeConfig::default());
        assert_eq!(c.profile_dir(), ProfileDir::default());
        let c = NodeConfig::parse(br#"{"runDir": "/run/x", "requireDeviceRecords": true}"#).unwrap();
        assert_eq!(c.profile_dir(), RunDir::new("/run/x").profiles());
        assert!(c.require_device_records && !c.allow_network_overrides);
        for (json, want) in [
            (r#"{"stateDir": "rel"}"#, "stateDir: \"rel\" is not an absolute path"),
            (r#"{"logFile": "x.log"}"#, "logFile: \"x.log\" is not an absolute path"),
            (r#"{"statedir": "/x"}"#, "unknown field `statedir`"),
            (r#"{"requireDeviceRecords": "yes"}"#, "invalid type"),
        ] {
            let e = NodeConfig::parse(json.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{json}: {e}");
        }
    }

    #[test]
    fn a_missing_file_is_the_defaults_and_an_unsafe_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("node.json");
        assert_eq!(NodeConfig::load(&path).unwrap(), NodeConfig { path: path.clone(), ..NodeConfig::default() });
        std::fs::write(&path, br#"{"allowNetworkOverrides": true}"#).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(NodeConfig::load(&path).unwrap().allow_network_overrides, "owned by the plugin's user, 0644");
        let owned_by_root = nix::unistd::geteuid().is_root();
        for mode in [0o664, 0o646] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = NodeConfig::load(&path).unwrap_err().to_string();
            assert!(e.contains("not safe") && e.contains(&path.display().to_string()), "{e}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        if owned_by_root {
            // Someone else's file (the tests run as root in CI: chown needs it).
            nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let e = NodeConfig::load(&path).unwrap_err().to_string();
            assert!(e.contains("is owned by uid 65534"), "{e}");
            nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
            let e = NodeConfig::load(&path).unwrap_err().to_string();
            assert!(e.contains("writable by group or others (mode 0777)"), "{e}");
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let link = dir.path().join("link.json");
            std::os::unix::fs::symlink(&path, &link).unwrap();
            assert!(matches!(NodeConfig::load(&link), Err(NodeConfigError::Read { .. })), "symlinks are not followed");
        }
    }
}
