"""An LD_PRELOAD shim for fsync and fdatasync, built with cc: counts every sync (in a shared
counter file), can make each take a fixed time before the real call (an SD card's sync),
and can log each one (thread, file, start and end on the monotonic clock).

Environment of the process it is preloaded into: SPBU_FSYNC_COUNTER (a 4 KiB file),
SPBU_FSYNC_DELAY_US, SPBU_FSYNC_LOG (a file to append lines to), SPBU_FSYNC_SHADOW (a path
prefix: after each sync of a file under it, the file's whole content is copied to
`<file>.synced`, what a power cut could not take; `power_cut` puts those copies back).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <stdlib.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static long delay_us = -1;
static long *counter;
static int log_fd = -2;
static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
/* SPBU_FSYNC_LOG: one line per sync (thread, file, start and end on the monotonic clock),
   to see which syncs a scan waited for. */
static void trace(int fd, double start) {
    if (log_fd == -2) {
        const char *l = getenv("SPBU_FSYNC_LOG");
        log_fd = l ? open(l, O_WRONLY | O_APPEND | O_CREAT, 0644) : -1;
    }
    if (log_fd < 0) return;
    char path[256], link[64], line[400];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    path[n > 0 ? n : 0] = 0;
    int len = snprintf(line, sizeof line, "%ld %.6f %.6f %s\n", (long)syscall(SYS_gettid), start, now_s(), path);
    if (write(log_fd, line, len) < 0) {}
}
/* SPBU_FSYNC_SHADOW: the synced content of each file under the prefix, kept beside it. */
static pthread_mutex_t shadow_mu = PTHREAD_MUTEX_INITIALIZER;
static void shadow(int fd) {
    const char *prefix = getenv("SPBU_FSYNC_SHADOW");
    if (!prefix) return;
    char path[512], link[64], tmp[600], dst[600], buf[65536];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = 0;
    if (strncmp(path, prefix, strlen(prefix)) != 0 || strstr(path, ".synced")) return;
    snprintf(tmp, sizeof tmp, "%s.synced.tmp", path);
    snprintf(dst, sizeof dst, "%s.synced", path);
    pthread_mutex_lock(&shadow_mu);
    int in = open(path, O_RDONLY);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ssize_t r;
    while (in >= 0 && out >= 0 && (r = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, r) != r) break;
    if (in >= 0) close(in);
    if (out >= 0) { close(out); rename(tmp, dst); }
    pthread_mutex_unlock(&shadow_mu);
}
static void before(void) {
    if (delay_us < 0) {
        const char *d = getenv("SPBU_FSYNC_DELAY_US");
        const char *c = getenv("SPBU_FSYNC_COUNTER");
        if (c) {
            int fd = open(c, O_RDWR);
            if (fd >= 0) {
                void *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (p != MAP_FAILED) counter = p;
                close(fd);
            }
        }
        delay_us = d ? atol(d) : 0;
    }
    if (counter) __atomic_fetch_add(counter, 1, __ATOMIC_SEQ_CST);
    if (delay_us > 0) {
        struct timespec ts = {delay_us / 1000000, (delay_us % 1000000) * 1000};
        while (nanosleep(&ts, &ts) != 0) {}
    }
}
int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    double start = now_s();
    before();
    int rc = real(fd);
    shadow(fd);
    trace(fd, start);
    return rc;
}
int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    double start = now_s();
    before();
    int rc = real(fd);
    shadow(fd);
    trace(fd, start);
    return rc;
}
"""


def build_shim(work: Path) -> Path:
    src = work / "fsyncshim.c"
    src.write_text(SHIM_C)
    lib = work / "libfsyncshim.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(src), "-ldl", "-lpthread"], check=True)
    return lib


def power_cut(prefix: Path) -> list[str]:
    """After the process under SPBU_FSYNC_SHADOW=prefix was killed: every file under the
    prefix goes back to what its last sync made durable (a file never synced is gone, and
    so is SQLite's shared-memory index, which lives in RAM on a real card). The worst a
    power cut can do short of tearing pages, which SQLite's WAL checksums are made for.
    Returns the files whose content the cut took back (the index is not counted)."""
    changed = []
    for path in sorted(prefix.parent.glob(prefix.name + "*")):
        if path.name.endswith((".synced", ".synced.tmp")):
            continue
        synced = path.with_name(path.name + ".synced")
        if path.name.endswith("-shm"):
            path.unlink()
        elif not synced.exists():
            path.unlink()
            changed.append(path.name)
        elif synced.read_bytes() != path.read_bytes():
            path.write_bytes(synced.read_bytes())
            changed.append(path.name)
    return changed


def read_log(path: Path) -> list[tuple[int, float, float, str]]:
    """(thread id, start, end, file) of each sync logged."""
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        tid, start, end, *name = line.split(" ", 3)
        rows.append((int(tid), float(start), float(end), name[0] if name else ""))
    return rows
