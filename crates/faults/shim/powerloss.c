/*
 * powerloss.c: an LD_PRELOAD shim that journals every mutation of the files
 * under one directory, so a test can rebuild what a power loss would keep.
 *
 * It never changes what the process sees: every intercepted call goes
 * through to the real libc function with the same arguments, and its result
 * and errno are returned unchanged. Around the call it appends a record to
 * a journal file (see crates/faults/src/powerloss.rs for the format and the
 * model that reads it).
 *
 * Configuration (environment):
 *   POWERLOSS_DIR      absolute, canonical path of the tracked directory
 *   POWERLOSS_JOURNAL  journal file (outside POWERLOSS_DIR), created
 *   POWERLOSS_CONTROL  optional FIFO; writing a byte to it powers off the
 *                      process: the shim takes its lock (so no tracked
 *                      mutation is half done), writes an OFF record and
 *                      SIGKILLs the process while holding the lock.
 *
 * Ordering rules:
 *  - Every record carries the writer's pid and a per-process sequence
 *    number (0 for its START record, then one by one), so the reader can
 *    tell a lost record. Mutations of tracked files hold the lock across the
 *    real call and the journal append, so the journal order is the order
 *    the kernel saw them in.
 *  - Durability points (fsync, fdatasync, syncfs, sync) do not hold the lock
 *    while the real call runs: they read the journal's size before the call
 *    and, once the call returned success, append a record saying "what the
 *    journal held before byte N is durable for this inode". A call still
 *    running at power off leaves no record, so the model never counts it.
 *    A byte offset rather than a sequence number keeps this exact when
 *    several processes (a shell and its children) share one journal.
 *  - The journal is opened O_APPEND and each record is one write(2) (looped
 *    only on a short write), so a kill loses nothing already recorded: the
 *    page cache keeps it.
 *
 * Anything that mutates a tracked file in a way the model does not follow
 * is journaled as UNKNOWN, which makes the reader fail.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* Record kinds; keep in step with powerloss.rs. */
enum {
    R_WRITE = 1,   /* ino, offset, bytes */
    R_TRUNC = 2,   /* ino, new size */
    R_CREATE = 3,  /* parent ino, name, ino: a new regular file */
    R_MKDIR = 4,   /* parent ino, name, ino */
    R_RENAME = 5,  /* old parent ino, old name, new parent ino, new name */
    R_UNLINK = 6,  /* parent ino, name (files and directories) */
    R_FSYNC = 7,   /* ino, covers: everything before journal byte `covers` */
    R_SYNCALL = 8, /* covers */
    R_OPEN = 9,    /* ino, path: informational */
    R_UNKNOWN = 10, /* text */
    R_OFF = 11,    /* power off: nothing after this happened */
    R_START = 12,  /* pid: the process started with the shim loaded */
};

static char tracked_dir[PATH_MAX];
static size_t tracked_len;
static int journal_fd = -1;
static dev_t tracked_dev;
static int enabled;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t seq;
static uint64_t pid;

/* Inodes known to be under the tracked directory (open addressing, never
 * shrinks; 0 marks a free slot). Guarded by `lock`. */
#define INODES 65536
static uint64_t inodes[INODES];

static void inode_add(uint64_t ino) {
    size_t i = (size_t)(ino * 0x9E3779B97F4A7C15ull) % INODES;
    for (size_t n = 0; n < INODES; n++, i = (i + 1) % INODES) {
        if (inodes[i] == ino) return;
        if (inodes[i] == 0) {
            inodes[i] = ino;
            return;
        }
    }
}

static int inode_has(uint64_t ino) {
    size_t i = (size_t)(ino * 0x9E3779B97F4A7C15ull) % INODES;
    for (size_t n = 0; n < INODES; n++, i = (i + 1) % INODES) {
        if (inodes[i] == ino) return 1;
        if (inodes[i] == 0) return 0;
    }
    return 0;
}

/* ---------------------------------------------------------------- real calls */

#define REAL(name) static __typeof__(name) *real_##name
REAL(open);
REAL(open64);
REAL(openat);
REAL(openat64);
REAL(creat);
REAL(creat64);
REAL(write);
REAL(pwrite);
REAL(pwrite64);
REAL(writev);
REAL(pwritev);
REAL(pwritev64);
REAL(pwritev2);
REAL(ftruncate);
REAL(ftruncate64);
REAL(truncate);
REAL(truncate64);
REAL(fallocate);
REAL(fallocate64);
REAL(posix_fallocate);
REAL(posix_fallocate64);
REAL(rename);
REAL(renameat);
REAL(renameat2);
REAL(unlink);
REAL(unlinkat);
REAL(rmdir);
REAL(mkdir);
REAL(mkdirat);
REAL(link);
REAL(linkat);
REAL(symlink);
REAL(symlinkat);
REAL(fsync);
REAL(fdatasync);
REAL(sync_file_range);
REAL(syncfs);
REAL(sync);
REAL(mmap);
REAL(mmap64);
REAL(copy_file_range);
REAL(sendfile);
REAL(sendfile64);
REAL(splice);

