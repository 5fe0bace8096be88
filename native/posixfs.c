/* Node cannot set file times to the nanosecond (libuv's utimes takes doubles and
 * truncates to microseconds) and has no mknod/mkfifo, which restores need; this
 * Node-API addon wraps utimensat(2) with integer nanoseconds, and mknod(2).
 * Node has no extended-attribute calls at all and no lseek(SEEK_DATA/SEEK_HOLE)
 * (its fs offers neither a whence nor the xattr syscalls), which backing up
 * xattrs, ACLs and sparse files needs: [l]listxattr, [l]getxattr, [l]setxattr
 * and the data regions of an open file are here too (docs/metadata.md).
 * It also reaches glibc's malloc settings, which Node does not expose: a server
 * that starts and ends threads all day keeps freed memory in malloc's arenas
 * unless told otherwise (docs/memory.md). */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/sysmacros.h>
#endif
#include <time.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <node_api.h>

#include "batch.h"

/* Evaluates a Node-API call; on failure makes sure an exception is pending and
 * returns NULL from the calling function. */
#define CHECK(env, call)                                                       \
  do {                                                                         \
    if ((call) != napi_ok) {                                                   \
      throw_napi_failure(env);                                                 \
      return NULL;                                                             \
    }                                                                          \
  } while (0)

static void throw_napi_failure(napi_env env) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  const char *msg = info != NULL && info->error_message != NULL ? info->error_message
                                                                : "Node-API call failed";
  napi_throw_error(env, NULL, msg);
}

static napi_value throw_arg_type(napi_env env, const char *name, const char *type) {
  char msg[160];
  snprintf(msg, sizeof msg, "The \"%s\" argument must be of type %s", name, type);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

static napi_value throw_out_of_range(napi_env env, const char *name, const char *range) {
  char msg[160];
  snprintf(msg, sizeof msg, "The value of \"%s\" is out of range. It must be %s", name, range);
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
  return NULL;
}

/* ---- errors shaped like Node's fs errors ---------------------------------- */

static const struct {
  int err;
  const char *name;
} errno_names[] = {
    {ENOENT, "ENOENT"},   {EEXIST, "EEXIST"}, {EACCES, "EACCES"},
    {EPERM, "EPERM"},     {ENOTDIR, "ENOTDIR"}, {ELOOP, "ELOOP"},
    {EINVAL, "EINVAL"},   {ENAMETOOLONG, "ENAMETOOLONG"}, {EROFS, "EROFS"},
    {ENOSPC, "ENOSPC"},   {EIO, "EIO"},       {EBADF, "EBADF"},
    {EFAULT, "EFAULT"},   {ENOMEM, "ENOMEM"}, {EDQUOT, "EDQUOT"},
    {EOVERFLOW, "EOVERFLOW"}, {ENOSYS, "ENOSYS"}, {EISDIR, "EISDIR"},
    {ENODATA, "ENODATA"}, {EOPNOTSUPP, "EOPNOTSUPP"}, {ERANGE, "ERANGE"},
    {E2BIG, "E2BIG"},     {ENXIO, "ENXIO"},   {ESPIPE, "ESPIPE"},
};

static const char *errno_name(int err, char *buf, size_t len) {
  for (size_t i = 0; i < sizeof errno_names / sizeof errno_names[0]; i++) {
    if (errno_names[i].err == err) return errno_names[i].name;
  }
  snprintf(buf, len, "E%d", err);
  return buf;
}

/* strerror() may share a static buffer between threads (workers); use the
 * reentrant variant, whose signature differs between glibc and POSIX. */
static const char *describe(int err, char *buf, size_t len) {
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
  return strerror_r(err, buf, len);
#else
  if (strerror_r(err, buf, len) != 0) snprintf(buf, len, "Unknown error %d", err);
  return buf;
#endif
}

static bool set_string(napi_env env, napi_value obj, const char *key, const char *value) {
  napi_value v;
  return napi_create_string_utf8(env, value, NAPI_AUTO_LENGTH, &v) == napi_ok &&
         napi_set_named_property(env, obj, key, v) == napi_ok;
}

/* Throws `CODE: description, syscall 'path'` with code, errno (negative, as
 * Node's), syscall and path. */
static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  char namebuf[24], descbuf[256];
  const char *code = errno_name(err, namebuf, sizeof namebuf);
  const char *desc = describe(err, descbuf, sizeof descbuf);
  size_t len = strlen(code) + strlen(desc) + strlen(syscall) + strlen(path) + 16;
  char *msg = malloc(len);
  if (msg == NULL) {
    napi_throw_error(env, code, desc);
    return NULL;
  }
  snprintf(msg, len, "%s: %s, %s '%s'", code, desc, syscall, path);

  napi_value message, code_value, error, errno_value;
  bool ok = napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message) == napi_ok &&
            napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value) == napi_ok &&
            napi_create_error(env, code_value, message, &error) == napi_ok &&
            napi_create_int32(env, -err, &errno_value) == napi_ok &&
            napi_set_named_property(env, error, "errno", errno_value) == napi_ok &&
            set_string(env, error, "code", code) && set_string(env, error, "syscall", syscall) &&
            set_string(env, error, "path", path);
  free(msg);
  if (ok) {
    napi_throw(env, error);
  } else {
    throw_napi_failure(env);
  }
  return NULL;
}

