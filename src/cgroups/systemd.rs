//! `--systemd-cgroup`'s `linux.cgroupsPath`: `slice:prefix:name`, parsed and
//! checked as runc does. keel has no systemd driver (it would ask systemd over
//! D-Bus for a transient scope unit); the parse lets `create` say exactly
//! which unit it would have made when it refuses.

use std::fmt;

use super::CgroupError;

/// The slice a unit goes in when the path leaves it empty (runc's default
/// for a root user; a rootless v2 user's would be `user.slice`).
pub const DEFAULT_SLICE: &str = "system.slice";

/// `slice:prefix:name` checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdPath {
    /// The parent slice's unit name, e.g. "system.slice".
    pub slice: String,
    /// The slice's cgroup path, from its name ("a-b.slice" →
    /// "/a.slice/a-b.slice"; "-.slice" is the root, "/").
    pub slice_path: String,
    /// The container's unit: "<prefix>-<name>.scope", or `name` itself when
    /// it names a slice.
    pub unit: String,
}

impl fmt::Display for SystemdPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unit {} in {}", self.unit, self.slice)
    }
}

/// Parse `linux.cgroupsPath` for the systemd driver; an empty path is
/// `:<runtime>:<id>`, as runc's `:runc:<id>`.
pub fn parse(path: &str, id: &str) -> Result<SystemdPath, CgroupError> {
    let owned;
    let path = if path.is_empty() {
        owned = format!(":keel:{id}");
        &owned
    } else {
        path
    };
    let parts: Vec<&str> = path.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        return Err(CgroupError::Path(format!(
            "{path:?}: with --systemd-cgroup it must be \"slice:prefix:name\""
        )));
    };
    if name.is_empty() {
        return Err(CgroupError::Path(format!(
            "{path:?}: the unit name (after the second ':') is empty"
        )));
    }
    if name.contains('/') || prefix.contains('/') {
        return Err(CgroupError::Path(format!(
            "{path:?}: a systemd unit name may not contain '/'"
        )));
    }
    let slice = if slice.is_empty() {
        DEFAULT_SLICE
    } else {
        slice
    };
    let slice_path = expand_slice(slice)
        .map_err(|why| CgroupError::Path(format!("{path:?}: slice {slice:?}: {why}")))?;
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else {
        format!("{prefix}-{name}.scope")
    };
    Ok(SystemdPath {
        slice: slice.to_string(),
        slice_path,
        unit,
    })
}

/// A slice's cgroup path from its name, systemd's nesting by '-':
/// "a-b-c.slice" is "/a.slice/a-b.slice/a-b-c.slice".
pub fn expand_slice(slice: &str) -> Result<String, &'static str> {
    const SUFFIX: &str = ".slice";
    let Some(base) = slice.strip_suffix(SUFFIX) else {
        return Err("a slice name must end in \".slice\"");
    };
    if base.is_empty() {
        return Err("a slice name needs a name before \".slice\"");
    }
    if slice.contains('/') {
        return Err("a slice name may not contain '/' (nest with '-')");
    }
    if base == "-" {
        return Ok("/".to_string());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in base.split('-') {
        if part.is_empty() {
            return Err("a slice name may not start or end with '-' or hold \"--\"");
        }
        path.push('/');
        path.push_str(&prefix);
        path.push_str(part);
        path.push_str(SUFFIX);
        prefix.push_str(part);
        prefix.push('-');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_nest_by_dash() {
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(
            expand_slice("a-b-c.slice").unwrap(),
            "/a.slice/a-b.slice/a-b-c.slice"
        );
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        for bad in [
            "system",
            ".slice",
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            "a/b.slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn three_parts_make_a_scope_in_a_slice() {
        let p = parse("system.slice:keel:c1", "x").unwrap();
        assert_eq!(p.slice, "system.slice");
        assert_eq!(p.unit, "keel-c1.scope");
        assert_eq!(p.to_string(), "unit keel-c1.scope in system.slice");

        let p = parse(":docker:abc", "x").unwrap();
        assert_eq!(
            (p.slice.as_str(), p.unit.as_str()),
            (DEFAULT_SLICE, "docker-abc.scope")
        );

        // A name that is a slice is the unit itself.
        let p = parse("user-1000.slice:x:my.slice", "x").unwrap();
        assert_eq!(p.unit, "my.slice");
        assert_eq!(p.slice_path, "/user.slice/user-1000.slice");

        assert_eq!(parse("", "c9").unwrap().unit, "keel-c9.scope");
    }

    #[test]
    fn malformed_paths_name_the_field() {
        for bad in [
            "/keel/c1",
            "a:b",
            "a:b:c:d",
            "system.slice:keel:",
            "system:keel:c1",
            "a--b.slice:keel:c1",
            "system.slice:keel:a/b",
        ] {
            let e = parse(bad, "x").unwrap_err().to_string();
            assert!(e.starts_with("linux.cgroupsPath: "), "{bad}: {e}");
        }
    }
}
