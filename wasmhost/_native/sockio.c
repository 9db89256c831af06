/* sock_recv, sock_send, poll_oneoff and sock_accept without Python, when they can finish at
 * once; on stream sockets fd_fdstat_get, fd_fdstat_set_flags and sock_shutdown, which a
 * server makes once per connection; and fd_close of a connection accepted here.
 *
 * A server on 50 keep-alive connections makes three socket calls per request and almost never
 * waits; through Python each costs several microseconds, here a fraction of one. These are
 * Wasmtime async host functions (wasmtime/async.h). The fast path takes only a valid call on
 * stream sockets whose Python descriptors gave them an `io` record: for receive and send, no
 * flags, every buffer inside memory, and a result that needs no wait; for poll, readiness
 * nobody has reported yet; for accept, a listener without a concurrency limit that has a
 * connection waiting or, non-blocking, none (servers accept until AGAIN). Anything else (a
 * bad pointer, PEEK, a datagram, a closed socket, a blocking socket with nothing to read, a
 * poll that must wait or hold stale readiness back) goes to the Python host function as it
 * would without this file, so every error and every wait has one implementation. A
 * connection accepted here is bare: a number and a record, and no Python descriptor until
 * Python needs one (FdTable.get makes it then); a server that only reads, writes, polls and
 * closes it never does. The fdstat calls, sock_shutdown and fd_close are unchecked host
 * functions (they never wait): a valid call in C, every other (an error to report) in Python.
 *
 * No Python here and no Wasmtime header: wasmhost/_native/sockio.py loads this library with
 * ctypes and hands over the four Wasmtime functions it needs, from the library wasmtime-py
 * loaded. The structures below mirror the C API's layouts (wasmtime 50).
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

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
    uint32_t bare;     /* accepted here, and Python has made no descriptor of it yet */
    int32_t port;      /* the port the guest asked for when the host's differs (-1: none) */
    uint64_t seq;      /* I/O calls made: poll's edge-awareness (Descriptor.io_seq) */
    uint64_t received, sent;
    uint64_t seen[2];  /* seq when poll last reported FD_READ, FD_WRITE (NEVER: not yet) */
    uint64_t rights, inheriting;
};

/* A new socket's record, filled in by Python (sockets.py) so both make the same. */
struct io wasmhost_fresh_socket;

/* A guest's accepted connections (Connections in wasmhost/net/connections.py). */
struct conns {
    uint64_t accepted, open;
    uint32_t bare;      /* C may accept and close: no limit, no access log */
    uint64_t notify_at; /* the total whose accept is Python's, which calls back then */
};

/* poll_oneoff's state shared with Python (Preview1): how long stale readiness is held back. */
struct pollstate {
    uint64_t idle_ns; /* the current hold; reporting fresh readiness resets it */
    uint32_t backoff; /* stale readiness is held back at all (--idle-backoff above 0) */
};

/* A guest's descriptor table as C sees it (FdMap in sockio.py): which numbers are in use, the
 * socket record of each (a placeholder whose os_fd is -1 for any other descriptor), and the
 * records C may fill for connections it accepts. Numbers are handed out lowest first, as in
 * POSIX, by wasmhost_fdmap_take whoever asks. */
struct fdmap {
    struct io **fds; /* NULL: the number is free */
    uint32_t size;   /* every number from size on is free */
    uint32_t count;  /* numbers in use */
    uint32_t limit;  /* the guest's limit: past it, MFILE from Python */
    uint32_t low;    /* every number below is in use */
    struct io **spare; /* records C may fill for connections it accepts */
    uint32_t nspare, spares; /* how many there are, and room for (every record C may hold) */
    struct conns *conns; /* NULL: the guest has no sockets layer, C accepts nothing */
};

/* The lowest free number for io, or -1 when it is past size (Python grows the map first). */
int64_t wasmhost_fdmap_take(struct fdmap *map, struct io *io) {
    uint32_t fd = map->low;
    while (fd < map->size && map->fds[fd] != NULL)
        fd++;
    if (fd >= map->size)
        return -1;
    map->fds[fd] = io;
    map->count++;
    map->low = fd + 1;
    return fd;
}

void wasmhost_fdmap_free(struct fdmap *map, uint32_t fd) {
    if (fd >= map->size || map->fds[fd] == NULL)
        return;
    map->fds[fd] = NULL;
    map->count--;
    if (fd < map->low)
        map->low = fd;
}

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

