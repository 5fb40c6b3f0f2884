//! The CNI execution environment: `CNI_*` variables and `CNI_ARGS`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{CniError, Code, Result};

/// The command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach.
    Add,
    /// Detach.
    Del,
    /// Verify.
    Check,
    /// Report readiness.
    Status,
    /// Garbage-collect attachments the runtime no longer knows.
    Gc,
    /// Report versions.
    Version,
}

impl Command {
    /// Parses `CNI_COMMAND`.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            "VERSION" => Self::Version,
            other => {
                return Err(CniError::new(
                    Code::InvalidEnvironment,
                    format!("CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"),
                ));
            }
        })
    }

    /// The spec name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Status => "STATUS",
            Self::Gc => "GC",
            Self::Version => "VERSION",
        }
    }
}

/// What the runtime passed in the environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `CNI_CONTAINERID`.
    pub container_id: Option<String>,
    /// `CNI_NETNS`.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`.
    pub ifname: Option<String>,
    /// `CNI_ARGS`, parsed.
    pub args: BTreeMap<String, String>,
    /// `CNI_PATH`, split.
    pub path: Vec<PathBuf>,
}

impl Env {
    /// Reads the variables through `get` (the process environment, or a map in tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let non_empty = |k: &str| get(k).filter(|v| !v.is_empty());
        let args = match non_empty("CNI_ARGS") {
            Some(raw) => parse_cni_args(&raw)?,
            None => BTreeMap::new(),
        };
        Ok(Self {
            container_id: non_empty("CNI_CONTAINERID"),
            netns: non_empty("CNI_NETNS").map(PathBuf::from),
            ifname: non_empty("CNI_IFNAME"),
            args,
            path: non_empty("CNI_PATH")
                .map(|p| p.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect())
                .unwrap_or_default(),
        })
    }

    /// Checks what `command` requires (spec "Parameters"): container id (with its allowed
    /// characters), netns for ADD and CHECK, interface name for ADD, DEL and CHECK.
    pub fn require_for(&self, command: Command) -> Result<()> {
        let missing =
            |var: &str| CniError::new(Code::InvalidEnvironment, format!("{var} is required for {}", command.as_str()));
        if matches!(command, Command::Add | Command::Del | Command::Check) {
            let id = self.container_id.as_deref().ok_or_else(|| missing("CNI_CONTAINERID"))?;
            let valid = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !valid {
                return Err(CniError::new(
                    Code::InvalidEnvironment,
                    format!("CNI_CONTAINERID {id:?} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"),
                ));
            }
            let ifname = self.ifname.as_deref().ok_or_else(|| missing("CNI_IFNAME"))?;
            if ifname.is_empty()
                || ifname.len() > 15
                || ifname.contains(['/', ':'])
                || ifname.chars().any(char::is_whitespace)
                || ifname == "."
                || ifname == ".."
            {
                return Err(CniError::new(
                    Code::InvalidEnvironment,
                    format!("CNI_IFNAME {ifname:?} is not a valid interface name"),
                ));
            }
        }
        if matches!(command, Command::Add | Command::Check) && self.netns.is_none() {
            return Err(missing("CNI_NETNS"));
        }
        Ok(())
    }

    /// The pod's namespace (`K8S_POD_NAMESPACE`).
    pub fn pod_namespace(&self) -> Option<&str> {
        self.args.get("K8S_POD_NAMESPACE").map(String::as_str)
    }

    /// The pod's name (`K8S_POD_NAME`).
    pub fn pod_name(&self) -> Option<&str> {
        self.args.get("K8S_POD_NAME").map(String::as_str)
    }
}

/// Parses `CNI_ARGS`: `K=V` pairs separated by `;`.
pub fn parse_cni_args(raw: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in raw.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| CniError::new(Code::InvalidEnvironment, format!("CNI_ARGS: {pair:?} is not KEY=VALUE")))?;
        if k.is_empty() {
            return Err(CniError::new(Code::InvalidEnvironment, format!("CNI_ARGS: {pair:?} has an empty key")));
        }
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Env> {
        let map: BTreeMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Env::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn parses_args_and_path() {
        let e = env(&[
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=tenant-a;K8S_POD_NAME=web-0;MAC=02:00:00:00:00:01"),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ])
        .unwrap();
        assert_eq!(e.pod_namespace(), Some("tenant-a"));
        assert_eq!(e.pod_name(), Some("web-0"));
        assert_eq!(e.args["MAC"], "02:00:00:00:00:01");
        assert_eq!(e.path, vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]);
        let err = env(&[("CNI_ARGS", "A=1;broken")]).unwrap_err();
        assert_eq!((err.code, err.msg.as_str()), (Code::InvalidEnvironment, "CNI_ARGS: \"broken\" is not KEY=VALUE"));
    }

    #[test]
    fn requires_per_command() {
        let e = env(&[("CNI_CONTAINERID", "abc"), ("CNI_IFNAME", "net1")]).unwrap();
        assert!(e.require_for(Command::Del).is_ok());
        let err = e.require_for(Command::Add).unwrap_err();
        assert_eq!(err.msg, "CNI_NETNS is required for ADD");
        let e = env(&[("CNI_CONTAINERID", "-bad"), ("CNI_IFNAME", "net1"), ("CNI_NETNS", "/x")]).unwrap();
        assert!(e.require_for(Command::Add).unwrap_err().msg.contains("\"-bad\""));
        let e =
            env(&[("CNI_CONTAINERID", "ok"), ("CNI_IFNAME", "waytoolonginterfacename"), ("CNI_NETNS", "/x")]).unwrap();
        assert!(e.require_for(Command::Add).unwrap_err().msg.contains("not a valid interface name"));
        assert!(Env::default().require_for(Command::Version).is_ok());
        assert_eq!(Command::parse("ADDD").unwrap_err().code, Code::InvalidEnvironment);
    }
}
