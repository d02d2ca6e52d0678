//! OCI mount options (`config.json` `mounts[i].options`) turned into what the
//! mount code needs: `mount(2)` flags, the flags an option explicitly cleared,
//! the propagation changes to apply afterwards, `mount_setattr(2)` recursive
//! attributes, filesystem data and keel's extensions.
//!
//! The semantics follow runc's `parseMountOptions` (libcontainer/specconv) and
//! the "Mount Options" table of the runtime-spec's config.md, with these
//! deliberate differences, each making the result do what the options say:
//!
//! * `"defaults"` is a no-op. runc passes it on as filesystem data, where
//!   filesystems such as tmpfs reject it.
//! * An empty option is skipped; runc passes it on as data (`"a,,b"`).
//! * `noatime`, `relatime` and `strictatime` choose one access-time mode, so
//!   the last one given wins. runc sets all the given flags, and then the
//!   kernel picks the winner: strictatime beats noatime, which beats relatime.
//! * The recursive access-time options always produce an attribute pair that
//!   `mount_setattr(2)` accepts (see [`parse`]). runc's `ratime` and
//!   `rnostrictatime` give a partial `MOUNT_ATTR__ATIME` clear mask, which the
//!   kernel rejects with `EINVAL`, and its `rnorelatime` does nothing.
//!
//! Later options override earlier ones (`ro,rw` gives a read-write mount).

use libc::c_ulong;

/// `mount_setattr(2)`: make the mount read-only.
pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
/// `mount_setattr(2)`: ignore suid and sgid bits.
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
/// `mount_setattr(2)`: disallow access to device special files.
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
/// `mount_setattr(2)`: disallow program execution.
pub const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
/// `mount_setattr(2)`: mask of the access-time mode (an enum, not bits).
pub const MOUNT_ATTR__ATIME: u64 = 0x0000_0070;
/// `mount_setattr(2)` access-time mode: update atime relative to mtime/ctime.
pub const MOUNT_ATTR_RELATIME: u64 = 0x0000_0000;
/// `mount_setattr(2)` access-time mode: do not update access times.
pub const MOUNT_ATTR_NOATIME: u64 = 0x0000_0010;
/// `mount_setattr(2)` access-time mode: always update access times.
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x0000_0020;
/// `mount_setattr(2)`: do not update directory access times.
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x0000_0080;
/// `mount_setattr(2)`: idmap the mount.
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
/// `mount_setattr(2)`: do not follow symlinks.
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// The `MS_*` access-time modes that `mount(2)` resolves by precedence rather
/// than by order; setting one of them through an option unsets the others.
const MS_ATIME_MODES: c_ulong = libc::MS_NOATIME | libc::MS_RELATIME | libc::MS_STRICTATIME;

/// What one mount's options mean.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// MS_* flags for mount(2) (libc::c_ulong), e.g. MS_RDONLY|MS_NOSUID|MS_BIND|MS_REC.
    pub flags: c_ulong,
    /// Flags explicitly cleared by an option (e.g. "rw" clears MS_RDONLY, "suid" clears MS_NOSUID); needed for bind remounts.
    pub cleared: c_ulong,
    /// Propagation changes applied after the mount, in order: each is MS_SHARED/MS_SLAVE/MS_PRIVATE/MS_UNBINDABLE, possibly | MS_REC.
    pub propagation: Vec<c_ulong>,
    /// mount_setattr(AT_RECURSIVE) attributes from the recursive options (rro, rnosuid, ...): MOUNT_ATTR_* bits to set and to clear.
    pub rec_attr_set: u64,
    /// See [`MountOptions::rec_attr_set`]. Holds all of `MOUNT_ATTR__ATIME`
    /// whenever a recursive access-time option was given, none of it otherwise.
    pub rec_attr_clr: u64,
    /// Filesystem-specific data: every unknown option, joined with ',' in order (e.g. "mode=755,size=65536k").
    pub data: String,
    /// "tmpcopyup": copy the target's previous contents into a new tmpfs.
    pub tmpcopyup: bool,
    /// "idmap" (Some(false)) or "ridmap" (Some(true)).
    pub idmap: Option<bool>,
}

