/* The backup's small-file hot path, one call per directory and one per batch
 * of files (docs/design.md, "Small files"). A Node sync fs call costs about
 * 0.5-1.4 us more than the system call itself, and a small file needs six or
 * seven of them (lstat, llistxattr, open, fstat, read, read, close): for
 * 100,000 files of 1-8 KiB that overhead alone was more CPU time than the
 * system calls. So:
 *
 *   listDirectory(dirFd, wantXattrNames)   every name of a directory with its
 *       lstat (fstatat AT_SYMLINK_NOFOLLOW, from the directory's descriptor)
 *       and, if asked, the list of its extended attribute names: one call.
 *   readFiles(dirFd, names, desc, out)     for each file of a batch in that
 *       directory: openat O_NOFOLLOW, fstat checked to be the file listed,
 *       read its recorded size straight into its place in `out` (the stream
 *       ring's memory), zero padding to the next 512-byte block, close: one
 *       call, each file's outcome in `desc`.
 *
 * Neither throws for a file's trouble: each entry's errno or outcome is
 * returned for the caller to report by name (src/backup/file-source.ts), so one
 * file never fails the whole call. Both run on the calling thread (the session's
 * walker, its reader thread) and keep no state but whether the kernel has
 * listxattrat. */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <node_api.h>

#include "batch.h"

/* Slots (8 bytes each) per listed entry; see LIST_* in src/backup/file-source.ts. */
enum {
  L_NAME_OFF, L_NAME_LEN, L_ERRNO, L_DEV, L_INO, L_MODE, L_NLINK, L_UID, L_GID, L_RDEV, L_SIZE,
  L_BLOCKS, L_ATIME_S, L_ATIME_NS, L_MTIME_S, L_MTIME_NS, L_CTIME_S, L_CTIME_NS, L_XATTR_OFF,
  L_XATTR_LEN, L_SLOTS
};

/* Slots per file of a read batch; see READ_* in src/backup/file-source.ts. */
enum { R_NAME_OFF, R_NAME_LEN, R_DEV, R_INO, R_SIZE, R_DEST, R_OUTCOME, R_ERRNO, R_SLOTS };

/* Outcomes of one file of a read batch. */
enum { OUT_OK = 0, OUT_SHRANK = 1, OUT_GREW = 2, OUT_READ_FAILED = 3, OUT_OPEN_FAILED = 4, OUT_CHANGED = 5 };

/* A double slot and an integer slot share the 8 bytes: numbers that stay below
 * 2^53 are doubles (JS reads them without a BigInt), the rest int64. */
typedef union {
  double d;
  int64_t i;
  uint64_t u;
} slot_t;

static napi_value fail(napi_env env, const char *code, const char *msg) {
  napi_throw_type_error(env, code, msg);
  return NULL;
}

static bool get_fd(napi_env env, napi_value v, int *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return false;
  int32_t fd;
  if (napi_get_value_int32(env, v, &fd) != napi_ok || fd < 0) return false;
  *out = fd;
  return true;
}

static bool get_u8(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  bool is_typed = false;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed) return false;
  napi_typedarray_type type;
  void *p;
  if (napi_get_typedarray_info(env, v, &type, len, &p, NULL, NULL) != napi_ok) return false;
  if (type != napi_uint8_array) return false;
  *data = p;
  return true;
}

/* listxattrat(2) (Linux 6.13): a name's xattr list from its directory's
 * descriptor, the name itself not followed. It costs a quarter of llistxattr
 * on "/proc/self/fd/N/name" (1.0 us against 4.2 us per file measured here),
 * whose magic link walk is the expensive part; older kernels (ENOSYS) and
 * libcs without the number get that path, as util/confine.ts reaches names. */
#ifndef SYS_listxattrat
#if defined(__x86_64__) || defined(__aarch64__) || defined(__riscv)
#define SYS_listxattrat 465
#endif
#endif

static int no_listxattrat; /* set once the kernel said ENOSYS; racing threads only repeat the probe */

