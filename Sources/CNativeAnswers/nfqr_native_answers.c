/*
 * The cgroup/getsockopt program's life, behind nfqr_native_answers.h (its contract comment
 * says what each call promises). libbpf loads the object the skeleton embeds; everything
 * after loading is plain bpf(2) through libbpf's thin wrappers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <mntent.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/mount.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include "nfqr_native_answers.h"

#if __has_include("generated/nfqr_origdst.skel.h")
#include "generated/nfqr_origdst.skel.h"
#define NFQR_HAVE_SKELETON 1
#else
#define NFQR_HAVE_SKELETON 0
#endif

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

#define MAX_ATTACHED 64
#define MAX_MAPS 8

static void explain(char *why, size_t why_len, const char *format, ...) {
    if (!why || why_len == 0)
        return;
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(why, why_len, format, arguments);
    va_end(arguments);
}

bool nfqr_native_answers_built_in(void) { return NFQR_HAVE_SKELETON; }

int nfqr_netns_cookie(uint64_t *cookie) {
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    socklen_t length = sizeof(*cookie);
    int result = getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, cookie, &length) == 0 ? 0 : -errno;
    close(fd);
    return result;
}

/* ---- the cgroup ------------------------------------------------------------------------- */

static int find_cgroup2_mount(char *path, size_t path_len) {
    FILE *mounts = setmntent("/proc/self/mounts", "re");
    if (!mounts)
        return -errno;
    int result = -ENOENT;
    struct mntent entry;
    char buffer[4096];
    while (getmntent_r(mounts, &entry, buffer, sizeof(buffer))) {
        if (strcmp(entry.mnt_type, "cgroup2") == 0 && strlen(entry.mnt_dir) < path_len) {
            strcpy(path, entry.mnt_dir);
            result = 0;
            break;
        }
    }
    endmntent(mounts);
    return result;
}

/* cgroup2 is one hierarchy: a new mount of it shows the same root. Made with the mount API
 * (fsopen/fsmount), it is never attached anywhere: no directory is needed, nothing is left
 * mounted, and the open root keeps the cgroup for as long as the descriptor lives. */
static int open_private_cgroup2(char *used, size_t used_len, char *why, size_t why_len) {
    int context = (int)syscall(SYS_fsopen, "cgroup2", FSOPEN_CLOEXEC);
    if (context < 0) {
        int error = errno;
        explain(why, why_len, "no cgroup v2 mount, and making one failed (fsopen): %s", strerror(error));
        return -error;
    }
    int fd = -1, error = 0;
    int mount_fd = -1;
    if (syscall(SYS_fsconfig, context, FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0 ||
        (mount_fd = (int)syscall(SYS_fsmount, context, FSMOUNT_CLOEXEC, 0)) < 0) {
        error = errno;
        explain(why, why_len, "no cgroup v2 mount, and making one failed: %s", strerror(error));
    } else {
        fd = openat(mount_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            error = errno;
            explain(why, why_len, "opening a private cgroup v2 mount failed: %s", strerror(error));
        }
        close(mount_fd);
    }
    close(context);
    if (fd >= 0)
        snprintf(used, used_len, "cgroup2 root (private mount)");
    return fd >= 0 ? fd : -error;
}

int nfqr_cgroup_open(const char *path, char *used, size_t used_len, char *why, size_t why_len) {
    char found[4096];
    if (!path || !*path) {
        if (find_cgroup2_mount(found, sizeof(found)) != 0)
            return open_private_cgroup2(used, used_len, why, why_len);
        path = found;
    }
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int error = errno;
        explain(why, why_len, "cannot open cgroup %s: %s", path, strerror(error));
        return -error;
    }
    struct stat status;
    if (fstat(fd, &status) != 0 || !S_ISDIR(status.st_mode)) {
        close(fd);
        explain(why, why_len, "%s is not a cgroup directory", path);
        return -ENOTDIR;
    }
    snprintf(used, used_len, "%s", path);
    return fd;
}

