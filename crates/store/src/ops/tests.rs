//! Engine-level tests of every operation and rule, driving [`Store::handle`] as the server does.

use crate::quota::Quotas;
use crate::store::Store;
use crate::wire::{self, Decoded, Header, MsgType, XsError};
use crate::{ConnId, DomId};

pub(crate) struct T {
    pub(crate) s: Store,
}

pub(crate) type R = Result<String, XsError>;

impl T {
    pub(crate) fn new() -> T {
        T {
            s: Store::in_memory(Quotas::default()),
        }
    }
    pub(crate) fn with_quotas(q: Quotas) -> T {
        T {
            s: Store::in_memory(q),
        }
    }
    pub(crate) fn conn(&mut self, domid: u32) -> ConnId {
        self.s.connect(DomId(domid))
    }
    pub(crate) fn raw(
        &mut self,
        c: ConnId,
        ty: MsgType,
        tx: u32,
        payload: &[u8],
    ) -> Result<Vec<u8>, XsError> {
        let h = Header {
            ty,
            req_id: 9,
            tx_id: tx,
            len: payload.len() as u32,
        };
        let reply = self.s.handle(c, &h, payload);
        let Decoded::Message {
            header, payload, ..
        } = wire::decode(&reply).unwrap()
        else {
            panic!("incomplete")
        };
        assert_eq!(header.req_id, 9);
        assert_eq!(header.tx_id, tx);
        if header.ty == MsgType::Error {
            return Err(XsError::from_name(payload).unwrap());
        }
        assert_eq!(header.ty, ty);
        Ok(payload.to_vec())
    }
    pub(crate) fn req(&mut self, c: ConnId, ty: MsgType, tx: u32, payload: &str) -> R {
        self.raw(c, ty, tx, payload.as_bytes())
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }
    pub(crate) fn write(&mut self, c: ConnId, tx: u32, path: &str, v: &str) -> R {
        self.req(c, MsgType::Write, tx, &format!("{path}\0{v}"))
    }
    pub(crate) fn read(&mut self, c: ConnId, tx: u32, path: &str) -> R {
        self.req(c, MsgType::Read, tx, &format!("{path}\0"))
    }
    pub(crate) fn dir(&mut self, c: ConnId, tx: u32, path: &str) -> R {
        self.req(c, MsgType::Directory, tx, &format!("{path}\0"))
    }
    pub(crate) fn rm(&mut self, c: ConnId, tx: u32, path: &str) -> R {
        self.req(c, MsgType::Rm, tx, &format!("{path}\0"))
    }
    pub(crate) fn chmod(&mut self, c: ConnId, path: &str, perms: &str) -> R {
        let p = perms
            .split(' ')
            .map(|x| format!("{x}\0"))
            .collect::<String>();
        self.req(c, MsgType::SetPerms, 0, &format!("{path}\0{p}"))
    }
    pub(crate) fn start(&mut self, c: ConnId) -> u32 {
        self.req(c, MsgType::TransactionStart, 0, "\0")
            .unwrap()
            .trim_end_matches('\0')
            .parse()
            .unwrap()
    }
    pub(crate) fn end(&mut self, c: ConnId, tx: u32, commit: bool) -> R {
        self.req(
            c,
            MsgType::TransactionEnd,
            tx,
            if commit { "T\0" } else { "F\0" },
        )
    }
    pub(crate) fn watch(&mut self, c: ConnId, path: &str, tok: &str) -> R {
        self.req(c, MsgType::Watch, 0, &format!("{path}\0{tok}\0"))
    }
    /// Events queued so far, as (conn, "path token").
    pub(crate) fn events(&mut self) -> Vec<(ConnId, String)> {
        self.s
            .take_outbox()
            .into_iter()
            .map(|(c, m)| {
                assert_eq!(&m[0..4], &15u32.to_le_bytes());
                let body = String::from_utf8_lossy(&m[16..]).into_owned();
                (c, body.trim_end_matches('\0').replace('\0', " "))
            })
            .collect()
    }
}

fn ok() -> R {
    Ok("OK\0".into())
}