/* Whether the connection accept4 returns can become a bare descriptor: a connections layer
 * that lets C count it (and waits for no callback at this total), a spare record, and a free
 * number below the guest's limit. */
static bool can_adopt(const struct fdmap *map) {
    return map->conns != NULL && map->conns->bare && map->conns->accepted + 1 != map->conns->notify_at &&
           map->nspare > 0 && map->count < map->limit && map->count < map->size;
}

/* sock_accept(fd, out) or sock_accept_v2(fd, flags, out) on a listener without a concurrency
 * limit, as Python's _accept and _accept_now make it: a non-blocking listener that poll_oneoff
 * has not just reported readable, with no connection waiting by poll(2), says AGAIN without
 * accept(2) (servers accept until AGAIN); otherwise accept4 takes the connection, which gets
 * the lowest free number and a spare record marked bare: Python makes its descriptor only
 * when a Python function first needs it (FdTable.get). Python's: a blocking listener with
 * nothing to accept (a wait), a limit, no spare record or number, bad flags or pointers. */
static bool accept_now(struct front *f, void *caller, const wt_val *args, size_t nargs, wt_val *results,
                       wt_continuation *cont) {
    struct fdmap *map = f->map;
    struct io *io = lookup(f, ARG(0));
    uint32_t flags = nargs == 3 ? ARG(1) : 0, out = ARG(nargs - 1);
    struct memory m;
    if ((flags & ~(uint32_t)ACCEPT_FLAGS) || io == NULL || !io->listening || !io->pollable ||
        !guest_memory(caller, &m) || !fits(&m, out, 4))
        return false;
    bool nonblock = io->flags & FDFLAG_NONBLOCK;
    if (io->seen[FD_READ - 1] != io->seq) { /* not just reported readable: look first */
        struct pollfd fd = {.fd = io->os_fd, .events = POLLIN};
        int ready;
        do
            ready = poll(&fd, 1, 0);
        while (ready < 0 && errno == EINTR);
        if (ready < 0 || (ready == 0 && !nonblock))
            return false;
        if (ready == 0) {
            io->seq++;
            finish(f, results, wasi_errno(EAGAIN), cont);
            return true;
        }
    }
    if (!can_adopt(map))
        return false;
    int conn;
    do
        conn = accept4(io->os_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    while (conn < 0 && errno == EINTR);
    if (conn < 0 && errno == EAGAIN && !nonblock)
        return false; /* gone since poll: a blocking listener waits, in Python */
    io->seq++;
    if (conn < 0) {
        finish(f, results, wasi_errno(errno), cont);
        return true;
    }
    struct io *record = map->spare[--map->nspare];
    *record = wasmhost_fresh_socket;
    record->os_fd = conn;
    record->flags = flags & FDFLAG_NONBLOCK;
    record->port = io->port;
    record->bare = 1;
    uint32_t number = (uint32_t)wasmhost_fdmap_take(map, record);
    memcpy(m.data + out, &number, 4);
    map->conns->accepted++;
    map->conns->open++;
    finish(f, results, WASI_ESUCCESS, cont);
    return true;
}

void wasmhost_sock_accept(void *env, void *caller, const wt_val *args, size_t nargs, wt_val *results,
                          size_t nresults, void **trap, wt_continuation *cont) {
    if (!accept_now(env, caller, args, nargs, results, cont))
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

/* fd_close(fd) of a bare connection (one accepted here that Python never needed): the record
 * goes back to the spares, which have room for it (FdMap.accepting). Any other descriptor is
 * Python's. As on Linux, the number is free even when close(2) fails. */
void *wasmhost_fd_close(void *env, void *caller, wt_raw *raw, size_t n) {
    struct front *f = env;
    struct fdmap *map = f->map;
    uint32_t fd = RAW(0);
    struct io *io = fd < map->size ? map->fds[fd] : NULL;
    if (io == NULL || !io->bare || map->nspare >= map->spares)
        return python_unchecked(f, caller, raw, n);
    int err = close(io->os_fd) < 0 ? wasi_errno(errno) : WASI_ESUCCESS;
    map->spare[map->nspare++] = io; /* the next accept fills it afresh */
    wasmhost_fdmap_free(map, fd);
    map->conns->open--;
    return done(f, raw, err);
}