impl MountOptions {
    /// Whether `MS_BIND` is set ("bind" or "rbind").
    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }

    /// Whether both `MS_BIND` and `MS_REC` are set ("rbind").
    pub fn is_recursive_bind(&self) -> bool {
        let both = libc::MS_BIND | libc::MS_REC;
        self.flags & both == both
    }

    /// Whether any recursive attribute (`rro`, `rnosuid`, ...) is to be applied.
    pub fn has_rec_attr(&self) -> bool {
        self.rec_attr_set != 0 || self.rec_attr_clr != 0
    }
}

/// What an option name does.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// "defaults": nothing.
    Nothing,
    /// A `mount(2)` flag option: sets the flags, or clears them if `clear`.
    Flag { flags: c_ulong, clear: bool },
    /// A propagation change (`MS_SHARED` ... , maybe `| MS_REC`).
    Propagation(c_ulong),
    /// A recursive attribute that is a plain bit: sets it, or clears it if `clear`.
    RecAttr { attr: u64, clear: bool },
    /// A recursive access-time mode: selects it, or rules it out if `clear`.
    RecAtime { mode: u64, clear: bool },
    /// "tmpcopyup".
    TmpCopyUp,
    /// "idmap" (false) or "ridmap" (true).
    IdMap { recursive: bool },
}

const fn set(flags: c_ulong) -> Kind {
    Kind::Flag {
        flags,
        clear: false,
    }
}

const fn clear(flags: c_ulong) -> Kind {
    Kind::Flag { flags, clear: true }
}

const fn rset(attr: u64) -> Kind {
    Kind::RecAttr { attr, clear: false }
}

const fn rclear(attr: u64) -> Kind {
    Kind::RecAttr { attr, clear: true }
}

const fn ratime(mode: u64, clear: bool) -> Kind {
    Kind::RecAtime { mode, clear }
}

