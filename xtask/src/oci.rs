//! A minimal OCI image-layout archive writer: one uncompressed layer, a config and a manifest,
//! tarred with `oci-layout` and `index.json`, as `ctr images import` reads it.
//!
//! The real-Kubernetes test bed has no registry and no container engine on the build machine, so
//! its images are written here and imported into containerd directly. Everything is fixed (mtime
//! 0, uid/gid 0, entries sorted, JSON keys sorted), so the same inputs give the same bytes and the
//! same digests: an unchanged image is not rewritten, and containerd sees the same image.
//!
//! The tar format is plain ustar, written by hand: the layers hold a few short paths, and that is
//! simpler than a tar crate's metadata handling, which would have to be overridden field by field
//! to stay deterministic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// containerd's annotation for the full image name; `ctr images import` names the image after it
/// (taking it over the OCI tag annotation, which only holds the tag).
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The `PATH` that image builders (BuildKit, buildah) give an image whose stages set none;
/// kubelet's containers get it from the image config.
pub(crate) const DEFAULT_PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where a layer file's bytes come from.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    /// A file on the build machine, read when the archive is written.
    Host(PathBuf),
    Inline(Vec<u8>),
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    File(Content),
    Dir,
    /// A symbolic link to this target, kept as written (relative targets stay relative).
    Symlink(String),
}

/// One entry of the image's single layer.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Absolute path in the image (`/usr/bin/vfnet`).
    pub(crate) path: String,
    /// Permission bits, with setuid/setgid/sticky (`0o1777` for `/tmp`); ignored for symlinks.
    pub(crate) mode: u32,
    pub(crate) kind: Kind,
}

impl Entry {
    pub(crate) fn host_file(path: &str, host: impl Into<PathBuf>, mode: u32) -> Self {
        Self { path: path.to_owned(), mode, kind: Kind::File(Content::Host(host.into())) }
    }

    #[cfg_attr(not(test), expect(dead_code, reason = "today's images copy host files only"))]
    pub(crate) fn inline_file(path: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> Self {
        Self { path: path.to_owned(), mode, kind: Kind::File(Content::Inline(bytes.into())) }
    }

    pub(crate) fn dir(path: &str, mode: u32) -> Self {
        Self { path: path.to_owned(), mode, kind: Kind::Dir }
    }

    pub(crate) fn symlink(path: &str, target: &str) -> Self {
        Self { path: path.to_owned(), mode: 0o777, kind: Kind::Symlink(target.to_owned()) }
    }
}

/// An image: its full name, its single layer's entries and what its config runs.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    /// Full reference with a tag: `docker.io/library/vfnet:dev`, the form kubelet normalises a
    /// short name to, so a pod's `image: vfnet:dev` finds it.
    pub(crate) name: String,
    pub(crate) entries: Vec<Entry>,
    pub(crate) entrypoint: Vec<String>,
    pub(crate) cmd: Vec<String>,
    pub(crate) env: Vec<String>,
    /// `USER` (`0:0`); unset runs as root too.
    pub(crate) user: Option<String>,
}

/// An image archive in memory.
#[derive(Debug)]
pub(crate) struct Archive {
    pub(crate) bytes: Vec<u8>,
    /// `sha256:…` of the manifest: the image's identity in containerd.
    pub(crate) manifest_digest: String,
}

/// An image archive on disk.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    pub(crate) manifest_digest: String,
    /// False when the file already held exactly these bytes and was left alone.
    pub(crate) rewritten: bool,
}