#[test]
fn write_read_directory_rm() {
    let mut t = T::new();
    let c = t.conn(0);
    assert_eq!(t.write(c, 0, "/a/b/c", "v"), ok());
    assert_eq!(t.read(c, 0, "/a/b/c"), Ok("v".into()));
    assert_eq!(
        t.read(c, 0, "/a/b"),
        Ok("".into()),
        "WRITE creates parents with empty values"
    );
    assert_eq!(t.write(c, 0, "/a/x", "1"), ok());
    assert_eq!(
        t.dir(c, 0, "/a"),
        Ok("b\0x\0".into()),
        "children in creation order"
    );
    assert_eq!(t.req(c, MsgType::Mkdir, 0, "/a/x\0"), ok());
    assert_eq!(
        t.read(c, 0, "/a/x"),
        Ok("1".into()),
        "MKDIR leaves existing values alone"
    );
    assert_eq!(t.rm(c, 0, "/a"), ok());
    assert_eq!(
        t.read(c, 0, "/a/b/c"),
        Err(XsError::NoEnt),
        "RM is recursive"
    );
    assert_eq!(
        t.rm(c, 0, "/a"),
        ok(),
        "removing a missing node whose parent exists is fine"
    );
    assert_eq!(
        t.rm(c, 0, "/a/b"),
        Err(XsError::NoEnt),
        "but not when the parent is missing too"
    );
    assert_eq!(t.rm(c, 0, "/"), Err(XsError::Inval));
    assert_eq!(t.write(c, 0, "/bin", "a\0b"), ok());
    assert_eq!(t.read(c, 0, "/bin"), Ok("a\0b".into()), "values are binary");
}

#[test]
fn bad_requests() {
    let mut t = T::new();
    let c = t.conn(0);
    assert_eq!(t.req(c, MsgType::Unknown(99), 0, ""), Err(XsError::NoSys));
    assert_eq!(t.req(c, MsgType::GetFeature, 0, ""), Err(XsError::NoSys));
    assert_eq!(
        t.req(c, MsgType::WatchEvent, 0, "/a\0t\0"),
        Err(XsError::Inval)
    );
    assert_eq!(
        t.req(c, MsgType::Write, 0, "/a"),
        Err(XsError::Inval),
        "WRITE without NUL"
    );
    assert_eq!(t.read(c, 0, "/a b"), Err(XsError::Inval));
    assert_eq!(t.read(c, 0, "/a//b"), Err(XsError::Inval));
    assert_eq!(t.read(c, 0, "/tool/"), Err(XsError::Inval));
    assert_eq!(
        t.raw(c, MsgType::Read, 0, b"/\xff\0"),
        Err(XsError::Inval),
        "non-ASCII path"
    );
    assert_eq!(
        t.raw(c, MsgType::Read, 0, b"/a\0b\0"),
        Err(XsError::Inval),
        "NUL inside a path"
    );
    assert_eq!(
        t.read(c, 77, "/tool"),
        Err(XsError::NoEnt),
        "unknown transaction"
    );
    assert_eq!(t.read(c, 0, "@releaseDomain"), Err(XsError::Inval));
    assert_eq!(
        t.req(c, MsgType::TransactionStart, 5, ""),
        Err(XsError::Busy)
    );
    let tx = t.start(c);
    assert_eq!(
        t.req(c, MsgType::TransactionEnd, tx, "X\0"),
        Err(XsError::Inval)
    );
    assert_eq!(t.end(c, 4242, true), Err(XsError::NoEnt));
}

#[test]
fn relative_paths_resolve_under_the_domain_home() {
    let mut t = T::new();
    let c0 = t.conn(0);
    t.write(c0, 0, "/local/domain/3", "").unwrap();
    t.chmod(c0, "/local/domain/3", "n0 b3").unwrap();
    let c3 = t.conn(3);
    assert_eq!(t.write(c3, 0, "data/x", "1"), ok());
    assert_eq!(t.read(c0, 0, "/local/domain/3/data/x"), Ok("1".into()));
    assert_eq!(
        t.req(c0, MsgType::GetDomainPath, 0, "3\0"),
        Ok("/local/domain/3\0".into())
    );
    assert_eq!(
        t.read(c0, 0, "x"),
        Err(XsError::NoEnt),
        "dom0 relative paths live under /local/domain/0"
    );
}