/* ---- argument readers: each throws and returns false on a bad argument ---- */

/* Reads a byte-string argument (a Buffer or other Uint8Array, the bytes of a
 * name as the file system holds them, or a string, taken as UTF-8) into a
 * malloc'd NUL-terminated buffer the caller frees. Empty, or with a NUL byte
 * inside: refused. */
static bool get_bytes(napi_env env, napi_value value, const char *name, char **out, size_t *out_len) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  bool is_typed = false;
  if (type == napi_object && napi_is_typedarray(env, value, &is_typed) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  char *buf = NULL;
  size_t len = 0;
  if (is_typed) {
    napi_typedarray_type ta_type;
    void *data = NULL;
    if (napi_get_typedarray_info(env, value, &ta_type, &len, &data, NULL, NULL) != napi_ok) {
      throw_napi_failure(env);
      return false;
    }
    if (ta_type != napi_uint8_array) {
      throw_arg_type(env, name, "string or Buffer");
      return false;
    }
    buf = malloc(len + 1);
    if (buf == NULL) {
      napi_throw_error(env, "ENOMEM", "out of memory");
      return false;
    }
    if (len > 0) memcpy(buf, data, len);
    buf[len] = '\0';
  } else if (type == napi_string) {
    if (napi_get_value_string_utf8(env, value, NULL, 0, &len) != napi_ok) {
      throw_napi_failure(env);
      return false;
    }
    buf = malloc(len + 1);
    if (buf == NULL) {
      napi_throw_error(env, "ENOMEM", "out of memory");
      return false;
    }
    if (napi_get_value_string_utf8(env, value, buf, len + 1, &len) != napi_ok) {
      free(buf);
      throw_napi_failure(env);
      return false;
    }
  } else {
    throw_arg_type(env, name, "string or Buffer");
    return false;
  }
  if (len == 0 || strlen(buf) != len) {
    free(buf);
    char msg[160];
    snprintf(msg, sizeof msg,
             "The argument '%s' must be a non-empty string or Buffer without null bytes", name);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", msg);
    return false;
  }
  *out = buf;
  if (out_len != NULL) *out_len = len;
  return true;
}

/* A path argument: a Buffer (the exact bytes) or a string (UTF-8). */
static bool get_path(napi_env env, napi_value value, const char *name, char **out) {
  return get_bytes(env, value, name, out, NULL);
}