/// Writes `image`'s archive to `path`, unless the file already holds exactly those bytes (the
/// output is deterministic, so an unchanged image keeps its file and its timestamp). The new file
/// is written beside it and renamed, so a reader never sees half an archive.
pub(crate) fn write(image: &Image, path: &Path) -> Result<Written> {
    let archive = archive(image)?;
    let size = u64::try_from(archive.bytes.len())?;
    let unchanged = std::fs::read(path).is_ok_and(|old| old == archive.bytes);
    if !unchanged {
        let tmp = path.with_extension("tar.tmp");
        std::fs::write(&tmp, &archive.bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    }
    Ok(Written {
        name: image.name.clone(),
        path: path.to_path_buf(),
        size,
        manifest_digest: archive.manifest_digest,
        rewritten: !unchanged,
    })
}

/// Builds `image`'s OCI image-layout archive.
pub(crate) fn archive(image: &Image) -> Result<Archive> {
    let tag = tag_of(&image.name)?;
    let layer = layer(&image.entries).with_context(|| format!("{}: layer", image.name))?;
    let layer_digest = digest(&layer);

    let mut run = serde_json::Map::new();
    for (key, list) in [("Entrypoint", &image.entrypoint), ("Cmd", &image.cmd), ("Env", &image.env)] {
        if !list.is_empty() {
            run.insert(key.to_owned(), json!(list));
        }
    }
    if let Some(user) = &image.user {
        run.insert("User".to_owned(), json!(user));
    }
    let config = canonical_json(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": run,
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    }));
    let manifest = canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": descriptor(MEDIA_TYPE_CONFIG, &config),
        "layers": [descriptor(MEDIA_TYPE_LAYER, &layer)],
    }));
    let manifest_digest = digest(&manifest);
    let mut manifest_descriptor = descriptor(MEDIA_TYPE_MANIFEST, &manifest);
    manifest_descriptor["platform"] = json!({ "architecture": "amd64", "os": "linux" });
    manifest_descriptor["annotations"] = json!({
        ANNOTATION_CONTAINERD_NAME: image.name,
        ANNOTATION_REF_NAME: tag,
    });
    let index = canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": [manifest_descriptor],
    }));

    let mut tar = Tar::default();
    tar.append("blobs/", b'5', 0o755, b"", "")?;
    tar.append("blobs/sha256/", b'5', 0o755, b"", "")?;
    let mut blobs = [&config, &layer, &manifest].map(|blob| (digest(blob), blob));
    blobs.sort();
    for (blob_digest, blob) in blobs {
        let hex = blob_digest.trim_start_matches("sha256:");
        tar.append(&format!("blobs/sha256/{hex}"), b'0', 0o644, blob, "")?;
    }
    tar.append("index.json", b'0', 0o644, &index, "")?;
    tar.append("oci-layout", b'0', 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#, "")?;
    Ok(Archive { bytes: tar.finish(), manifest_digest })
}

/// The tag of a full image reference (`dev` of `docker.io/library/vfnet:dev`): what the OCI
/// `ref.name` annotation holds. A registry port (`localhost:5000/x:1`) is not a tag.
fn tag_of(name: &str) -> Result<&str> {
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((repo, tag)) if !repo.is_empty() && !tag.is_empty() && !name.contains('@') && name.contains('/') => {
            Ok(tag)
        }
        _ => bail!("image name {name:?} is not a full reference with a tag (registry/repository:tag)"),
    }
}

/// The layer: a tar of the entries, each missing parent directory added (0755), sorted by path.
fn layer(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut by_path: BTreeMap<String, &Entry> = BTreeMap::new();
    for entry in entries {
        let path = clean(&entry.path)?;
        ensure!(by_path.insert(path, entry).is_none(), "{} is listed twice", entry.path);
    }
    let implied: Vec<String> = by_path
        .keys()
        .flat_map(|path| path.match_indices('/').map(|(i, _)| path[..i].to_owned()).collect::<Vec<_>>())
        .collect();
    let parent = Entry::dir("", 0o755);
    for dir in implied {
        let existing = by_path.entry(dir.clone()).or_insert(&parent);
        ensure!(matches!(existing.kind, Kind::Dir), "/{dir} is a parent of other entries but not a directory");
    }
    let mut tar = Tar::default();
    for (path, entry) in by_path {
        ensure!(entry.mode <= 0o7777, "{path}: mode {:o} is more than permission bits", entry.mode);
        match &entry.kind {
            Kind::Dir => tar.append(&format!("{path}/"), b'5', entry.mode, b"", "")?,
            Kind::Symlink(target) => tar.append(&path, b'2', 0o777, b"", target)?,
            Kind::File(Content::Inline(bytes)) => tar.append(&path, b'0', entry.mode, bytes, "")?,
            Kind::File(Content::Host(host)) => {
                let bytes =
                    std::fs::read(host).with_context(|| format!("cannot read {} for /{path}", host.display()))?;
                tar.append(&path, b'0', entry.mode, &bytes, "")?;
            }
        }
    }
    Ok(tar.finish())
}

/// An image path as a tar member name: absolute in, relative out (`/usr/bin` → `usr/bin`), with
/// no empty, `.` or `..` components, so nothing lands outside the root or twice under two names.
fn clean(path: &str) -> Result<String> {
    let relative = path.strip_prefix('/').with_context(|| format!("image path {path:?} is not absolute"))?;
    let relative = relative.strip_suffix('/').unwrap_or(relative);
    ensure!(
        !relative.is_empty() && relative.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
        "image path {path:?} is not a plain absolute path"
    );
    Ok(relative.to_owned())
}

