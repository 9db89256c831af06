//! Raw imports and memory layouts of WasmEdge's socket extension (see
//! `wasmedge-sockets.md` in the shared spec). Every parameter is a wasm `i32`.

/// `WasiAddress`: a pointer/length pair naming the address bytes (4, 16 or 128).
#[repr(C)]
pub struct WasiAddress {
    pub buf: *mut u8,
    pub buf_len: u32,
}

/// `iovec` for `sock_recv*`.
#[repr(C)]
pub struct Iovec {
    pub buf: *mut u8,
    pub buf_len: u32,
}

/// `ciovec` for `sock_send*`.
#[repr(C)]
pub struct Ciovec {
    pub buf: *const u8,
    pub buf_len: u32,
}

/// `fdstat` (24 bytes).
#[repr(C)]
#[derive(Default)]
pub struct Fdstat {
    pub filetype: u8,
    pub fs_flags: u16,
    pub rights_base: u64,
    pub rights_inheriting: u64,
}

/// `subscription` (48 bytes). `fd_or_clock` is the fd for FD_READ/FD_WRITE and the clock id
/// for CLOCK (both a u32 at @16); `timeout`, `precision` and `flags` are CLOCK only.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Subscription {
    pub userdata: u64,
    pub tag: u8,
    pub fd_or_clock: u64,
    pub timeout: u64,
    pub precision: u64,
    pub flags: u16,
}

/// `event` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Event {
    pub userdata: u64,
    pub error: u16,
    pub kind: u8,
    pub nbytes: u64,
    pub flags: u16,
}

/// `addrinfo` (28 bytes); records are preallocated by the guest and chained by `ai_next`.
#[repr(C)]
pub struct Addrinfo {
    pub ai_flags: u16,
    pub ai_family: u8,
    pub ai_socktype: u8,
    pub ai_protocol: u8,
    pub ai_addrlen: u32,
    pub ai_addr: *mut Sockaddr,
    pub ai_canonname: *mut u8,
    pub ai_canonname_len: u32,
    pub ai_next: *mut Addrinfo,
}

/// `sockaddr` (12 bytes): `sa_data` holds the native sockaddr bytes after the family field.
#[repr(C)]
pub struct Sockaddr {
    pub sa_family: u8,
    pub sa_data_len: u32,
    pub sa_data: *mut u8,
}

#[cfg(target_pointer_width = "32")]
const _: () = {
    use core::mem::{align_of, size_of};
    assert!(size_of::<WasiAddress>() == 8);
    assert!(size_of::<Fdstat>() == 24);
    assert!(size_of::<Subscription>() == 48 && align_of::<Subscription>() == 8);
    assert!(size_of::<Event>() == 32);
    assert!(size_of::<Addrinfo>() == 28);
    assert!(size_of::<Sockaddr>() == 12);
};

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    // V1 (plain names; `sock_recv_from` is the 8-param V2 type, which WasmEdge dispatches by type).
    pub fn sock_open(family: i32, socktype: i32, ro_fd: *mut u32) -> i32;
    pub fn sock_bind(fd: i32, addr: *const WasiAddress, port: i32) -> i32;
    pub fn sock_connect(fd: i32, addr: *const WasiAddress, port: i32) -> i32;
    pub fn sock_listen(fd: i32, backlog: i32) -> i32;
    pub fn sock_accept(fd: i32, ro_fd: *mut u32) -> i32;
    pub fn sock_recv(
        fd: i32,
        ri_data: *const Iovec,
        ri_data_len: i32,
        ri_flags: i32,
        ro_datalen: *mut u32,
        ro_flags: *mut u32,
    ) -> i32;
    pub fn sock_send(
        fd: i32,
        si_data: *const Ciovec,
        si_data_len: i32,
        si_flags: i32,
        so_datalen: *mut u32,
    ) -> i32;
    pub fn sock_recv_from(
        fd: i32,
        ri_data: *const Iovec,
        ri_data_len: i32,
        addr: *const WasiAddress,
        ri_flags: i32,
        ro_port: *mut u32,
        ro_datalen: *mut u32,
        ro_flags: *mut u32,
    ) -> i32;
    pub fn sock_send_to(
        fd: i32,
        si_data: *const Ciovec,
        si_data_len: i32,
        addr: *const WasiAddress,
        port: i32,
        si_flags: i32,
        so_datalen: *mut u32,
    ) -> i32;
    pub fn sock_shutdown(fd: i32, how: i32) -> i32;
    pub fn sock_getsockopt(
        fd: i32,
        level: i32,
        name: i32,
        flag: *mut u8,
        flag_size: *mut u32,
    ) -> i32;
    pub fn sock_setsockopt(fd: i32, level: i32, name: i32, flag: *const u8, flag_size: i32) -> i32;
    pub fn sock_getlocaladdr(
        fd: i32,
        addr: *const WasiAddress,
        ro_kind: *mut u32,
        ro_port: *mut u32,
    ) -> i32;
    pub fn sock_getpeeraddr(
        fd: i32,
        addr: *const WasiAddress,
        ro_kind: *mut u32,
        ro_port: *mut u32,
    ) -> i32;
    pub fn sock_getaddrinfo(
        node: *const u8,
        node_len: i32,
        service: *const u8,
        service_len: i32,
        hints: *const Addrinfo,
        res: *mut u32,
        max_res_len: i32,
        ro_res_len: *mut u32,
    ) -> i32;

    // V2 names (WasmEdge >= 0.12).
    pub fn sock_open_v2(family: i32, socktype: i32, ro_fd: *mut u32) -> i32;
    pub fn sock_bind_v2(fd: i32, addr: *const WasiAddress, port: i32) -> i32;
    pub fn sock_listen_v2(fd: i32, backlog: i32) -> i32;
    pub fn sock_accept_v2(fd: i32, fdflags: i32, ro_fd: *mut u32) -> i32;
    pub fn sock_recv_v2(
        fd: i32,
        ri_data: *const Iovec,
        ri_data_len: i32,
        ri_flags: i32,
        ro_datalen: *mut u32,
        ro_flags: *mut u32,
    ) -> i32;
    pub fn sock_send_v2(
        fd: i32,
        si_data: *const Ciovec,
        si_data_len: i32,
        si_flags: i32,
        so_datalen: *mut u32,
    ) -> i32;
    pub fn sock_getlocaladdr_v2(fd: i32, addr: *const WasiAddress, ro_port: *mut u32) -> i32;
    pub fn sock_getpeeraddr_v2(fd: i32, addr: *const WasiAddress, ro_port: *mut u32) -> i32;

    // Standard preview1.
    pub fn poll_oneoff(
        subs: *const Subscription,
        events: *mut Event,
        nsubscriptions: i32,
        ro_nevents: *mut u32,
    ) -> i32;
    pub fn fd_fdstat_get(fd: i32, stat: *mut Fdstat) -> i32;
    pub fn fd_fdstat_set_flags(fd: i32, flags: i32) -> i32;
    pub fn fd_close(fd: i32) -> i32;
}
