/* sock_recv, sock_send, poll_oneoff and sock_accept without Python, when they can finish at
 * once; and on stream sockets fd_fdstat_get, fd_fdstat_set_flags and sock_shutdown, which a
 * server makes once per connection.
 *
 * A server on 50 keep-alive connections makes three socket calls per request and almost never
 * waits; through Python each costs several microseconds, here a fraction of one. These are
 * Wasmtime async host functions (wasmtime/async.h). The fast path takes only a valid call on
 * stream sockets whose Python descriptors gave them an `io` record: for receive and send, no
 * flags, every buffer inside memory, and a result that needs no wait; for poll, readiness
 * nobody has reported yet; for accept, the AGAIN of a non-blocking listener with no
 * connection waiting (servers accept until AGAIN). Anything else (a bad pointer, PEEK, a
 * datagram, a closed socket, a blocking socket with nothing to read, a poll that must wait or
 * hold stale readiness back, a connection to accept) goes to the Python host function as it
 * would without this file, so every error, every wait and every new descriptor has one
 * implementation. The last three are unchecked host functions (they never wait): a valid call
 * on a stream socket in C, every other (an error to report) in Python.
 *
 * No Python here and no Wasmtime header: wasmhost/_native/sockio.py loads this library with
 * ctypes and hands over the four Wasmtime functions it needs, from the library wasmtime-py
 * loaded. The structures below mirror the C API's layouts (wasmtime 50).
 */
#include <errno.h>
#include <poll.h>
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
/* wasmtime_val_raw_t: 16 bytes, an i32 in the low 4; an unchecked function's arguments and
 * results share one array. */
typedef struct { uint64_t of[2]; } wt_raw;
typedef void *(*wt_unchecked_callback)(void *env, void *caller, wt_raw *raw, size_t n);

enum { EXTERN_MEMORY = 3, VAL_I32 = 0, WASI_ESUCCESS = 0, FAST_IOVECS = 64, ERRNOS = 256 };
/* poll_oneoff's ABI: 48-byte subscriptions, 32-byte events, the three event types. */
enum { SUB_SIZE = 48, EVENT_SIZE = 32, FAST_SUBS = 256, CLOCK = 0, FD_READ = 1, FD_WRITE = 2, CLOCK_IDS = 4 };
enum { EVENT_HANGUP = 1, ACCEPT_FLAGS = 0x1F };
/* The WASI ABI's values (wasmhost/wasi/abi.py). */
enum { FILETYPE_SOCKET_STREAM = 6, FDFLAG_NONBLOCK = 4, FDFLAGS_ALL = 0x1F, FDSTAT_SIZE = 24 };
#define RIGHT_FD_FDSTAT_SET_FLAGS (1u << 3)
#define NEVER UINT64_MAX /* `seen`: poll never reported it */

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
    uint32_t flags;    /* the guest's fdflags (FDFLAG_NONBLOCK among them) */
    uint32_t answered; /* the last bytes moved were sent, not received */
    uint32_t pollable; /* poll may look at os_fd: the right to poll, and no concurrency limit */
    uint32_t listening; /* the guest called sock_listen (and the host still listens) */
    uint64_t seq;      /* I/O calls made: poll's edge-awareness (Descriptor.io_seq) */
    uint64_t received, sent;
    uint64_t seen[2];  /* seq when poll last reported FD_READ, FD_WRITE (NEVER: not yet) */
    uint64_t rights, inheriting;
};

/* poll_oneoff's state shared with Python (Preview1): how long stale readiness is held back. */
struct pollstate {
    uint64_t idle_ns; /* the current hold; reporting fresh readiness resets it */
    uint32_t backoff; /* stale readiness is held back at all (--idle-backoff above 0) */
};

/* A guest's descriptor numbers -> their io records (NULL: not a fast socket). */
struct fdmap {
    struct io **fds;
    uint32_t size;
};

