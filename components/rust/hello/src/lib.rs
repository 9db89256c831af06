//! wasi:http guest in std-only Rust: answers every request with `Hello, World!`.
//!
//! No crates (no wit-bindgen): the imports are declared in the canonical ABI's core form, and
//! `components/build.sh` turns the core module into a component (`jco embed`, then `jco new`
//! with the preview1 reactor adapter, which maps std's WASI preview1 calls onto WASI 0.2).
//! A result that does not fit one core value is written to a return area (`ret`):
//! discriminant at offset 0, payload at offset 4.

#[link(wasm_import_module = "wasi:http/types@0.2.0")]
extern "C" {
    #[link_name = "[constructor]fields"]
    fn fields_new() -> i32;
    #[link_name = "[constructor]outgoing-response"]
    fn outgoing_response_new(headers: i32) -> i32;
    #[link_name = "[method]outgoing-response.body"]
    fn outgoing_response_body(response: i32, ret: *mut u32);
    /// `set(param, result<outgoing-response, error-code>)`: the result flattens to a
    /// discriminant and the joined payloads of `ok` and every `error-code` case (8 values).
    #[link_name = "[static]response-outparam.set"]
    #[allow(clippy::too_many_arguments)]
    fn response_outparam_set(param: i32, is_err: i32, p0: i32, p1: i32, p2: i64, p3: i32, p4: i32, p5: i32, p6: i32);
    #[link_name = "[method]outgoing-body.write"]
    fn outgoing_body_write(body: i32, ret: *mut u32);
    #[link_name = "[static]outgoing-body.finish"]
    fn outgoing_body_finish(body: i32, has_trailers: i32, trailers: i32, ret: *mut u32);
    #[link_name = "[resource-drop]incoming-request"]
    fn drop_incoming_request(request: i32);
}

#[link(wasm_import_module = "wasi:io/streams@0.2.0")]
extern "C" {
    #[link_name = "[method]output-stream.blocking-write-and-flush"]
    fn blocking_write_and_flush(stream: i32, data: *const u8, len: usize, ret: *mut u32);
    #[link_name = "[resource-drop]output-stream"]
    fn drop_output_stream(stream: i32);
}

const BODY: &[u8] = b"Hello, World!";

/// `handle(request, response-out)`; every call below succeeds for a fresh response, so the
/// results' discriminants are not checked.
#[export_name = "wasi:http/incoming-handler@0.2.0#handle"]
pub extern "C" fn handle(request: i32, response_out: i32) {
    let mut ret = [0u32; 4];
    unsafe {
        drop_incoming_request(request);
        let response = outgoing_response_new(fields_new());
        outgoing_response_body(response, ret.as_mut_ptr());
        let body = ret[1] as i32;
        response_outparam_set(response_out, 0, response, 0, 0, 0, 0, 0, 0);
        outgoing_body_write(body, ret.as_mut_ptr());
        let stream = ret[1] as i32;
        blocking_write_and_flush(stream, BODY.as_ptr(), BODY.len(), ret.as_mut_ptr());
        drop_output_stream(stream);
        outgoing_body_finish(body, 0, 0, ret.as_mut_ptr());
    }
}

/// The allocator the component model calls to pass lists and strings in.
#[no_mangle]
pub unsafe extern "C" fn cabi_realloc(old: *mut u8, old_size: usize, align: usize, new_size: usize) -> *mut u8 {
    use std::alloc::{alloc, realloc, Layout};
    if old.is_null() {
        alloc(Layout::from_size_align_unchecked(new_size, align))
    } else {
        realloc(old, Layout::from_size_align_unchecked(old_size, align), new_size)
    }
}