/* ---- finding this daemon's program on a cgroup ------------------------------------------ */

typedef struct owned_program {
    int program_fd;
    int map_fd;
    uint32_t program_id;
    uint32_t max_entries;
} owned_program;

/* Reads attached program `id`: true when it is an nfqr_origdst whose owner cookie could be
 * read (into `owner`). With `kept`, the program's descriptor and its answers map's (with the
 * map's size) are handed over too, and true also needs that map. */
static bool inspect(uint32_t id, uint64_t *owner, owned_program *kept) {
    int program_fd = bpf_prog_get_fd_by_id(id);
    if (program_fd < 0)
        return false;
    uint32_t map_ids[MAX_MAPS] = {0};
    struct bpf_prog_info info;
    memset(&info, 0, sizeof(info));
    info.nr_map_ids = MAX_MAPS;
    info.map_ids = (uint64_t)(uintptr_t)map_ids;
    uint32_t info_len = sizeof(info);
    if (bpf_obj_get_info_by_fd(program_fd, &info, &info_len) != 0 ||
        strncmp(info.name, NFQR_ORIGDST_PROGRAM_NAME, sizeof(info.name)) != 0) {
        close(program_fd);
        return false;
    }
    int answers_fd = -1;
    uint32_t max_entries = 0;
    bool owner_read = false;
    for (uint32_t index = 0; index < info.nr_map_ids && index < MAX_MAPS; index++) {
        int map_fd = bpf_map_get_fd_by_id(map_ids[index]);
        if (map_fd < 0)
            continue;
        struct bpf_map_info map_info;
        memset(&map_info, 0, sizeof(map_info));
        uint32_t map_info_len = sizeof(map_info);
        if (bpf_obj_get_info_by_fd(map_fd, &map_info, &map_info_len) != 0) {
            close(map_fd);
            continue;
        }
        size_t name_len = strnlen(map_info.name, sizeof(map_info.name));
        if (map_info.type == BPF_MAP_TYPE_ARRAY && map_info.value_size == sizeof(uint64_t) && name_len >= 7 &&
            strcmp(map_info.name + name_len - 7, ".rodata") == 0) {
            uint32_t key = 0;
            owner_read = bpf_map_lookup_elem(map_fd, &key, owner) == 0;
            close(map_fd);
        } else if (kept && map_info.type == BPF_MAP_TYPE_HASH && strcmp(map_info.name, "nfqr_answers") == 0 &&
                   map_info.key_size == sizeof(struct nfqr_origdst_key) &&
                   map_info.value_size == sizeof(struct nfqr_origdst_value) && answers_fd < 0) {
            answers_fd = map_fd;
            max_entries = map_info.max_entries;
        } else {
            close(map_fd);
        }
    }
    if (!owner_read || (kept && answers_fd < 0)) {
        if (answers_fd >= 0)
            close(answers_fd);
        close(program_fd);
        return false;
    }
    if (!kept) {
        close(program_fd);
        return true;
    }
    kept->program_fd = program_fd;
    kept->map_fd = answers_fd;
    kept->program_id = id;
    kept->max_entries = max_entries;
    return true;
}

/* Whether attached program `id` is an nfqr_origdst of namespace `cookie`; on success the
 * descriptors of the program and its answers map are returned in `found`. */
static bool is_owned(uint32_t id, uint64_t cookie, owned_program *found) {
    uint64_t owner = 0;
    if (!inspect(id, &owner, found))
        return false;
    if (owner == cookie)
        return true;
    close(found->program_fd);
    close(found->map_fd);
    return false;
}

static int attached_ids(int cgroup_fd, uint32_t ids[MAX_ATTACHED], uint32_t *count);

/* ---- which namespaces exist ------------------------------------------------------------- */

typedef struct cookie_probe {
    int namespace_fd;
    uint64_t cookie;
    int result;
} cookie_probe;

