/*
 * One request/answer exchange with the daemon over its Unix stream socket.
 *
 * Each thread caches its own connection (a lookup costs one round trip instead of a connect
 * + accept + close; see README.md for the figures), so connections are never shared and
 * need no lock. A lookup that finds its thread's connection busy — a signal handler that
 * interrupted a lookup on the same thread — uses a connection of its own for that one call.
 *
 * The registry of all threads' connections exists only so that a forked child can close the
 * ones it inherited; its lock is taken when a thread opens or drops its connection, never
 * around socket I/O and never by a nested (signal-handler) lookup.
 *
 * Every descriptor is opened close-on-exec and non-blocking; the whole exchange, connect
 * included, has one deadline (NFQ_REDIRECT_TIMEOUT_MS); EINTR restarts the interrupted step.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nfqr_internal.h"

typedef struct thread_connection {
    int fd; /* -1: none; written only under registry_lock */
    volatile sig_atomic_t busy; /* this thread is inside a lookup (or its exit clean-up) */
    bool registered; /* linked into the registry, exit destructor armed */
    struct thread_connection *previous, *next;
} thread_connection;

/* initial-exec: static TLS, so the first touch in a thread allocates nothing (signal-safe). */
static __thread thread_connection this_thread __attribute__((tls_model("initial-exec"))) = {.fd = -1};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static thread_connection *registry;
static pthread_key_t thread_exit_key;
static atomic_bool caching_enabled; /* the exit key exists: a cached connection can be closed */
static atomic_int owner_pid; /* the process whose fork handlers keep the registry right */

/* ---- deadline ---------------------------------------------------------------------------- */

static int64_t monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

/* Whole milliseconds left, rounded up so that poll never spins on a sub-millisecond rest. */
static int remaining_ms(int64_t deadline) {
    int64_t left = deadline - monotonic_ns();
    return left <= 0 ? 0 : (int)((left + 999999) / 1000000);
}

/* Waits for events on fd until the deadline; false with errno ETIMEDOUT (or poll's error). */
static bool wait_for(int fd, short events, int64_t deadline) {
    for (;;) {
        int ms = remaining_ms(deadline);
        if (ms == 0) {
            errno = ETIMEDOUT;
            return false;
        }
        struct pollfd entry = {.fd = fd, .events = events};
        int ready = poll(&entry, 1, ms);
        if (ready > 0)
            return true; /* POLLERR/POLLHUP too: the next send/recv reports them */
        if (ready < 0 && errno != EINTR)
            return false;
    }
}

/* With NFQ_REDIRECT_BUSY_POLL_US, asks for readiness without sleeping for that long first: on
 * a machine whose idle CPUs wake slowly, the sleeping thread's wake-up is most of a lookup's
 * round trip. sched_yield lets any runnable thread (the daemon's, on a busy CPU) go first. */
static void poll_briefly_for(int fd, int64_t deadline) {
    if (nfqr_settings.busy_poll_us == 0)
        return;
    int64_t until = monotonic_ns() + (int64_t)nfqr_settings.busy_poll_us * 1000;
    if (until > deadline)
        until = deadline;
    struct pollfd entry = {.fd = fd, .events = POLLIN};
    while (poll(&entry, 1, 0) == 0 && monotonic_ns() < until)
        sched_yield();
}

/* ---- connect and exchange ------------------------------------------------------------------ */

static void close_preserving_errno(int fd) {
    int saved = errno;
    close(fd); /* Linux releases the descriptor even when close reports EINTR: never retry */
    errno = saved;
}

static int connect_daemon(int64_t deadline) {
    if (nfqr_settings.address_length == 0) {
        errno = nfqr_settings.address_error;
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    for (;;) {
        if (connect(fd, (const struct sockaddr *)&nfqr_settings.address, nfqr_settings.address_length) == 0 ||
            errno == EISCONN)
            return fd;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            /* The daemon's accept backlog is full: it is alive but busy, so retry briefly. */
            int ms = remaining_ms(deadline);
            if (ms == 0) {
                errno = ETIMEDOUT;
                break;
            }
            struct timespec pause = {.tv_nsec = 1000000};
            nanosleep(&pause, NULL);
            continue;
        }
        if ((errno == EINPROGRESS || errno == EALREADY) && wait_for(fd, POLLOUT, deadline))
            continue; /* connect again: EISCONN when done, the real error otherwise */
        break;
    }
    close_preserving_errno(fd);
    return -1;
}

typedef enum exchange_status {
    EXCHANGED, /* one answer line read, nothing after it */
    EXCHANGED_UNSYNCED, /* answer read, but more bytes followed: the stream cannot be trusted */
    PEER_GONE, /* closed or reset before any answer byte: a stale cached connection, or a daemon gone */
    FAILED, /* errno says why */
    ANSWER_TOO_LONG
} exchange_status;