/// Every option keel understands.
const OPTIONS: &[(&str, Kind)] = &[
    // mount(2) flags.
    ("defaults", Kind::Nothing),
    ("ro", set(libc::MS_RDONLY)),
    ("rw", clear(libc::MS_RDONLY)),
    ("nosuid", set(libc::MS_NOSUID)),
    ("suid", clear(libc::MS_NOSUID)),
    ("nodev", set(libc::MS_NODEV)),
    ("dev", clear(libc::MS_NODEV)),
    ("noexec", set(libc::MS_NOEXEC)),
    ("exec", clear(libc::MS_NOEXEC)),
    ("sync", set(libc::MS_SYNCHRONOUS)),
    ("async", clear(libc::MS_SYNCHRONOUS)),
    ("dirsync", set(libc::MS_DIRSYNC)),
    ("remount", set(libc::MS_REMOUNT)),
    ("mand", set(libc::MS_MANDLOCK)),
    ("nomand", clear(libc::MS_MANDLOCK)),
    ("noatime", set(libc::MS_NOATIME)),
    ("atime", clear(libc::MS_NOATIME)),
    ("nodiratime", set(libc::MS_NODIRATIME)),
    ("diratime", clear(libc::MS_NODIRATIME)),
    ("relatime", set(libc::MS_RELATIME)),
    ("norelatime", clear(libc::MS_RELATIME)),
    ("strictatime", set(libc::MS_STRICTATIME)),
    ("nostrictatime", clear(libc::MS_STRICTATIME)),
    ("lazytime", set(libc::MS_LAZYTIME)),
    ("nolazytime", clear(libc::MS_LAZYTIME)),
    ("iversion", set(libc::MS_I_VERSION)),
    ("noiversion", clear(libc::MS_I_VERSION)),
    ("silent", set(libc::MS_SILENT)),
    ("loud", clear(libc::MS_SILENT)),
    ("bind", set(libc::MS_BIND)),
    ("rbind", set(libc::MS_BIND | libc::MS_REC)),
    ("nosymfollow", set(libc::MS_NOSYMFOLLOW)),
    ("symfollow", clear(libc::MS_NOSYMFOLLOW)),
    // Propagation.
    ("private", Kind::Propagation(libc::MS_PRIVATE)),
    (
        "rprivate",
        Kind::Propagation(libc::MS_PRIVATE | libc::MS_REC),
    ),
    ("shared", Kind::Propagation(libc::MS_SHARED)),
    ("rshared", Kind::Propagation(libc::MS_SHARED | libc::MS_REC)),
    ("slave", Kind::Propagation(libc::MS_SLAVE)),
    ("rslave", Kind::Propagation(libc::MS_SLAVE | libc::MS_REC)),
    ("unbindable", Kind::Propagation(libc::MS_UNBINDABLE)),
    (
        "runbindable",
        Kind::Propagation(libc::MS_UNBINDABLE | libc::MS_REC),
    ),
    // Recursive attributes (mount_setattr(2) with AT_RECURSIVE).
    ("rro", rset(MOUNT_ATTR_RDONLY)),
    ("rrw", rclear(MOUNT_ATTR_RDONLY)),
    ("rnosuid", rset(MOUNT_ATTR_NOSUID)),
    ("rsuid", rclear(MOUNT_ATTR_NOSUID)),
    ("rnodev", rset(MOUNT_ATTR_NODEV)),
    ("rdev", rclear(MOUNT_ATTR_NODEV)),
    ("rnoexec", rset(MOUNT_ATTR_NOEXEC)),
    ("rexec", rclear(MOUNT_ATTR_NOEXEC)),
    ("rnodiratime", rset(MOUNT_ATTR_NODIRATIME)),
    ("rdiratime", rclear(MOUNT_ATTR_NODIRATIME)),
    ("rnosymfollow", rset(MOUNT_ATTR_NOSYMFOLLOW)),
    ("rsymfollow", rclear(MOUNT_ATTR_NOSYMFOLLOW)),
    ("rrelatime", ratime(MOUNT_ATTR_RELATIME, false)),
    ("rnorelatime", ratime(MOUNT_ATTR_RELATIME, true)),
    ("rnoatime", ratime(MOUNT_ATTR_NOATIME, false)),
    ("ratime", ratime(MOUNT_ATTR_NOATIME, true)),
    ("rstrictatime", ratime(MOUNT_ATTR_STRICTATIME, false)),
    ("rnostrictatime", ratime(MOUNT_ATTR_STRICTATIME, true)),
    // Extensions.
    ("tmpcopyup", Kind::TmpCopyUp),
    ("idmap", Kind::IdMap { recursive: false }),
    ("ridmap", Kind::IdMap { recursive: true }),
];

fn lookup(option: &str) -> Option<Kind> {
    OPTIONS
        .iter()
        .find(|(name, _)| *name == option)
        .map(|&(_, kind)| kind)
}