static void *resolve(const char *name) {
    void *p = dlsym(RTLD_NEXT, name);
    if (!p) {
        /* A symbol this libc lacks is one the program cannot call either. */
        return NULL;
    }
    return p;
}

#define LOAD(name) real_##name = (__typeof__(real_##name))resolve(#name)

static void load_real(void) {
    LOAD(open); LOAD(open64); LOAD(openat); LOAD(openat64); LOAD(creat); LOAD(creat64);
    LOAD(write); LOAD(pwrite); LOAD(pwrite64); LOAD(writev); LOAD(pwritev); LOAD(pwritev64);
    LOAD(pwritev2); LOAD(ftruncate); LOAD(ftruncate64); LOAD(truncate); LOAD(truncate64);
    LOAD(fallocate); LOAD(fallocate64); LOAD(posix_fallocate); LOAD(posix_fallocate64);
    LOAD(rename); LOAD(renameat); LOAD(renameat2); LOAD(unlink); LOAD(unlinkat); LOAD(rmdir);
    LOAD(mkdir); LOAD(mkdirat); LOAD(link); LOAD(linkat); LOAD(symlink); LOAD(symlinkat);
    LOAD(fsync); LOAD(fdatasync); LOAD(sync_file_range); LOAD(syncfs); LOAD(sync);
    LOAD(mmap); LOAD(mmap64); LOAD(copy_file_range); LOAD(sendfile);
    LOAD(sendfile64); LOAD(splice);
}

/* Wrappers call `real_x` lazily: a constructor of another library may call
 * in before ours ran. */
#define ENSURE(name)                                                    \
    do {                                                                \
        if (!real_##name) real_##name = (__typeof__(real_##name))resolve(#name); \
    } while (0)

/* ---------------------------------------------------------------- journal */

struct buf {
    unsigned char *p;
    size_t len, cap;
};

static void buf_put(struct buf *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) abort();
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_u64(struct buf *b, uint64_t v) { buf_put(b, &v, 8); }

static void buf_str(struct buf *b, const char *s) {
    uint64_t n = strlen(s);
    buf_u64(b, n);
    buf_put(b, s, n);
}

/* Starts a record: [u64 total length][u8 kind][u64 pid][u64 seq]; `lock`
 * must be held. */
static void rec_begin(struct buf *b, unsigned char kind) {
    b->len = 0;
    buf_u64(b, 0);
    buf_put(b, &kind, 1);
    buf_u64(b, pid);
    buf_u64(b, seq++);
}

/* The journal's size now: the `covers` of a durability point. */
static uint64_t journal_size(void) {
    struct stat st;
    if (fstat(journal_fd, &st) != 0) abort();
    return (uint64_t)st.st_size;
}

/* Appends the record with one write(2); `lock` must be held. Raw syscalls
 * so that the shim never re-enters its own wrappers. */
static void rec_end(struct buf *b) {
    uint64_t total = b->len;
    memcpy(b->p, &total, 8);
    size_t done = 0;
    while (done < b->len) {
        long n = syscall(SYS_write, journal_fd, b->p + done, b->len - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            /* A journal that cannot be written makes the test meaningless. */
            abort();
        }
        done += (size_t)n;
    }
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static void rec_unknown(const char *what, const char *detail) {
    struct buf b = {0};
    char text[PATH_MAX + 128];
    snprintf(text, sizeof text, "%s %s", what, detail ? detail : "");
    rec_begin(&b, R_UNKNOWN);
    buf_str(&b, text);
    rec_end(&b);
}

/* ---------------------------------------------------------------- paths */

/* Lexically normalises an absolute path into `out` ("." and ".." removed,
 * repeated slashes folded). Returns 0 on success. */
static int normalise(const char *in, char *out) {
    size_t o = 0;
    const char *p = in;
    if (*p != '/') return -1;
    while (*p) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *e = p;
        while (*e && *e != '/') e++;
        size_t n = (size_t)(e - p);
        if (n == 1 && p[0] == '.') {
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            while (o > 0 && out[o - 1] != '/') o--;
            if (o > 0) o--;
        } else {
            if (o + 1 + n + 1 > PATH_MAX) return -1;
            out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
        }
        p = e;
    }
    if (o == 0) out[o++] = '/';
    out[o] = 0;
    return 0;
}

/* The absolute path of `path` relative to `dirfd` (AT_FDCWD or a directory). */
static int absolute(int dirfd, const char *path, char *out) {
    char joined[2 * PATH_MAX + 2];
    if (!path) return -1;
    if (path[0] == '/') {
        if (strlen(path) >= sizeof joined) return -1;
        strcpy(joined, path);
    } else {
        char base[PATH_MAX];
        if (dirfd == AT_FDCWD) {
            if (!getcwd(base, sizeof base)) return -1;
        } else {
            char link[64];
            snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
            ssize_t n = readlink(link, base, sizeof base - 1);
            if (n < 0) return -1;
            base[n] = 0;
        }
        snprintf(joined, sizeof joined, "%s/%s", base, path);
    }
    return normalise(joined, out);
}

static int is_tracked_path(const char *abs) {
    return enabled && strncmp(abs, tracked_dir, tracked_len) == 0 &&
           (abs[tracked_len] == 0 || abs[tracked_len] == '/');
}

/* Splits an absolute tracked path into its parent's inode and its name.
 * Returns 0 on success (the parent exists). */
static int parent_of(const char *abs, uint64_t *parent, const char **name) {
    char dir[PATH_MAX];
    const char *slash = strrchr(abs, '/');
    if (!slash || slash == abs) return -1;
    size_t n = (size_t)(slash - abs);
    memcpy(dir, abs, n);
    dir[n] = 0;
    struct stat st;
    if (stat(dir, &st) != 0) return -1;
    *parent = st.st_ino;
    *name = slash + 1;
    return 0;
}

/* The tracked inode an fd refers to, or 0. `lock` must be held. */
static uint64_t fd_inode(int fd) {
    struct stat st;
    if (!enabled || fd < 0 || fstat(fd, &st) != 0) return 0;
    if (st.st_dev != tracked_dev || !inode_has(st.st_ino)) return 0;
    return st.st_ino;
}

/* Cheap pre-check without the lock: sockets and pipes live on other
 * devices, so most calls skip the lock entirely. */
static int maybe_tracked_fd(int fd) {
    struct stat st;
    return enabled && fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == tracked_dev;
}

/* ---------------------------------------------------------------- setup */

static void *control_thread(void *arg) {
    const char *path = arg;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    char c;
    for (;;) {
        long n = syscall(SYS_read, fd, &c, 1);
        if (n == 1) break;
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) {
            /* The writer went away without a byte; wait for the next one. */
            syscall(SYS_close, fd);
            fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) return NULL;
            continue;
        }
        return NULL;
    }
    /* Power off: with the lock held no tracked mutation is in flight, and
     * none can start before the SIGKILL lands. */
    pthread_mutex_lock(&lock);
    struct buf b = {0};
    rec_begin(&b, R_OFF);
    rec_end(&b);
    kill(getpid(), SIGKILL);
    for (;;) pause();
    return NULL;
}

