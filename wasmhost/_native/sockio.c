/* sock_recv and sock_send without Python, when they can finish at once.
 *
 * A server on 50 keep-alive connections makes three socket calls per request and almost never
 * waits; through Python each costs several microseconds, here a fraction of one. These are
 * Wasmtime async host functions (wasmtime/async.h). The fast path takes only a valid call on a
 * stream socket whose Python descriptor gave it an `io` record: no flags, every buffer inside
 * memory, and a result that needs no wait. Anything else (a bad pointer, PEEK, a datagram, a
 * closed socket, a blocking socket with nothing to read) goes to the Python host function as
 * it would without this file, so every error and every wait has one implementation.
 *
 * No Python here and no Wasmtime header: wasmhost/_native/sockio.py loads this library with
 * ctypes and hands over the four Wasmtime functions it needs, from the library wasmtime-py
 * loaded. The structures below mirror the C API's layouts (wasmtime 50).
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

/* wasmtime_extern_t: a kind byte, then a 24-byte union (a memory is its first 16 bytes). */
typedef struct { uint8_t kind; uint64_t of[3]; } wt_extern;
/* wasmtime_val_t: a kind byte, then the value at offset 8 (an i32 in the low half). */
typedef struct { uint8_t kind; uint64_t of[3]; } wt_val;
typedef struct {
    bool (*callback)(void *env);
    void *env;
    void (*finalizer)(void *env);
} wt_continuation;
typedef void (*wt_async_callback)(void *env, void *caller, const wt_val *args, size_t nargs, wt_val *results,
                                  size_t nresults, void **trap, wt_continuation *cont);

enum { EXTERN_MEMORY = 3, VAL_I32 = 0, WASI_ESUCCESS = 0, FAST_IOVECS = 64, ERRNOS = 256 };

static struct {
    bool (*export_get)(void *caller, const char *name, size_t len, wt_extern *item);
    void *(*caller_context)(void *caller);
    uint8_t *(*memory_data)(void *context, const void *memory);
    size_t (*memory_size)(void *context, const void *memory);
} api;

/* Linux errno -> WASI errno, filled from wasmhost.wasi.abi's table so both paths agree. Entry 0
 * (no error) holds what an errno without a WASI name becomes, and so does any errno past the end. */
uint16_t wasmhost_errnos[ERRNOS];

/* A socket's state shared with Python (Socket.io in wasmhost/wasi/sockets.py). */
struct io {
    int32_t os_fd;     /* -1: a datagram socket, or closed: every call is Python's */
    uint32_t nonblock; /* the guest's FDFLAG_NONBLOCK */
    uint32_t answered; /* the last bytes moved were sent, not received */
    uint64_t seq;      /* I/O calls made: poll's edge-awareness (Descriptor.io_seq) */
    uint64_t received, sent;
};

/* A guest's descriptor numbers -> their io records (NULL: not a fast socket). */
struct fdmap {
    struct io **fds;
    uint32_t size;
};

/* One host function of one store: its Python implementation and the guest's descriptors. */
struct front {
    wt_async_callback fallback;
    struct fdmap *map;
    uint64_t calls; /* calls finished here; the Python trampoline counts the others */
};

void wasmhost_sockio_init(void *export_get, void *caller_context, void *memory_data, void *memory_size) {
    api.export_get = export_get;
    api.caller_context = caller_context;
    api.memory_data = memory_data;
    api.memory_size = memory_size;
}

struct memory {
    uint8_t *data;
    size_t size;
};

static bool guest_memory(void *caller, struct memory *m) {
    wt_extern item;
    if (!api.export_get(caller, "memory", 6, &item) || item.kind != EXTERN_MEMORY)
        return false;
    void *context = api.caller_context(caller);
    m->data = api.memory_data(context, item.of);
    m->size = api.memory_size(context, item.of);
    return true;
}

