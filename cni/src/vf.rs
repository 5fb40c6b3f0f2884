//! PF-side VF settings: applied one by one through the PF, restored from the journal's original
//! state. Each is its own netlink request so a driver's refusal names the setting.

use sriov::netlink::{LinkOps, VfLinkState, VfSetting, VfState};

use crate::error::{CniError, Code, Result};

/// The setting of the same kind as `s`, with the value `original` had.
pub fn original_of(s: &VfSetting, original: &VfState) -> VfSetting {
    match s {
        VfSetting::Vlan { .. } => VfSetting::Vlan { vlan: original.vlan, qos: original.qos, proto: original.proto },
        VfSetting::Mac(_) => VfSetting::Mac(original.mac),
        VfSetting::SpoofChk(_) => VfSetting::SpoofChk(original.spoofchk),
        VfSetting::Trust(_) => VfSetting::Trust(original.trust),
        VfSetting::Rate { .. } => VfSetting::Rate { min_mbps: original.min_tx_rate, max_mbps: original.max_tx_rate },
        VfSetting::LinkState(_) => VfSetting::LinkState(original.link_state.unwrap_or(VfLinkState::Auto)),
    }
}

/// True if the VF's state shows `s`. A link state the driver does not report counts as shown:
/// it cannot be checked, and a driver that does not report it did not change it.
pub fn shows(s: &VfSetting, st: &VfState) -> bool {
    match s {
        VfSetting::Vlan { vlan, qos, proto } => {
            (st.vlan, st.qos) == (*vlan, *qos) && (*vlan == 0 || st.proto == *proto)
        }
        VfSetting::Mac(m) => st.mac == *m,
        VfSetting::SpoofChk(b) => st.spoofchk == *b,
        VfSetting::Trust(b) => st.trust == *b,
        VfSetting::Rate { min_mbps, max_mbps } => (st.min_tx_rate, st.max_tx_rate) == (*min_mbps, *max_mbps),
        VfSetting::LinkState(l) => st.link_state.is_none_or(|x| x == *l),
    }
}

/// The PF's current view of VF `vf`.
pub fn state<L: LinkOps>(links: &L, pf_index: u32, pf_name: &str, vf: u32) -> Result<VfState> {
    of(links.vf_states(pf_index)?, pf_name, vf)
}

/// VF `vf`'s entry in `table`, the VF table of PF `pf_name`.
pub fn of(table: Vec<VfState>, pf_name: &str, vf: u32) -> Result<VfState> {
    table.into_iter().find(|s| s.index == vf).ok_or_else(|| {
        CniError::new(Code::DeviceNotFound, format!("PF {pf_name} does not list VF {vf} in its VF table"))
    })
}

/// Applies `settings` in order; stops at the first refusal.
pub fn apply<L: LinkOps>(
    links: &L,
    pf_index: u32,
    vf: u32,
    settings: &[VfSetting],
    mut after_each: impl FnMut(&VfSetting),
) -> Result<()> {
    for s in settings {
        links.set_vf(pf_index, vf, s)?;
        tracing::debug!(vf, setting = s.name(), value = %s.value(), "applied VF setting");
        after_each(s);
    }
    Ok(())
}

/// Puts back the original value of every setting in `applied` that the VF no longer shows,
/// newest first. Keeps going past failures and returns them all.
pub fn restore<L: LinkOps>(
    links: &L,
    pf_index: u32,
    pf_name: &str,
    vf: u32,
    applied: &[VfSetting],
    original: &VfState,
) -> Vec<CniError> {
    let current = match state(links, pf_index, pf_name, vf) {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    for s in applied.iter().rev() {
        let back = original_of(s, original);
        if shows(&back, &current) {
            continue;
        }
        if let Err(e) = links.set_vf(pf_index, vf, &back) {
            errors.push(CniError::from(e));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use sriov::MacAddr;
    use sriov::netlink::VlanProto;

    use super::*;

    #[test]
    fn originals_and_comparisons() {
        let orig = VfState { vlan: 0, spoofchk: true, mac: MacAddr::ZERO, ..Default::default() };
        let set = VfSetting::Vlan { vlan: 100, qos: 2, proto: VlanProto::Dot1Q };
        assert_eq!(original_of(&set, &orig), VfSetting::Vlan { vlan: 0, qos: 0, proto: VlanProto::Dot1Q });
        assert!(shows(&original_of(&set, &orig), &orig));
        assert!(!shows(&set, &orig));
        assert!(shows(&VfSetting::LinkState(VfLinkState::Enable), &orig), "unreported link state cannot be checked");
        let now = VfState { link_state: Some(VfLinkState::Disable), ..orig.clone() };
        assert!(!shows(&VfSetting::LinkState(VfLinkState::Enable), &now));
    }
}