static bool get_bigint_seconds(napi_env env, napi_value value, const char *name, time_t *out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (type != napi_bigint) {
    throw_arg_type(env, name, "bigint");
    return false;
  }
  int64_t v;
  bool lossless;
  if (napi_get_value_bigint_int64(env, value, &v, &lossless) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (!lossless || (int64_t)(time_t)v != v) {
    throw_out_of_range(env, name, "a time_t (a signed 64-bit integer)");
    return false;
  }
  *out = (time_t)v;
  return true;
}

/* An integer Number in [0, max]. */
static bool get_uint(napi_env env, napi_value value, const char *name, double max,
                     const char *range, uint32_t *out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (type != napi_number) {
    throw_arg_type(env, name, "number");
    return false;
  }
  double d;
  if (napi_get_value_double(env, value, &d) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  /* The comparison is false for NaN, so NaN is refused too. */
  if (!(d >= 0 && d <= max) || d != (double)(uint32_t)d) {
    throw_out_of_range(env, name, range);
    return false;
  }
  *out = (uint32_t)d;
  return true;
}

static bool get_bool(napi_env env, napi_value value, const char *name, bool *out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (type != napi_boolean) {
    throw_arg_type(env, name, "boolean");
    return false;
  }
  if (napi_get_value_bool(env, value, out) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  return true;
}

/* ---- exported functions --------------------------------------------------- */

/* setTimes(path, atimeSec: bigint, atimeNsec, mtimeSec: bigint, mtimeNsec, followSymlinks) */
static napi_value set_times(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  /* Missing arguments read as undefined, which the type checks refuse. */

  char *path;
  if (!get_path(env, argv[0], "path", &path)) return NULL;
  struct timespec ts[2];
  uint32_t ansec, mnsec;
  bool follow;
  if (!get_bigint_seconds(env, argv[1], "atimeSec", &ts[0].tv_sec) ||
      !get_uint(env, argv[2], "atimeNsec", 999999999, ">= 0 and <= 999999999", &ansec) ||
      !get_bigint_seconds(env, argv[3], "mtimeSec", &ts[1].tv_sec) ||
      !get_uint(env, argv[4], "mtimeNsec", 999999999, ">= 0 and <= 999999999", &mnsec) ||
      !get_bool(env, argv[5], "followSymlinks", &follow)) {
    free(path);
    return NULL;
  }
  ts[0].tv_nsec = ansec;
  ts[1].tv_nsec = mnsec;

  int rc = utimensat(AT_FDCWD, path, ts, follow ? 0 : AT_SYMLINK_NOFOLLOW);
  int err = errno;
  if (rc != 0) throw_errno(env, err, "utimensat", path);
  free(path);
  return NULL;
}

/* mknod(path, mode, major, minor): mode holds the file type (S_IFIFO, S_IFCHR,
 * S_IFBLK) and the permission bits; the umask applies, as for mknod(2). */
static napi_value make_node(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));

  char *path;
  if (!get_path(env, argv[0], "path", &path)) return NULL;
  uint32_t mode, major_no, minor_no;
  if (!get_uint(env, argv[1], "mode", 4294967295.0, ">= 0 and <= 4294967295", &mode) ||
      !get_uint(env, argv[2], "major", 4294967295.0, ">= 0 and <= 4294967295", &major_no) ||
      !get_uint(env, argv[3], "minor", 4294967295.0, ">= 0 and <= 4294967295", &minor_no)) {
    free(path);
    return NULL;
  }

  int rc = mknod(path, (mode_t)mode, makedev(major_no, minor_no));
  int err = errno;
  if (rc != 0) throw_errno(env, err, "mknod", path);
  free(path);
  return NULL;
}

/* mallocTune(arenaMax, mmapThreshold): mallopt(M_ARENA_MAX) and
 * mallopt(M_MMAP_THRESHOLD) for each argument > 0. A fixed mmap threshold also
 * turns off glibc's sliding one, which otherwise rises to the largest block
 * freed so far (up to 32 MiB), so later large blocks come from the arenas and
 * stay there. Returns false where malloc is not glibc's or a setting is refused. */
static napi_value malloc_tune(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t arena_max, mmap_threshold;
  if (!get_uint(env, argv[0], "arenaMax", 1024, ">= 0 and <= 1024", &arena_max) ||
      !get_uint(env, argv[1], "mmapThreshold", 33554432, ">= 0 and <= 33554432", &mmap_threshold))
    return NULL;
  bool ok = false;
#ifdef __GLIBC__
  ok = true;
  if (arena_max > 0 && mallopt(M_ARENA_MAX, (int)arena_max) != 1) ok = false;
  if (mmap_threshold > 0 && mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold) != 1) ok = false;
#endif
  napi_value result;
  CHECK(env, napi_get_boolean(env, ok, &result));
  return result;
}

/* mallocTrim(): malloc_trim(0), which gives the free pages of every arena back
 * to the system. Returns whether anything was released (false off glibc). */
static napi_value malloc_trim_all(napi_env env, napi_callback_info info) {
  (void)info;
  bool released = false;
#ifdef __GLIBC__
  released = malloc_trim(0) == 1;
#endif
  napi_value result;
  CHECK(env, napi_get_boolean(env, released, &result));
  return result;
}

/* ---- extended attributes ------------------------------------------------ */