/// `sha256:<hex>` of `bytes`.
fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().fold(String::from("sha256:"), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn descriptor(media_type: &str, blob: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": digest(blob), "size": blob.len() })
}

/// JSON with object keys sorted at every level, whatever serde_json's map ordering (another crate
/// enabling its `preserve_order` feature would otherwise change the digests).
fn canonical_json(value: &Value) -> Vec<u8> {
    fn write_value(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::from(key.as_str()).to_string());
                    out.push(':');
                    write_value(&map[key], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_value(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write_value(value, &mut out);
    out.into_bytes()
}

/// A ustar archive being written: 512-byte headers, data padded to 512 bytes, two zero blocks at
/// the end. Owner 0:0, mtime 0, no user or group names.
#[derive(Debug, Default)]
struct Tar {
    out: Vec<u8>,
}

impl Tar {
    /// Appends a member: `kind` is the ustar type flag (`0` file, `2` symlink, `5` directory).
    fn append(&mut self, name: &str, kind: u8, mode: u32, data: &[u8], link: &str) -> Result<()> {
        let mut header = [0u8; 512];
        let (prefix, name) = split_name(name)?;
        ensure!(link.len() <= 100, "symlink target {link:?} is longer than ustar's 100 bytes");
        put(&mut header, 0, name.as_bytes());
        put(&mut header, 100, format!("{mode:07o}").as_bytes());
        put(&mut header, 108, b"0000000"); // uid
        put(&mut header, 116, b"0000000"); // gid
        let size = u64::try_from(data.len())?;
        ensure!(size < 1 << 33, "{name}: {size} bytes is more than ustar's size field holds");
        put(&mut header, 124, format!("{size:011o}").as_bytes());
        put(&mut header, 136, b"00000000000"); // mtime
        header[156] = kind;
        put(&mut header, 157, link.as_bytes());
        put(&mut header, 257, b"ustar\x0000");
        put(&mut header, 345, prefix.as_bytes());
        put(&mut header, 148, b"        ");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        put(&mut header, 148, format!("{sum:06o}\x00 ").as_bytes());
        self.out.extend_from_slice(&header);
        self.out.extend_from_slice(data);
        self.out.resize(self.out.len().next_multiple_of(512), 0);
        Ok(())
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.resize(self.out.len() + 1024, 0);
        self.out
    }
}

/// Splits a member name into ustar's prefix (155 bytes) and name (100 bytes) fields, at a `/`.
fn split_name(path: &str) -> Result<(&str, &str)> {
    if path.len() <= 100 {
        return Ok(("", path));
    }
    let body = path.strip_suffix('/').unwrap_or(path);
    body.match_indices('/')
        .map(|(i, _)| (&path[..i], &path[i + 1..]))
        .find(|(prefix, name)| prefix.len() <= 155 && name.len() <= 100)
        .with_context(|| format!("{path:?} does not fit a ustar header"))
}

fn put(header: &mut [u8; 512], at: usize, bytes: &[u8]) {
    header[at..at + bytes.len()].copy_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One tar member as read back.
    #[derive(Debug, PartialEq, Eq)]
    struct Member {
        name: String,
        kind: u8,
        mode: u32,
        link: String,
        data: Vec<u8>,
    }

    /// A ustar reader for checking what was written: verifies each header's checksum, owner and
    /// mtime, and the two zero blocks at the end.
    fn read_tar(bytes: &[u8]) -> Result<Vec<Member>> {
        let field = |h: &[u8], at: usize, len: usize| {
            let raw = &h[at..at + len];
            String::from_utf8_lossy(&raw[..raw.iter().position(|&b| b == 0).unwrap_or(len)]).into_owned()
        };
        let octal = |h: &[u8], at: usize, len: usize| -> Result<u64> {
            let text = field(h, at, len);
            u64::from_str_radix(text.trim(), 8).with_context(|| format!("octal field {text:?}"))
        };
        let mut members = Vec::new();
        let mut at = 0;
        loop {
            let header = bytes.get(at..at + 512).context("archive ends without its end blocks")?;
            if header.iter().all(|&b| b == 0) {
                ensure!(bytes[at..].len() == 1024 && bytes[at..].iter().all(|&b| b == 0), "bad end blocks");
                return Ok(members);
            }
            let mut blank = header.to_vec();
            blank[148..156].fill(b' ');
            let sum: u64 = blank.iter().map(|&b| u64::from(b)).sum();
            ensure!(octal(header, 148, 8)? == sum, "bad header checksum at {at}");
            ensure!(&header[257..265] == b"ustar\x0000", "not ustar at {at}");
            ensure!(octal(header, 108, 8)? == 0 && octal(header, 116, 8)? == 0, "owner not 0:0");
            ensure!(octal(header, 136, 12)? == 0, "mtime not 0");
            let (prefix, name) = (field(header, 345, 155), field(header, 0, 100));
            let size = usize::try_from(octal(header, 124, 12)?)?;
            let data_at = at + 512;
            members.push(Member {
                name: if prefix.is_empty() { name } else { format!("{prefix}/{name}") },
                kind: header[156],
                mode: u32::try_from(octal(header, 100, 8)?)?,
                link: field(header, 157, 100),
                data: bytes.get(data_at..data_at + size).context("short member data")?.to_vec(),
            });
            at = data_at + size.next_multiple_of(512);
        }
    }

    fn test_image(entries: Vec<Entry>) -> Image {
        Image {
            name: "docker.io/library/vfnet-test:1".to_owned(),
            entries,
            entrypoint: vec!["/bin/prog".to_owned()],
            cmd: vec!["--flag".to_owned()],
            env: vec![DEFAULT_PATH_ENV.to_owned()],
            user: Some("0:0".to_owned()),
        }
    }

    fn entries(host_file: &Path) -> Vec<Entry> {
        vec![
            Entry::inline_file("/bin/prog", b"#!program".to_vec(), 0o755),
            Entry::host_file("/etc/data", host_file, 0o600),
            Entry::symlink("/bin/sh", "prog"),
            Entry::dir("/tmp", 0o1777),
            Entry::dir("/usr/share/empty", 0o700),
        ]
    }

    fn host_file(name: &str, content: &[u8]) -> Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!("xtask-oci-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("data");
        std::fs::write(&path, content)?;
        Ok(path)
    }

    /// Reads a blob by descriptor and checks its size and digest against the bytes.
    fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, desc: &Value, media_type: &str) -> Result<&'a [u8]> {
        assert_eq!(desc["mediaType"], media_type);
        let digest_field = desc["digest"].as_str().context("descriptor without digest")?;
        let hex = digest_field.strip_prefix("sha256:").context("digest not sha256")?;
        let bytes = files.get(&format!("blobs/sha256/{hex}")).with_context(|| format!("no blob {hex}"))?;
        assert_eq!(digest(bytes), digest_field, "blob {hex} does not hash to its name");
        assert_eq!(desc["size"].as_u64(), Some(u64::try_from(bytes.len())?));
        Ok(bytes)
    }

    #[test]
    fn index_manifest_config_and_layer_digests_verify() -> Result<()> {
        let image = test_image(entries(&host_file("digests", b"host bytes")?));
        let archive = archive(&image)?;
        let members = read_tar(&archive.bytes)?;
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names[..2], ["blobs/", "blobs/sha256/"]);
        assert_eq!(names[names.len() - 2..], ["index.json", "oci-layout"]);
        assert_eq!(names.len(), 7, "{names:?}");
        let files: BTreeMap<String, Vec<u8>> =
            members.into_iter().filter(|m| m.kind == b'0').map(|m| (m.name, m.data)).collect();

        let layout: Value = serde_json::from_slice(&files["oci-layout"])?;
        assert_eq!(layout, json!({ "imageLayoutVersion": "1.0.0" }));
        let index: Value = serde_json::from_slice(&files["index.json"])?;
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["mediaType"], MEDIA_TYPE_INDEX);
        let manifests = index["manifests"].as_array().context("no manifests")?;
        assert_eq!(manifests.len(), 1);
        let desc = &manifests[0];
        assert_eq!(desc["annotations"][ANNOTATION_CONTAINERD_NAME], "docker.io/library/vfnet-test:1");
        assert_eq!(desc["annotations"][ANNOTATION_REF_NAME], "1");
        assert_eq!(desc["platform"], json!({ "architecture": "amd64", "os": "linux" }));
        assert_eq!(desc["digest"], archive.manifest_digest.as_str());

        let manifest: Value = serde_json::from_slice(blob(&files, desc, MEDIA_TYPE_MANIFEST)?)?;
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], MEDIA_TYPE_MANIFEST);
        let config: Value = serde_json::from_slice(blob(&files, &manifest["config"], MEDIA_TYPE_CONFIG)?)?;
        let layers = manifest["layers"].as_array().context("no layers")?;
        assert_eq!(layers.len(), 1);
        blob(&files, &layers[0], MEDIA_TYPE_LAYER)?;
        assert_eq!(config["rootfs"], json!({ "type": "layers", "diff_ids": [layers[0]["digest"]] }));
        assert_eq!((config["architecture"].as_str(), config["os"].as_str()), (Some("amd64"), Some("linux")));
        assert_eq!(
            config["config"],
            json!({ "Entrypoint": ["/bin/prog"], "Cmd": ["--flag"], "Env": [DEFAULT_PATH_ENV], "User": "0:0" })
        );
        Ok(())
    }

    #[test]
    fn layer_lists_exactly_the_entries_and_their_parents() -> Result<()> {
        let layer = read_tar(&layer(&entries(&host_file("layer", b"host bytes")?))?)?;
        let listing: Vec<(&str, u8, u32, &str)> =
            layer.iter().map(|m| (m.name.as_str(), m.kind, m.mode, m.link.as_str())).collect();
        assert_eq!(
            listing,
            [
                ("bin/", b'5', 0o755, ""),
                ("bin/prog", b'0', 0o755, ""),
                ("bin/sh", b'2', 0o777, "prog"),
                ("etc/", b'5', 0o755, ""),
                ("etc/data", b'0', 0o600, ""),
                ("tmp/", b'5', 0o1777, ""),
                ("usr/", b'5', 0o755, ""),
                ("usr/share/", b'5', 0o755, ""),
                ("usr/share/empty/", b'5', 0o700, ""),
            ]
        );
        assert_eq!(layer[1].data, b"#!program");
        assert_eq!(layer[4].data, b"host bytes");
        assert!(layer.iter().filter(|m| m.kind != b'0').all(|m| m.data.is_empty()));
        Ok(())
    }

    #[test]
    fn same_inputs_same_bytes_in_any_order() -> Result<()> {
        let host = host_file("determinism", b"host bytes")?;
        let first = archive(&test_image(entries(&host)))?;
        let mut reversed = entries(&host);
        reversed.reverse();
        let second = archive(&test_image(reversed))?;
        assert_eq!(first.bytes, second.bytes);
        assert_eq!(first.manifest_digest, second.manifest_digest);

        std::fs::write(&host, b"host bytez")?;
        let changed = archive(&test_image(entries(&host)))?;
        assert_ne!(first.manifest_digest, changed.manifest_digest);
        Ok(())
    }

    #[test]
    fn write_leaves_an_unchanged_archive_alone() -> Result<()> {
        let host = host_file("write", b"host bytes")?;
        let out = host.with_file_name("image.tar");
        let _ = std::fs::remove_file(&out);
        let image = test_image(entries(&host));
        let first = write(&image, &out)?;
        assert!(first.rewritten);
        assert_eq!(first.size, std::fs::metadata(&out)?.len());
        let second = write(&image, &out)?;
        assert!(!second.rewritten);
        assert_eq!(first.manifest_digest, second.manifest_digest);
        Ok(())
    }

    #[test]
    fn rejects_bad_entries_and_names() {
        let fails = |entries: Vec<Entry>| layer(&entries).is_err();
        assert!(fails(vec![Entry::dir("relative", 0o755)]));
        assert!(fails(vec![Entry::dir("/a/../b", 0o755)]));
        assert!(fails(vec![Entry::dir("/a//b", 0o755)]));
        assert!(fails(vec![Entry::dir("/a", 0o755), Entry::dir("/a/", 0o700)]));
        assert!(fails(vec![Entry::inline_file("/a", b"".to_vec(), 0o644), Entry::dir("/a/b", 0o755)]));
        assert!(fails(vec![Entry::dir("/a", 0o100_755)]));
        assert!(fails(vec![Entry::host_file("/a", "/nonexistent/xtask-oci", 0o644)]));
        assert_eq!(tag_of("docker.io/library/vfnet:dev").ok(), Some("dev"));
        assert_eq!(tag_of("localhost:5000/a/b:1").ok(), Some("1"));
        for bad in ["vfnet:dev", "docker.io/library/vfnet", "localhost:5000/vfnet", "docker.io/a/b:1@sha256:00"] {
            assert!(tag_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_names_use_the_ustar_prefix() -> Result<()> {
        let long = format!("/{}/{}/{}", "d".repeat(60), "e".repeat(60), "f".repeat(90));
        let members = read_tar(&layer(&[Entry::inline_file(&long, b"x".to_vec(), 0o644)])?)?;
        assert_eq!(members.last().map(|m| m.name.as_str()), Some(&long[1..]));
        assert!(layer(&[Entry::inline_file(&format!("/{}", "f".repeat(101)), b"x".to_vec(), 0o644)]).is_err());
        Ok(())
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let value = json!({ "b": [{ "z": 1, "a": "x\"y" }], "a": null });
        assert_eq!(canonical_json(&value), br#"{"a":null,"b":[{"a":"x\"y","z":1}]}"#);
    }
}