/* On a thread of its own: setns changes only the calling thread's namespace, and the thread
 * ends right after, so the daemon's own threads never leave their namespace. */
static void *probe_cookie(void *argument) {
    cookie_probe *probe = argument;
    probe->result = setns(probe->namespace_fd, CLONE_NEWNET) == 0 ? nfqr_netns_cookie(&probe->cookie) : -errno;
    return NULL;
}

#define MAX_NAMESPACES 4096

typedef struct live_namespaces {
    uint32_t count;
    dev_t devices[MAX_NAMESPACES];
    ino_t inodes[MAX_NAMESPACES];
    uint64_t cookies[MAX_NAMESPACES];
} live_namespaces;

static void add_namespace(live_namespaces *live, const char *path) {
    struct stat status;
    if (live->count == MAX_NAMESPACES || stat(path, &status) != 0)
        return;
    for (uint32_t index = 0; index < live->count; index++)
        if (live->devices[index] == status.st_dev && live->inodes[index] == status.st_ino)
            return;
    cookie_probe probe = {open(path, O_RDONLY | O_CLOEXEC), 0, -1};
    if (probe.namespace_fd < 0)
        return;
    pthread_t thread;
    if (pthread_create(&thread, NULL, probe_cookie, &probe) == 0)
        pthread_join(thread, NULL);
    close(probe.namespace_fd);
    if (probe.result != 0)
        return;
    live->devices[live->count] = status.st_dev;
    live->inodes[live->count] = status.st_ino;
    live->cookies[live->count++] = probe.cookie;
}

static void add_namespaces_of(live_namespaces *live, const char *directory, const char *suffix) {
    DIR *listing = opendir(directory);
    if (!listing)
        return;
    struct dirent *entry;
    char path[512];
    while ((entry = readdir(listing))) {
        if (entry->d_name[0] == '.' || (suffix && (entry->d_name[0] < '0' || entry->d_name[0] > '9')))
            continue;
        snprintf(path, sizeof(path), "%s/%s%s", directory, entry->d_name, suffix ? suffix : "");
        add_namespace(live, path);
    }
    closedir(listing);
}

int nfqr_native_answers_remove_orphans(int cgroup_fd, char *why, size_t why_len) {
    uint32_t ids[MAX_ATTACHED], count = 0;
    int result = attached_ids(cgroup_fd, ids, &count);
    if (result != 0) {
        explain(why, why_len, "asking the cgroup for its getsockopt programs failed: %s", strerror(-result));
        return result;
    }
    live_namespaces *live = NULL;
    int removed = 0;
    for (uint32_t index = 0; index < count; index++) {
        uint64_t owner;
        if (!inspect(ids[index], &owner, NULL))
            continue;
        if (!live) { /* only when there is something to check */
            live = calloc(1, sizeof(*live));
            if (!live)
                return -ENOMEM;
            add_namespaces_of(live, "/proc", "/ns/net");
            add_namespaces_of(live, "/run/netns", NULL);
        }
        bool alive = false;
        for (uint32_t known = 0; known < live->count && !alive; known++)
            alive = live->cookies[known] == owner;
        if (alive || live->count == 0) /* no namespace seen at all: /proc hidden, check nothing */
            continue;
        int program_fd = bpf_prog_get_fd_by_id(ids[index]);
        if (program_fd >= 0) {
            if (bpf_prog_detach2(program_fd, cgroup_fd, BPF_CGROUP_GETSOCKOPT) == 0)
                removed++;
            close(program_fd);
        }
    }
    free(live);
    return removed;
}

/* Ids of the getsockopt programs attached to the cgroup itself (not inherited ones). */
static int attached_ids(int cgroup_fd, uint32_t ids[MAX_ATTACHED], uint32_t *count) {
    uint32_t attach_flags = 0;
    *count = MAX_ATTACHED;
    if (bpf_prog_query(cgroup_fd, BPF_CGROUP_GETSOCKOPT, 0, &attach_flags, ids, count) != 0)
        return -errno;
    return 0;
}

