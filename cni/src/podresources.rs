//! `resourceName` without Multus: the pod's allocated VF of a resource, asked of kubelet's
//! PodResources API (`/var/lib/kubelet/pod-resources/kubelet.sock`, or the config's
//! `podResourcesSocket`). With several VFs of the resource, the first one that no other
//! attachment of the same pod holds is taken, in PCI address order.

use std::time::Duration;

use sriov::PciAddress;

use crate::env::Env;
use crate::error::{CniError, Code, Result};
use crate::journal::Journal;

/// How long kubelet gets to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The VF of `resource` allocated to the pod named in `CNI_ARGS`.
pub fn allocated_vf(
    env: &Env,
    resource: &str,
    state_dir: &vfnet_types::StateDir,
    socket: &std::path::Path,
) -> Result<PciAddress> {
    let (Some(namespace), Some(pod)) = (env.pod_namespace(), env.pod_name()) else {
        return Err(CniError::new(
            Code::InvalidEnvironment,
            format!(
                "resourceName {resource} needs K8S_POD_NAMESPACE and K8S_POD_NAME in CNI_ARGS to find the pod's VF"
            ),
        ));
    };
    let devices =
        kubelet_api::podresources::allocated_devices(socket, namespace, pod, resource, TIMEOUT).map_err(|e| {
            CniError::new(
                Code::TryAgainLater,
                format!("cannot ask kubelet for pod {namespace}/{pod}'s {resource}: {e}"),
            )
        })?;
    let container = env.container_id.as_deref().unwrap_or_default();
    let ifname = env.ifname.as_deref().unwrap_or_default();
    let mut first_err = None;
    for id in &devices {
        let vf: PciAddress = match id.parse() {
            Ok(v) => v,
            Err(e) => {
                first_err.get_or_insert_with(|| format!("kubelet device ID {id:?}: {e}"));
                continue;
            }
        };
        match Journal::load(state_dir, &vf)? {
            Some(j) if j.container_id == container && j.ifname != ifname => continue,
            _ => return Ok(vf),
        }
    }
    Err(CniError::new(
        Code::DeviceNotFound,
        format!(
            "pod {namespace}/{pod} has no free VF of resource {resource} (allocated: [{}]){}",
            devices.join(", "),
            first_err.map(|e| format!("; {e}")).unwrap_or_default()
        ),
    ))
}