/* `lock` must be held. */
static void rec_start(uint64_t root) {
    struct buf b = {0};
    seq = 0;
    pid = (uint64_t)getpid();
    rec_begin(&b, R_START);
    buf_u64(&b, pid);
    buf_u64(&b, root);
    rec_end(&b);
}

static uint64_t root_ino;

/* fork: the child is a new writer with its own numbering. The lock is taken
 * around the fork so the child never inherits it held by a thread it lacks. */
static void before_fork(void) { pthread_mutex_lock(&lock); }
static void after_fork_parent(void) { pthread_mutex_unlock(&lock); }
static void after_fork_child(void) {
    pthread_mutex_init(&lock, NULL);
    pthread_mutex_lock(&lock);
    rec_start(root_ino);
    pthread_mutex_unlock(&lock);
}

__attribute__((constructor)) static void powerloss_init(void) {
    load_real();
    const char *dir = getenv("POWERLOSS_DIR");
    const char *journal = getenv("POWERLOSS_JOURNAL");
    if (!dir || !journal || strlen(dir) >= PATH_MAX) return;
    if (normalise(dir, tracked_dir) != 0) return;
    tracked_len = strlen(tracked_dir);
    journal_fd = (int)syscall(SYS_openat, AT_FDCWD, journal, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (journal_fd < 0) {
        fprintf(stderr, "powerloss: cannot open journal %s: %s\n", journal, strerror(errno));
        abort();
    }
    struct stat st;
    if (stat(tracked_dir, &st) != 0) {
        fprintf(stderr, "powerloss: tracked dir %s must exist: %s\n", tracked_dir, strerror(errno));
        abort();
    }
    tracked_dev = st.st_dev;
    root_ino = st.st_ino;
    enabled = 1;
    pthread_mutex_lock(&lock);
    inode_add(st.st_ino);
    rec_start(root_ino);
    pthread_mutex_unlock(&lock);
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);

    const char *control = getenv("POWERLOSS_CONTROL");
    if (control) {
        static char control_path[PATH_MAX];
        snprintf(control_path, sizeof control_path, "%s", control);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_create(&t, &attr, control_thread, control_path);
        pthread_attr_destroy(&attr);
    }
}