/// Parse one mount's options.
///
/// Flag, propagation, recursive and extension options are recognised by exact
/// name; every other non-empty option is filesystem data, kept in order (as
/// runc does). Empty options are skipped.
///
/// Recursive access-time options: `mount_setattr(2)` takes the access-time
/// mode as a value, and only together with all of `MOUNT_ATTR__ATIME` in the
/// clear mask, which replaces the mode on every mount of the tree. So
/// `rrelatime`, `rnoatime` and `rstrictatime` choose that mode, and the last
/// one given wins. `ratime`, `rnostrictatime` and `rnorelatime` rule a mode
/// out. If no earlier option chose a mode, or the chosen one is ruled out, the
/// result is the kernel's default, relatime. For `rnorelatime` it is
/// strictatime (full access-time updates). If the chosen mode is a different
/// one, it is kept (`rstrictatime,ratime` stays strictatime).
///
/// `Err` is for an option that cannot be passed to the kernel: one holding a
/// NUL byte.
pub fn parse(options: &[String]) -> Result<MountOptions, String> {
    let mut m = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    // The recursive access-time mode chosen so far, if any.
    let mut rec_atime: Option<u64> = None;

    for option in options {
        let option = option.as_str();
        if option.is_empty() {
            continue;
        }
        if option.contains('\0') {
            return Err(format!("mount option {option:?} contains a NUL byte"));
        }
        match lookup(option) {
            Some(Kind::Nothing) => {}
            Some(Kind::Flag { flags, clear: true }) => {
                m.flags &= !flags;
                m.cleared |= flags;
            }
            Some(Kind::Flag {
                flags,
                clear: false,
            }) => {
                if flags & MS_ATIME_MODES != 0 {
                    m.flags &= !MS_ATIME_MODES;
                }
                m.flags |= flags;
                m.cleared &= !flags;
            }
            Some(Kind::Propagation(flags)) => m.propagation.push(flags),
            Some(Kind::RecAttr { attr, clear: true }) => {
                m.rec_attr_clr |= attr;
                m.rec_attr_set &= !attr;
            }
            Some(Kind::RecAttr { attr, clear: false }) => {
                m.rec_attr_set |= attr;
                m.rec_attr_clr &= !attr;
            }
            Some(Kind::RecAtime { mode, clear: false }) => rec_atime = Some(mode),
            Some(Kind::RecAtime { mode, clear: true }) => {
                if rec_atime.is_none() || rec_atime == Some(mode) {
                    rec_atime = Some(if mode == MOUNT_ATTR_RELATIME {
                        MOUNT_ATTR_STRICTATIME
                    } else {
                        MOUNT_ATTR_RELATIME
                    });
                }
            }
            Some(Kind::TmpCopyUp) => m.tmpcopyup = true,
            Some(Kind::IdMap { recursive }) => m.idmap = Some(recursive),
            None => data.push(option),
        }
    }

    if let Some(mode) = rec_atime {
        m.rec_attr_clr |= MOUNT_ATTR__ATIME;
        m.rec_attr_set = (m.rec_attr_set & !MOUNT_ATTR__ATIME) | mode;
    }
    m.data = data.join(",");
    Ok(m)
}