/* First try with this much room: nearly every file's list and values fit, so
 * one system call per file with none (the common case) or with small ones. */
#define XATTR_FIRST_TRY 4096
/* A list or value that keeps growing between the size query and the read
 * (another process setting attributes meanwhile) is given up after this many
 * rounds, with ERANGE. */
#define XATTR_ROUNDS 4

/* Calls list (name == NULL) or get, the l- variant unless `follow`, into a
 * buffer grown as the kernel says; on success *out is a malloc'd buffer (or
 * the caller's `first`) of *out_len bytes. Returns 0 or an errno. */
static int xattr_read(const char *path, const char *name, bool follow, char *first,
                      char **out, ssize_t *out_len) {
  char *buf = first;
  size_t cap = XATTR_FIRST_TRY;
  for (int round = 0; round < XATTR_ROUNDS; round++) {
    ssize_t n = name == NULL ? (follow ? listxattr(path, buf, cap) : llistxattr(path, buf, cap))
                             : (follow ? getxattr(path, name, buf, cap)
                                       : lgetxattr(path, name, buf, cap));
    if (n >= 0) {
      *out = buf;
      *out_len = n;
      return 0;
    }
    int err = errno;
    if (err != ERANGE) {
      if (buf != first) free(buf);
      return err;
    }
    /* Too small: ask for the size now, with some room for growth. */
    ssize_t need = name == NULL ? (follow ? listxattr(path, NULL, 0) : llistxattr(path, NULL, 0))
                                : (follow ? getxattr(path, name, NULL, 0)
                                          : lgetxattr(path, name, NULL, 0));
    if (need < 0) {
      err = errno;
      if (buf != first) free(buf);
      return err;
    }
    if (buf != first) free(buf);
    cap = (size_t)need + 256;
    buf = malloc(cap);
    if (buf == NULL) return ENOMEM;
  }
  if (buf != first) free(buf);
  return ERANGE;
}

static napi_value xattr_result(napi_env env, char *buf, ssize_t len, char *first) {
  napi_value result;
  void *copy;
  napi_status st = napi_create_buffer_copy(env, (size_t)len, buf, &copy, &result);
  if (buf != first) free(buf);
  if (st != napi_ok) {
    throw_napi_failure(env);
    return NULL;
  }
  return result;
}

/* listXattr(path, follow): the attribute names, as the kernel gives them
 * (each NUL-terminated, back to back), in a Buffer; empty when there are none. */
static napi_value list_xattr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *path;
  if (!get_path(env, argv[0], "path", &path)) return NULL;
  bool follow;
  if (!get_bool(env, argv[1], "followSymlinks", &follow)) {
    free(path);
    return NULL;
  }
  char first[XATTR_FIRST_TRY];
  char *buf;
  ssize_t len;
  int err = xattr_read(path, NULL, follow, first, &buf, &len);
  if (err != 0) {
    throw_errno(env, err, follow ? "listxattr" : "llistxattr", path);
    free(path);
    return NULL;
  }
  free(path);
  return xattr_result(env, buf, len, first);
}

/* getXattr(path, name, follow): the value's bytes (ENODATA: no such attribute). */
static napi_value get_xattr(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *path, *name;
  if (!get_path(env, argv[0], "path", &path)) return NULL;
  if (!get_bytes(env, argv[1], "name", &name, NULL)) {
    free(path);
    return NULL;
  }
  bool follow;
  if (!get_bool(env, argv[2], "followSymlinks", &follow)) {
    free(path);
    free(name);
    return NULL;
  }
  char first[XATTR_FIRST_TRY];
  char *buf;
  ssize_t len;
  int err = xattr_read(path, name, follow, first, &buf, &len);
  free(name);
  if (err != 0) {
    throw_errno(env, err, follow ? "getxattr" : "lgetxattr", path);
    free(path);
    return NULL;
  }
  free(path);
  return xattr_result(env, buf, len, first);
}