int nfqr_native_answers_count_owned(int cgroup_fd, uint64_t netns_cookie) {
    uint32_t ids[MAX_ATTACHED], count = 0;
    int result = attached_ids(cgroup_fd, ids, &count);
    if (result != 0)
        return result;
    int owned = 0;
    for (uint32_t index = 0; index < count; index++) {
        owned_program program;
        if (is_owned(ids[index], netns_cookie, &program)) {
            owned++;
            close(program.program_fd);
            close(program.map_fd);
        }
    }
    return owned;
}

int nfqr_native_answers_remove_owned(int cgroup_fd, uint64_t netns_cookie, char *why, size_t why_len) {
    uint32_t ids[MAX_ATTACHED], count = 0;
    int result = attached_ids(cgroup_fd, ids, &count);
    if (result != 0) {
        explain(why, why_len, "asking the cgroup for its getsockopt programs failed: %s", strerror(-result));
        return result;
    }
    int removed = 0;
    for (uint32_t index = 0; index < count; index++) {
        owned_program program;
        if (!is_owned(ids[index], netns_cookie, &program))
            continue;
        if (bpf_prog_detach2(program.program_fd, cgroup_fd, BPF_CGROUP_GETSOCKOPT) == 0) {
            removed++;
        } else {
            int error = errno;
            explain(why, why_len, "detaching program %u failed: %s", program.program_id, strerror(error));
            result = -error;
        }
        close(program.program_fd);
        close(program.map_fd);
    }
    return result != 0 ? result : removed;
}

/* ---- loading ---------------------------------------------------------------------------- */

/* libbpf's own messages: the last warning is kept for the one log line a failure gets. */
static __thread char last_libbpf_message[256];

static int keep_libbpf_message(enum libbpf_print_level level, const char *format, va_list arguments) {
    if (level != LIBBPF_DEBUG) {
        vsnprintf(last_libbpf_message, sizeof(last_libbpf_message), format, arguments);
        size_t length = strlen(last_libbpf_message);
        while (length > 0 && last_libbpf_message[length - 1] == '\n')
            last_libbpf_message[--length] = 0;
    }
    return 0;
}

static int load_and_attach(int cgroup_fd, uint64_t cookie, uint32_t max_entries, owned_program *loaded, char *why,
                           size_t why_len) {
#if NFQR_HAVE_SKELETON
    libbpf_set_print(keep_libbpf_message);
    last_libbpf_message[0] = 0;
    struct nfqr_origdst *skeleton = nfqr_origdst__open();
    if (!skeleton) {
        int error = errno;
        explain(why, why_len, "opening the BPF object failed: %s", strerror(error));
        return -error;
    }
    skeleton->rodata->owner_netns_cookie = cookie;
    int result = bpf_map__set_max_entries(skeleton->maps.nfqr_answers, max_entries);
    if (result == 0)
        result = nfqr_origdst__load(skeleton);
    if (result != 0) {
        explain(why, why_len, "loading the BPF program failed: %s%s%s", strerror(-result),
                last_libbpf_message[0] ? " - " : "", last_libbpf_message);
        nfqr_origdst__destroy(skeleton);
        return result;
    }
    int program_fd = bpf_program__fd(skeleton->progs.nfqr_origdst);
    if (bpf_prog_attach(program_fd, cgroup_fd, BPF_CGROUP_GETSOCKOPT, BPF_F_ALLOW_MULTI) != 0) {
        int error = errno;
        explain(why, why_len, "attaching the BPF program to the cgroup failed: %s", strerror(error));
        nfqr_origdst__destroy(skeleton);
        return -error;
    }
    loaded->program_fd = fcntl(program_fd, F_DUPFD_CLOEXEC, 3);
    loaded->map_fd = fcntl(bpf_map__fd(skeleton->maps.nfqr_answers), F_DUPFD_CLOEXEC, 3);
    loaded->max_entries = max_entries;
    struct bpf_prog_info info;
    memset(&info, 0, sizeof(info));
    uint32_t info_len = sizeof(info);
    loaded->program_id = bpf_obj_get_info_by_fd(program_fd, &info, &info_len) == 0 ? info.id : 0;
    nfqr_origdst__destroy(skeleton);
    if (loaded->program_fd < 0 || loaded->map_fd < 0) {
        int error = errno;
        explain(why, why_len, "keeping the BPF descriptors failed: %s", strerror(error));
        return -error;
    }
    return 0;
#else
    (void)cgroup_fd;
    (void)cookie;
    (void)max_entries;
    (void)loaded;
    explain(why, why_len,
            "this binary was built without the BPF object (build with make, which runs clang -target bpf)");
    return -ENOSYS;
#endif
}