static bool fits(const struct memory *m, uint64_t ptr, uint64_t len) { return ptr + len <= m->size; }

static uint32_t load32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The iovec array as host buffers; false when the Python path must report what is wrong. */
static bool buffers(const struct memory *m, uint32_t iovs, uint32_t count, struct iovec *out) {
    if (count > FAST_IOVECS || !fits(m, iovs, 8ull * count))
        return false;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t ptr = load32(m->data + iovs + 8 * i), len = load32(m->data + iovs + 8 * i + 4);
        if (!fits(m, ptr, len))
            return false;
        out[i].iov_base = m->data + ptr;
        out[i].iov_len = len;
    }
    return true;
}

static bool finished(void *env) {
    (void)env;
    return true;
}

static void finish(struct front *f, wt_val *results, int err, wt_continuation *cont) {
    results[0].kind = VAL_I32;
    results[0].of[0] = (uint32_t)err;
    cont->callback = finished;
    cont->env = NULL;
    cont->finalizer = NULL;
    f->calls++;
}

static struct io *lookup(const struct front *f, uint32_t fd) {
    struct io *io = fd < f->map->size ? f->map->fds[fd] : NULL;
    return io != NULL && io->os_fd >= 0 ? io : NULL;
}

static int wasi_errno(int err) { return err >= 0 && err < ERRNOS ? wasmhost_errnos[err] : wasmhost_errnos[0]; }

#define ARG(i) ((uint32_t)args[i].of[0])

/* sock_recv(fd, iovs, iovs_len, ri_flags, out_len, out_roflags) or
 * sock_send(fd, iovs, iovs_len, si_flags, out_len), finished here; false: Python's to make. */
static bool transfer(struct front *f, void *caller, const wt_val *args, wt_val *results, wt_continuation *cont,
                     bool sending) {
    struct io *io = lookup(f, ARG(0));
    struct memory m;
    struct iovec bufs[FAST_IOVECS];
    uint32_t count = ARG(2), out_len = ARG(4);
    if (io == NULL || ARG(3) != 0 || !guest_memory(caller, &m) || !buffers(&m, ARG(1), count, bufs) ||
        !fits(&m, out_len, 4) || (!sending && !fits(&m, ARG(5), 2)))
        return false;
    /* recvmsg as Python's path: readv of no buffers would return 0 where this says AGAIN. */
    struct msghdr msg = {.msg_iov = bufs, .msg_iovlen = count};
    ssize_t n;
    do
        n = sending ? sendmsg(io->os_fd, &msg, MSG_NOSIGNAL) : recvmsg(io->os_fd, &msg, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN && !io->nonblock)
        return false; /* a blocking socket waits, in Python */
    io->seq++;
    if (n < 0) {
        finish(f, results, wasi_errno(errno), cont);
        return true;
    }
    if (n > 0) {
        io->answered = sending;
        *(sending ? &io->sent : &io->received) += (uint64_t)n;
    }
    uint32_t moved = (uint32_t)n;
    memcpy(m.data + out_len, &moved, 4);
    if (!sending)
        memset(m.data + ARG(5), 0, 2); /* no RO_FLAGS: a stream is never truncated */
    finish(f, results, WASI_ESUCCESS, cont);
    return true;
}

void wasmhost_sock_recv(void *env, void *caller, const wt_val *args, size_t nargs, wt_val *results, size_t nresults,
                        void **trap, wt_continuation *cont) {
    if (!transfer(env, caller, args, results, cont, false))
        ((struct front *)env)->fallback(NULL, caller, args, nargs, results, nresults, trap, cont);
}

void wasmhost_sock_send(void *env, void *caller, const wt_val *args, size_t nargs, wt_val *results, size_t nresults,
                        void **trap, wt_continuation *cont) {
    if (!transfer(env, caller, args, results, cont, true))
        ((struct front *)env)->fallback(NULL, caller, args, nargs, results, nresults, trap, cont);
}
