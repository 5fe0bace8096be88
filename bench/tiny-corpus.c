/*
 * The corpus of bench/rss.ts: millions of tiny files, made fast. Peak memory
 * of a backup depends on the number of entries (walk state, history records,
 * spool), not on file bytes, so the files are 0-512 bytes and the generator's
 * cost is the file creations (the kernel's), not their data. Node would add a
 * binding crossing to each of the three calls per file; this runs at the
 * system calls' own speed.
 *
 *   tiny-corpus ROOT PARTS FILES_PER_PART FILES_PER_DIR SEED
 *
 * Makes ROOT/pNN/dNNNNN/fNNNNNN: PARTS parts of FILES_PER_PART files each,
 * FILES_PER_DIR files to a directory, each file's size (0..512) and bytes
 * from a seeded PRNG, so the same arguments make the same tree. One part
 * alone is a smaller corpus of the same shape (1 M files, of a 5 M tree).
 * Built by bench/cc.ts. Prints the files, directories and bytes made.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint32_t state;

/* mulberry32, as bench/corpus.ts uses. */
static uint32_t next(void) {
  uint32_t t = state += 0x6d2b79f5u;
  t = (t ^ (t >> 15)) * (t | 1u);
  t ^= t + (t ^ (t >> 7)) * (t | 61u);
  return t ^ (t >> 14);
}

static void die(const char *what, const char *path) {
  fprintf(stderr, "tiny-corpus: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: tiny-corpus ROOT PARTS FILES_PER_PART FILES_PER_DIR SEED\n");
    return 2;
  }
  const char *root = argv[1];
  long parts = atol(argv[2]), perPart = atol(argv[3]), perDir = atol(argv[4]);
  state = (uint32_t)strtoul(argv[5], NULL, 0);
  if (parts < 1 || perPart < 1 || perDir < 1) {
    fprintf(stderr, "tiny-corpus: counts must be positive\n");
    return 2;
  }
  static char fill[64 * 1024];
  for (size_t i = 0; i < sizeof fill; i += 4) {
    uint32_t w = next();
    memcpy(fill + i, &w, 4);
  }
  if (mkdir(root, 0755) != 0 && errno != EEXIST) die("mkdir", root);
  int rootfd = open(root, O_RDONLY | O_DIRECTORY);
  if (rootfd < 0) die("open", root);
  unsigned long long files = 0, dirs = 0, bytes = 0;
  char name[64];
  for (long p = 0; p < parts; p++) {
    snprintf(name, sizeof name, "p%02ld", p);
    if (mkdirat(rootfd, name, 0755) != 0) die("mkdir", name);
    int pfd = openat(rootfd, name, O_RDONLY | O_DIRECTORY);
    if (pfd < 0) die("open", name);
    dirs++;
    int dfd = -1;
    for (long i = 0; i < perPart; i++) {
      if (i % perDir == 0) {
        if (dfd >= 0) close(dfd);
        snprintf(name, sizeof name, "d%05ld", i / perDir);
        if (mkdirat(pfd, name, 0755) != 0) die("mkdir", name);
        dfd = openat(pfd, name, O_RDONLY | O_DIRECTORY);
        if (dfd < 0) die("open", name);
        dirs++;
      }
      snprintf(name, sizeof name, "f%06ld", i % perDir);
      uint32_t size = next() % 513;
      int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
      if (fd < 0) die("create", name);
      if (size > 0 && write(fd, fill + next() % (sizeof fill - 512), size) != (ssize_t)size) die("write", name);
      close(fd);
      files++;
      bytes += size;
    }
    if (dfd >= 0) close(dfd);
    close(pfd);
  }
  printf("%llu %llu %llu\n", files, dirs, bytes);
  return 0;
}