static ssize_t list_xattr_at(int dirfd, const char *name, char *proc_path, int prefix, char *buf, size_t size) {
#ifdef SYS_listxattrat
  if (!__atomic_load_n(&no_listxattrat, __ATOMIC_RELAXED)) {
    long r = syscall(SYS_listxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, buf, size);
    if (r >= 0 || errno != ENOSYS) return (ssize_t)r;
    __atomic_store_n(&no_listxattrat, 1, __ATOMIC_RELAXED);
  }
#else
  (void)dirfd;
#endif
  size_t nlen = strlen(name);
  memcpy(proc_path + prefix, name, nlen + 1);
  return llistxattr(proc_path, buf, size);
}

/* A growable byte buffer (malloc'd), for the listing before it is copied out. */
typedef struct {
  uint8_t *p;
  size_t len, cap;
} grow_t;

static bool grow_reserve(grow_t *g, size_t more) {
  if (g->len + more <= g->cap) return true;
  size_t cap = g->cap ? g->cap : 16384;
  while (cap < g->len + more) cap *= 2;
  uint8_t *p = realloc(g->p, cap);
  if (p == NULL) return false;
  g->p = p;
  g->cap = cap;
  return true;
}

/* listDirectory(dirFd, wantXattrNames) -> ArrayBuffer:
 *   slot 0: the entry count N (double); slot 1: 0, or an errno that stopped
 *   the listing (readdir failed: the caller reports the directory unreadable);
 *   then N entries of L_SLOTS slots; then the bytes their offsets point at
 *   (names, and each xattr name list as llistxattr returns it: NUL-terminated
 *   names). An entry whose lstat failed has L_ERRNO set and no other field;
 *   L_XATTR_LEN is -errno when the list could not be read. "." and ".." are
 *   left out. The directory's own offset is rewound first and left at its end. */