/* ---------------------------------------------------------------- open */

/* After a successful open of `abs`: record a creation (it did not exist
 * before), a truncation (O_TRUNC on a file that existed) and the open. */
static void after_open(int fd, const char *abs, int existed, int flags) {
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) return;
    inode_add(st.st_ino);
    struct buf b = {0};
    if (!existed) {
        uint64_t parent;
        const char *name;
        if (parent_of(abs, &parent, &name) == 0) {
            rec_begin(&b, R_CREATE);
            buf_u64(&b, parent);
            buf_str(&b, name);
            buf_u64(&b, st.st_ino);
            rec_end(&b);
        } else {
            rec_unknown("create without a parent", abs);
        }
    } else if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY && S_ISREG(st.st_mode)) {
        rec_begin(&b, R_TRUNC);
        buf_u64(&b, st.st_ino);
        buf_u64(&b, 0);
        rec_end(&b);
    }
    rec_begin(&b, R_OPEN);
    buf_u64(&b, st.st_ino);
    buf_str(&b, abs);
    rec_end(&b);
}

static int do_open(int dirfd, const char *path, int flags, mode_t mode,
                   int (*real)(int, const char *, int, ...), int (*real_noat)(const char *, int, ...)) {
    char abs[PATH_MAX];
    if (!enabled || absolute(dirfd, path, abs) != 0 || !is_tracked_path(abs)) {
        return real ? real(dirfd, path, flags, mode) : real_noat(path, flags, mode);
    }
    if (flags & O_TMPFILE) {
        pthread_mutex_lock(&lock);
        int fd = real ? real(dirfd, path, flags, mode) : real_noat(path, flags, mode);
        int saved = errno;
        if (fd >= 0) rec_unknown("O_TMPFILE open", abs);
        pthread_mutex_unlock(&lock);
        errno = saved;
        return fd;
    }
    pthread_mutex_lock(&lock);
    struct stat st;
    int existed = lstat(abs, &st) == 0;
    int fd = real ? real(dirfd, path, flags, mode) : real_noat(path, flags, mode);
    int saved = errno;
    if (fd >= 0) after_open(fd, abs, existed, flags);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return fd;
}

#define OPEN_MODE(flags)                                  \
    mode_t mode = 0;                                      \
    if ((flags) & (O_CREAT | O_TMPFILE)) {                \
        va_list ap;                                       \
        va_start(ap, flags);                              \
        mode = (mode_t)va_arg(ap, int);                   \
        va_end(ap);                                       \
    }

int open(const char *path, int flags, ...) {
    OPEN_MODE(flags);
    ENSURE(open);
    return do_open(AT_FDCWD, path, flags, mode, NULL, real_open);
}

int open64(const char *path, int flags, ...) {
    OPEN_MODE(flags);
    ENSURE(open64);
    return do_open(AT_FDCWD, path, flags, mode, NULL, real_open64);
}

int openat(int dirfd, const char *path, int flags, ...) {
    OPEN_MODE(flags);
    ENSURE(openat);
    return do_open(dirfd, path, flags, mode, real_openat, NULL);
}

int openat64(int dirfd, const char *path, int flags, ...) {
    OPEN_MODE(flags);
    ENSURE(openat64);
    return do_open(dirfd, path, flags, mode, real_openat64, NULL);
}

static int creat_shim(const char *path, mode_t mode) {
    ENSURE(open);
    return do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode, NULL, real_open);
}

int creat(const char *path, mode_t mode) { return creat_shim(path, mode); }
int creat64(const char *path, mode_t mode) { return creat_shim(path, mode); }

/* ---------------------------------------------------------------- data */

static void rec_write(uint64_t ino, uint64_t off, const void *data, size_t n) {
    struct buf b = {0};
    rec_begin(&b, R_WRITE);
    buf_u64(&b, ino);
    buf_u64(&b, off);
    buf_u64(&b, n);
    buf_put(&b, data, n);
    rec_end(&b);
}

static void rec_writev(uint64_t ino, uint64_t off, const struct iovec *iov, int cnt, size_t n) {
    struct buf b = {0};
    rec_begin(&b, R_WRITE);
    buf_u64(&b, ino);
    buf_u64(&b, off);
    buf_u64(&b, n);
    size_t left = n;
    for (int i = 0; i < cnt && left > 0; i++) {
        size_t take = iov[i].iov_len < left ? iov[i].iov_len : left;
        buf_put(&b, iov[i].iov_base, take);
        left -= take;
    }
    rec_end(&b);
}

