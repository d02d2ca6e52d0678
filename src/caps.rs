//! Capabilities: the five sets of `process.capabilities`, built in the parent
//! and applied by the child around the uid switch (bounding first, keep caps
//! across setuid, then the final sets, ambient last).

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::LinuxCapabilities;

use crate::child::{Ctx, Fail};

#[derive(Debug, Default, Clone)]
pub struct CapsPlan {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

fn convert(
    set: &Option<oci_spec::runtime::Capabilities>,
    field: &str,
) -> Result<CapsHashSet, String> {
    let mut out = CapsHashSet::new();
    for c in set.iter().flatten() {
        let name = format!("CAP_{c}");
        let cap: Capability = name
            .parse()
            .map_err(|_| format!("process.capabilities.{field}: unknown capability \"{name}\""))?;
        out.insert(cap);
    }
    Ok(out)
}

pub fn plan(c: &LinuxCapabilities) -> Result<CapsPlan, String> {
    Ok(CapsPlan {
        bounding: convert(c.bounding(), "bounding")?,
        effective: convert(c.effective(), "effective")?,
        permitted: convert(c.permitted(), "permitted")?,
        inheritable: convert(c.inheritable(), "inheritable")?,
        ambient: convert(c.ambient(), "ambient")?,
    })
}

/// Before the uid switch: shrink the bounding set (needs CAP_SETPCAP, which we still have).
pub fn drop_bounding(p: &CapsPlan) -> Result<(), Fail> {
    // Capabilities this kernel does not know are skipped rather than failing the drop.
    // One PR_CAPBSET_DROP per capability (dropping an absent one succeeds); the
    // set is only read when a drop fails: EINVAL is a capability this kernel
    // does not know, and EPERM is fine for one that is already gone.
    for cap in caps::all() {
        if !p.bounding.contains(&cap) && caps::drop(None, CapSet::Bounding, cap).is_err() {
            let e = nix::errno::Errno::last();
            if e != nix::errno::Errno::EINVAL
                && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false)
            {
                return Err(Fail::new(
                    "dropping bounding capability",
                    cap.to_string().as_bytes(),
                    e,
                ));
            }
        }
    }
    Ok(())
}

/// After the uid switch: the final permitted, inheritable, effective and ambient sets.
pub fn apply(p: &CapsPlan) -> Result<(), Fail> {
    let fail = |what: &'static str| move |_| Fail::new(what, b"", nix::errno::Errno::last());
    // Each call is one capset(2), and effective must stay within permitted at every
    // step: shrink effective first, then permitted, then inheritable.
    caps::set(None, CapSet::Effective, &p.effective)
        .map_err(fail("setting effective capabilities"))?;
    caps::set(None, CapSet::Permitted, &p.permitted)
        .map_err(fail("setting permitted capabilities"))?;
    caps::set(None, CapSet::Inheritable, &p.inheritable)
        .map_err(fail("setting inheritable capabilities"))?;
    // Ambient caps must be permitted and inheritable; raising one that is not is EPERM.
    caps::clear(None, CapSet::Ambient).map_err(fail("clearing ambient capabilities"))?;
    // The kernel only takes ambient caps that are permitted and inheritable; runc's
    // own `runc spec` lists ambient caps without inheritable ones and runc ignores
    // the refusal, so those are skipped here rather than failing the container.
    for cap in p
        .ambient
        .iter()
        .filter(|c| p.permitted.contains(c) && p.inheritable.contains(c))
    {
        caps::raise(None, CapSet::Ambient, *cap).map_err(fail("raising ambient capability"))?;
    }
    Ok(())
}

/// Keep permitted caps across the setuid away from root (PR_SET_KEEPCAPS).
pub fn keep_across_setuid(on: bool) -> Result<(), Fail> {
    nix::sys::prctl::set_keepcaps(on).ctx("prctl(PR_SET_KEEPCAPS)", b"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_default_caps_convert() {
        let c: LinuxCapabilities = serde_json::from_str(
            r#"{"bounding":["CAP_AUDIT_WRITE","CAP_KILL","CAP_NET_BIND_SERVICE"],"effective":["CAP_KILL"]}"#,
        )
        .unwrap();
        let p = plan(&c).unwrap();
        assert_eq!(p.bounding.len(), 3);
        assert!(p.bounding.contains(&Capability::CAP_NET_BIND_SERVICE));
        assert!(p.effective.contains(&Capability::CAP_KILL));
        assert!(p.inheritable.is_empty());
    }
}