#[test]
fn permissions() {
    let mut t = T::new();
    let c0 = t.conn(0);
    let c1 = t.conn(1);
    let c2 = t.conn(2);
    t.write(c0, 0, "/p/secret", "s").unwrap();
    assert_eq!(
        t.read(c1, 0, "/p/secret"),
        Err(XsError::Acces),
        "n0 hides from others"
    );
    assert_eq!(
        t.read(c1, 0, "/p/none"),
        Err(XsError::Acces),
        "cannot even learn absence under an unreadable parent"
    );
    assert_eq!(t.write(c1, 0, "/p/secret", "x"), Err(XsError::Acces));
    assert_eq!(
        t.write(c1, 0, "/p/new", "x"),
        Err(XsError::Acces),
        "creating needs write on the parent"
    );
    t.chmod(c0, "/p", "r0 w1").unwrap();
    assert_eq!(
        t.read(c2, 0, "/p/none"),
        Err(XsError::NoEnt),
        "default r lets dom2 see absence"
    );
    assert_eq!(t.dir(c1, 0, "/p"), Err(XsError::Acces), "dom1 has w only");
    assert_eq!(t.write(c1, 0, "/p/mine/deep", "x"), ok());
    assert_eq!(
        t.req(c0, MsgType::GetPerms, 0, "/p/mine/deep\0"),
        Ok("r1\0w1\0".into()),
        "inherits the parent's list, unprivileged creator owns it"
    );
    assert_eq!(
        t.read(c1, 0, "/p/mine/deep"),
        Ok("x".into()),
        "owner has full access"
    );
    assert_eq!(
        t.chmod(c1, "/p/mine/deep", "n2"),
        Err(XsError::Perm),
        "only dom0 changes owners"
    );
    assert_eq!(t.chmod(c1, "/p/mine/deep", "n1 r2"), ok());
    assert_eq!(t.read(c2, 0, "/p/mine/deep"), Ok("x".into()));
    assert_eq!(t.chmod(c2, "/p/mine/deep", "n2"), Err(XsError::Acces));
    assert_eq!(
        t.chmod(c0, "/p/mine/deep", "n2"),
        ok(),
        "dom0 may give it away"
    );
    assert_eq!(t.write(c1, 0, "/p/mine/deep", "y"), Err(XsError::Acces));
    assert_eq!(t.chmod(c0, "/p", "bogus"), Err(XsError::Inval));
    assert_eq!(
        t.req(c1, MsgType::Introduce, 0, "5\0 1\0 1\0"),
        Err(XsError::Acces)
    );
    assert_eq!(
        t.req(c1, MsgType::Control, 0, "check\0"),
        Err(XsError::Acces)
    );
    assert_eq!(t.req(c0, MsgType::Control, 0, "check\0"), ok());
    // SET_TARGET: dom2 acts with dom1's rights too.
    t.write(c0, 0, "/q", "q").unwrap();
    t.chmod(c0, "/q", "n0 r1").unwrap();
    assert_eq!(t.read(c2, 0, "/q"), Err(XsError::Acces));
    t.req(c0, MsgType::SetTarget, 0, "2\x00001\0").unwrap();
    let c2b = t.conn(2);
    assert_eq!(t.read(c2b, 0, "/q"), Ok("q".into()));
}