/* setXattr(path, name, value: Uint8Array, follow): creates or replaces it. */
static napi_value set_xattr(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *path, *name;
  if (!get_path(env, argv[0], "path", &path)) return NULL;
  if (!get_bytes(env, argv[1], "name", &name, NULL)) {
    free(path);
    return NULL;
  }
  bool is_typed = false;
  napi_typedarray_type ta_type = napi_int8_array;
  size_t len = 0;
  void *data = NULL;
  if (napi_is_typedarray(env, argv[2], &is_typed) == napi_ok && is_typed)
    napi_get_typedarray_info(env, argv[2], &ta_type, &len, &data, NULL, NULL);
  bool follow;
  if (!is_typed || ta_type != napi_uint8_array) {
    throw_arg_type(env, "value", "Buffer");
  } else if (get_bool(env, argv[3], "followSymlinks", &follow)) {
    /* An empty value is a valid attribute; the kernel wants a non-NULL pointer regardless. */
    const void *bytes = len == 0 ? (const void *)"" : data;
    int rc = follow ? setxattr(path, name, bytes, len, 0) : lsetxattr(path, name, bytes, len, 0);
    int err = errno;
    if (rc != 0) throw_errno(env, err, follow ? "setxattr" : "lsetxattr", path);
  }
  free(path);
  free(name);
  return NULL;
}

/* ---- sparse files ---------------------------------------------------------- */

/* dataRegions(fd, size, maxRegions): the data regions of an open file below
 * `size`, by lseek(SEEK_DATA) and lseek(SEEK_HOLE), as a BigInt64Array of
 * (offset, length) pairs in file order (a sparse file may be 8 EiB long: its
 * size and offsets do not fit a double; `size` comes as a number or a bigint). At most maxRegions: the last one then
 * runs to `size` (the rest of the file is read densely, holes as zeros). A file
 * system without SEEK_DATA support (EINVAL) is one region, the whole file.
 * The file offset is left at 0. */
static napi_value data_regions(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  int64_t size_i;
  uint32_t max_regions;
  napi_valuetype type;
  CHECK(env, napi_typeof(env, argv[0], &type));
  if (type != napi_number) return throw_arg_type(env, "fd", "number");
  CHECK(env, napi_get_value_int32(env, argv[0], &fd));
  CHECK(env, napi_typeof(env, argv[1], &type));
  if (type == napi_bigint) {
    bool lossless;
    CHECK(env, napi_get_value_bigint_int64(env, argv[1], &size_i, &lossless));
    if (!lossless || size_i < 0) return throw_out_of_range(env, "size", ">= 0 and <= 2**63 - 1");
  } else if (type == napi_number) {
    double size_d;
    CHECK(env, napi_get_value_double(env, argv[1], &size_d));
    if (!(size_d >= 0 && size_d <= 9007199254740991.0) || size_d != (double)(int64_t)size_d)
      return throw_out_of_range(env, "size", ">= 0 and <= 2**53 - 1 (a bigint beyond)");
    size_i = (int64_t)size_d;
  } else {
    return throw_arg_type(env, "size", "number or bigint");
  }
  if (!get_uint(env, argv[2], "maxRegions", 1048576, ">= 1 and <= 1048576", &max_regions))
    return NULL;
  if (max_regions == 0) return throw_out_of_range(env, "maxRegions", ">= 1 and <= 1048576");
  off_t size = (off_t)size_i;

  size_t cap = 16, count = 0;
  int64_t *pairs = malloc(cap * 2 * sizeof(int64_t));
  if (pairs == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  off_t pos = 0;
  int err = 0;
  while (pos < size) {
    off_t data = lseek(fd, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break; /* nothing but a hole from pos on */
      err = errno;
      break;
    }
    if (data >= size) break;
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) {
      err = errno;
      break;
    }
    if (hole > size) hole = size;
    if (count + 1 == max_regions) hole = size; /* the bound: the rest in one region */
    if (count == cap) {
      int64_t *grown = realloc(pairs, cap * 4 * sizeof(int64_t));
      if (grown == NULL) {
        err = ENOMEM;
        break;
      }
      pairs = grown;
      cap *= 2;
    }
    pairs[2 * count] = (int64_t)data;
    pairs[2 * count + 1] = (int64_t)(hole - data);
    count++;
    pos = hole;
  }
  if (err == EINVAL || err == EOPNOTSUPP) {
    /* No SEEK_DATA here: the whole file is data. */
    err = 0;
    count = 0;
    if (size > 0) {
      pairs[0] = 0;
      pairs[1] = (int64_t)size;
      count = 1;
    }
  }
  (void)lseek(fd, 0, SEEK_SET);
  if (err != 0) {
    free(pairs);
    return throw_errno(env, err, "lseek", "(open file)");
  }
  napi_value array_buffer, result;
  void *bytes;
  napi_status st = napi_create_arraybuffer(env, count * 2 * sizeof(int64_t), &bytes, &array_buffer);
  if (st == napi_ok) {
    if (count > 0) memcpy(bytes, pairs, count * 2 * sizeof(int64_t));
    st = napi_create_typedarray(env, napi_bigint64_array, count * 2, array_buffer, 0, &result);
  }
  free(pairs);
  if (st != napi_ok) {
    throw_napi_failure(env);
    return NULL;
  }
  return result;
}

