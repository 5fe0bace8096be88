/*
 * The benchmark's C ceiling (issue 14, item 6): what one thread of plain C
 * does with the same tree and the same system calls a backup must make, so
 * `npm run bench` can say how far ndmpd is from the machine, not only from
 * GNU tar. It is a measuring stick, not an archiver: no pax records, no
 * xattrs, no ACLs, no history.
 *
 *   ceiling ROOT OUT
 *
 * Depth first, as GNU tar walks: every directory is read (getdents through
 * readdir) and every entry lstat'ed (fstatat with AT_SYMLINK_NOFOLLOW against
 * the directory's descriptor, the cheaper form of lstat GNU tar uses too);
 * every regular file is opened, read (its lstat size) and closed; symlinks
 * are read. Each entry is a 512-byte header block, and a file's data follows,
 * padded to 512 bytes, as in a tar stream; the stream goes to OUT in 1 MiB
 * writes (ndmpd's mover writes in large chunks too, bench/mover-throughput.ts),
 * and file data is read straight into that buffer, so no byte is copied in
 * user space. Built by bench/cc.ts with `cc -O2` at run time, so no
 * binary is committed.
 *
 * Prints "files dirs others bytes" (entries and stream bytes) on stdout.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK 512
#define OUTBUF (1 << 20)

static char *out;
static size_t used;
static int outfd;
static unsigned long long files, dirs, others, total;

static void die(const char *what, const char *path) {
  fprintf(stderr, "ceiling: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

static void flush(void) {
  size_t off = 0;
  while (off < used) {
    ssize_t n = write(outfd, out + off, used - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("write", "output");
    }
    off += (size_t)n;
  }
  total += used;
  used = 0;
}

/* Room for at least `n` more bytes (n ≤ OUTBUF). */
static void room(size_t n) {
  if (OUTBUF - used < n) flush();
}

/* A header block: the name and the numbers a tar header carries, in octal. */
static void header(const char *path, const struct stat *st, char type, const char *link) {
  room(BLOCK);
  char *h = out + used;
  memset(h, 0, BLOCK);
  /* Longer names are cut: the ceiling counts bytes and calls, it is not read back. */
  size_t n = strlen(path);
  memcpy(h, path, n < 100 ? n : 100);
  if (link) {
    n = strlen(link);
    memcpy(h + 157, link, n < 100 ? n : 100);
  }
  snprintf(h + 100, 8, "%07o", (unsigned)(st->st_mode & 07777));
  snprintf(h + 108, 8, "%07o", (unsigned)st->st_uid);
  snprintf(h + 116, 8, "%07o", (unsigned)st->st_gid);
  snprintf(h + 124, 12, "%011llo", (unsigned long long)(type == '0' ? st->st_size : 0));
  snprintf(h + 136, 12, "%011llo", (unsigned long long)st->st_mtime);
  h[156] = type;
  unsigned sum = 0;
  memset(h + 148, ' ', 8);
  for (int i = 0; i < BLOCK; i++) sum += (unsigned char)h[i];
  snprintf(h + 148, 8, "%06o", sum);
  used += BLOCK;
}

/*
 * A regular file's bytes, read straight into the output buffer, padded to a
 * block. It reads the size lstat gave, as tar does (a file that grew is cut
 * there, one that shrank ends early), so a small file costs one read, not a
 * second one to see the end.
 */
static void data(int dirfd, const char *name, const char *path, off_t size) {
  int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) die("open", path);
  for (off_t done = 0; done < size;) {
    room(BLOCK * 2);
    size_t want = OUTBUF - used;
    if ((off_t)want > size - done) want = (size_t)(size - done);
    ssize_t n = read(fd, out + used, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("read", path);
    }
    if (n == 0) break;
    used += (size_t)n;
    done += n;
  }
  close(fd);
  /* The stream's own offset decides the padding: the buffer is flushed at any byte. */
  size_t pad = (BLOCK - (total + used) % BLOCK) % BLOCK;
  room(pad);
  memset(out + used, 0, pad);
  used += pad;
}

static void walk(int dirfd, char *path, size_t len) {
  DIR *d = fdopendir(dirfd);
  if (!d) die("fdopendir", path);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    const char *name = e->d_name;
    if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
    size_t n = strlen(name);
    if (len + 1 + n + 1 > 4096) continue;
    path[len] = '/';
    memcpy(path + len + 1, name, n + 1);
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) die("lstat", path);
    if (S_ISREG(st.st_mode)) {
      header(path, &st, '0', NULL);
      data(dirfd, name, path, st.st_size);
      files++;
    } else if (S_ISDIR(st.st_mode)) {
      header(path, &st, '5', NULL);
      dirs++;
      int sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) die("open", path);
      walk(sub, path, len + 1 + n);
    } else {
      char target[4096] = "";
      if (S_ISLNK(st.st_mode)) {
        ssize_t t = readlinkat(dirfd, name, target, sizeof target - 1);
        if (t < 0) die("readlink", path);
        target[t] = 0;
      }
      header(path, &st, S_ISLNK(st.st_mode) ? '2' : '6', S_ISLNK(st.st_mode) ? target : NULL);
      others++;
    }
    path[len] = 0;
  }
  closedir(d);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: ceiling ROOT OUT\n");
    return 2;
  }
  out = aligned_alloc(4096, OUTBUF);
  if (!out) die("alloc", "buffer");
  outfd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (outfd < 0) die("open", argv[2]);
  int root = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) die("open", argv[1]);
  static char path[4096] = ".";
  walk(root, path, 1);
  /* The end of archive: two zero blocks, then the whole 10 KiB record, as tar ends. */
  room(BLOCK * 20);
  memset(out + used, 0, BLOCK * 2);
  used += BLOCK * 2;
  size_t rec = (10240 - (total + used) % 10240) % 10240;
  memset(out + used, 0, rec);
  used += rec;
  flush();
  if (close(outfd) != 0) die("close", argv[2]);
  printf("%llu %llu %llu %llu\n", files, dirs, others, total);
  return 0;
}