static ssize_t send_part(int fd, const char *data, size_t length, int pass_fd) {
    struct iovec part = {.iov_base = (void *)data, .iov_len = length};
    struct msghdr message = {.msg_iov = &part, .msg_iovlen = 1};
    union {
        char buffer[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    if (pass_fd >= 0) {
        memset(&control, 0, sizeof control);
        message.msg_control = control.buffer;
        message.msg_controllen = sizeof control.buffer;
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(header), &pass_fd, sizeof(int));
    }
    return sendmsg(fd, &message, MSG_NOSIGNAL); /* a vanished daemon must not raise SIGPIPE */
}

static exchange_status exchange(int fd, const char *request, size_t request_length, int pass_fd, int64_t deadline,
                                char reply[NFQR_REPLY_MAX], size_t *reply_length) {
    size_t sent = 0;
    while (sent < request_length) {
        /* The descriptor travels with the first byte that goes out. */
        ssize_t count = send_part(fd, request + sent, request_length - sent, sent == 0 ? pass_fd : -1);
        if (count > 0) {
            sent += (size_t)count;
        } else if (errno == EAGAIN) {
            if (!wait_for(fd, POLLOUT, deadline))
                return FAILED;
        } else if (errno != EINTR) {
            return sent == 0 && (errno == EPIPE || errno == ECONNRESET) ? PEER_GONE : FAILED;
        }
    }

    /* The answer is hardly ever there yet: wait for it rather than spend a recv on EAGAIN. */
    poll_briefly_for(fd, deadline);
    if (!wait_for(fd, POLLIN, deadline))
        return FAILED;
    size_t have = 0;
    for (;;) {
        if (have == NFQR_REPLY_MAX)
            return ANSWER_TOO_LONG;
        ssize_t count = recv(fd, reply + have, NFQR_REPLY_MAX - have, 0);
        if (count > 0) {
            char *newline = memchr(reply + have, '\n', (size_t)count);
            have += (size_t)count;
            if (newline != NULL) {
                *reply_length = (size_t)(newline - reply);
                *newline = '\0';
                return *reply_length + 1 == have ? EXCHANGED : EXCHANGED_UNSYNCED;
            }
        } else if (count == 0) {
            errno = ECONNRESET;
            return have == 0 ? PEER_GONE : FAILED;
        } else if (errno == EAGAIN) {
            if (!wait_for(fd, POLLIN, deadline))
                return FAILED;
        } else if (errno != EINTR) {
            return have == 0 && errno == ECONNRESET ? PEER_GONE : FAILED;
        }
    }
}

static nfqr_transfer transfer_of(exchange_status status) {
    switch (status) {
    case EXCHANGED:
    case EXCHANGED_UNSYNCED: return NFQR_TRANSFER_OK;
    case ANSWER_TOO_LONG: return NFQR_TRANSFER_BAD_REPLY;
    case PEER_GONE:
    case FAILED: break;
    }
    return NFQR_TRANSFER_UNAVAILABLE;
}

/* A connection for this call alone.
 *
 * A connection closed before any answer byte earns one retry on a new one: a cached connection
 * the daemon has since closed (a restart, its idle limit), or a daemon that died (a crash, a
 * watchdog abort) after accepting this one. The listener outlives it in systemd's descriptor
 * store, so the new connection waits in its backlog and the successor answers, within the same
 * deadline. A lookup is idempotent; a passed descriptor is passed again. */
static nfqr_transfer transact_once(const char *request, size_t request_length, int pass_fd, int64_t deadline,
                                   char reply[NFQR_REPLY_MAX], size_t *reply_length) {
    exchange_status status = PEER_GONE;
    for (int attempt = 0; attempt < 2 && status == PEER_GONE; attempt++) {
        int fd = connect_daemon(deadline);
        if (fd < 0)
            return NFQR_TRANSFER_UNAVAILABLE;
        status = exchange(fd, request, request_length, pass_fd, deadline, reply, reply_length);
        close_preserving_errno(fd);
    }
    return transfer_of(status);
}

/* ---- the per-thread cache ------------------------------------------------------------------ */

static void link_this_thread(void) {
    this_thread.previous = NULL;
    this_thread.next = registry;
    if (registry != NULL)
        registry->previous = &this_thread;
    registry = &this_thread;
}

static void unlink_connection(thread_connection *connection) {
    if (connection->previous != NULL)
        connection->previous->next = connection->next;
    else
        registry = connection->next;
    if (connection->next != NULL)
        connection->next->previous = connection->previous;
    connection->previous = connection->next = NULL;
}

/* Makes fd this thread's cached connection; false if it cannot be (the caller closes it). */
static bool adopt(int fd) {
    bool adopted = true;
    pthread_mutex_lock(&registry_lock);
    if (!this_thread.registered) {
        /* The exit destructor closes the connection when the thread ends. */
        if (pthread_setspecific(thread_exit_key, &this_thread) == 0) {
            link_this_thread();
            this_thread.registered = true;
        } else {
            adopted = false;
        }
    }
    if (adopted)
        this_thread.fd = fd;
    pthread_mutex_unlock(&registry_lock);
    return adopted;
}

static void drop_cached(void) {
    int saved = errno;
    pthread_mutex_lock(&registry_lock);
    if (this_thread.fd >= 0)
        close(this_thread.fd); /* under the lock, so a concurrent fork sees fd and table agree */
    this_thread.fd = -1;
    pthread_mutex_unlock(&registry_lock);
    errno = saved;
}

static nfqr_transfer transact_cached(const char *request, size_t request_length, int pass_fd, int64_t deadline,
                                     char reply[NFQR_REPLY_MAX], size_t *reply_length) {
    /* PEER_GONE earns one retry (see transact_once). */
    for (int attempt = 0; attempt < 2; attempt++) {
        if (this_thread.fd < 0) {
            int fd = connect_daemon(deadline);
            if (fd < 0)
                return NFQR_TRANSFER_UNAVAILABLE;
            if (!adopt(fd)) {
                exchange_status status = exchange(fd, request, request_length, pass_fd, deadline, reply, reply_length);
                close_preserving_errno(fd);
                if (status != PEER_GONE)
                    return transfer_of(status);
                continue;
            }
        }
        exchange_status status =
            exchange(this_thread.fd, request, request_length, pass_fd, deadline, reply, reply_length);
        if (status == EXCHANGED)
            return NFQR_TRANSFER_OK;
        drop_cached();
        if (status != PEER_GONE)
            return transfer_of(status);
    }
    return transfer_of(PEER_GONE);
}

nfqr_transfer nfqr_transact(const char *request, size_t request_length, int pass_fd, char reply[NFQR_REPLY_MAX],
                            size_t *reply_length) {
    int64_t deadline = monotonic_ns() + (int64_t)nfqr_settings.timeout_ms * 1000000;

    /* Nested in a signal handler, or in a child forked without fork handlers (raw clone):
     * leave the cache alone. */
    if (this_thread.busy || !atomic_load_explicit(&caching_enabled, memory_order_acquire) ||
        getpid() != atomic_load_explicit(&owner_pid, memory_order_relaxed))
        return transact_once(request, request_length, pass_fd, deadline, reply, reply_length);

    this_thread.busy = 1;
    atomic_signal_fence(memory_order_seq_cst);
    nfqr_transfer result = transact_cached(request, request_length, pass_fd, deadline, reply, reply_length);
    atomic_signal_fence(memory_order_seq_cst);
    this_thread.busy = 0;
    return result;
}

/* ---- thread exit, fork, load and unload ------------------------------------------------------- */

static void close_at_thread_exit(void *value) {
    thread_connection *connection = value;
    connection->busy = 1; /* a signal handler now must not take registry_lock again */
    atomic_signal_fence(memory_order_seq_cst);
    pthread_mutex_lock(&registry_lock);
    unlink_connection(connection);
    connection->registered = false;
    if (connection->fd >= 0)
        close(connection->fd);
    connection->fd = -1;
    pthread_mutex_unlock(&registry_lock);
    atomic_signal_fence(memory_order_seq_cst);
    connection->busy = 0;
}

static void before_fork(void) { pthread_mutex_lock(&registry_lock); }

static void after_fork_in_parent(void) { pthread_mutex_unlock(&registry_lock); }

/* The child has copies of every thread's connection; only this thread lives on, and even its
 * connection is shared with the parent. Close them all: the child connects afresh. */
static void after_fork_in_child(void) {
    for (thread_connection *connection = registry; connection != NULL; connection = connection->next) {
        if (connection->fd >= 0)
            close(connection->fd);
        connection->fd = -1;
    }
    registry = NULL;
    if (this_thread.registered)
        link_this_thread();
    atomic_store_explicit(&owner_pid, getpid(), memory_order_relaxed);
    pthread_mutex_unlock(&registry_lock);
}

__attribute__((constructor)) static void nfqr_prepare_connections(void) {
    atomic_store_explicit(&owner_pid, getpid(), memory_order_relaxed);
    if (pthread_key_create(&thread_exit_key, close_at_thread_exit) != 0)
        return; /* without a way to close them at thread exit, connections are not cached */
#ifdef __GLIBC__
    /* glibc's pthread_setspecific allocates for keys past its first-level block of 32, and the
     * first lookup of each thread (maybe in a signal handler) calls it: cache only without that. */
    if (thread_exit_key >= 32) {
        pthread_key_delete(thread_exit_key);
        return;
    }
#endif
    if (pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child) != 0) {
        pthread_key_delete(thread_exit_key);
        return;
    }
    atomic_store_explicit(&caching_enabled, true, memory_order_release);
}

/* Unloaded (dlclose of a plugin that linked the static library): no destructor may point here. */
__attribute__((destructor)) static void nfqr_forget_connections(void) {
    if (atomic_exchange_explicit(&caching_enabled, false, memory_order_acq_rel))
        pthread_key_delete(thread_exit_key);
}
