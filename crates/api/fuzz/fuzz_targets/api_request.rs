//! Fuzzes what a client can send domusd's API socket: the HTTP framing, the path segments, and every
//! request body type. Nothing may panic or allocate without bound.
#![no_main]

use domus_api::messages::{
    decode_segment, ConfigUpdateRequest, CreateRequest, MemMaxRequest, RenameRequest, ShutdownRequest,
    VcpuPinRequest,
};
use domus_api::http::read_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = read_request(data) else { return };
    for seg in req.path.split('/') {
        let _ = decode_segment(seg);
    }
    let b = &req.body;
    let _ = serde_json::from_slice::<CreateRequest>(b);
    let _ = serde_json::from_slice::<ShutdownRequest>(b);
    let _ = serde_json::from_slice::<RenameRequest>(b);
    let _ = serde_json::from_slice::<VcpuPinRequest>(b);
    let _ = serde_json::from_slice::<MemMaxRequest>(b);
    let _ = serde_json::from_slice::<ConfigUpdateRequest>(b);
});