/* ---- write-behind for the virtual tape's data file (docs/tape-image.md) ----
 * A backup streams hundreds of MiB into one file. Left to the page cache, its
 * dirty pages pile up until the kernel's dirty-page throttle makes the writer
 * itself wait inside pwrite; Node offers no sync_file_range, posix_fadvise or
 * fallocate to start the writeback of what was just written, to drop pages
 * once they are clean, or to allocate ahead, so the tape's writer reaches
 * them here. Offsets and lengths are Numbers (tape offsets stay below 2^53). */

static bool get_fd_range(napi_env env, napi_callback_info info, int *fd, off_t *offset,
                         off_t *length) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  napi_valuetype type;
  if (napi_typeof(env, argv[0], &type) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (type != napi_number) {
    throw_arg_type(env, "fd", "number");
    return false;
  }
  int32_t fd_i;
  if (napi_get_value_int32(env, argv[0], &fd_i) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  const char *names[2] = {"offset", "length"};
  off_t *outs[2] = {offset, length};
  for (int i = 0; i < 2; i++) {
    if (napi_typeof(env, argv[i + 1], &type) != napi_ok) {
      throw_napi_failure(env);
      return false;
    }
    if (type != napi_number) {
      throw_arg_type(env, names[i], "number");
      return false;
    }
    double d;
    if (napi_get_value_double(env, argv[i + 1], &d) != napi_ok) {
      throw_napi_failure(env);
      return false;
    }
    if (!(d >= 0 && d <= 9007199254740991.0) || d != (double)(int64_t)d) {
      throw_out_of_range(env, names[i], ">= 0 and <= 2**53 - 1");
      return false;
    }
    *outs[i] = (off_t)d;
  }
  *fd = fd_i;
  return true;
}

static napi_value range_result(napi_env env, int rc, int err, const char *syscall) {
  if (rc != 0) return throw_errno(env, err, syscall, "(open file)");
  napi_value undefined;
  CHECK(env, napi_get_undefined(env, &undefined));
  return undefined;
}

/* startWriteback(fd, offset, length): queues the range's dirty pages for
 * writing and returns without waiting for them (SYNC_FILE_RANGE_WRITE). */
static napi_value start_writeback(napi_env env, napi_callback_info info) {
  int fd;
  off_t offset, length;
  if (!get_fd_range(env, info, &fd, &offset, &length)) return NULL;
#ifdef __linux__
  int rc = sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
  return range_result(env, rc, errno, "sync_file_range");
#else
  return range_result(env, 0, 0, "sync_file_range");
#endif
}

/* awaitWriteback(fd, offset, length): writes the range's dirty pages and waits
 * until they are on the device (all three SYNC_FILE_RANGE flags); no metadata,
 * no device cache flush: not an fsync. */
static napi_value await_writeback(napi_env env, napi_callback_info info) {
  int fd;
  off_t offset, length;
  if (!get_fd_range(env, info, &fd, &offset, &length)) return NULL;
#ifdef __linux__
  int rc = sync_file_range(fd, offset, length,
                           SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                               SYNC_FILE_RANGE_WAIT_AFTER);
  return range_result(env, rc, errno, "sync_file_range");
#else
  return range_result(env, fdatasync(fd), errno, "fdatasync");
#endif
}

/* dropCachedPages(fd, offset, length): posix_fadvise(POSIX_FADV_DONTNEED); the
 * kernel drops the range's clean pages (dirty ones stay). */
static napi_value drop_cached_pages(napi_env env, napi_callback_info info) {
  int fd;
  off_t offset, length;
  if (!get_fd_range(env, info, &fd, &offset, &length)) return NULL;
  int err = posix_fadvise(fd, offset, length, POSIX_FADV_DONTNEED); /* returns the error */
  return range_result(env, err, err, "posix_fadvise");
}

/* preallocate(fd, offset, length): allocates blocks for the range without
 * changing the file's size (fallocate FALLOC_FL_KEEP_SIZE). */
static napi_value preallocate(napi_env env, napi_callback_info info) {
  int fd;
  off_t offset, length;
  if (!get_fd_range(env, info, &fd, &offset, &length)) return NULL;
#ifdef __linux__
  int rc = fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, length);
  return range_result(env, rc, errno, "fallocate");
#else
  return range_result(env, -1, EOPNOTSUPP, "fallocate");
#endif
}