/* One host function of one store: its Python implementation and the guest's descriptors. */
struct front {
    void *fallback; /* a wt_async_callback, or a wt_unchecked_callback for the unchecked ones */
    struct fdmap *map;
    uint64_t calls; /* calls finished here; the Python trampoline counts the others */
    void *state;    /* the function's own (poll_oneoff: struct pollstate) */
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

static uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
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
    if (n < 0 && errno == EAGAIN && !(io->flags & FDFLAG_NONBLOCK))
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

static void python_async(struct front *f, void *caller, const wt_val *args, size_t nargs, wt_val *results,
                         size_t nresults, void **trap, wt_continuation *cont) {
    ((wt_async_callback)f->fallback)(NULL, caller, args, nargs, results, nresults, trap, cont);
}

void wasmhost_sock_recv(void *env, void *caller, const wt_val *args, size_t nargs, wt_val *results, size_t nresults,
                        void **trap, wt_continuation *cont) {
    if (!transfer(env, caller, args, results, cont, false))
        python_async(env, caller, args, nargs, results, nresults, trap, cont);
}

void wasmhost_sock_send(void *env, void *caller, const wt_val *args, size_t nargs, wt_val *results, size_t nresults,
                        void **trap, wt_continuation *cont) {
    if (!transfer(env, caller, args, results, cont, true))
        python_async(env, caller, args, nargs, results, nresults, trap, cont);
}

/* The event answering a subscription (poll.fd_event and poll.event in Python). */
static void put_event(uint8_t *event, uint64_t userdata, uint8_t type, short revents) {
    short wanted = type == FD_READ ? POLLIN | POLLPRI : POLLOUT;
    uint64_t nbytes = type != CLOCK && (revents & wanted); /* poll(2) gives no count */
    uint16_t flags = revents & POLLHUP ? EVENT_HANGUP : 0;
    memset(event, 0, EVENT_SIZE); /* errno 0: tokio treats an event error as fatal */
    memcpy(event, &userdata, 8);
    event[10] = type;
    memcpy(event + 16, &nbytes, 8);
    memcpy(event + 24, &flags, 2);
}

/* poll_oneoff(in, out, nsubscriptions, out_nevents), finished here when some subscription is
 * ready and new: sockets poll(2) reports ready (hang-ups and errors make both directions
 * ready) that poll_oneoff did not report since their last I/O call, and relative clocks with
 * no time left. Only those are reported, in order. Python's: a subscription it cannot judge
 * (any other descriptor, an absolute or invalid clock, a bad type), or only stale readiness,
 * or nothing ready, which means a wait. The events may overwrite the subscriptions: every
 * subscription is read before the first event is written, as in Python. */
static bool poll_now(struct front *f, void *caller, const wt_val *args, wt_val *results, wt_continuation *cont) {
    struct pollstate *state = f->state;
    uint32_t in = ARG(0), out = ARG(1), nsubs = ARG(2), out_nevents = ARG(3);
    struct memory m;
    if (nsubs == 0 || nsubs > FAST_SUBS || !guest_memory(caller, &m) || !fits(&m, in, (uint64_t)SUB_SIZE * nsubs) ||
        !fits(&m, out, (uint64_t)EVENT_SIZE * nsubs) || !fits(&m, out_nevents, 4))
        return false;
    struct pollfd fds[FAST_SUBS];
    struct io *ios[FAST_SUBS];
    uint64_t userdata[FAST_SUBS];
    uint8_t types[FAST_SUBS];
    bool due[FAST_SUBS];
    bool clock_due = false;
    for (uint32_t i = 0; i < nsubs; i++) {
        const uint8_t *sub = m.data + in + SUB_SIZE * i;
        userdata[i] = load64(sub);
        types[i] = sub[8];
        fds[i] = (struct pollfd){.fd = -1}; /* poll(2) skips it */
        ios[i] = NULL;
        due[i] = false;
        if (types[i] == CLOCK) {
            uint16_t flags;
            memcpy(&flags, sub + 40, 2);
            if (load32(sub + 16) >= CLOCK_IDS || flags != 0)
                return false;
            due[i] = load64(sub + 24) == 0;
            clock_due |= due[i];
        } else if (types[i] == FD_READ || types[i] == FD_WRITE) {
            struct io *io = lookup(f, load32(sub + 16));
            if (io == NULL || !io->pollable)
                return false;
            ios[i] = io;
            fds[i] = (struct pollfd){.fd = io->os_fd, .events = types[i] == FD_READ ? POLLIN : POLLOUT};
        } else {
            return false;
        }
    }
    int ready;
    do
        ready = poll(fds, nsubs, 0);
    while (ready < 0 && errno == EINTR);
    if (ready < 0 || (ready == 0 && !clock_due))
        return false;
    uint32_t fresh = 0;
    for (uint32_t i = 0; i < nsubs; i++) {
        struct io *io = ios[i];
        if (io != NULL) {
            short wanted = types[i] == FD_READ ? POLLIN | POLLPRI : POLLOUT;
            bool stale = state->backoff && io->seen[types[i] - 1] == io->seq;
            due[i] = (fds[i].revents & (wanted | POLLHUP | POLLERR | POLLNVAL)) && !stale;
        }
        fresh += due[i];
    }
    if (fresh == 0)
        return false;
    uint8_t *event = m.data + out;
    for (uint32_t i = 0; i < nsubs; i++) {
        if (!due[i])
            continue;
        put_event(event, userdata[i], types[i], fds[i].revents);
        event += EVENT_SIZE;
        if (ios[i] != NULL)
            ios[i]->seen[types[i] - 1] = ios[i]->seq;
    }
    state->idle_ns = 0;
    memcpy(m.data + out_nevents, &fresh, 4);
    finish(f, results, WASI_ESUCCESS, cont);
    return true;
}

void wasmhost_poll_oneoff(void *env, void *caller, const wt_val *args, size_t nargs, wt_val *results,
                          size_t nresults, void **trap, wt_continuation *cont) {
    if (!poll_now(env, caller, args, results, cont))
        python_async(env, caller, args, nargs, results, nresults, trap, cont);
}

/* sock_accept(fd, out) or sock_accept_v2(fd, flags, out) on a non-blocking listener that
 * poll_oneoff has not just reported readable, when poll(2) finds no connection waiting:
 * AGAIN, as Python's _accept_now says without calling accept(2). Everything else is Python's,
 * a connection to accept above all. */
static bool accept_again(struct front *f, void *caller, const wt_val *args, size_t nargs, wt_val *results,
                         wt_continuation *cont) {
    struct io *io = lookup(f, ARG(0));
    struct memory m;
    if ((nargs == 3 && (ARG(1) & ~(uint32_t)ACCEPT_FLAGS)) || io == NULL || !io->listening || !io->pollable ||
        !(io->flags & FDFLAG_NONBLOCK) || io->seen[FD_READ - 1] == io->seq || !guest_memory(caller, &m) ||
        !fits(&m, ARG(nargs - 1), 4))
        return false;
    struct pollfd fd = {.fd = io->os_fd, .events = POLLIN};
    int ready;
    do
        ready = poll(&fd, 1, 0);
    while (ready < 0 && errno == EINTR);
    if (ready != 0)
        return false;
    io->seq++;
    finish(f, results, wasi_errno(EAGAIN), cont);
    return true;
}

void wasmhost_sock_accept(void *env, void *caller, const wt_val *args, size_t nargs, wt_val *results,
                          size_t nresults, void **trap, wt_continuation *cont) {
    if (!accept_again(env, caller, args, nargs, results, cont))
        python_async(env, caller, args, nargs, results, nresults, trap, cont);
}

/* --- unchecked: fd_fdstat_get, fd_fdstat_set_flags, sock_shutdown --------------------------- */

#define RAW(i) ((uint32_t)raw[i].of[0])

static void *done(struct front *f, wt_raw *raw, int err) {
    raw[0].of[0] = (uint32_t)err;
    raw[0].of[1] = 0;
    f->calls++;
    return NULL;
}

static void *python_unchecked(struct front *f, void *caller, wt_raw *raw, size_t n) {
    return ((wt_unchecked_callback)f->fallback)(NULL, caller, raw, n);
}

/* fd_fdstat_get(fd, out): the 24-byte fdstat of a stream socket, as Python packs it. */
void *wasmhost_fd_fdstat_get(void *env, void *caller, wt_raw *raw, size_t n) {
    struct front *f = env;
    struct io *io = lookup(f, RAW(0));
    struct memory m;
    if (io == NULL || !guest_memory(caller, &m) || !fits(&m, RAW(1), FDSTAT_SIZE))
        return python_unchecked(f, caller, raw, n);
    uint8_t *stat = m.data + RAW(1);
    uint16_t flags = (uint16_t)io->flags;
    memset(stat, 0, FDSTAT_SIZE);
    stat[0] = FILETYPE_SOCKET_STREAM;
    memcpy(stat + 2, &flags, 2);
    memcpy(stat + 8, &io->rights, 8);
    memcpy(stat + 16, &io->inheriting, 8);
    return done(f, raw, WASI_ESUCCESS);
}

/* fd_fdstat_set_flags(fd, flags) on a stream socket allowed to: its record holds the flags. */
void *wasmhost_fd_fdstat_set_flags(void *env, void *caller, wt_raw *raw, size_t n) {
    struct front *f = env;
    struct io *io = lookup(f, RAW(0));
    uint32_t flags = RAW(1);
    if (io == NULL || (flags & ~(uint32_t)FDFLAGS_ALL) || !(io->rights & RIGHT_FD_FDSTAT_SET_FLAGS))
        return python_unchecked(f, caller, raw, n);
    io->flags = flags;
    return done(f, raw, WASI_ESUCCESS);
}

/* sock_shutdown(fd, how) of a stream socket; how 0 and 1 both mean SHUT_RD, as in Python. */
void *wasmhost_sock_shutdown(void *env, void *caller, wt_raw *raw, size_t n) {
    static const int hows[] = {SHUT_RD, SHUT_RD, SHUT_WR, SHUT_RDWR};
    struct front *f = env;
    struct io *io = lookup(f, RAW(0));
    uint32_t how = RAW(1);
    if (io == NULL || how > 3)
        return python_unchecked(f, caller, raw, n);
    io->seq++;
    return done(f, raw, shutdown(io->os_fd, hows[how]) < 0 ? wasi_errno(errno) : WASI_ESUCCESS);
}