int nfqr_native_answers_start(int cgroup_fd, uint64_t netns_cookie, uint32_t max_entries, nfqr_native_answers *answers,
                              char *why, size_t why_len) {
    uint32_t ids[MAX_ATTACHED], count = 0;
    int result = attached_ids(cgroup_fd, ids, &count);
    if (result != 0) {
        explain(why, why_len, "asking the cgroup for its getsockopt programs failed: %s", strerror(-result));
        return result;
    }
    /* An earlier run's program with a map of the size asked for is adopted, answers and all.
     * One of another size (a changed table limit) is replaced: the new one is attached
     * first and filled by the caller, then the old one detached, so no moment is without. */
    owned_program kept = {-1, -1, 0, 0};
    owned_program stale[MAX_ATTACHED];
    uint32_t stale_count = 0;
    for (uint32_t index = 0; index < count; index++) {
        owned_program program;
        if (!is_owned(ids[index], netns_cookie, &program))
            continue;
        if (kept.program_fd < 0 && program.max_entries == max_entries)
            kept = program;
        else
            stale[stale_count++] = program;
    }
    bool adopted = kept.program_fd >= 0;
    if (!adopted) {
        result = load_and_attach(cgroup_fd, netns_cookie, max_entries, &kept, why, why_len);
        if (result != 0) {
            for (uint32_t index = 0; index < stale_count; index++) {
                close(stale[index].program_fd);
                close(stale[index].map_fd);
            }
            return result;
        }
    }
    for (uint32_t index = 0; index < stale_count; index++) {
        bpf_prog_detach2(stale[index].program_fd, cgroup_fd, BPF_CGROUP_GETSOCKOPT);
        close(stale[index].program_fd);
        close(stale[index].map_fd);
    }
    answers->cgroup_fd = cgroup_fd;
    answers->program_fd = kept.program_fd;
    answers->map_fd = kept.map_fd;
    answers->program_id = kept.program_id;
    answers->max_entries = kept.max_entries;
    answers->adopted = adopted;
    return 0;
}

/* ---- the map ---------------------------------------------------------------------------- */

/* A datapath thread's held writes: thread-local and static (initial-exec TLS), so holding a
 * write allocates nothing and needs no lock. `answers` is set while a batch is open. */
static __thread struct {
    const nfqr_native_answers *answers;
    uint32_t count;
    struct nfqr_origdst_key keys[NFQR_NATIVE_ANSWERS_BATCH_MAX];
    struct nfqr_origdst_value values[NFQR_NATIVE_ANSWERS_BATCH_MAX];
} held __attribute__((tls_model("initial-exec")));

static int held_index(const struct nfqr_origdst_key *key) {
    for (uint32_t index = 0; index < held.count; index++)
        if (memcmp(&held.keys[index], key, sizeof(*key)) == 0)
            return (int)index;
    return -1;
}

