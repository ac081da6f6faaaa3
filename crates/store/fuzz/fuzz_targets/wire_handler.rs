//! Fuzzes the wire decoder and the request handler with mostly-valid message sequences.
//!
//! The input is read as a little program: each step picks a connection (dom0, dom1 or dom2), then either
//! feeds raw bytes through the same framing the server uses (so malformed headers and lengths are
//! covered) or builds a well-formed request of a real type from a small path dictionary, values, tokens,
//! permission strings and the transaction ids handed out so far. Every reply must be a valid message.
#![no_main]

use domus_store::wire::{self, Decoded, Header, MsgType};
use domus_store::{ConnId, DomId, Quotas, Store};
use libfuzzer_sys::fuzz_target;

const PATHS: [&str; 12] = [
    "/", "/a", "/a/b", "/a/b/c", "/local/domain/1", "/local/domain/1/x", "/local/domain/2/y", "x", "x/y",
    "@introduceDomain", "@releaseDomain", "/tool",
];
const PERMS: [&str; 6] = ["n0", "r1", "b2", "w1", "n1", "r0"];

struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(*b)
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }
}

fn check_reply(msg: &[u8]) {
    match wire::decode(msg) {
        Ok(Decoded::Message { consumed, .. }) => assert_eq!(consumed, msg.len()),
        other => panic!("invalid reply {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut q = Quotas::default();
    q.nodes = 20;
    q.watches = 4;
    q.transactions = 3;
    let mut store = Store::in_memory(q);
    let conns: [ConnId; 3] = [store.connect(DomId(0)), store.connect(DomId(1)), store.connect(DomId(2))];
    let mut bufs: [Vec<u8>; 3] = Default::default();
    let mut txs: Vec<u32> = vec![0];
    let mut input = Input { data };
    let mut steps = 0;
    while let Some(op) = input.byte() {
        steps += 1;
        if steps > 400 {
            break;
        }
        let ci = usize::from(op & 3) % 3;
        let conn = conns[ci];
        if op & 0x80 != 0 {
            let n = usize::from(input.byte().unwrap_or(0));
            let raw = input.take(n).to_vec();
            bufs[ci].extend_from_slice(&raw);
            loop {
                match wire::decode(&bufs[ci]) {
                    Ok(Decoded::Incomplete) => break,
                    Ok(Decoded::Message { header, payload, consumed }) => {
                        let payload = payload.to_vec();
                        check_reply(&store.handle(conn, &header, &payload));
                        bufs[ci].drain(..consumed);
                    }
                    Err(_) => {
                        store.disconnect(conn);
                        bufs[ci].clear();
                        break;
                    }
                }
            }
            continue;
        }
        let ty = MsgType::from_u32(u32::from(input.byte().unwrap_or(0) % 28));
        let sel = input.byte().unwrap_or(0);
        let path = PATHS[usize::from(sel) % PATHS.len()];
        let tx = txs[usize::from(sel >> 4) % txs.len()];
        let extra = input.byte().unwrap_or(0);
        let mut payload = Vec::new();
        match ty {
            MsgType::Write => {
                payload.extend_from_slice(path.as_bytes());
                payload.push(0);
                payload.extend_from_slice(input.take(usize::from(extra % 16)));
            }
            MsgType::SetPerms => {
                payload.extend_from_slice(path.as_bytes());
                payload.push(0);
                for i in 0..(extra % 4) {
                    payload.extend_from_slice(PERMS[usize::from(extra.wrapping_add(i)) % PERMS.len()].as_bytes());
                    payload.push(0);
                }
            }
            MsgType::Watch | MsgType::Unwatch => {
                payload.extend_from_slice(format!("{path}\0t{}\0", extra % 3).as_bytes());
            }
            MsgType::TransactionEnd => payload.extend_from_slice(if extra & 1 == 0 { b"T\0" } else { b"F\0" }),
            MsgType::Introduce => payload.extend_from_slice(format!("{}\0{}\0{}\0", extra % 4, extra, 7).as_bytes()),
            MsgType::Release | MsgType::IsDomainIntroduced | MsgType::GetDomainPath | MsgType::Resume => {
                payload.extend_from_slice(format!("{}\0", extra % 4).as_bytes());
            }
            MsgType::SetTarget => payload.extend_from_slice(format!("{}\0{}\0", extra % 4, extra / 64).as_bytes()),
            MsgType::DirectoryPart => payload.extend_from_slice(format!("{path}\0{}\0", extra % 8).as_bytes()),
            MsgType::GetQuota => payload.extend_from_slice(b"nodes\0"),
            MsgType::SetQuota => payload.extend_from_slice(format!("{}\0nodes\0{}\0", extra % 3, extra).as_bytes()),
            MsgType::Control => payload.extend_from_slice(b"check\0"),
            _ => {
                payload.extend_from_slice(path.as_bytes());
                payload.push(0);
            }
        }
        let tx_id = if matches!(ty, MsgType::TransactionStart) { 0 } else { tx };
        let header = Header { ty, req_id: u32::from(op), tx_id, len: payload.len() as u32 };
        let reply = store.handle(conn, &header, &payload);
        check_reply(&reply);
        if ty == MsgType::TransactionStart && reply[0..4] == 6u32.to_le_bytes() {
            let s = String::from_utf8_lossy(&reply[16..]);
            if let Ok(id) = s.trim_end_matches('\0').parse() {
                txs.push(id);
            }
        }
        for (_, msg) in store.take_outbox() {
            check_reply(&msg);
        }
    }
});