/* ---- history hand-off: thread CPU time and the control socket's send state ---
 * docs/history.md, "Measured" and "What the kernel holds". Node has no
 * per-thread CPU clock before v23 (process.threadCpuUsage), no TCP_INFO and no
 * TCP_NOTSENT_LOWAT: the history thread's own CPU is what the benchmark
 * compares, and a control connection bounds the file history the kernel holds
 * unsent, so a reply or a notification does not queue behind megabytes of it. */

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>
#ifdef __linux__
/* The kernel's own header: glibc's struct tcp_info stops before tcpi_notsent_bytes. */
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#endif

/* threadCpuNs(): CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID), in
 * ns, as a Number (exact up to 104 days of CPU). -1 where the clock is missing. */
static napi_value thread_cpu_ns(napi_env env, napi_callback_info info) {
  (void)info;
  double ns = -1;
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) ns = (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
  napi_value result;
  CHECK(env, napi_create_double(env, ns, &result));
  return result;
}

/* setThreadName(name): names the calling thread (prctl PR_SET_NAME, 15 bytes
 * kept), so `top -H`, `ps -L` and /proc/PID/task/TID/comm tell a session's
 * reader from its data thread; Node 20 names no worker thread. False where it
 * cannot be set. */
static napi_value set_thread_name(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[16];
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "setThreadName(name): name must be a string");
    return NULL;
  }
  bool ok = false;
#ifdef __linux__
  ok = prctl(PR_SET_NAME, name, 0, 0, 0) == 0;
#endif
  napi_value result;
  CHECK(env, napi_get_boolean(env, ok, &result));
  return result;
}

/* setNotsentLowat(fd, bytes): setsockopt(TCP_NOTSENT_LOWAT): the kernel then
 * takes no more writes while more than `bytes` of what it holds are unsent.
 * False where the option does not exist or the fd is not a TCP socket. */
static napi_value set_notsent_lowat(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t fd, bytes;
  if (!get_uint(env, argv[0], "fd", 2147483647, ">= 0 and <= 2147483647", &fd) ||
      !get_uint(env, argv[1], "bytes", 2147483647, ">= 0 and <= 2147483647", &bytes))
    return NULL;
  bool ok = false;
#ifdef TCP_NOTSENT_LOWAT
  int v = (int)bytes;
  ok = setsockopt((int)fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof v) == 0;
#endif
  napi_value result;
  CHECK(env, napi_get_boolean(env, ok, &result));
  return result;
}

/* tcpSendState(fd, out: Uint32Array(3)): out[0] = bytes the kernel holds unsent
 * (tcpi_notsent_bytes), out[1] = the peer's advertised window (tcpi_snd_wnd,
 * Linux 5.4 on; 0xffffffff when the kernel does not say), out[2] = bytes
 * written and not yet acknowledged, unsent ones included (SIOCOUTQ). A
 * getsockopt and an ioctl, no allocation. False (out untouched) where TCP_INFO
 * cannot be read. */
static napi_value tcp_send_state(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t fd;
  if (!get_uint(env, argv[0], "fd", 2147483647, ">= 0 and <= 2147483647", &fd)) return NULL;
  bool is_typed = false;
  CHECK(env, napi_is_typedarray(env, argv[1], &is_typed));
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  if (is_typed) CHECK(env, napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL));
  if (!is_typed || type != napi_uint32_array || length < 3) return throw_arg_type(env, "out", "Uint32Array(3)");
  bool ok = false;