static int write_held(const nfqr_native_answers *answers) {
    uint32_t count = held.count;
    if (count == 0)
        return 0;
    LIBBPF_OPTS(bpf_map_batch_opts, options, .elem_flags = BPF_ANY);
    uint32_t written = count;
    if (bpf_map_update_batch(answers->map_fd, held.keys, held.values, &written, &options) == 0)
        return (int)count;
    int error = errno;
    if (error != EINVAL && error != ENOTSUP && error != EOPNOTSUPP && error != ENOSYS)
        return -error;
    /* No batch operation here: one update per entry. */
    int result = (int)count;
    for (uint32_t index = 0; index < count; index++)
        if (bpf_map_update_elem(answers->map_fd, &held.keys[index], &held.values[index], BPF_ANY) != 0)
            result = -errno;
    return result;
}

void nfqr_native_answers_begin_batch(const nfqr_native_answers *answers) {
    held.answers = answers;
    held.count = 0;
}

int nfqr_native_answers_flush(const nfqr_native_answers *answers) {
    int result = held.answers == answers ? write_held(answers) : 0;
    held.answers = NULL;
    return result;
}

void nfqr_native_answers_flushed(uint32_t index, struct nfqr_origdst_key *key, struct nfqr_origdst_value *value) {
    if (index < held.count) {
        *key = held.keys[index];
        *value = held.values[index];
    }
}

int nfqr_native_answers_put(const nfqr_native_answers *answers, const struct nfqr_origdst_key *key,
                            const struct nfqr_origdst_value *value) {
    if (held.answers == answers) {
        int index = held_index(key);
        if (index < 0 && held.count == NFQR_NATIVE_ANSWERS_BATCH_MAX) {
            int result = write_held(answers);
            held.count = 0;
            if (result < 0)
                return result;
        }
        if (index < 0)
            index = (int)held.count++;
        held.keys[index] = *key;
        held.values[index] = *value;
        return 0;
    }
    return bpf_map_update_elem(answers->map_fd, key, value, BPF_ANY) == 0 ? 0 : -errno;
}

int nfqr_native_answers_delete(const nfqr_native_answers *answers, const struct nfqr_origdst_key *key) {
    bool was_held = false;
    if (held.answers == answers) {
        int index = held_index(key);
        if (index >= 0) {
            held.keys[index] = held.keys[held.count - 1];
            held.values[index] = held.values[held.count - 1];
            held.count--;
            was_held = true;
        }
    }
    /* Also from the map: an earlier flow with the same pair may have been written there. */
    if (bpf_map_delete_elem(answers->map_fd, key) == 0)
        return 0;
    return errno == ENOENT && was_held ? 0 : -errno;
}

int nfqr_native_answers_get(const nfqr_native_answers *answers, const struct nfqr_origdst_key *key,
                            struct nfqr_origdst_value *value) {
    return bpf_map_lookup_elem(answers->map_fd, key, value) == 0 ? 0 : -errno;
}

int nfqr_native_answers_next_key(const nfqr_native_answers *answers, const struct nfqr_origdst_key *previous,
                                 struct nfqr_origdst_key *next) {
    return bpf_map_get_next_key(answers->map_fd, previous, next) == 0 ? 0 : -errno;
}

static void close_all(nfqr_native_answers *answers) {
    if (answers->map_fd >= 0)
        close(answers->map_fd);
    if (answers->program_fd >= 0)
        close(answers->program_fd);
    if (answers->cgroup_fd >= 0)
        close(answers->cgroup_fd);
    answers->map_fd = answers->program_fd = answers->cgroup_fd = -1;
}

void nfqr_native_answers_release(nfqr_native_answers *answers) { close_all(answers); }

int nfqr_native_answers_detach(nfqr_native_answers *answers) {
    int result = 0;
    if (answers->program_fd >= 0 && answers->cgroup_fd >= 0 &&
        bpf_prog_detach2(answers->program_fd, answers->cgroup_fd, BPF_CGROUP_GETSOCKOPT) != 0)
        result = -errno;
    close_all(answers);
    return result;
}
