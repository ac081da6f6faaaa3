//! Path validation and canonicalisation (xenstore.txt, paragraph on paths).
//!
//! Paths are `/`-separated, use ASCII alphanumerics plus `-/_@`, have no doubled or trailing slash (except
//! the root `/`), and are at most [`ABS_PATH_MAX`] bytes. A path without a leading `/` is relative to the
//! caller's home `/local/domain/<domid>` and may be at most [`REL_PATH_MAX`] bytes. Paths starting with `@`
//! name special watch events (`@introduceDomain`, `@releaseDomain`) and are only accepted where an operation
//! allows them.

use crate::wire::{XsError, ABS_PATH_MAX, REL_PATH_MAX};
use crate::DomId;

/// Special watch path fired on INTRODUCE.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// Special watch path fired on RELEASE.
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// The home path of a domain (`/local/domain/<domid>`).
pub fn domain_path(domid: DomId) -> String {
    format!("/local/domain/{}", domid.0)
}

fn is_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'@')
}

/// A path as the client wrote it, resolved to an absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPath {
    /// The absolute path (or the special `@...` name).
    pub abs: String,
    /// Whether the client wrote it relative to its home (events then report it relative too).
    pub relative: bool,
}

/// Validates a raw path from a request and resolves it against `domid`'s home.
///
/// `allow_special` accepts `@name` paths (watches, permissions of special nodes).
///
/// # Errors
/// EINVAL for bad characters, NUL/non-UTF-8 bytes, empty components, trailing slash, or excess length.
pub fn resolve(raw: &[u8], domid: DomId, allow_special: bool) -> Result<ClientPath, XsError> {
    if raw.is_empty() || !raw.iter().all(|b| is_path_char(*b)) {
        return Err(XsError::Inval);
    }
    let s = std::str::from_utf8(raw).map_err(|_| XsError::Inval)?;
    if let Some(name) = s.strip_prefix('@') {
        if !allow_special || name.is_empty() || name.contains('/') || s.len() > ABS_PATH_MAX {
            return Err(XsError::Inval);
        }
        return Ok(ClientPath {
            abs: s.to_owned(),
            relative: false,
        });
    }
    if s.starts_with('/') {
        if s.len() > ABS_PATH_MAX || !is_canonical(s) {
            return Err(XsError::Inval);
        }
        return Ok(ClientPath {
            abs: s.to_owned(),
            relative: false,
        });
    }
    if s.len() > REL_PATH_MAX {
        return Err(XsError::Inval);
    }
    let abs = format!("{}/{}", domain_path(domid), s);
    if abs.len() > ABS_PATH_MAX || !is_canonical(&abs) {
        return Err(XsError::Inval);
    }
    Ok(ClientPath {
        abs,
        relative: true,
    })
}

/// Whether an absolute path has no empty components, no trailing slash and no `@` component start.
fn is_canonical(s: &str) -> bool {
    if s == "/" {
        return true;
    }
    let Some(rest) = s.strip_prefix('/') else {
        return false;
    };
    rest.split('/').all(|c| !c.is_empty())
}

/// The parent of an absolute path (`None` for `/`).
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// The last component of an absolute path.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Joins a child name onto an absolute path.
pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// Whether `anc` is `path` itself or one of its ancestors (xenstore.txt: "`<child>` and `<parent>`").
pub fn is_ancestor_or_self(anc: &str, path: &str) -> bool {
    if anc == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(anc) {
        Some("") => true,
        Some(rest) => rest.starts_with('/'),
        None => false,
    }
}

/// Strips the domain home (plus `/`) off an absolute path, for events on relative watches.
pub fn to_relative(abs: &str, domid: DomId) -> String {
    let home = domain_path(domid);
    match abs
        .strip_prefix(home.as_str())
        .and_then(|r| r.strip_prefix('/'))
    {
        Some(rel) => rel.to_owned(),
        None => abs.to_owned(),
    }
}

/// Number of bytes a path counts against the path-length quota: relative to the home if inside it.
pub fn quota_len(abs: &str, domid: DomId) -> usize {
    let home = domain_path(domid);
    match abs.strip_prefix(home.as_str()) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.len().saturating_sub(1),
        _ => abs.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D0: DomId = DomId(0);

    #[test]
    fn valid_paths() {
        assert_eq!(resolve(b"/", D0, false).unwrap().abs, "/");
        assert_eq!(
            resolve(b"/a/b-c_d@e/9", D0, false).unwrap().abs,
            "/a/b-c_d@e/9"
        );
        let rel = resolve(b"device/vif", DomId(3), false).unwrap();
        assert_eq!(
            rel,
            ClientPath {
                abs: "/local/domain/3/device/vif".into(),
                relative: true
            }
        );
        assert_eq!(
            resolve(b"@releaseDomain", D0, true).unwrap().abs,
            "@releaseDomain"
        );
    }

    #[test]
    fn invalid_paths() {
        for bad in [
            &b""[..],
            b"//",
            b"/a//b",
            b"/a/",
            b"/a b",
            b"/a\0b",
            b"/\xc3\xa9",
            b"/a.b",
            b"a/",
            b"@x/y",
            b"@",
        ] {
            assert_eq!(
                resolve(bad, D0, true),
                Err(XsError::Inval),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(resolve(b"@releaseDomain", D0, false), Err(XsError::Inval));
    }

    #[test]
    fn length_limits() {
        let long_abs = format!("/{}", "a".repeat(ABS_PATH_MAX - 1));
        assert!(resolve(long_abs.as_bytes(), D0, false).is_ok());
        let too_long = format!("/{}", "a".repeat(ABS_PATH_MAX));
        assert_eq!(resolve(too_long.as_bytes(), D0, false), Err(XsError::Inval));
        let rel = "a".repeat(REL_PATH_MAX + 1);
        assert_eq!(
            resolve(rel.as_bytes(), DomId(1), false),
            Err(XsError::Inval)
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert_eq!(basename("/a/b"), "b");
        assert_eq!(join("/", "a"), "/a");
        assert!(is_ancestor_or_self("/", "/a"));
        assert!(is_ancestor_or_self("/a", "/a/b"));
        assert!(!is_ancestor_or_self("/a", "/ab"));
        assert_eq!(to_relative("/local/domain/3/x", DomId(3)), "x");
        assert_eq!(to_relative("/other", DomId(3)), "/other");
        assert_eq!(quota_len("/local/domain/3/ab", DomId(3)), 2);
    }

    proptest! {
        #[test]
        fn resolve_never_panics_and_valid_paths_are_canonical(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = resolve(&raw, DomId(5), true) {
                prop_assert!(p.abs.starts_with('/') || p.abs.starts_with('@'));
                prop_assert!(!p.abs.contains("//"));
                prop_assert!(p.abs == "/" || !p.abs.ends_with('/'));
                prop_assert!(p.abs.bytes().all(is_path_char));
            }
        }

        #[test]
        fn generated_paths_are_accepted(parts in proptest::collection::vec("[a-zA-Z0-9_-]{1,8}", 1..6)) {
            let p = format!("/{}", parts.join("/"));
            prop_assert_eq!(resolve(p.as_bytes(), D0, false).unwrap().abs, p.clone());
            prop_assert_eq!(parent(&p).map(|q| join(q, basename(&p))), Some(p));
        }
    }
}
