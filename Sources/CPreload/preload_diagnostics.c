/*
 * What the preload library says, and where.
 *
 * Silence was the old failure mode: a proxy whose user may not use the daemon's socket fell
 * back to the kernel, got its own address as the "original destination" and connected to
 * itself, with no word anywhere. Now:
 *
 *  - Once per process, when the daemon's socket is there but refuses this process (connect
 *    fails with EACCES or EPERM: the socket's mode and group; or the daemon answers
 *    ERR DENIED: its [lookup] allow list), one line says so, with the socket path, the uid
 *    and the fix. Other fallbacks (no daemon, a flow the daemon did not redirect) are normal
 *    on a host where the kernel's REDIRECT serves too, and stay quiet.
 *  - With NFQ_REDIRECT_DEBUG=1, one line per getsockopt(SO_ORIGINAL_DST): answered by the
 *    daemon, or handed to the kernel and why.
 *
 * Where: stderr when it leads somewhere read (a terminal, a pipe, a file, systemd's journal
 * as named by JOURNAL_STREAM); otherwise (closed, /dev/null, another socket: a proxy that
 * daemonised) syslog through /dev/log, facility daemon, as "nfq-redirect-preload[pid]".
 *
 * Everything here is async-signal-safe (getsockopt may be called from a signal handler): the
 * text is built by hand in a stack buffer (no stdio, no malloc, no strerror) and written with
 * write/send; errno is kept.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "nfqr_internal.h"

#define MESSAGE_MAX 1024
#define SYSLOG_PATH "/dev/log"
#define SYSLOG_DAEMON_WARNING 28 /* LOG_DAEMON | LOG_WARNING */
#define SYSLOG_DAEMON_DEBUG 31 /* LOG_DAEMON | LOG_DEBUG */

typedef struct text {
    char bytes[MESSAGE_MAX];
    size_t length;
} text;

static void add(text *out, const char *part) {
    size_t length = strlen(part);
    if (length > sizeof out->bytes - 1 - out->length)
        length = sizeof out->bytes - 1 - out->length;
    memcpy(out->bytes + out->length, part, length);
    out->length += length;
}

static void add_number(text *out, unsigned long long value) {
    char digits[24];
    size_t at = sizeof digits;
    digits[--at] = '\0';
    do {
        digits[--at] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    add(out, digits + at);
}

static void add_endpoint(text *out, const nfqr_endpoint *endpoint) {
    char address[NFQR_ADDRESS_TEXT_MAX + 1];
    address[nfqr_format_address(endpoint, address)] = '\0';
    if (!endpoint->is_v4)
        add(out, "[");
    add(out, address);
    add(out, endpoint->is_v4 ? ":" : "]:");
    add_number(out, endpoint->port);
}

static const char *errno_name(int error) {
    switch (error) {
    case EACCES: return "EACCES (permission denied)";
    case EPERM: return "EPERM (operation not permitted)";
    case ENOENT: return "ENOENT (no socket there: no daemon)";
    case ECONNREFUSED: return "ECONNREFUSED (nothing listens: no daemon)";
    case ETIMEDOUT: return "ETIMEDOUT (no answer in NFQ_REDIRECT_TIMEOUT_MS)";
    case ECONNRESET: return "ECONNRESET (connection lost)";
    case EPIPE: return "EPIPE (connection lost)";
    case ENAMETOOLONG: return "ENAMETOOLONG (socket path too long)";
    case EAGAIN: return "EAGAIN (daemon busy)";
    case ENOTDIR: return "ENOTDIR";
    }
    return NULL;
}

static void add_errno(text *out, int error) {
    const char *name = errno_name(error);
    if (name != NULL) {
        add(out, name);
    } else {
        add(out, "errno ");
        add_number(out, (unsigned long long)error);
    }
}

/* Does stderr lead somewhere a person or a log reads? */
static bool stderr_is_read(void) {
    struct stat status;
    if (fstat(STDERR_FILENO, &status) != 0)
        return false;
    if (S_ISFIFO(status.st_mode) || S_ISREG(status.st_mode))
        return true;
    if (S_ISCHR(status.st_mode)) {
        struct termios terminal;
        return tcgetattr(STDERR_FILENO, &terminal) == 0; /* a terminal; /dev/null is not */
    }
    if (S_ISSOCK(status.st_mode))
        return nfqr_settings.has_journal_stream && (unsigned long long)status.st_dev == nfqr_settings.journal_device &&
               (unsigned long long)status.st_ino == nfqr_settings.journal_inode;
    return false;
}

static void to_syslog(const text *message, int priority) {
    text line = {.length = 0};
    add(&line, "<");
    add_number(&line, (unsigned long long)priority);
    add(&line, ">nfq-redirect-preload[");
    add_number(&line, (unsigned long long)getpid());
    add(&line, "]: ");
    size_t room = sizeof line.bytes - 1 - line.length;
    size_t length = message->length - 1 < room ? message->length - 1 : room; /* without its '\n' */
    memcpy(line.bytes + line.length, message->bytes, length);
    line.length += length;

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return;
    struct sockaddr_un address = {.sun_family = AF_UNIX, .sun_path = SYSLOG_PATH};
    (void)sendto(fd, line.bytes, line.length, MSG_NOSIGNAL, (const struct sockaddr *)&address,
                 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + sizeof SYSLOG_PATH));
    close(fd);
}

