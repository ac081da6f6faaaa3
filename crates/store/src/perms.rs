//! Node permissions (xenstore.txt GET_PERMS/SET_PERMS; the XenBus wiki's "Permissions").
//!
//! A node's permission list is non-empty: the first entry names the owner, and its flag is the access every
//! domain without an entry of its own gets. Later entries grant `r`, `w`, `b` (both) or `n` (none) to one
//! domain each. The owner and privileged domains (dom0) always have full access; a domain targeting another
//! (SET_TARGET) acts with the target's rights too. Only dom0 may change a node's owner.

use std::fmt;
use std::sync::Arc;

use crate::wire::XsError;
use crate::DomId;

/// One access flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// `n`: no access.
    None,
    /// `r`: read only.
    Read,
    /// `w`: write only.
    Write,
    /// `b`: read and write.
    Both,
}

impl Access {
    /// Whether this flag grants what `want` asks for.
    pub fn allows(self, want: Want) -> bool {
        matches!(
            (self, want),
            (Access::Both, _) | (Access::Read, Want::Read) | (Access::Write, Want::Write)
        )
    }

    fn letter(self) -> char {
        match self {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        }
    }
}

/// What an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Reading the value, children or permissions.
    Read,
    /// Changing the node.
    Write,
}

/// One `<flag><domid>` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Perm {
    /// The domain the entry is about.
    pub domid: DomId,
    /// Its access.
    pub access: Access,
}

impl Perm {
    /// Parses `r5`, `b0`, ... (xenstore.txt `<perm-as-string>`).
    ///
    /// # Errors
    /// EINVAL for an unknown flag or a domid that is not a decimal number in 0..=65535.
    pub fn parse(s: &[u8]) -> Result<Perm, XsError> {
        let (&flag, digits) = s.split_first().ok_or(XsError::Inval)?;
        let access = match flag {
            b'n' => Access::None,
            b'r' => Access::Read,
            b'w' => Access::Write,
            b'b' => Access::Both,
            _ => return Err(XsError::Inval),
        };
        if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(XsError::Inval);
        }
        let text = std::str::from_utf8(digits).map_err(|_| XsError::Inval)?;
        let domid: u32 = text.parse().map_err(|_| XsError::Inval)?;
        if domid > 0xffff {
            return Err(XsError::Inval);
        }
        Ok(Perm {
            domid: DomId(domid),
            access,
        })
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.access.letter(), self.domid.0)
    }
}

/// A node's permission list: owner entry first. Shared, since children inherit their parent's list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Perms(Arc<[Perm]>);

impl Perms {
    /// Builds a list; `None` when empty (a node always has an owner).
    pub fn new(list: Vec<Perm>) -> Option<Perms> {
        if list.is_empty() {
            None
        } else {
            Some(Perms(list.into()))
        }
    }

    /// `n<owner>`: owned by `owner`, no access for anyone else.
    pub fn owned_by(owner: DomId) -> Perms {
        Perms(Arc::from([Perm {
            domid: owner,
            access: Access::None,
        }]))
    }

    /// The owner entry.
    pub fn owner(&self) -> DomId {
        self.0[0].domid
    }

    /// The entries.
    pub fn entries(&self) -> &[Perm] {
        &self.0
    }

    /// The same list with a different owner (the default flag is kept).
    pub fn with_owner(&self, owner: DomId) -> Perms {
        let mut v = self.0.to_vec();
        v[0].domid = owner;
        Perms(v.into())
    }

    /// Parses the SET_PERMS payload fields.
    ///
    /// # Errors
    /// EINVAL for an empty list or a bad entry.
    pub fn parse(fields: &[&[u8]]) -> Result<Perms, XsError> {
        let list = fields
            .iter()
            .map(|f| Perm::parse(f))
            .collect::<Result<Vec<_>, _>>()?;
        Perms::new(list).ok_or(XsError::Inval)
    }

    /// The GET_PERMS payload: each entry NUL-terminated.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for p in self.0.iter() {
            out.extend_from_slice(p.to_string().as_bytes());
            out.push(0);
        }
        out
    }

    /// The access `domid` has on the node.
    pub fn access_of(&self, domid: DomId) -> Access {
        if domid.is_privileged() || self.owner() == domid {
            return Access::Both;
        }
        self.0[1..]
            .iter()
            .find(|p| p.domid == domid)
            .map_or(self.0[0].access, |p| p.access)
    }

    /// Whether a connection of `domid` (targeting `target`, if any) may do `want`.
    pub fn allows(&self, domid: DomId, target: Option<DomId>, want: Want) -> bool {
        self.access_of(domid).allows(want) || target.is_some_and(|t| self.access_of(t).allows(want))
    }
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn perms(s: &str) -> Perms {
        let fields: Vec<&[u8]> = s.split(' ').map(str::as_bytes).collect();
        Perms::parse(&fields).unwrap()
    }

    #[test]
    fn parse_and_print() {
        let p = perms("n0 r5 b7 w9");
        assert_eq!(p.to_string(), "n0 r5 b7 w9");
        assert_eq!(p.to_wire(), b"n0\0r5\0b7\0w9\0");
        for bad in ["x1", "r", "r-1", "r65536", "r1a", ""] {
            assert_eq!(Perm::parse(bad.as_bytes()), Err(XsError::Inval), "{bad}");
        }
        assert_eq!(Perms::parse(&[]), Err(XsError::Inval));
    }

    #[test]
    fn owner_has_full_access_and_first_entry_is_default() {
        let p = perms("r3 w5 n6");
        assert_eq!(p.access_of(DomId(3)), Access::Both, "owner");
        assert_eq!(p.access_of(DomId(0)), Access::Both, "dom0");
        assert_eq!(p.access_of(DomId(5)), Access::Write);
        assert_eq!(p.access_of(DomId(6)), Access::None);
        assert_eq!(
            p.access_of(DomId(8)),
            Access::Read,
            "default from first entry"
        );
        assert!(!p.allows(DomId(5), None, Want::Read));
        assert!(
            p.allows(DomId(5), Some(DomId(3)), Want::Read),
            "target's rights"
        );
    }

    proptest! {
        #[test]
        fn access_rules(owner in 1u32..20, dflt in 0usize..4, entries in proptest::collection::vec((1u32..20, 0usize..4), 0..5), who in 1u32..20) {
            let flags = [Access::None, Access::Read, Access::Write, Access::Both];
            let mut list = vec![Perm { domid: DomId(owner), access: flags[dflt] }];
            list.extend(entries.iter().map(|(d, a)| Perm { domid: DomId(*d), access: flags[*a] }));
            let p = Perms::new(list).unwrap();
            let got = p.access_of(DomId(who));
            let expect = if who == owner {
                Access::Both
            } else {
                entries.iter().find(|(d, _)| *d == who).map_or(flags[dflt], |(_, a)| flags[*a])
            };
            prop_assert_eq!(got, expect);
            prop_assert_eq!(p.access_of(DomId(0)), Access::Both);
            let wire = p.to_wire();
            let fields: Vec<&[u8]> = crate::wire::split_fields(&wire);
            prop_assert_eq!(Perms::parse(&fields).unwrap(), p);
        }
    }
}