static void rec_size_if_changed(uint64_t ino, int fd, off_t before) {
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_size != before) {
        struct buf b = {0};
        rec_begin(&b, R_TRUNC);
        buf_u64(&b, ino);
        buf_u64(&b, (uint64_t)st.st_size);
        rec_end(&b);
    }
}

/* Where a write(2)/writev(2) on `fd` lands: the end for O_APPEND, else the
 * file offset. */
static off_t current_offset(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_APPEND)) {
        struct stat st;
        return fstat(fd, &st) == 0 ? st.st_size : -1;
    }
    return lseek(fd, 0, SEEK_CUR);
}

ssize_t write(int fd, const void *data, size_t n) {
    ENSURE(write);
    if (!maybe_tracked_fd(fd)) return real_write(fd, data, n);
    pthread_mutex_lock(&lock);
    uint64_t ino = fd_inode(fd);
    off_t off = ino ? current_offset(fd) : 0;
    ssize_t r = real_write(fd, data, n);
    int saved = errno;
    if (ino && r > 0) rec_write(ino, (uint64_t)off, data, (size_t)r);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

static ssize_t pwrite_shim(int fd, const void *data, size_t n, off_t off, __typeof__(pwrite) *real) {
    if (!maybe_tracked_fd(fd)) return real(fd, data, n, off);
    pthread_mutex_lock(&lock);
    uint64_t ino = fd_inode(fd);
    int fl = ino ? fcntl(fd, F_GETFL) : 0;
    ssize_t r = real(fd, data, n, off);
    int saved = errno;
    if (ino && r > 0) {
        /* Linux pwrite on an O_APPEND fd appends regardless of `off`. */
        if (fl >= 0 && (fl & O_APPEND))
            rec_unknown("pwrite on an O_APPEND fd", NULL);
        else
            rec_write(ino, (uint64_t)off, data, (size_t)r);
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

ssize_t pwrite(int fd, const void *data, size_t n, off_t off) {
    ENSURE(pwrite);
    return pwrite_shim(fd, data, n, off, real_pwrite);
}

ssize_t pwrite64(int fd, const void *data, size_t n, off_t off) {
    ENSURE(pwrite64);
    return pwrite_shim(fd, data, n, off, real_pwrite64);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    ENSURE(writev);
    if (!maybe_tracked_fd(fd)) return real_writev(fd, iov, cnt);
    pthread_mutex_lock(&lock);
    uint64_t ino = fd_inode(fd);
    off_t off = ino ? current_offset(fd) : 0;
    ssize_t r = real_writev(fd, iov, cnt);
    int saved = errno;
    if (ino && r > 0) rec_writev(ino, (uint64_t)off, iov, cnt, (size_t)r);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

static ssize_t pwritev_shim(int fd, const struct iovec *iov, int cnt, off_t off, int flags,
                            __typeof__(pwritev2) *real2, __typeof__(pwritev) *real1) {
    ssize_t r;
#define CALL() (real2 ? real2(fd, iov, cnt, off, flags) : real1(fd, iov, cnt, off))
    if (!maybe_tracked_fd(fd)) return CALL();
    pthread_mutex_lock(&lock);
    uint64_t ino = fd_inode(fd);
    int fl = ino ? fcntl(fd, F_GETFL) : 0;
    off_t at = off;
    if (ino && off == -1) at = current_offset(fd);
    r = CALL();
    int saved = errno;
    if (ino && r > 0) {
        if (flags != 0 || (fl >= 0 && (fl & O_APPEND)))
            rec_unknown("pwritev with flags or on an O_APPEND fd", NULL);
        else
            rec_writev(ino, (uint64_t)at, iov, cnt, (size_t)r);
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
#undef CALL
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
    ENSURE(pwritev);
    return pwritev_shim(fd, iov, cnt, off, 0, NULL, real_pwritev);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) {
    ENSURE(pwritev64);
    return pwritev_shim(fd, iov, cnt, off, 0, NULL, real_pwritev64);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags) {
    ENSURE(pwritev2);
    return pwritev_shim(fd, iov, cnt, off, flags, real_pwritev2, NULL);
}

static int ftruncate_shim(int fd, off_t len, __typeof__(ftruncate) *real) {
    if (!maybe_tracked_fd(fd)) return real(fd, len);
    pthread_mutex_lock(&lock);
    uint64_t ino = fd_inode(fd);
    int r = real(fd, len);
    int saved = errno;
    if (ino && r == 0) {
        struct buf b = {0};
        rec_begin(&b, R_TRUNC);
        buf_u64(&b, ino);
        buf_u64(&b, (uint64_t)len);
        rec_end(&b);
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

int ftruncate(int fd, off_t len) {
    ENSURE(ftruncate);
    return ftruncate_shim(fd, len, real_ftruncate);
}

int ftruncate64(int fd, off_t len) {
    ENSURE(ftruncate64);
    return ftruncate_shim(fd, len, real_ftruncate64);
}

static int truncate_shim(const char *path, off_t len, __typeof__(truncate) *real) {
    char abs[PATH_MAX];
    if (!enabled || absolute(AT_FDCWD, path, abs) != 0 || !is_tracked_path(abs)) return real(path, len);
    pthread_mutex_lock(&lock);
    int r = real(path, len);
    int saved = errno;
    struct stat st;
    if (r == 0 && stat(abs, &st) == 0) {
        struct buf b = {0};
        rec_begin(&b, R_TRUNC);
        buf_u64(&b, st.st_ino);
        buf_u64(&b, (uint64_t)len);
        rec_end(&b);
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

int truncate(const char *path, off_t len) {
    ENSURE(truncate);
    return truncate_shim(path, len, real_truncate);
}

int truncate64(const char *path, off_t len) {
    ENSURE(truncate64);
    return truncate_shim(path, len, real_truncate64);
}

/* fallocate: only the size change is visible to readers (the new range
 * reads as zeros), unless the mode rewrites existing bytes. */
static int fallocate_shim(int fd, int mode, off_t off, off_t len, __typeof__(fallocate) *real) {
    if (!maybe_tracked_fd(fd)) return real(fd, mode, off, len);
    pthread_mutex_lock(&lock);
    uint64_t ino = fd_inode(fd);
    struct stat st;
    off_t before = (ino && fstat(fd, &st) == 0) ? st.st_size : -1;
    int r = real(fd, mode, off, len);
    int saved = errno;
    if (ino && r == 0) {
        if (mode & ~FALLOC_FL_KEEP_SIZE)
            rec_unknown("fallocate with a mode that changes contents", NULL);
        else
            rec_size_if_changed(ino, fd, before);
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

int fallocate(int fd, int mode, off_t off, off_t len) {
    ENSURE(fallocate);
    return fallocate_shim(fd, mode, off, len, real_fallocate);
}

int fallocate64(int fd, int mode, off_t off, off_t len) {
    ENSURE(fallocate64);
    return fallocate_shim(fd, mode, off, len, real_fallocate64);
}

static int posix_fallocate_shim(int fd, off_t off, off_t len, __typeof__(posix_fallocate) *real) {
    if (!maybe_tracked_fd(fd)) return real(fd, off, len);
    pthread_mutex_lock(&lock);
    uint64_t ino = fd_inode(fd);
    struct stat st;
    off_t before = (ino && fstat(fd, &st) == 0) ? st.st_size : -1;
    int r = real(fd, off, len);
    if (ino && r == 0) rec_size_if_changed(ino, fd, before);
    pthread_mutex_unlock(&lock);
    return r;
}

int posix_fallocate(int fd, off_t off, off_t len) {
    ENSURE(posix_fallocate);
    return posix_fallocate_shim(fd, off, len, real_posix_fallocate);
}

int posix_fallocate64(int fd, off_t off, off_t len) {
    ENSURE(posix_fallocate64);
    return posix_fallocate_shim(fd, off, len, real_posix_fallocate64);
}

/* ---------------------------------------------------------------- namespace */

static int rename_shim(int olddir, const char *oldp, int newdir, const char *newp, unsigned flags, int kind) {
    char a[PATH_MAX], b2[PATH_MAX];
    int ta = enabled && absolute(olddir, oldp, a) == 0 && is_tracked_path(a);
    int tb = enabled && absolute(newdir, newp, b2) == 0 && is_tracked_path(b2);
#define CALL()                                                                   \
    (kind == 0 ? real_rename(oldp, newp)                                          \
               : kind == 1 ? real_renameat(olddir, oldp, newdir, newp)            \
                           : real_renameat2(olddir, oldp, newdir, newp, flags))
    if (!ta && !tb) return CALL();
    pthread_mutex_lock(&lock);
    int r = CALL();
    int saved = errno;
    if (r == 0) {
        uint64_t pa, pb;
        const char *na, *nb;
        if (!ta || !tb) {
            rec_unknown("rename across the tracked boundary", ta ? a : b2);
        } else if (flags & ~(unsigned)RENAME_NOREPLACE) {
            /* NOREPLACE that succeeded is a plain rename; EXCHANGE and
             * WHITEOUT are not modelled. */
            rec_unknown("renameat2 with flags", a);
        } else if (parent_of(a, &pa, &na) != 0 || parent_of(b2, &pb, &nb) != 0) {
            rec_unknown("rename without a parent", a);
        } else {
            struct buf b = {0};
            rec_begin(&b, R_RENAME);
            buf_u64(&b, pa);
            buf_str(&b, na);
            buf_u64(&b, pb);
            buf_str(&b, nb);
            rec_end(&b);
        }
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
#undef CALL
}

int rename(const char *oldp, const char *newp) {
    ENSURE(rename);
    return rename_shim(AT_FDCWD, oldp, AT_FDCWD, newp, 0, 0);
}

int renameat(int od, const char *oldp, int nd, const char *newp) {
    ENSURE(renameat);
    return rename_shim(od, oldp, nd, newp, 0, 1);
}

int renameat2(int od, const char *oldp, int nd, const char *newp, unsigned flags) {
    ENSURE(renameat2);
    return rename_shim(od, oldp, nd, newp, flags, 2);
}

static int unlink_shim(int dirfd, const char *path, int flags, int kind) {
    char abs[PATH_MAX];
#define CALL() (kind == 0 ? real_unlink(path) : kind == 1 ? real_unlinkat(dirfd, path, flags) : real_rmdir(path))
    if (!enabled || absolute(dirfd, path, abs) != 0 || !is_tracked_path(abs)) return CALL();
    pthread_mutex_lock(&lock);
    uint64_t parent = 0;
    const char *name = NULL;
    int have_parent = parent_of(abs, &parent, &name) == 0;
    int r = CALL();
    int saved = errno;
    if (r == 0) {
        if (!have_parent) {
            rec_unknown("unlink without a parent", abs);
        } else {
            struct buf b = {0};
            rec_begin(&b, R_UNLINK);
            buf_u64(&b, parent);
            buf_str(&b, name);
            rec_end(&b);
        }
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
#undef CALL
}

int unlink(const char *path) {
    ENSURE(unlink);
    return unlink_shim(AT_FDCWD, path, 0, 0);
}

int unlinkat(int dirfd, const char *path, int flags) {
    ENSURE(unlinkat);
    return unlink_shim(dirfd, path, flags, 1);
}

int rmdir(const char *path) {
    ENSURE(rmdir);
    return unlink_shim(AT_FDCWD, path, 0, 2);
}

static int mkdir_shim(int dirfd, const char *path, mode_t mode, int kind) {
    char abs[PATH_MAX];
#define CALL() (kind == 0 ? real_mkdir(path, mode) : real_mkdirat(dirfd, path, mode))
    if (!enabled || absolute(dirfd, path, abs) != 0 || !is_tracked_path(abs)) return CALL();
    pthread_mutex_lock(&lock);
    int r = CALL();
    int saved = errno;
    struct stat st;
    if (r == 0) {
        uint64_t parent;
        const char *name;
        if (parent_of(abs, &parent, &name) != 0 || stat(abs, &st) != 0) {
            rec_unknown("mkdir without a parent", abs);
        } else {
            inode_add(st.st_ino);
            struct buf b = {0};
            rec_begin(&b, R_MKDIR);
            buf_u64(&b, parent);
            buf_str(&b, name);
            buf_u64(&b, st.st_ino);
            rec_end(&b);
        }
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
#undef CALL
}

int mkdir(const char *path, mode_t mode) {
    ENSURE(mkdir);
    return mkdir_shim(AT_FDCWD, path, mode, 0);
}

int mkdirat(int dirfd, const char *path, mode_t mode) {
    ENSURE(mkdirat);
    return mkdir_shim(dirfd, path, mode, 1);
}

/* Links are not modelled: any that lands in the tracked dir is UNKNOWN. */
static void unknown_if_tracked(int dirfd, const char *path, const char *what) {
    char abs[PATH_MAX];
    if (enabled && absolute(dirfd, path, abs) == 0 && is_tracked_path(abs)) {
        pthread_mutex_lock(&lock);
        rec_unknown(what, abs);
        pthread_mutex_unlock(&lock);
    }
}

int link(const char *a, const char *b) {
    ENSURE(link);
    int r = real_link(a, b);
    int saved = errno;
    if (r == 0) unknown_if_tracked(AT_FDCWD, b, "link");
    errno = saved;
    return r;
}

int linkat(int ad, const char *a, int bd, const char *b, int flags) {
    ENSURE(linkat);
    int r = real_linkat(ad, a, bd, b, flags);
    int saved = errno;
    if (r == 0) unknown_if_tracked(bd, b, "linkat");
    errno = saved;
    return r;
}

int symlink(const char *a, const char *b) {
    ENSURE(symlink);
    int r = real_symlink(a, b);
    int saved = errno;
    if (r == 0) unknown_if_tracked(AT_FDCWD, b, "symlink");
    errno = saved;
    return r;
}

int symlinkat(const char *a, int bd, const char *b) {
    ENSURE(symlinkat);
    int r = real_symlinkat(a, bd, b);
    int saved = errno;
    if (r == 0) unknown_if_tracked(bd, b, "symlinkat");
    errno = saved;
    return r;
}

/* ---------------------------------------------------------------- durability */

static int sync_shim(int fd, __typeof__(fsync) *real) {
    if (!maybe_tracked_fd(fd)) return real(fd);
    pthread_mutex_lock(&lock);
    uint64_t ino = fd_inode(fd);
    uint64_t covers = journal_size();
    pthread_mutex_unlock(&lock);
    int r = real(fd);
    int saved = errno;
    if (ino && r == 0) {
        pthread_mutex_lock(&lock);
        struct buf b = {0};
        rec_begin(&b, R_FSYNC);
        buf_u64(&b, ino);
        buf_u64(&b, covers);
        rec_end(&b);
        pthread_mutex_unlock(&lock);
    }
    errno = saved;
    return r;
}

int fsync(int fd) {
    ENSURE(fsync);
    return sync_shim(fd, real_fsync);
}

/* fdatasync also flushes the size when a read needs it (Linux and POSIX
 * "synchronized I/O data integrity"), which is all the model tracks. */
int fdatasync(int fd) {
    ENSURE(fdatasync);
    return sync_shim(fd, real_fdatasync);
}

/* sync_file_range starts or waits for writeback of data only; it makes no
 * promise about metadata or the disk cache, so it is not a durability point. */
int sync_file_range(int fd, off64_t off, off64_t n, unsigned int flags) {
    ENSURE(sync_file_range);
    return real_sync_file_range(fd, off, n, flags);
}

static void rec_syncall(uint64_t covers) {
    pthread_mutex_lock(&lock);
    struct buf b = {0};
    rec_begin(&b, R_SYNCALL);
    buf_u64(&b, covers);
    rec_end(&b);
    pthread_mutex_unlock(&lock);
}

int syncfs(int fd) {
    ENSURE(syncfs);
    struct stat st;
    int ours = enabled && fstat(fd, &st) == 0 && st.st_dev == tracked_dev;
    pthread_mutex_lock(&lock);
    uint64_t covers = enabled ? journal_size() : 0;
    pthread_mutex_unlock(&lock);
    int r = real_syncfs(fd);
    int saved = errno;
    if (ours && r == 0) rec_syncall(covers);
    errno = saved;
    return r;
}

void sync(void) {
    ENSURE(sync);
    pthread_mutex_lock(&lock);
    uint64_t covers = enabled ? journal_size() : 0;
    pthread_mutex_unlock(&lock);
    real_sync();
    if (enabled) rec_syncall(covers);
}

/* ---------------------------------------------------------------- not modelled */

/* A shared writable mapping of a tracked file changes it without write(2);
 * the model does not follow that. */
static void check_mapping(int prot, int flags, int fd) {
    if ((prot & PROT_WRITE) && (flags & MAP_SHARED) && maybe_tracked_fd(fd)) {
        pthread_mutex_lock(&lock);
        if (fd_inode(fd)) rec_unknown("mmap(PROT_WRITE, MAP_SHARED)", NULL);
        pthread_mutex_unlock(&lock);
    }
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    ENSURE(mmap);
    void *p = real_mmap(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED) check_mapping(prot, flags, fd);
    return p;
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    ENSURE(mmap64);
    void *p = real_mmap64(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED) check_mapping(prot, flags, fd);
    return p;
}

static void unknown_if_tracked_fd(int fd, const char *what) {
    if (!maybe_tracked_fd(fd)) return;
    pthread_mutex_lock(&lock);
    if (fd_inode(fd)) rec_unknown(what, NULL);
    pthread_mutex_unlock(&lock);
}

ssize_t copy_file_range(int in, off64_t *inoff, int out, off64_t *outoff, size_t n, unsigned flags) {
    ENSURE(copy_file_range);
    ssize_t r = real_copy_file_range(in, inoff, out, outoff, n, flags);
    int saved = errno;
    if (r > 0) unknown_if_tracked_fd(out, "copy_file_range");
    errno = saved;
    return r;
}

ssize_t sendfile(int out, int in, off_t *off, size_t n) {
    ENSURE(sendfile);
    ssize_t r = real_sendfile(out, in, off, n);
    int saved = errno;
    if (r > 0) unknown_if_tracked_fd(out, "sendfile");
    errno = saved;
    return r;
}

ssize_t sendfile64(int out, int in, off64_t *off, size_t n) {
    ENSURE(sendfile64);
    ssize_t r = real_sendfile64(out, in, off, n);
    int saved = errno;
    if (r > 0) unknown_if_tracked_fd(out, "sendfile");
    errno = saved;
    return r;
}

ssize_t splice(int in, off64_t *inoff, int out, off64_t *outoff, size_t n, unsigned flags) {
    ENSURE(splice);
    ssize_t r = real_splice(in, inoff, out, outoff, n, flags);
    int saved = errno;
    if (r > 0) unknown_if_tracked_fd(out, "splice");
    errno = saved;
    return r;
}