static void say(text *message, int priority) {
    add(message, "\n");
    if (message->bytes[message->length - 1] != '\n')
        message->bytes[message->length - 1] = '\n'; /* truncated: still one line */
    if (stderr_is_read()) {
        size_t written = 0;
        while (written < message->length) {
            ssize_t count = write(STDERR_FILENO, message->bytes + written, message->length - written);
            if (count > 0)
                written += (size_t)count;
            else if (count < 0 && errno == EINTR)
                continue;
            else
                break;
        }
    } else {
        to_syslog(message, priority);
    }
}

static void add_prefix(text *out) {
    add(out, "nfq-redirect-preload: pid ");
    add_number(out, (unsigned long long)getpid());
    add(out, " uid ");
    add_number(out, (unsigned long long)geteuid());
    add(out, ": ");
}

static void add_socket_path(text *out) {
    add(out, nfqr_settings.address_length != 0 ? nfqr_settings.address.sun_path : "(socket path too long)");
}

/* The process that last said it; a forked child is a new process and may say it once more. */
static atomic_int refusal_told_pid;

static void tell_refusal(nfqr_answer answer, int error) {
    int pid = (int)getpid();
    if (atomic_exchange_explicit(&refusal_told_pid, pid, memory_order_relaxed) == pid)
        return;
    text message = {.length = 0};
    add_prefix(&message);
    add(&message, "the nfq-redirect daemon's socket ");
    add_socket_path(&message);
    if (answer == NFQR_DENIED) {
        add(&message, " answered ERR DENIED: this user is not on the daemon's allow list ([lookup] allow_users, "
                      "allow_groups, allow_all in nfq-redirect.toml).");
    } else {
        add(&message, " refused the connection: ");
        add_errno(&message, error);
        struct stat status;
        if (nfqr_settings.address_length != 0 && stat(nfqr_settings.address.sun_path, &status) == 0) {
            add(&message, "; the socket is owned by uid ");
            add_number(&message, (unsigned long long)status.st_uid);
            add(&message, ", group gid ");
            add_number(&message, (unsigned long long)status.st_gid);
            add(&message, ", mode 0");
            char mode[4] = {(char)('0' + ((status.st_mode >> 6) & 7)), (char)('0' + ((status.st_mode >> 3) & 7)),
                            (char)('0' + (status.st_mode & 7)), '\0'};
            add(&message, mode);
        }
        add(&message, ".");
    }
    add(&message, " getsockopt(SO_ORIGINAL_DST) falls back to the kernel, which does not know the daemon's "
                  "flows (a proxy then sees its own address and may connect to itself). Fix: add this program's "
                  "user to the socket's group ([lookup] group; usermod -aG <group> <user>, or "
                  "SupplementaryGroups=<group> in its systemd unit) and restart it. Said once per process; "
                  "NFQ_REDIRECT_DEBUG=1 shows every fallback.");
    say(&message, SYSLOG_DAEMON_WARNING);
}

static void tell_route(int fd, int level, nfqr_route route, const nfqr_socket *view, nfqr_answer answer, int error) {
    text message = {.length = 0};
    add_prefix(&message);
    add(&message, "getsockopt(fd ");
    add_number(&message, (unsigned long long)fd);
    add(&message, level == SOL_IP ? ", SOL_IP, SO_ORIGINAL_DST)" : ", SOL_IPV6, IP6T_SO_ORIGINAL_DST)");
    if (view != NULL) {
        add(&message, " tcp ");
        add_endpoint(&message, &view->peer);
        add(&message, " -> ");
        add_endpoint(&message, &view->local);
    }
    switch (route) {
    case NFQR_ROUTE_DAEMON:
        add(&message, ": answered by the daemon at ");
        add_socket_path(&message);
        break;
    case NFQR_ROUTE_SHORT_BUFFER: add(&message, ": the buffer is shorter than the address; to the kernel"); break;
    case NFQR_ROUTE_NOT_TCP: add(&message, ": not a connected TCP socket of this level's family; to the kernel"); break;
    case NFQR_ROUTE_DAEMON_SAID_NO:
        add(&message, ": the daemon at ");
        add_socket_path(&message);
        add(&message, ": ");
        add(&message, nfqr_answer_name(answer));
        if (answer == NFQR_UNAVAILABLE || answer == NFQR_BAD_SOCKET) {
            add(&message, ", ");
            add_errno(&message, error);
        }
        add(&message, "; to the kernel");
        break;
    }
    say(&message, SYSLOG_DAEMON_DEBUG);
}

void nfqr_preload_report(int fd, int level, nfqr_route route, const nfqr_socket *view, nfqr_answer answer, int error) {
    int saved = errno;
    bool refused = route == NFQR_ROUTE_DAEMON_SAID_NO &&
                   (answer == NFQR_DENIED || (answer == NFQR_UNAVAILABLE && (error == EACCES || error == EPERM)));
    if (refused)
        tell_refusal(answer, error);
    if (nfqr_settings.debug)
        tell_route(fd, level, route, view, answer, error);
    errno = saved;
}