#[test]
fn quotas_bind_domains_not_dom0() {
    let q = Quotas {
        nodes: 3,
        watches: 2,
        transactions: 1,
        node_size: 8,
        permissions: 2,
        ..Quotas::default()
    };
    let mut t = T::with_quotas(q);
    let c0 = t.conn(0);
    t.write(c0, 0, "/local/domain/1", "").unwrap();
    t.chmod(c0, "/local/domain/1", "n0 b1").unwrap();
    let c1 = t.conn(1);
    assert_eq!(t.write(c1, 0, "a", "1"), ok());
    assert_eq!(t.write(c1, 0, "b/c", "1"), ok());
    assert_eq!(t.write(c1, 0, "d", "1"), Err(XsError::NoSpc), "node quota");
    assert_eq!(
        t.write(c1, 0, "a", "123456789"),
        Err(XsError::NoSpc),
        "node-size quota"
    );
    assert_eq!(
        t.chmod(c1, "a", "n1 r2 r3"),
        Err(XsError::NoSpc),
        "permissions quota"
    );
    assert_eq!(t.watch(c1, "a", "1"), ok());
    assert_eq!(t.watch(c1, "b", "2"), ok());
    assert_eq!(t.watch(c1, "c", "3"), Err(XsError::TooBig), "watch quota");
    let _tx = t.start(c1);
    assert_eq!(
        t.req(c1, MsgType::TransactionStart, 0, ""),
        Err(XsError::NoSpc),
        "transaction quota"
    );
    assert_eq!(t.rm(c1, 0, "b"), ok());
    assert_eq!(t.write(c1, 0, "d", "1"), ok(), "removing frees quota");
    for i in 0..20 {
        t.write(c0, 0, &format!("/big/{i}"), "0123456789abcdef")
            .unwrap();
    }
    for i in 0..5 {
        assert_eq!(t.watch(c0, "/big", &i.to_string()), ok(), "dom0 is exempt");
    }
    // GET/SET_QUOTA.
    assert_eq!(t.req(c0, MsgType::GetQuota, 0, "nodes\0"), Ok("3\0".into()));
    assert_eq!(t.req(c0, MsgType::SetQuota, 0, "1\0nodes\x00005\0"), ok());
    assert_eq!(
        t.req(c0, MsgType::GetQuota, 0, "1\0nodes\0"),
        Ok("5\0".into())
    );
    assert_eq!(
        t.req(c0, MsgType::GetQuota, 0, "bogus\0"),
        Err(XsError::Inval)
    );
    assert!(t
        .req(c0, MsgType::GetQuota, 0, "")
        .unwrap()
        .contains("transaction-nodes"));
    assert_eq!(
        t.req(c1, MsgType::GetQuota, 0, "nodes\0"),
        Err(XsError::Acces)
    );
    let c1b = t.conn(1);
    assert_eq!(
        t.write(c1b, 0, "e", "1"),
        ok(),
        "per-domain override applies"
    );
}

#[test]
fn path_length_quota() {
    let q = Quotas {
        path_max: 10,
        ..Quotas::default()
    };
    let mut t = T::with_quotas(q);
    let c0 = t.conn(0);
    t.write(c0, 0, "/local/domain/1", "").unwrap();
    t.chmod(c0, "/local/domain/1", "n0 b1").unwrap();
    let c1 = t.conn(1);
    assert_eq!(t.write(c1, 0, "0123456789", "x"), ok());
    assert_eq!(t.write(c1, 0, "0123456789a", "x"), Err(XsError::Inval));
}

#[test]
fn watches_fire_on_registration_change_and_removal_in_order() {
    let mut t = T::new();
    let c = t.conn(0);
    let w = t.conn(0);
    assert_eq!(t.watch(w, "/a", "t1"), ok());
    assert_eq!(
        t.events(),
        vec![(w, "/a t1".into())],
        "fires once on registration"
    );
    assert_eq!(t.watch(w, "/a", "t1"), Err(XsError::Exist));
    t.write(c, 0, "/a/b/c", "1").unwrap();
    t.write(c, 0, "/a/b", "2").unwrap();
    t.write(c, 0, "/other", "3").unwrap();
    t.chmod(c, "/a/b", "n0 r1").unwrap();
    t.rm(c, 0, "/a").unwrap();
    assert_eq!(
        t.events(),
        vec![
            (w, "/a/b/c t1".into()),
            (w, "/a/b t1".into()),
            (w, "/a/b t1".into()),
            (w, "/a t1".into())
        ]
    );
    assert_eq!(t.req(w, MsgType::Unwatch, 0, "/a\0t1\0"), ok());
    assert_eq!(
        t.req(w, MsgType::Unwatch, 0, "/a\0t1\0"),
        Err(XsError::NoEnt)
    );
    t.write(c, 0, "/a", "x").unwrap();
    assert_eq!(t.events(), vec![]);
}