#if defined(__linux__) && defined(TCP_INFO)
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  memset(&ti, 0, sizeof ti);
  if (getsockopt((int)fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
      len >= offsetof(struct tcp_info, tcpi_notsent_bytes) + sizeof ti.tcpi_notsent_bytes) {
    uint32_t *out = data;
    out[0] = ti.tcpi_notsent_bytes;
    out[1] = len >= offsetof(struct tcp_info, tcpi_snd_wnd) + sizeof ti.tcpi_snd_wnd ? ti.tcpi_snd_wnd : 0xffffffffu;
    int outq = 0;
    out[2] = ioctl((int)fd, SIOCOUTQ, &outq) == 0 && outq >= 0 ? (uint32_t)outq : ti.tcpi_notsent_bytes;
    ok = true;
  }
#endif
  napi_value result;
  CHECK(env, napi_get_boolean(env, ok, &result));
  return result;
}

/* tryLockExclusive(fd): flock(fd, LOCK_EX | LOCK_NB). True when this open
 * file now holds the lock, false when another open file (another process, or
 * another open of the same file) holds it; throws on any other failure. The
 * kernel drops the lock when the last descriptor of the open file closes, so a
 * crashed holder never leaves it behind (the library lock, docs/changer.md). */
#include <sys/file.h>
static napi_value try_lock_exclusive(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t fd;
  if (argc < 1 || !get_uint(env, argv[0], "fd", 2147483647, ">= 0 and <= 2147483647", &fd)) return NULL;
  int rc;
  do rc = flock((int)fd, LOCK_EX | LOCK_NB);
  while (rc != 0 && errno == EINTR);
  if (rc != 0 && errno != EWOULDBLOCK) return throw_errno(env, errno, "flock", "library lock");
  napi_value result;
  CHECK(env, napi_get_boolean(env, rc == 0, &result));
  return result;
}

/* NAPI_MODULE_INIT defines a context-aware module: it is initialised once per
 * environment, so the main thread and every worker may load it. It keeps no
 * global state. */
NAPI_MODULE_INIT() {
  napi_value fn;
  if (!register_batch(env, exports)) {
    throw_napi_failure(env);
    return NULL;
  }
  CHECK(env, napi_create_function(env, "setTimes", NAPI_AUTO_LENGTH, set_times, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "setTimes", fn));
  CHECK(env, napi_create_function(env, "mknod", NAPI_AUTO_LENGTH, make_node, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "mknod", fn));
  CHECK(env, napi_create_function(env, "mallocTune", NAPI_AUTO_LENGTH, malloc_tune, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "mallocTune", fn));
  CHECK(env, napi_create_function(env, "mallocTrim", NAPI_AUTO_LENGTH, malloc_trim_all, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "mallocTrim", fn));
  CHECK(env, napi_create_function(env, "listXattr", NAPI_AUTO_LENGTH, list_xattr, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "listXattr", fn));
  CHECK(env, napi_create_function(env, "getXattr", NAPI_AUTO_LENGTH, get_xattr, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "getXattr", fn));
  CHECK(env, napi_create_function(env, "setXattr", NAPI_AUTO_LENGTH, set_xattr, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "setXattr", fn));
  CHECK(env, napi_create_function(env, "dataRegions", NAPI_AUTO_LENGTH, data_regions, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "dataRegions", fn));
  CHECK(env, napi_create_function(env, "startWriteback", NAPI_AUTO_LENGTH, start_writeback, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "startWriteback", fn));
  CHECK(env, napi_create_function(env, "awaitWriteback", NAPI_AUTO_LENGTH, await_writeback, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "awaitWriteback", fn));
  CHECK(env, napi_create_function(env, "dropCachedPages", NAPI_AUTO_LENGTH, drop_cached_pages, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "dropCachedPages", fn));
  CHECK(env, napi_create_function(env, "preallocate", NAPI_AUTO_LENGTH, preallocate, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "preallocate", fn));
  CHECK(env, napi_create_function(env, "tryLockExclusive", NAPI_AUTO_LENGTH, try_lock_exclusive, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "tryLockExclusive", fn));
  CHECK(env, napi_create_function(env, "threadCpuNs", NAPI_AUTO_LENGTH, thread_cpu_ns, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "threadCpuNs", fn));
  CHECK(env, napi_create_function(env, "setThreadName", NAPI_AUTO_LENGTH, set_thread_name, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "setThreadName", fn));
  CHECK(env, napi_create_function(env, "setNotsentLowat", NAPI_AUTO_LENGTH, set_notsent_lowat, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "setNotsentLowat", fn));
  CHECK(env, napi_create_function(env, "tcpSendState", NAPI_AUTO_LENGTH, tcp_send_state, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "tcpSendState", fn));
  return exports;
}