/// All option names keel understands (for `keel features` "mountOptions"), sorted.
pub fn known_options() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = OPTIONS.iter().map(|&(name, _)| name).collect();
    names.sort_unstable();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use libc::{
        MS_BIND, MS_DIRSYNC, MS_I_VERSION, MS_LAZYTIME, MS_MANDLOCK, MS_NOATIME, MS_NODEV,
        MS_NODIRATIME, MS_NOEXEC, MS_NOSUID, MS_NOSYMFOLLOW, MS_PRIVATE, MS_RDONLY, MS_REC,
        MS_RELATIME, MS_REMOUNT, MS_SHARED, MS_SILENT, MS_SLAVE, MS_STRICTATIME, MS_SYNCHRONOUS,
        MS_UNBINDABLE,
    };

    fn p(options: &str) -> MountOptions {
        let list: Vec<String> = if options.is_empty() {
            Vec::new()
        } else {
            options.split(',').map(str::to_owned).collect()
        };
        parse(&list).unwrap_or_else(|e| panic!("parse({options:?}): {e}"))
    }

    /// What `mount_setattr(2)` checks of the access-time bits (fs/namespace.c,
    /// build_mount_kattr): a clear mask that is all of `MOUNT_ATTR__ATIME` or
    /// none of it, a valid mode, and no mode without the clear mask.
    fn kernel_accepts(m: &MountOptions) -> bool {
        let clr = m.rec_attr_clr & MOUNT_ATTR__ATIME;
        let set = m.rec_attr_set & MOUNT_ATTR__ATIME;
        match clr {
            0 => set == 0,
            MOUNT_ATTR__ATIME => [
                MOUNT_ATTR_RELATIME,
                MOUNT_ATTR_NOATIME,
                MOUNT_ATTR_STRICTATIME,
            ]
            .contains(&set),
            _ => false,
        }
    }

    #[test]
    fn empty_list() {
        assert_eq!(p(""), MountOptions::default());
        assert!(!p("").has_rec_attr());
    }

    #[test]
    fn runc_default_proc_has_no_options() {
        let m = parse(&[]).unwrap();
        assert_eq!(m.flags, 0);
        assert_eq!(m.data, "");
    }

    #[test]
    fn runc_default_dev() {
        let m = p("nosuid,strictatime,mode=755,size=65536k");
        assert_eq!(m.flags, MS_NOSUID | MS_STRICTATIME);
        assert_eq!(m.cleared, 0);
        assert_eq!(m.data, "mode=755,size=65536k");
        assert!(m.propagation.is_empty());
        assert!(!m.is_bind());
    }

    #[test]
    fn runc_default_devpts() {
        let m = p("nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5");
        assert_eq!(m.flags, MS_NOSUID | MS_NOEXEC);
        assert_eq!(m.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
    }

    #[test]
    fn runc_default_shm() {
        let m = p("nosuid,noexec,nodev,mode=1777,size=65536k");
        assert_eq!(m.flags, MS_NOSUID | MS_NOEXEC | MS_NODEV);
        assert_eq!(m.data, "mode=1777,size=65536k");
    }

    #[test]
    fn runc_default_mqueue() {
        let m = p("nosuid,noexec,nodev");
        assert_eq!(m.flags, MS_NOSUID | MS_NOEXEC | MS_NODEV);
        assert_eq!(m.data, "");
    }

    #[test]
    fn runc_default_sys() {
        let m = p("nosuid,noexec,nodev,ro");
        assert_eq!(m.flags, MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY);
        assert_eq!(m.data, "");
    }

    #[test]
    fn runc_default_cgroup() {
        let m = p("nosuid,noexec,nodev,relatime,ro");
        assert_eq!(
            m.flags,
            MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RELATIME | MS_RDONLY
        );
        assert_eq!(m.data, "");
    }

    #[test]
    fn ro_then_rw_is_rw() {
        let m = p("ro,rw");
        assert_eq!(m.flags & MS_RDONLY, 0);
        assert_eq!(m.cleared, MS_RDONLY);
    }

    #[test]
    fn rw_then_ro_is_ro() {
        let m = p("rw,ro");
        assert_eq!(m.flags, MS_RDONLY);
        assert_eq!(m.cleared, 0);
    }

    #[test]
    fn clear_options_are_recorded() {
        let m = p("suid,dev,exec,async,atime,diratime,norelatime,nostrictatime");
        assert_eq!(m.flags, 0);
        assert_eq!(
            m.cleared,
            MS_NOSUID
                | MS_NODEV
                | MS_NOEXEC
                | MS_SYNCHRONOUS
                | MS_NOATIME
                | MS_NODIRATIME
                | MS_RELATIME
                | MS_STRICTATIME
        );
        let m = p("nomand,nolazytime,noiversion,loud,symfollow,rw");
        assert_eq!(m.flags, 0);
        assert_eq!(
            m.cleared,
            MS_MANDLOCK | MS_LAZYTIME | MS_I_VERSION | MS_SILENT | MS_NOSYMFOLLOW | MS_RDONLY
        );
    }

    #[test]
    fn every_flag_option() {
        let cases: &[(&str, c_ulong)] = &[
            ("ro", MS_RDONLY),
            ("nosuid", MS_NOSUID),
            ("nodev", MS_NODEV),
            ("noexec", MS_NOEXEC),
            ("sync", MS_SYNCHRONOUS),
            ("dirsync", MS_DIRSYNC),
            ("remount", MS_REMOUNT),
            ("mand", MS_MANDLOCK),
            ("noatime", MS_NOATIME),
            ("nodiratime", MS_NODIRATIME),
            ("relatime", MS_RELATIME),
            ("strictatime", MS_STRICTATIME),
            ("lazytime", MS_LAZYTIME),
            ("iversion", MS_I_VERSION),
            ("silent", MS_SILENT),
            ("bind", MS_BIND),
            ("rbind", MS_BIND | MS_REC),
            ("nosymfollow", MS_NOSYMFOLLOW),
        ];
        for &(name, flags) in cases {
            let m = p(name);
            assert_eq!(m.flags, flags, "{name}");
            assert_eq!(m.data, "", "{name}");
            assert!(!m.has_rec_attr(), "{name}");
        }
    }

    #[test]
    fn set_after_clear_unrecords_the_clear() {
        let m = p("suid,nosuid");
        assert_eq!(m.flags, MS_NOSUID);
        assert_eq!(m.cleared, 0);
    }

    #[test]
    fn last_atime_mode_wins() {
        assert_eq!(p("noatime,relatime").flags, MS_RELATIME);
        assert_eq!(p("strictatime,noatime").flags, MS_NOATIME);
        assert_eq!(p("relatime,strictatime").flags, MS_STRICTATIME);
        // nodiratime is not an access-time mode and stays.
        assert_eq!(
            p("nodiratime,noatime,strictatime").flags,
            MS_NODIRATIME | MS_STRICTATIME
        );
        // Clearing one mode leaves the others alone.
        assert_eq!(p("strictatime,atime").flags, MS_STRICTATIME);
        assert_eq!(p("noatime,atime").flags, 0);
    }

    #[test]
    fn bind_and_rbind() {
        let m = p("bind");
        assert!(m.is_bind());
        assert!(!m.is_recursive_bind());
        assert_eq!(m.flags, MS_BIND);

        let m = p("rbind,ro,nosuid");
        assert!(m.is_bind());
        assert!(m.is_recursive_bind());
        assert_eq!(m.flags, MS_BIND | MS_REC | MS_RDONLY | MS_NOSUID);
        assert_eq!(m.data, "");
        assert!(m.propagation.is_empty());

        assert!(!p("nosuid").is_bind());
        assert!(!p("rprivate").is_recursive_bind());
    }

    #[test]
    fn bind_remount() {
        let m = p("bind,remount,ro");
        assert_eq!(m.flags, MS_BIND | MS_REMOUNT | MS_RDONLY);
    }

    #[test]
    fn propagation_in_order() {
        let m = p("rbind,rprivate,shared,rslave,unbindable,runbindable,private,rshared,slave");
        assert_eq!(m.flags, MS_BIND | MS_REC);
        assert_eq!(
            m.propagation,
            vec![
                MS_PRIVATE | MS_REC,
                MS_SHARED,
                MS_SLAVE | MS_REC,
                MS_UNBINDABLE,
                MS_UNBINDABLE | MS_REC,
                MS_PRIVATE,
                MS_SHARED | MS_REC,
                MS_SLAVE,
            ]
        );
        assert_eq!(m.data, "");
    }

    #[test]
    fn propagation_repeats_are_kept() {
        assert_eq!(p("private,private").propagation, vec![MS_PRIVATE; 2]);
    }

    #[test]
    fn each_recursive_bit_attribute() {
        let cases: &[(&str, &str, u64)] = &[
            ("rro", "rrw", MOUNT_ATTR_RDONLY),
            ("rnosuid", "rsuid", MOUNT_ATTR_NOSUID),
            ("rnodev", "rdev", MOUNT_ATTR_NODEV),
            ("rnoexec", "rexec", MOUNT_ATTR_NOEXEC),
            ("rnodiratime", "rdiratime", MOUNT_ATTR_NODIRATIME),
            ("rnosymfollow", "rsymfollow", MOUNT_ATTR_NOSYMFOLLOW),
        ];
        for &(on, off, attr) in cases {
            let m = p(on);
            assert_eq!((m.rec_attr_set, m.rec_attr_clr), (attr, 0), "{on}");
            assert_eq!((m.flags, m.cleared), (0, 0), "{on}");
            assert!(m.has_rec_attr(), "{on}");

            let m = p(off);
            assert_eq!((m.rec_attr_set, m.rec_attr_clr), (0, attr), "{off}");

            let m = p(&format!("{on},{off}"));
            assert_eq!((m.rec_attr_set, m.rec_attr_clr), (0, attr), "{on},{off}");

            let m = p(&format!("{off},{on}"));
            assert_eq!((m.rec_attr_set, m.rec_attr_clr), (attr, 0), "{off},{on}");
        }
    }

    #[test]
    fn recursive_bits_combine() {
        let m = p("rbind,rro,rnosuid,rnodev,rnoexec,rsymfollow");
        assert!(m.is_recursive_bind());
        assert_eq!(
            m.rec_attr_set,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC
        );
        assert_eq!(m.rec_attr_clr, MOUNT_ATTR_NOSYMFOLLOW);
    }

    #[test]
    fn recursive_atime_modes() {
        let cases: &[(&str, u64)] = &[
            ("rrelatime", MOUNT_ATTR_RELATIME),
            ("rnoatime", MOUNT_ATTR_NOATIME),
            ("rstrictatime", MOUNT_ATTR_STRICTATIME),
            // Ruling a mode out without choosing one: the kernel default
            // (relatime), or strictatime when relatime is ruled out.
            ("ratime", MOUNT_ATTR_RELATIME),
            ("rnostrictatime", MOUNT_ATTR_RELATIME),
            ("rnorelatime", MOUNT_ATTR_STRICTATIME),
            // Later overrides earlier.
            ("rnoatime,rstrictatime", MOUNT_ATTR_STRICTATIME),
            ("rstrictatime,rnoatime", MOUNT_ATTR_NOATIME),
            ("rnoatime,rrelatime", MOUNT_ATTR_RELATIME),
            ("rnoatime,ratime", MOUNT_ATTR_RELATIME),
            ("rstrictatime,rnostrictatime", MOUNT_ATTR_RELATIME),
            ("rrelatime,rnorelatime", MOUNT_ATTR_STRICTATIME),
            // Ruling out a mode other than the chosen one keeps the choice.
            ("rstrictatime,ratime", MOUNT_ATTR_STRICTATIME),
            ("rnoatime,rnostrictatime", MOUNT_ATTR_NOATIME),
            ("rnoatime,rnorelatime", MOUNT_ATTR_NOATIME),
        ];
        for &(options, mode) in cases {
            let m = p(options);
            assert_eq!(m.rec_attr_clr, MOUNT_ATTR__ATIME, "{options}");
            assert_eq!(m.rec_attr_set, mode, "{options}");
            assert!(m.has_rec_attr(), "{options}");
            assert!(kernel_accepts(&m), "{options}");
        }
    }

    #[test]
    fn recursive_atime_with_other_attributes() {
        let m = p("rnoatime,rro,rnodiratime,rnosuid,rsuid");
        assert_eq!(
            m.rec_attr_set,
            MOUNT_ATTR_NOATIME | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODIRATIME
        );
        assert_eq!(m.rec_attr_clr, MOUNT_ATTR__ATIME | MOUNT_ATTR_NOSUID);
    }

    #[test]
    fn recursive_atime_always_kernel_valid() {
        let atime = [
            "rrelatime",
            "rnorelatime",
            "rnoatime",
            "ratime",
            "rstrictatime",
            "rnostrictatime",
            "rnodiratime",
            "rdiratime",
        ];
        for a in atime {
            for b in atime {
                for c in atime {
                    let options = format!("{a},{b},{c}");
                    assert!(kernel_accepts(&p(&options)), "{options}");
                }
            }
        }
    }

    #[test]
    fn recursive_and_plain_are_independent() {
        let m = p("ro,rrw,noatime,rstrictatime");
        assert_eq!(m.flags, MS_RDONLY | MS_NOATIME);
        assert_eq!(m.rec_attr_set, MOUNT_ATTR_STRICTATIME);
        assert_eq!(m.rec_attr_clr, MOUNT_ATTR_RDONLY | MOUNT_ATTR__ATIME);
    }

    #[test]
    fn tmpcopyup() {
        let m = p("nosuid,tmpcopyup,mode=755");
        assert!(m.tmpcopyup);
        assert_eq!(m.flags, MS_NOSUID);
        assert_eq!(m.data, "mode=755");
        assert!(!p("nosuid").tmpcopyup);
    }

    #[test]
    fn idmap_and_ridmap() {
        assert_eq!(p("bind").idmap, None);
        let m = p("bind,idmap");
        assert_eq!(m.idmap, Some(false));
        assert_eq!(m.data, "");
        assert_eq!(m.rec_attr_set, 0);
        assert_eq!(p("rbind,ridmap").idmap, Some(true));
        assert_eq!(p("idmap,ridmap").idmap, Some(true));
        assert_eq!(p("ridmap,idmap").idmap, Some(false));
    }

    #[test]
    fn unknown_options_go_to_data_in_order() {
        let m = p("size=1m,ro,uid=1000,weird, spaced,RO,upperdir=/a/b");
        assert_eq!(m.flags, MS_RDONLY);
        assert_eq!(m.data, "size=1m,uid=1000,weird, spaced,RO,upperdir=/a/b");
    }

    #[test]
    fn overlay_style_data() {
        let m = p("lowerdir=/l1:/l2,upperdir=/u,workdir=/w,index=off");
        assert_eq!(m.flags, 0);
        assert_eq!(m.data, "lowerdir=/l1:/l2,upperdir=/u,workdir=/w,index=off");
    }

    #[test]
    fn defaults_is_a_no_op() {
        let m = p("defaults");
        assert_eq!(m, MountOptions::default());
        let m = p("ro,defaults,mode=700");
        assert_eq!(m.flags, MS_RDONLY);
        assert_eq!(m.data, "mode=700");
    }

    #[test]
    fn empty_option_is_skipped() {
        let list = vec![
            String::new(),
            "mode=755".to_owned(),
            String::new(),
            "size=1k".to_owned(),
        ];
        let m = parse(&list).unwrap();
        assert_eq!(m.data, "mode=755,size=1k");
        assert_eq!(m.flags, 0);
    }

    #[test]
    fn nul_byte_is_an_error() {
        let err = parse(&["ro".to_owned(), "mode=7\u{0}55".to_owned()]).unwrap_err();
        assert!(err.contains("NUL"), "{err}");
        assert!(parse(&["r\u{0}o".to_owned()]).is_err());
    }

    #[test]
    fn known_options_sorted_and_complete() {
        let known = known_options();
        assert!(
            known.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        for name in [
            "rro",
            "idmap",
            "ridmap",
            "tmpcopyup",
            "defaults",
            "rbind",
            "rprivate",
            "nosymfollow",
            "rnosymfollow",
            "ratime",
            "rnorelatime",
        ] {
            assert!(known.contains(&name), "{name}");
        }
        // The runtime-spec's table plus keel's extensions, nothing else.
        assert_eq!(known.len(), 62);
        // Every known option is understood: none of them becomes data.
        for name in &known {
            assert_eq!(p(name).data, "", "{name}");
        }
    }

    #[test]
    fn attr_constants_match_the_kernel_uapi() {
        assert_eq!(MOUNT_ATTR__ATIME, 0x70);
        assert_eq!(
            MOUNT_ATTR__ATIME & (MOUNT_ATTR_NOATIME | MOUNT_ATTR_STRICTATIME),
            MOUNT_ATTR_NOATIME | MOUNT_ATTR_STRICTATIME
        );
        assert_eq!(MOUNT_ATTR__ATIME & MOUNT_ATTR_NODIRATIME, 0);
        assert_eq!(MOUNT_ATTR_IDMAP, 0x0010_0000);
        assert_eq!(MOUNT_ATTR_NOSYMFOLLOW, 0x0020_0000);
    }
}