#[test]
fn watch_events_respect_read_permission() {
    let mut t = T::new();
    let c0 = t.conn(0);
    let c1 = t.conn(1);
    t.write(c0, 0, "/s", "").unwrap();
    t.chmod(c0, "/s", "n0 r1").unwrap();
    t.watch(c1, "/s", "t").unwrap();
    t.events();
    t.write(c0, 0, "/s/open", "1").unwrap();
    t.write(c0, 0, "/s/closed", "1").unwrap();
    t.chmod(c0, "/s/closed", "n0").unwrap();
    t.write(c0, 0, "/s/closed", "2").unwrap();
    assert_eq!(
        t.events(),
        vec![(c1, "/s/open t".into()), (c1, "/s/closed t".into())]
    );
}

#[test]
fn transaction_changes_fire_at_commit_only() {
    let mut t = T::new();
    let c = t.conn(0);
    let w = t.conn(0);
    t.watch(w, "/t", "tok").unwrap();
    t.events();
    let tx = t.start(c);
    t.write(c, tx, "/t/a", "1").unwrap();
    t.write(c, tx, "/t/b", "2").unwrap();
    assert_eq!(
        t.read(c, tx, "/t/a"),
        Ok("1".into()),
        "a transaction sees its own writes"
    );
    assert_eq!(t.read(c, 0, "/t/a"), Err(XsError::NoEnt), "others do not");
    assert_eq!(t.events(), vec![]);
    assert_eq!(t.end(c, tx, true), ok());
    assert_eq!(
        t.events(),
        vec![(w, "/t/a tok".into()), (w, "/t/b tok".into())]
    );
    let tx = t.start(c);
    t.write(c, tx, "/t/a", "changed").unwrap();
    assert_eq!(t.end(c, tx, false), ok());
    assert_eq!(t.events(), vec![], "abort fires nothing");
    assert_eq!(t.read(c, 0, "/t/a"), Ok("1".into()), "abort discards");
    assert_eq!(t.end(c, tx, true), Err(XsError::NoEnt), "id gone after END");
}

#[test]
fn conflicts_only_on_real_overlap() {
    let mut t = T::new();
    let a = t.conn(0);
    let b = t.conn(0);
    t.write(a, 0, "/k/x", "0").unwrap();
    t.write(a, 0, "/k/y", "0").unwrap();
    // Read-write conflict.
    let tx = t.start(a);
    t.read(a, tx, "/k/x").unwrap();
    t.write(a, tx, "/k/y", "1").unwrap();
    t.write(b, 0, "/k/x", "other").unwrap();
    assert_eq!(t.end(a, tx, true), Err(XsError::Again));
    assert_eq!(
        t.read(a, 0, "/k/y"),
        Ok("0".into()),
        "failed commit changes nothing"
    );
    // Disjoint keys: no conflict.
    let tx = t.start(a);
    t.read(a, tx, "/k/x").unwrap();
    t.write(a, tx, "/k/x", "mine").unwrap();
    t.write(b, 0, "/k/y", "theirs").unwrap();
    assert_eq!(t.end(a, tx, true), ok());
    // Siblings created under the same directory by two transactions: no conflict.
    let t1 = t.start(a);
    let t2 = t.start(b);
    t.write(a, t1, "/k/new1", "1").unwrap();
    t.write(b, t2, "/k/new2", "2").unwrap();
    assert_eq!(t.end(a, t1, true), ok());
    assert_eq!(t.end(b, t2, true), ok());
    assert_eq!(t.dir(a, 0, "/k"), Ok("x\0y\0new1\0new2\0".into()));
    // But a transaction that listed the directory conflicts with a new child.
    let t1 = t.start(a);
    t.dir(a, t1, "/k").unwrap();
    t.write(a, t1, "/k/count", "4").unwrap();
    t.write(b, 0, "/k/new3", "3").unwrap();
    assert_eq!(t.end(a, t1, true), Err(XsError::Again));
    // Write-write conflict on the same key.
    let t1 = t.start(a);
    t.write(a, t1, "/k/x", "1").unwrap();
    t.write(b, 0, "/k/x", "2").unwrap();
    assert_eq!(t.end(a, t1, true), Err(XsError::Again));
    // Reading a missing node, then someone creates it.
    let t1 = t.start(a);
    assert_eq!(t.read(a, t1, "/k/ghost"), Err(XsError::NoEnt));
    t.write(b, 0, "/k/ghost", "boo").unwrap();
    assert_eq!(t.end(a, t1, true), Err(XsError::Again));
}