static napi_value list_directory(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2)
    return fail(env, "ERR_INVALID_ARG_TYPE", "listDirectory(dirFd, wantXattrNames)");
  int dirfd;
  bool want_xattrs = false;
  if (!get_fd(env, argv[0], &dirfd)) return fail(env, "ERR_INVALID_ARG_TYPE", "dirFd must be a descriptor");
  if (napi_get_value_bool(env, argv[1], &want_xattrs) != napi_ok)
    return fail(env, "ERR_INVALID_ARG_TYPE", "wantXattrNames must be a boolean");

  /* Its own descriptor for the DIR stream: closedir closes it, not the caller's. */
  int own = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  DIR *d = own >= 0 ? fdopendir(own) : NULL;
  int stop_errno = 0;
  if (d == NULL) {
    stop_errno = errno;
    if (own >= 0) close(own);
  } else {
    rewinddir(d);
  }

  grow_t slots = {0}, bytes = {0};
  size_t count = 0;
  /* "/proc/self/fd/<dirfd>/" + name: how llistxattr reaches a name through the
   * directory's descriptor without following the name itself (util/confine.ts). */
  char path[64 + 256 + 1];
  int prefix = snprintf(path, 64, "/proc/self/fd/%d/", dirfd);
  char xbuf[4096];
  bool oom = false;

  while (d != NULL) {
    errno = 0;
    struct dirent *de = readdir(d);
    if (de == NULL) {
      stop_errno = errno;
      break;
    }
    const char *name = de->d_name;
    if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
    size_t nlen = strlen(name);
    if (!grow_reserve(&slots, L_SLOTS * sizeof(slot_t)) || !grow_reserve(&bytes, nlen)) {
      oom = true;
      break;
    }
    slot_t *s = (slot_t *)(slots.p + slots.len);
    memset(s, 0, L_SLOTS * sizeof(slot_t));
    slots.len += L_SLOTS * sizeof(slot_t);
    count++;
    s[L_NAME_OFF].d = (double)bytes.len;
    s[L_NAME_LEN].d = (double)nlen;
    memcpy(bytes.p + bytes.len, name, nlen);
    bytes.len += nlen;

    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      s[L_ERRNO].d = (double)errno;
      continue;
    }
    s[L_DEV].u = (uint64_t)st.st_dev;
    s[L_INO].u = (uint64_t)st.st_ino;
    s[L_MODE].d = (double)st.st_mode;
    s[L_NLINK].d = (double)st.st_nlink;
    s[L_UID].d = (double)st.st_uid;
    s[L_GID].d = (double)st.st_gid;
    s[L_RDEV].u = (uint64_t)st.st_rdev;
    s[L_SIZE].i = (int64_t)st.st_size;
    s[L_BLOCKS].i = (int64_t)st.st_blocks;
    s[L_ATIME_S].i = (int64_t)st.st_atim.tv_sec;
    s[L_ATIME_NS].d = (double)st.st_atim.tv_nsec;
    s[L_MTIME_S].i = (int64_t)st.st_mtim.tv_sec;
    s[L_MTIME_NS].d = (double)st.st_mtim.tv_nsec;
    s[L_CTIME_S].i = (int64_t)st.st_ctim.tv_sec;
    s[L_CTIME_NS].d = (double)st.st_ctim.tv_nsec;

    if (!want_xattrs || S_ISSOCK(st.st_mode) || prefix < 0 || nlen > 255) continue;
    ssize_t xl = list_xattr_at(dirfd, name, path, prefix, xbuf, sizeof xbuf);
    char *list = xbuf;
    char *big = NULL;
    if (xl < 0 && errno == ERANGE) {
      /* More names than the stack buffer holds: ask for the size, then read it. */
      for (int tries = 0; tries < 4 && xl < 0 && (errno == ERANGE || tries == 0); tries++) {
        ssize_t want = list_xattr_at(dirfd, name, path, prefix, NULL, 0);
        if (want < 0) break;
        free(big);
        big = malloc((size_t)want + 1);
        if (big == NULL) {
          errno = ENOMEM;
          xl = -1;
          break;
        }
        xl = list_xattr_at(dirfd, name, path, prefix, big, (size_t)want + 1);
      }
      list = big;
    }
    if (xl < 0) {
      s[L_XATTR_LEN].d = -(double)errno;
    } else if (xl > 0) {
      if (!grow_reserve(&bytes, (size_t)xl)) {
        free(big);
        oom = true;
        break;
      }
      s[L_XATTR_OFF].d = (double)bytes.len;
      s[L_XATTR_LEN].d = (double)xl;
      memcpy(bytes.p + bytes.len, list, (size_t)xl);
      bytes.len += (size_t)xl;
    }
    free(big);
  }
  if (d != NULL) closedir(d);
  if (oom) {
    free(slots.p);
    free(bytes.p);
    napi_throw_error(env, "ENOMEM", "out of memory listing a directory");
    return NULL;
  }

  size_t total = 2 * sizeof(slot_t) + slots.len + bytes.len;
  void *ab_data;
  napi_value ab;
  if (napi_create_arraybuffer(env, total, &ab_data, &ab) != napi_ok) {
    free(slots.p);
    free(bytes.p);
    napi_throw_error(env, NULL, "cannot allocate the listing");
    return NULL;
  }
  slot_t head[2];
  head[0].d = (double)count;
  head[1].d = (double)stop_errno;
  memcpy(ab_data, head, sizeof head);
  if (slots.len) memcpy((uint8_t *)ab_data + sizeof head, slots.p, slots.len);
  if (bytes.len) memcpy((uint8_t *)ab_data + sizeof head + slots.len, bytes.p, bytes.len);
  free(slots.p);
  free(bytes.p);
  return ab;
}

/* Reads from the file's current offset into p until `enough` bytes are in
 * (asking for up to `len`, which may be one more, to see a file that grew),
 * or the end of the file, or a read error, whose errno is then in *err (0
 * otherwise). Returns the count. A file of the size recorded takes one read. */
static size_t read_some(int fd, uint8_t *p, size_t enough, size_t len, int *err) {
  size_t got = 0;
  *err = 0;
  while (got < enough) {
    ssize_t n = read(fd, p + got, len - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      break;
    }
    if (n == 0) break;
    got += (size_t)n;
  }
  return got;
}

/* readFiles(dirFd, names: Uint8Array, desc: ArrayBuffer-backed Uint8Array, out: Uint8Array) -> undefined.
 * desc holds R_SLOTS slots per file: its name (offset and length in names),
 * the (dev, ino) the walker listed, its recorded size, where its data goes
 * in out; this fills in its outcome and errno. Each file's data area in out
 * is size bytes plus the zero padding to the next 512-byte block, all of
 * which is written whatever happens: exactly size bytes of data (zeros for
 * what could not be read) and zeros after. A file that cannot be opened, or
 * is not the one listed, leaves its area untouched (OUT_OPEN_FAILED,
 * OUT_CHANGED): the caller leaves it out of the stream. */
