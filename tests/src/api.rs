//! The real-cluster suite's reads of the API server, made in-process instead of by kubectl.
//!
//! The suite runs in the node's guest under TCG, where starting kubectl costs 5–9 s
//! (`kubectl version --client` alone, measured on 2026-12-01), and most reads are polls: a
//! wait for a pod read the pod and its events through two kubectl starts per half-second poll.
//! One kube-rs client, made once from the same kubeconfig (`$KUBECONFIG`, the admin), answers
//! them in milliseconds over one connection. Writes (`apply`, `delete`, `patch`, `label`) and
//! what an operator reads with their eyes (`explain`) stay kubectl's, as an operator types them.
//!
//! The reads take kubectl's own words (`-n <ns> <resource> [<name>] [-l <selector>]`), so a
//! call site reads as the command it replaces; a resource or flag not known here is an error
//! naming it, never a silent kubectl fallback.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kube::core::Request;
use kube::core::params::{GetParams, ListParams};
use serde_json::Value;

/// Where each resource the suite reads is served: the names kubectl accepts for it, its group
/// version's path, its plural, whether it is namespaced.
const RESOURCES: &[(&[&str], &str, &str, bool)] = &[
    (&["node", "nodes", "no"], "/api/v1", "nodes", false),
    (&["namespace", "namespaces", "ns"], "/api/v1", "namespaces", false),
    (&["pod", "pods", "po"], "/api/v1", "pods", true),
    (&["event", "events", "ev"], "/api/v1", "events", true),
    (&["resourceslice", "resourceslices"], "/apis/resource.k8s.io/v1", "resourceslices", false),
    (&["resourceclaim", "resourceclaims"], "/apis/resource.k8s.io/v1", "resourceclaims", true),
    (
        &["crd", "crds", "customresourcedefinition", "customresourcedefinitions"],
        "/apis/apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        false,
    ),
];

/// One read, parsed from kubectl's words.
#[derive(Debug, PartialEq, Eq)]
struct Read {
    /// The collection's path, e.g. `/api/v1/namespaces/tenant-a/pods`.
    collection: String,
    name: Option<String>,
    labels: Option<String>,
    fields: Option<String>,
}

fn parse(args: &[&str]) -> Result<Read> {
    let (mut namespace, mut labels, mut fields, mut words) = (None, None, None, Vec::new());
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        let mut value =
            |flag: &str| it.next().map(|v| (*v).to_owned()).with_context(|| format!("{flag} needs a value"));
        match a {
            "-n" | "--namespace" => namespace = Some(value(a)?),
            "-l" | "--selector" => labels = Some(value(a)?),
            "--field-selector" => fields = Some(value(a)?),
            flag if flag.starts_with('-') => bail!("kubectl get flag {flag} is not supported by the suite's reads"),
            word => words.push(word),
        }
    }
    let (resource, name) = match words[..] {
        [resource] => (resource, None),
        [resource, name] => (resource, Some(name.to_owned())),
        _ => bail!("a read names a resource and at most one object, not {words:?}"),
    };
    let &(_, group_version, plural, namespaced) = RESOURCES
        .iter()
        .find(|(names, ..)| names.contains(&resource))
        .with_context(|| format!("no API path known for resource {resource:?} (add it to tests/src/api.rs)"))?;
    let collection = if namespaced {
        // kubectl's own default namespace when none is given.
        format!("{group_version}/namespaces/{}/{plural}", namespace.as_deref().unwrap_or("default"))
    } else {
        format!("{group_version}/{plural}")
    };
    Ok(Read { collection, name, labels, fields })
}

struct Reader {
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
}

/// The one client, made at the first read.
fn reader() -> Result<&'static Reader> {
    static READER: OnceLock<Reader> = OnceLock::new();
    if let Some(r) = READER.get() {
        return Ok(r);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let client = runtime.block_on(async {
        let mut config = kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions::default())
            .await
            .context("cannot load $KUBECONFIG for the suite's API reads")?;
        // A read that hangs fails its poll, so `wait_for` reports it within its own bound.
        config.connect_timeout = Some(Duration::from_secs(20));
        config.read_timeout = Some(Duration::from_secs(30));
        kube::Client::try_from(config).context("cannot make the suite's API client")
    })?;
    Ok(READER.get_or_init(|| Reader { runtime, client }))
}

/// `kubectl get <args> -o json`: the object or the list, as the API server gives it; `None` if
/// the object is not there (404).
pub fn get(args: &[&str]) -> Result<Option<Value>> {
    let read = parse(args)?;
    let request = Request::new(&read.collection);
    let http = match &read.name {
        Some(name) => request.get(name, &GetParams::default()),
        None => {
            let mut lp = ListParams::default();
            if let Some(l) = &read.labels {
                lp = lp.labels(l);
            }
            if let Some(f) = &read.fields {
                lp = lp.fields(f);
            }
            request.list(&lp)
        }
    }
    .with_context(|| format!("cannot build the request for {args:?}"))?;
    let what =
        || format!("GET {}{}", read.collection, read.name.as_deref().map(|n| format!("/{n}")).unwrap_or_default());
    let r = reader()?;
    match r.runtime.block_on(r.client.request::<Value>(http)) {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(e).with_context(what),
    }
}

/// Whether the object `args` names exists (`kubectl get ... --ignore-not-found -o name`).
pub fn exists(args: &[&str]) -> Result<bool> {
    Ok(get(args)?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_words_become_api_paths() {
        let r = parse(&["-n", "tenant-a", "pod", "web"]).unwrap();
        assert_eq!(r.collection, "/api/v1/namespaces/tenant-a/pods");
        assert_eq!(r.name.as_deref(), Some("web"));
        let r = parse(&["resourceslices", "-l", "vfnet.dev/node=n"]).unwrap();
        assert_eq!(r.collection, "/apis/resource.k8s.io/v1/resourceslices");
        assert_eq!((r.name, r.labels.as_deref()), (None, Some("vfnet.dev/node=n")));
        let r = parse(&["node", "vfnet-node"]).unwrap();
        assert_eq!(r.collection, "/api/v1/nodes");
        let r = parse(&["pods", "--field-selector", "spec.nodeName=n"]).unwrap();
        assert_eq!(r.collection, "/api/v1/namespaces/default/pods", "kubectl's default namespace");
        assert_eq!(r.fields.as_deref(), Some("spec.nodeName=n"));
    }

    #[test]
    fn what_is_not_known_here_is_an_error_naming_it() {
        let e = parse(&["vfpools"]).unwrap_err().to_string();
        assert!(e.contains("\"vfpools\""), "{e}");
        let e = parse(&["pods", "-o", "wide"]).unwrap_err().to_string();
        assert!(e.contains("-o"), "{e}");
        assert!(parse(&["-n"]).unwrap_err().to_string().contains("-n needs a value"));
        assert!(parse(&["pod", "a", "b"]).is_err());
    }
}