#[test]
fn transaction_rm_and_recreate() {
    let mut t = T::new();
    let c = t.conn(0);
    t.write(c, 0, "/r/a/b", "1").unwrap();
    t.write(c, 0, "/r/a/c", "1").unwrap();
    let tx = t.start(c);
    t.rm(c, tx, "/r/a").unwrap();
    assert_eq!(t.dir(c, tx, "/r"), Ok("".into()));
    t.write(c, tx, "/r/a/d", "new").unwrap();
    assert_eq!(t.dir(c, tx, "/r/a"), Ok("d\0".into()));
    assert_eq!(t.dir(c, 0, "/r/a"), Ok("b\0c\0".into()));
    t.end(c, tx, true).unwrap();
    assert_eq!(t.dir(c, 0, "/r/a"), Ok("d\0".into()));
    assert_eq!(t.read(c, 0, "/r/a/b"), Err(XsError::NoEnt));
}

#[test]
fn domains_introduce_release_and_special_watches() {
    let mut t = T::new();
    let c0 = t.conn(0);
    let w = t.conn(0);
    t.watch(w, "@introduceDomain", "i").unwrap();
    t.watch(w, "@releaseDomain", "r").unwrap();
    t.events();
    assert_eq!(
        t.req(c0, MsgType::IsDomainIntroduced, 0, "5\0"),
        Ok("F\0".into())
    );
    assert_eq!(t.req(c0, MsgType::Introduce, 0, "5\x00123\x00004\0"), ok());
    assert_eq!(
        t.req(c0, MsgType::IsDomainIntroduced, 0, "5\0"),
        Ok("T\0".into())
    );
    assert_eq!(
        t.req(c0, MsgType::Introduce, 0, "0\x00123\x00004\0"),
        Err(XsError::Inval)
    );
    assert_eq!(t.req(c0, MsgType::Resume, 0, "5\0"), ok());
    assert_eq!(t.events(), vec![(w, "@introduceDomain i".into())]);
    t.write(c0, 0, "/local/domain/5", "").unwrap();
    t.chmod(c0, "/local/domain/5", "n0 b5").unwrap();
    let c5 = t.conn(5);
    t.write(c5, 0, "device/vif/0", "x").unwrap();
    t.write(c5, 0, "/local/domain/5/name", "guest").unwrap();
    t.chmod(c0, "/local/domain/5/name", "n0 r5").unwrap();
    t.events();
    assert_eq!(t.req(c0, MsgType::Release, 0, "5\0"), ok());
    assert_eq!(
        t.read(c0, 0, "/local/domain/5/device"),
        Err(XsError::NoEnt),
        "owned nodes removed"
    );
    assert_eq!(
        t.read(c0, 0, "/local/domain/5/name"),
        Ok("guest".into()),
        "dom0-owned nodes stay"
    );
    assert_eq!(t.events(), vec![(w, "@releaseDomain r".into())]);
    assert_eq!(t.req(c0, MsgType::Release, 0, "5\0"), Err(XsError::NoEnt));
    assert_eq!(t.req(c0, MsgType::ResetWatches, 0, ""), ok());
}

#[test]
fn directory_part_pages_through_big_directories() {
    let mut t = T::new();
    let c = t.conn(0);
    let mut expect = Vec::new();
    for i in 0..600 {
        let name = format!("child-with-a-long-name-{i:04}");
        t.write(c, 0, &format!("/big/{name}"), "").unwrap();
        expect.push(name);
    }
    assert_eq!(t.dir(c, 0, "/big"), Err(XsError::TooBig));
    let mut got: Vec<String> = Vec::new();
    let mut offset = 0;
    let mut gen = None;
    loop {
        let r = t
            .raw(
                c,
                MsgType::DirectoryPart,
                0,
                format!("/big\0{offset}\0").as_bytes(),
            )
            .unwrap();
        let nul = r.iter().position(|b| *b == 0).unwrap();
        let g = String::from_utf8_lossy(&r[..nul]).into_owned();
        assert_eq!(*gen.get_or_insert(g.clone()), g);
        let rest = &r[nul + 1..];
        offset += rest.len();
        let done = rest.ends_with(b"\0\0") || rest == b"\0";
        for f in rest.split(|b| *b == 0).filter(|f| !f.is_empty()) {
            got.push(String::from_utf8_lossy(f).into_owned());
        }
        if done {
            break;
        }
    }
    assert_eq!(got, expect);
    assert_eq!(
        t.raw(c, MsgType::DirectoryPart, 0, b"/big\x00003\0"),
        Err(XsError::Inval),
        "mid-name offset"
    );
}

