//! The test cluster's certificates and keys, made fresh for each cluster with the `openssl` CLI
//! (Debian's, installed by vm-setup): one CA, the API server's serving certificate, one client
//! certificate per component (each its own identity, so the Node and RBAC authorizers judge each
//! one separately), and the service-account signing key. ECDSA P-256 throughout: generating it
//! takes milliseconds, and every component accepts it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::cmd::stdout_of;

/// Days the certificates are valid: long enough for a cluster left running with `cluster up`.
const DAYS: &str = "30";

/// A client identity: the certificate's CN is the user, its O the groups.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity {
    /// File stem of its key and certificate, and of its kubeconfig.
    pub(crate) file: &'static str,
    pub(crate) user: &'static str,
    pub(crate) groups: &'static [&'static str],
}

/// The PKI directory and its files.
#[derive(Debug, Clone)]
pub(crate) struct Pki {
    pub(crate) dir: PathBuf,
}

impl Pki {
    pub(crate) fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub(crate) fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub(crate) fn cert(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.crt"))
    }
    pub(crate) fn key(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.key"))
    }
    pub(crate) fn sa_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }
    pub(crate) fn sa_pub(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }

    /// Makes the CA, the API server's certificate for `server_sans` (`IP:...`/`DNS:...`), the
    /// service-account key pair and one client certificate per identity, in `dir` (emptied).
    pub(crate) fn create(dir: &Path, server_sans: &[String], identities: &[Identity]) -> Result<Self> {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let pki = Self { dir: dir.to_path_buf() };
        openssl(Command::new("openssl").args(["req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt"]).args([
            "ec_paramgen_curve:prime256v1",
            "-subj",
            "/CN=vfnet-test-ca",
            "-days",
            DAYS,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
        ]))
        .arg_path(&pki.ca_key())
        .arg("-out")
        .arg_path(&pki.ca_cert())
        .done()?;
        pki.sign("apiserver", "/CN=kube-apiserver", "serverAuth", Some(&server_sans.join(",")))?;
        for id in identities {
            let mut subject = String::new();
            for g in id.groups {
                subject.push_str(&format!("/O={g}"));
            }
            subject.push_str(&format!("/CN={}", id.user));
            pki.sign(id.file, &subject, "clientAuth", None)?;
        }
        openssl(Command::new("openssl").args(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out"]))
            .arg_path(&pki.sa_key())
            .done()?;
        openssl(Command::new("openssl").args(["ec", "-pubout", "-in"]))
            .arg_path(&pki.sa_key())
            .arg("-out")
            .arg_path(&pki.sa_pub())
            .done()?;
        Ok(pki)
    }

    /// A key and a certificate signed by the CA for `subject`, with extended key usage `eku`
    /// and, for servers, subject alternative names.
    fn sign(&self, stem: &str, subject: &str, eku: &str, sans: Option<&str>) -> Result<()> {
        let csr = self.dir.join(format!("{stem}.csr"));
        let ext = self.dir.join(format!("{stem}.ext"));
        let mut extensions = format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage={eku}\n"
        );
        if let Some(sans) = sans {
            extensions.push_str(&format!("subjectAltName={sans}\n"));
        }
        fs::write(&ext, extensions).with_context(|| format!("cannot write {}", ext.display()))?;
        openssl(Command::new("openssl").args(["req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt"]).args([
            "ec_paramgen_curve:prime256v1",
            "-subj",
            subject,
            "-keyout",
        ]))
        .arg_path(&self.key(stem))
        .arg("-out")
        .arg_path(&csr)
        .done()?;
        openssl(Command::new("openssl").args(["x509", "-req", "-days", DAYS, "-in"]))
            .arg_path(&csr)
            .arg("-CA")
            .arg_path(&self.ca_cert())
            .arg("-CAkey")
            .arg_path(&self.ca_key())
            .arg("-CAcreateserial")
            .arg("-extfile")
            .arg_path(&ext)
            .arg("-out")
            .arg_path(&self.cert(stem))
            .done()
            .with_context(|| format!("cannot sign the certificate of {subject}"))?;
        let _ = fs::remove_file(csr);
        let _ = fs::remove_file(ext);
        Ok(())
    }

    /// A kubeconfig for `id` reaching the API server at `server`, written to `<dir>/<stem>.kubeconfig`
    /// (one identity may have one per view of the server). Paths inside are absolute: the guest
    /// sees the host's filesystem at the same paths.
    pub(crate) fn kubeconfig(&self, id: &Identity, server: &str, stem: &str) -> Result<PathBuf> {
        let path = self.dir.join(format!("{stem}.kubeconfig"));
        let text = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: vfnet-test
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: vfnet-test
  context:
    cluster: vfnet-test
    user: {user}
current-context: vfnet-test
",
            ca = self.ca_cert().display(),
            user = id.user,
            cert = self.cert(id.file).display(),
            key = self.key(id.file).display(),
        );
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

/// A small builder so that the long openssl command lines read in order.
struct Openssl<'a>(&'a mut Command);

fn openssl(cmd: &mut Command) -> Openssl<'_> {
    Openssl(cmd)
}

impl Openssl<'_> {
    fn arg(self, a: &str) -> Self {
        self.0.arg(a);
        self
    }
    fn arg_path(self, p: &Path) -> Self {
        self.0.arg(p);
        self
    }
    fn done(self) -> Result<()> {
        stdout_of(self.0).map(|_| ())
    }
}