static napi_value read_files(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4)
    return fail(env, "ERR_INVALID_ARG_TYPE", "readFiles(dirFd, names, desc, out)");
  int dirfd;
  uint8_t *names, *descb, *out;
  size_t names_len, desc_len, out_len;
  if (!get_fd(env, argv[0], &dirfd)) return fail(env, "ERR_INVALID_ARG_TYPE", "dirFd must be a descriptor");
  if (!get_u8(env, argv[1], &names, &names_len) || !get_u8(env, argv[2], &descb, &desc_len) ||
      !get_u8(env, argv[3], &out, &out_len))
    return fail(env, "ERR_INVALID_ARG_TYPE", "names, desc and out must be Uint8Arrays");
  if (((uintptr_t)descb & 7) != 0 || desc_len % (R_SLOTS * sizeof(slot_t)) != 0)
    return fail(env, "ERR_INVALID_ARG_VALUE", "desc must be 8-byte aligned whole entries");
  size_t count = desc_len / (R_SLOTS * sizeof(slot_t));
  char name[256];
  uint8_t probe;

  for (size_t i = 0; i < count; i++) {
    slot_t *s = (slot_t *)descb + i * R_SLOTS;
    double noff = s[R_NAME_OFF].d, nlen = s[R_NAME_LEN].d, size_d = s[R_SIZE].d, dest_d = s[R_DEST].d;
    size_t pad = 0;
    if (!(noff >= 0 && nlen >= 1 && nlen <= 255 && noff + nlen <= (double)names_len && size_d >= 0 &&
          dest_d >= 0)) {
      s[R_OUTCOME].d = OUT_OPEN_FAILED;
      s[R_ERRNO].d = EINVAL;
      continue;
    }
    size_t size = (size_t)size_d, dest = (size_t)dest_d;
    pad = (512 - size % 512) % 512;
    if (dest + size + pad > out_len || dest + size + pad < dest) {
      s[R_OUTCOME].d = OUT_OPEN_FAILED;
      s[R_ERRNO].d = EINVAL;
      continue;
    }
    memcpy(name, names + (size_t)noff, (size_t)nlen);
    name[(size_t)nlen] = '\0';
    s[R_ERRNO].d = 0;
    /* O_NONBLOCK: a fifo swapped in for the file must not block the open
     * (the fstat below then refuses it); O_NOFOLLOW: nor a symlink followed. */
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
      s[R_OUTCOME].d = OUT_OPEN_FAILED;
      s[R_ERRNO].d = errno;
      continue;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
      s[R_OUTCOME].d = OUT_OPEN_FAILED;
      s[R_ERRNO].d = errno;
      close(fd);
      continue;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_dev != s[R_DEV].u || (uint64_t)st.st_ino != s[R_INO].u) {
      s[R_OUTCOME].d = OUT_CHANGED;
      close(fd);
      continue;
    }
    uint8_t *p = out + dest;
    /* One byte more than recorded when there is padding to hold it: a file
     * that grew says so without another system call. */
    size_t ask = pad > 0 ? size + 1 : size;
    int err;
    size_t got = read_some(fd, p, size, ask, &err);
    int outcome = OUT_OK;
    if (err != 0 && got < size) {
      s[R_ERRNO].d = err;
      outcome = OUT_READ_FAILED;
    } else if (got < size) {
      outcome = OUT_SHRANK;
    } else if (got > size) {
      outcome = OUT_GREW;
      got = size;
    } else if (pad == 0) {
      /* No padding to read the extra byte into (a multiple of 512 bytes, or empty): ask once more. */
      ssize_t more = read(fd, &probe, 1);
      if (more > 0) outcome = OUT_GREW;
    }
    memset(p + got, 0, size - got + pad);
    close(fd);
    s[R_OUTCOME].d = outcome;
  }
  return NULL;
}

bool register_batch(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "listDirectory", NAPI_AUTO_LENGTH, list_directory, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "listDirectory", fn) != napi_ok)
    return false;
  if (napi_create_function(env, "readFiles", NAPI_AUTO_LENGTH, read_files, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "readFiles", fn) != napi_ok)
    return false;
  return true;
}