#[test]
fn reset_watches_drops_watches_and_transactions() {
    let mut t = T::new();
    let c = t.conn(0);
    t.watch(c, "/x", "t").unwrap();
    let tx = t.start(c);
    t.req(c, MsgType::ResetWatches, 0, "").unwrap();
    t.events();
    t.write(c, 0, "/x", "1").unwrap();
    assert_eq!(t.events(), vec![]);
    assert_eq!(t.end(c, tx, true), Err(XsError::NoEnt));
}

#[path = "props.rs"]
mod props;

#[path = "tx_props.rs"]
mod tx_props;

/// Xen's test-xenstore "ta err": a transaction keeps the value it first read, then fails to commit.
#[test]
fn transaction_reads_are_repeatable_then_commit_conflicts() {
    let mut t = T::new();
    let c = t.conn(0);
    t.write(c, 0, "/ta/a", "a").unwrap();
    let tx = t.start(c);
    assert_eq!(t.read(c, tx, "/ta/a"), Ok("a".into()));
    t.write(c, 0, "/ta/a", "b").unwrap();
    assert_eq!(
        t.read(c, tx, "/ta/a"),
        Ok("a".into()),
        "the transaction keeps its first copy"
    );
    t.write(c, tx, "/ta/a", "c").unwrap();
    assert_eq!(t.read(c, tx, "/ta/a"), Ok("c".into()), "its own write wins");
    assert_eq!(t.end(c, tx, true), Err(XsError::Again));
    assert_eq!(t.read(c, 0, "/ta/a"), Ok("b".into()));
}

#[test]
fn transaction_copies_children_and_permissions_at_first_look() {
    let mut t = T::new();
    let a = t.conn(0);
    let b = t.conn(0);
    t.write(a, 0, "/d/x", "1").unwrap();
    let tx = t.start(a);
    assert_eq!(t.dir(a, tx, "/d"), Ok("x\0".into()));
    assert_eq!(t.req(a, MsgType::GetPerms, tx, "/d/x\0"), Ok("n0\0".into()));
    t.write(b, 0, "/d/y", "2").unwrap();
    t.rm(b, 0, "/d/x").unwrap();
    t.write(b, 0, "/d/y/deep", "3").unwrap();
    t.chmod(b, "/d/y", "n0 r5").unwrap();
    assert_eq!(
        t.dir(a, tx, "/d"),
        Ok("x\0".into()),
        "children as first listed"
    );
    assert_eq!(
        t.read(a, tx, "/d/x"),
        Ok("1".into()),
        "copied before removal"
    );
    assert_eq!(t.req(a, MsgType::GetPerms, tx, "/d/x\0"), Ok("n0\0".into()));
    // A node first looked at now is copied now: /d/y exists with its new permissions.
    assert_eq!(
        t.req(a, MsgType::GetPerms, tx, "/d/y\0"),
        Ok("n0\0r5\0".into())
    );
    t.write(b, 0, "/d/y", "changed later").unwrap();
    assert_eq!(
        t.read(a, tx, "/d/y"),
        Ok("2".into()),
        "value of the first copy"
    );
    // The transaction's own changes merge with its copy.
    t.write(a, tx, "/d/z", "mine").unwrap();
    t.rm(a, tx, "/d/x").unwrap();
    assert_eq!(t.dir(a, tx, "/d"), Ok("z\0".into()));
    assert_eq!(t.end(a, tx, true), Err(XsError::Again));
    // Children added elsewhere before the first look are seen.
    let tx = t.start(a);
    t.write(b, 0, "/d/w", "4").unwrap();
    assert_eq!(t.dir(a, tx, "/d"), Ok("y\0w\0".into()));
    assert_eq!(t.end(a, tx, true), ok());
}
