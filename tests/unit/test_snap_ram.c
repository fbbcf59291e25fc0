/* SPDX-License-Identifier: BSD-2-Clause */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "common.h"
#include "guest_mem.h"
#include "snap.h"
#include "snap_ram.h"
#include "snap_ram_live.h"
#include "snap_ram_restore.h"
#include "snap_inspect.h"
#include <jansson.h>
#include "unit.h"
#include "unit_tmp.h"

#define RAM (64 * MiB)

/* The RAM file of @state at its default name, STATE.ram. */
static int save_beside(const struct guest_mem *m, const char *state,
		       struct snap_ram_info *info)
{
	char ram[256];
	int rc = snap_ram_default_path(state, ram, sizeof(ram));

	return rc ? rc : snap_ram_save(m, ram, 0, info, NULL);
}

/* Mostly zero, with a recognisable pattern on every 37th page. */
static void mem_fill(struct guest_mem *m, uint8_t seed)
{
	for (uint64_t pg = 0; pg < m->ram_size / PAGE_SIZE; pg += 37)
		for (unsigned i = 0; i < PAGE_SIZE; i += 64)
			m->base[pg * PAGE_SIZE + i] =
				(uint8_t)(pg * 31 + i + seed) | 1;
	/* A long non-zero run crossing a chunk boundary. */
	memset(m->base + 2 * MiB - 3 * PAGE_SIZE, 0xa5, 6 * PAGE_SIZE);
	/* The very last byte. */
	m->base[m->ram_size - 1] = 0x5a;
}

static bool file_equals(const char *path, const uint8_t *want, uint64_t len)
{
	int fd = open(path, O_RDONLY);
	uint8_t *p;
	bool eq;

	if (fd < 0)
		return false;
	p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return false;
	eq = !memcmp(p, want, len);
	munmap(p, len);
	return eq;
}

static void test_save_sparse_hashes(void)
{
	struct guest_mem m;
	struct snap_ram_info info = {.hashes = NULL};
	struct err err = {0};
	const char *p = tpath("vm.snap.ram");
	struct stat st;

	CHECK_EQ(mem_new(&m, RAM), 0);
	mem_fill(&m, 0);
	CHECK_EQ(snap_ram_save(&m, p, SNAP_RAM_FSYNC, &info, NULL), 0);
	CHECK(!strcmp(info.file, "vm.snap.ram"));
	CHECK_EQ(info.ram_size, RAM);
	CHECK_EQ(info.chunk_size, SNAP_RAM_CHUNK_SIZE);
	CHECK_EQ(info.nchunks, RAM / SNAP_RAM_CHUNK_SIZE);
	CHECK_EQ(stat(p, &st), 0);
	CHECK_EQ((uint64_t)st.st_size, RAM);
	/* ~1/37 of the pages hold data: the file must be mostly holes. */
	CHECK((uint64_t)st.st_blocks * 512 < RAM / 8);
	CHECK(file_equals(p, m.base, RAM));
	for (uint32_t c = 0; c < info.nchunks; c++)
		CHECK_EQ(info.hashes[c],
			 XXH3_64bits(m.base + c * SNAP_RAM_CHUNK_SIZE,
				     SNAP_RAM_CHUNK_SIZE));
	CHECK_EQ(snap_ram_verify(p, &info, &err), 0);

	/* A flipped byte in a data page and one in a hole. */
	{
		int fd = open(p, O_RDWR);
		uint8_t b = 0xff;

		CHECK(fd >= 0);
		CHECK_EQ(pwrite(fd, &b, 1, 5 * SNAP_RAM_CHUNK_SIZE + 12345), 1);
		CHECK_EQ(snap_ram_verify(p, &info, &err), -EBADMSG);
		CHECK(strstr(err.msg,
			     "vm.snap.ram: chunk 5 (offset 0xa00000)"));
		b = 0;
		CHECK_EQ(pwrite(fd, &b, 1, 5 * SNAP_RAM_CHUNK_SIZE + 12345), 1);
		CHECK_EQ(snap_ram_verify(p, &info, &err), 0);
		b = 1;
		CHECK_EQ(pwrite(fd, &b, 1, RAM - PAGE_SIZE - 1), 1);
		CHECK_EQ(snap_ram_verify(p, &info, &err), -EBADMSG);
		CHECK(strstr(err.msg, "chunk 31 "));
		/* Wrong size is caught before hashing. */
		CHECK_EQ(ftruncate(fd, RAM - PAGE_SIZE), 0);
		CHECK_EQ(snap_ram_verify(p, &info, &err), -EINVAL);
		CHECK(strstr(err.msg, "does not match the RAM size"));
		close(fd);
	}
	snap_ram_info_free(&info);
	mem_free(&m);
}

static void test_map_and_eager(void)
{
	struct guest_mem m, a, b, small;
	struct snap_ram_info info = {.hashes = NULL};
	struct err err = {0};
	char p[256];

	CHECK_EQ(snap_ram_default_path(tpath("x.snap"), p, sizeof(p)), 0);
	CHECK(strstr(p, "/x.snap.ram"));
	CHECK_EQ(mem_new(&m, RAM), 0);
	CHECK_EQ(mem_new(&a, RAM), 0);
	CHECK_EQ(mem_new(&b, RAM), 0);
	CHECK_EQ(mem_new(&small, RAM / 2), 0);
	mem_fill(&m, 3);
	CHECK_EQ(snap_ram_save(&m, p, 0, &info, NULL), 0);
	CHECK(!strcmp(info.file, "x.snap.ram"));

	CHECK_EQ(snap_ram_map(&a, p, NULL, NULL, &err), 0);
	CHECK(!memcmp(a.base, m.base, RAM));
	/* Eager load over dirty memory must clear what the file has as holes.
	 */
	memset(b.base, 0xcc, RAM);
	CHECK_EQ(snap_ram_load_eager(&b, p, NULL, NULL, &err), 0);
	CHECK(!memcmp(b.base, m.base, RAM));
	CHECK(!memcmp(a.base, b.base, RAM));
	/* Region pointers see the restored data too. */
	CHECK_EQ(*(uint8_t *)guest_mem_ptr(&a, RAM - 1, 1), 0x5a);

	CHECK_EQ(snap_ram_map(&small, p, NULL, NULL, &err), -EINVAL);
	CHECK(strstr(err.msg, "does not match the RAM size"));
	CHECK_EQ(snap_ram_load_eager(&small, p, NULL, NULL, &err), -EINVAL);
	CHECK_EQ(snap_ram_map(&a, tpath("nope.ram"), NULL, NULL, &err), -ENOENT);
	CHECK(strstr(err.msg, "nope.ram"));

	snap_ram_info_free(&info);
	mem_free(&m);
	mem_free(&a);
	mem_free(&b);
	mem_free(&small);
}

/*
 * A guest restored by mapping FILE.ram, then saved again to the same
 * path: the save writes a new inode, so the pages the guest never
 * touched (still backed by the old file) must all reach the new file.
 */
static void test_resave_over_mapped(void)
{
	struct guest_mem m, g;
	struct snap_ram_info i1 = {.hashes = NULL}, i2 = {.hashes = NULL};
	struct err err = {0};
	const char *p = tpath("clone.snap.ram");
	uint8_t *want;

	CHECK_EQ(mem_new(&m, RAM), 0);
	CHECK_EQ(mem_new(&g, RAM), 0);
	mem_fill(&m, 7);
	CHECK_EQ(snap_ram_save(&m, p, 0, &i1, NULL), 0);
	CHECK_EQ(snap_ram_map(&g, p, NULL, NULL, &err), 0);

	want = malloc(RAM);
	CHECK(want != NULL);
	if (!want)
		return;
	memcpy(want, m.base, RAM);
	/* Modify a few pages: some were data, some were holes. */
	for (uint64_t off = 0; off < RAM; off += 5 * MiB + 3 * PAGE_SIZE) {
		memset(g.base + off, 0x3c, PAGE_SIZE);
		memset(want + off, 0x3c, PAGE_SIZE);
	}
	memset(g.base + 37 * PAGE_SIZE, 0, PAGE_SIZE); /* data -> zero */
	memset(want + 37 * PAGE_SIZE, 0, PAGE_SIZE);

	CHECK_EQ(snap_ram_save(&g, p, 0, &i2, NULL), 0);
	CHECK(file_equals(p, want, RAM));
	CHECK(!memcmp(g.base, want, RAM)); /* guest view unchanged */
	CHECK_EQ(snap_ram_verify(p, &i2, &err), 0);
	CHECK(memcmp(i1.hashes, i2.hashes, 8 * i1.nchunks));
	free(want);
	snap_ram_info_free(&i1);
	snap_ram_info_free(&i2);
	mem_free(&m);
	mem_free(&g);
}

/* Resident pages of [p, p+len) (mincore). */
static uint64_t resident_pages(const uint8_t *p, uint64_t len)
{
	uint64_t n = len / PAGE_SIZE, res = 0;
	unsigned char *v = malloc(n);

	if (!v || mincore((void *)p, len, v)) {
		free(v);
		return UINT64_MAX;
	}
	for (uint64_t i = 0; i < n; i++)
		res += v[i] & 1;
	free(v);
	return res;
}

/*
 * A mostly untouched anonymous guest: the save must not fault in the
 * pages the guest never touched (it would read, hash and zero-check them),
 * and the hashes must still be those of the full RAM, zeros included.
 */
static void test_untouched_pages_not_read(void)
{
	struct guest_mem m;
	struct snap_ram_info info = {.hashes = NULL};
	struct err err = {0};
	const char *p = tpath("untouched.snap.ram");
	uint64_t before, after;
	uint8_t *zeros = calloc(1, SNAP_RAM_CHUNK_SIZE);

	CHECK(zeros != NULL);
	CHECK_EQ(mem_new(&m, RAM), 0);
	/* No huge pages: residency is then per page touched. */
	madvise(m.base, RAM, MADV_NOHUGEPAGE);
	memset(m.base + 3 * MiB + 5 * PAGE_SIZE, 0x11, 3 * PAGE_SIZE);
	m.base[RAM - 1] = 0x5a;
	memset(m.base + 9 * MiB, 0, PAGE_SIZE); /* touched, but zero */
	before = resident_pages(m.base, RAM);
	CHECK(before <= 16);
	CHECK_EQ(snap_ram_save(&m, p, 0, &info, NULL), 0);
	after = resident_pages(m.base, RAM);
	CHECK_EQ(after, before);
	/*
	 * Allocation first: file_equals() reads through a shared mapping,
	 * which makes tmpfs allocate its holes on some kernels (6.1).
	 */
	{
		struct stat st;

		CHECK_EQ(stat(p, &st), 0);
		CHECK((uint64_t)st.st_blocks * 512 <= 64 * KiB);
	}
	CHECK(file_equals(p, m.base, RAM));
	for (uint32_t c = 0; c < info.nchunks; c++)
		CHECK_EQ(info.hashes[c],
			 XXH3_64bits(m.base + c * SNAP_RAM_CHUNK_SIZE,
				     SNAP_RAM_CHUNK_SIZE));
	CHECK_EQ(info.hashes[0], XXH3_64bits(zeros, SNAP_RAM_CHUNK_SIZE));
	CHECK_EQ(snap_ram_verify(p, &info, &err), 0);
	free(zeros);
	snap_ram_info_free(&info);
	mem_free(&m);
}

/*
 * Live copy: a full pass, then the guest writes (data -> other data,
 * data -> zero, hole -> data, a page in a chunk that was all zero), then
 * passes over only the dirty pages: two rounds, as a live checkpoint
 * makes them. The file and the hashes must be those of the final RAM.
 * The writes are made as khyve's own threads make them (guest_mem_write,
 * or a store through the mapping and guest_mem_mark_dirty_hva), and the
 * dirty set comes from guest_mem's own tracking: it must hold exactly
 * the pages written since the previous collect.
 */
static uint64_t count_bits(const uint64_t *bm, uint64_t words)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < words; w++)
		n += (uint64_t)__builtin_popcountll(bm[w]);
	return n;
}

static void test_live_copy_dirty_pass(void)
{
	struct guest_mem m;
	struct snap_ram_info info = {.hashes = NULL};
	struct err err = {0};
	struct snap_ram_live *lv;
	const char *p = tpath("live.snap.ram");
	uint64_t npages = RAM / PAGE_SIZE;
	uint64_t *dirty = calloc(npages / 64, 8);
	const uint64_t pages[] = {37, 74, 2 * 512 + 3, 20 * 512 + 100,
				  npages - 1};
	uint8_t pat[100];
	struct stat st;

	CHECK(dirty != NULL);
	CHECK_EQ(mem_new(&m, RAM), 0);
	mem_fill(&m, 3);
	CHECK_EQ(snap_ram_live_open(&m, p, NULL, &lv), 0);
	/* A write before tracking starts is the full pass's to copy. */
	CHECK_EQ(guest_mem_write(&m, 5 * PAGE_SIZE, "x", 1), 0);
	CHECK_EQ(guest_mem_dirty_start(&m), 0);
	CHECK_EQ(snap_ram_live_copy(lv, NULL, NULL), 0);
	CHECK(snap_ram_live_written(lv) > 0);
	/* Round 1 (guest running): two pages written. */
	memset(m.base + 37 * PAGE_SIZE, 0, PAGE_SIZE); /* data -> 0 */
	guest_mem_mark_dirty_hva(&m, m.base + 37 * PAGE_SIZE, PAGE_SIZE);
	memset(pat, 9, sizeof(pat));
	/* hole -> data */
	CHECK_EQ(guest_mem_write(&m, (2 * 512 + 3) * PAGE_SIZE, pat,
				 sizeof(pat)),
		 0);
	guest_mem_dirty_collect(&m, dirty);
	CHECK_EQ(count_bits(dirty, npages / 64), 2);
	CHECK(dirty[37 / 64] >> (37 % 64) & 1);
	CHECK_EQ(snap_ram_live_copy(lv, dirty, NULL), 0);
	memset(dirty, 0, npages / 64 * 8);
	/* Final pass: the rest, and page 37 again (0 -> data -> 0). */
	m.base[37 * PAGE_SIZE + 9] = 4;
	guest_mem_mark_dirty_hva(&m, m.base + 37 * PAGE_SIZE + 9, 1);
	m.base[37 * PAGE_SIZE + 9] = 0;
	guest_mem_mark_dirty(&m, 37 * PAGE_SIZE + 9, 1);
	memset(m.base + 74 * PAGE_SIZE, 0x77, PAGE_SIZE); /* data -> data */
	guest_mem_mark_dirty(&m, 74 * PAGE_SIZE, PAGE_SIZE);
	/* A page in a chunk that was all zero. */
	CHECK_EQ(guest_mem_write(&m, (20 * 512 + 100) * PAGE_SIZE + 5, "\1", 1),
		 0);
	CHECK_EQ(guest_mem_write(&m, RAM - 1, "", 1), 0); /* last byte */
	guest_mem_dirty_collect(&m, dirty);
	guest_mem_dirty_stop(&m);
	/* Not marked once tracking is off. */
	CHECK_EQ(guest_mem_write(&m, 6 * PAGE_SIZE, "y", 1), 0);
	m.base[6 * PAGE_SIZE] = 0;
	guest_mem_dirty_collect(&m, dirty);
	for (unsigned i = 0; i < ARRAY_SIZE(pages); i++)
		if (pages[i] != 2 * 512 + 3)
			CHECK(dirty[pages[i] / 64] >> (pages[i] % 64) & 1);
	CHECK_EQ(count_bits(dirty, npages / 64), ARRAY_SIZE(pages) - 1);
	CHECK_EQ(snap_ram_live_copy(lv, dirty, NULL), 0);
	/* What the commit will report, known before it (the state file is
	 * written from it while the guest is paused). */
	{
		struct snap_ram_info pre = {.hashes = NULL};

		CHECK_EQ(snap_ram_live_info(lv, &pre), 0);
		CHECK_EQ(snap_ram_live_commit(lv, SNAP_RAM_FSYNC, &info), 0);
		CHECK(!strcmp(pre.file, info.file));
		CHECK_EQ(pre.ram_size, info.ram_size);
		CHECK_EQ(pre.nchunks, info.nchunks);
		CHECK(info.hashes && pre.hashes != info.hashes &&
		      !memcmp(pre.hashes, info.hashes, info.nchunks * 8));
		snap_ram_info_free(&pre);
	}
	/* The page that became zero is a hole again (before file_equals). */
	{
		int fd = open(p, O_RDONLY);
		off_t d;

		CHECK(fd >= 0);
		d = lseek(fd, (off_t)(37 * PAGE_SIZE), SEEK_DATA);
		CHECK(d > (off_t)(37 * PAGE_SIZE));
		close(fd);
	}
	CHECK(file_equals(p, m.base, RAM));
	for (uint32_t c = 0; c < info.nchunks; c++)
		CHECK_EQ(info.hashes[c],
			 XXH3_64bits(m.base + c * SNAP_RAM_CHUNK_SIZE,
				     SNAP_RAM_CHUNK_SIZE));
	CHECK_EQ(snap_ram_verify(p, &info, &err), 0);
	CHECK_EQ(stat(p, &st), 0);
	CHECK_EQ((uint64_t)st.st_size, RAM);
	/* An aborted save leaves nothing behind and the old file intact. */
	CHECK_EQ(snap_ram_live_open(&m, p, NULL, &lv), 0);
	CHECK_EQ(snap_ram_live_copy(lv, NULL, NULL), 0);
	snap_ram_live_abort(lv);
	CHECK(file_equals(p, m.base, RAM));
	free(dirty);
	snap_ram_info_free(&info);
	guest_mem_dirty_free(&m);
	mem_free(&m);
}

/* Regions in separate host buffers land at their .offset in the file. */
static void test_split_regions(void)
{
	struct guest_mem m = {0}, n = {0};
	struct snap_ram_info info = {.hashes = NULL};
	struct err err = {0};
	const char *p = tpath("split.ram");
	uint8_t *lo = calloc(1, 8 * MiB), *hi = calloc(1, 4 * MiB);
	uint8_t *lo2 = calloc(1, 8 * MiB), *hi2 = calloc(1, 4 * MiB);
	uint8_t *flat = calloc(1, 12 * MiB);

	if (!lo || !hi || !lo2 || !hi2 || !flat) {
		CHECK(0);
		goto out;
	}
	m.ram_size = 12 * MiB;
	m.nr = 2;
	m.r[0] = (struct guest_mem_region){0, 8 * MiB, 0, lo};
	m.r[1] = (struct guest_mem_region){4 * GiB, 4 * MiB, 8 * MiB, hi};
	n = m;
	n.r[0].hva = lo2;
	n.r[1].hva = hi2;
	memset(lo + 8 * MiB - PAGE_SIZE, 0x11, PAGE_SIZE);
	memset(hi, 0x22, PAGE_SIZE);
	hi[4 * MiB - 1] = 0x33;
	memcpy(flat, lo, 8 * MiB);
	memcpy(flat + 8 * MiB, hi, 4 * MiB);
	CHECK_EQ(snap_ram_save(&m, p, 0, &info, NULL), 0);
	CHECK(file_equals(p, flat, 12 * MiB));
	CHECK_EQ(snap_ram_verify(p, &info, &err), 0);
	CHECK_EQ(snap_ram_load_eager(&n, p, NULL, NULL, &err), 0);
	CHECK(!memcmp(lo2, lo, 8 * MiB));
	CHECK(!memcmp(hi2, hi, 4 * MiB));
	/* No host base: mapping needs one. */
	CHECK_EQ(snap_ram_map(&n, p, NULL, NULL, &err), -EINVAL);
	/* Regions that do not tile the RAM are refused. */
	m.r[1].offset = 9 * MiB;
	CHECK_EQ(snap_ram_save(&m, p, 0, &info, NULL), -EINVAL);
out:
	snap_ram_info_free(&info);
	free(lo);
	free(hi);
	free(lo2);
	free(hi2);
	free(flat);
}

static void test_ram_section(void)
{
	struct guest_mem m;
	struct snap_ram_info info = {.hashes = NULL}, back;
	struct err err = {0};
	struct snap_host_info h;
	struct snap_writer *w = NULL;
	struct snap_reader *r = NULL;
	char ram[256];

	CHECK_EQ(mem_new(&m, 8 * MiB), 0);
	mem_fill(&m, 9);
	CHECK_EQ(save_beside(&m, tpath("s.snap"), &info), 0);
	snap_host_info_probe(&h, NULL);
	CHECK_EQ(snap_writer_open(&w, tpath("s.snap"), &h, NULL), 0);
	CHECK_EQ(snap_ram_write_section(w, &info), 0);
	CHECK_EQ(snap_writer_commit(w), 0);

	CHECK_EQ(snap_reader_open(&r, tpath("s.snap"), &err), 0);
	if (!r)
		goto out;
	CHECK_EQ(snap_ram_read_section(r, &back, &err), 0);
	CHECK(!strcmp(back.file, "s.snap.ram"));
	CHECK_EQ(back.ram_size, 8 * MiB);
	CHECK_EQ(back.nchunks, 4);
	CHECK(back.hashes && !memcmp(back.hashes, info.hashes, 4 * 8));
	CHECK_EQ(snap_ram_resolve(tpath("s.snap"), back.file, ram, sizeof(ram)),
		 0);
	CHECK(!strcmp(ram, tpath("s.snap.ram")));
	CHECK_EQ(snap_ram_verify(ram, &back, &err), 0);
	snap_ram_info_free(&back);
	snap_reader_close(r);

	CHECK_EQ(snap_ram_resolve("vm.snap", "vm.snap.ram", ram, sizeof(ram)),
		 0);
	CHECK(!strcmp(ram, "vm.snap.ram"));
	CHECK_EQ(snap_ram_resolve("a/vm.snap", "r.ram", ram, sizeof(ram)), 0);
	CHECK(!strcmp(ram, "a/r.ram"));
	/* Only a bare name beside the state file (docs/security.md). */
	CHECK_EQ(snap_ram_resolve("/a/b/vm.snap", "/c/r.ram", ram, sizeof(ram)),
		 -EINVAL);
	CHECK_EQ(snap_ram_resolve("a/vm.snap", "sub/r.ram", ram, sizeof(ram)),
		 -EINVAL);
	CHECK_EQ(snap_ram_resolve("a/vm.snap", "../r.ram", ram, sizeof(ram)),
		 -EINVAL);
	CHECK_EQ(snap_ram_resolve("a/vm.snap", "..", ram, sizeof(ram)),
		 -EINVAL);
	CHECK_EQ(snap_ram_resolve("a/vm.snap", ".", ram, sizeof(ram)),
		 -EINVAL);

	/* Inconsistent geometry is refused when decoding. */
	{
		uint8_t blob[24 + 3 + 8];

		memset(blob, 0, sizeof(blob));
		put_le64(blob, 8 * MiB);
		put_le64(blob + 8, 2 * MiB);
		put_le32(blob + 16, 1); /* should be 4 */
		put_le16(blob + 20, 3);
		memcpy(blob + 24, "a.r", 3);
		CHECK_EQ(snap_ram_decode(blob, sizeof(blob), &back, "t", &err),
			 -EPROTO);
		CHECK(strstr(err.msg, "1 chunk hashes for 8388608 bytes"));
		put_le64(blob + 8, 3 * MiB);
		CHECK_EQ(snap_ram_decode(blob, sizeof(blob), &back, "t", &err),
			 -EPROTO);
		put_le64(blob, 2 * MiB);
		put_le64(blob + 8, 2 * MiB);
		CHECK_EQ(snap_ram_decode(blob, sizeof(blob), &back, "t", &err),
			 0);
		snap_ram_info_free(&back);
		CHECK_EQ(snap_ram_decode(blob, sizeof(blob) - 1, &back, "t",
					 &err),
			 -EPROTO);
	}
out:
	snap_ram_info_free(&info);
	mem_free(&m);
}

struct insp {
	uint32_t n;
	uint64_t q[8];
	int64_t off;
	uint8_t on;
	uint8_t mac[6];
};
static const struct snap_field insp_fields[] = {
	SNAP_U32(struct insp, n, 1),
	SNAP_U64_VARRAY(struct insp, q, 8, n, 1),
	SNAP_I64(struct insp, off, 1),
	SNAP_BOOL(struct insp, on, 1),
	SNAP_BYTES(struct insp, mac, 6, 1),
};
static const struct snap_desc insp_desc =
	SNAP_DESC("nic", 3, 2, struct insp, insp_fields);

static char *capture(int (*fn)(FILE *, void *), void *arg, int *rc)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	*rc = fn(f, arg);
	fclose(f);
	return buf;
}

static int do_info_text(FILE *f, void *p)
{
	struct err err = {0};

	return snap_inspect_info(p, false, true, f, &err);
}

static int do_info_json(FILE *f, void *p)
{
	struct err err = {0};

	return snap_inspect_info(p, true, true, f, &err);
}

static int do_verify(FILE *f, void *p)
{
	struct err err = {0};

	return snap_inspect_verify(p, f, &err);
}

static void test_inspect(void)
{
	struct guest_mem m;
	struct snap_ram_info info = {.hashes = NULL};
	struct snap_host_info h;
	struct snap_writer *w = NULL;
	struct insp st = {.n = 5,
			  .q = {0, 0, 0, 7, 1ULL << 63},
			  .off = -5,
			  .on = 1,
			  .mac = {0x52, 0x54, 0, 1, 2, 3}};
	static const char cfg[] =
		"{\"name\":\"vm1\",\"cpus\":2,\"memory\":8388608,"
		"\"devices\":[{\"slot\":3,\"func\":0,"
		"\"emulation\":\"virtio-blk\",\"conf\":\"disk.img\"}]}";
	const char *p = tpath("i.snap");
	char *out;
	int rc = -1;
	json_t *j;

	CHECK_EQ(mem_new(&m, 8 * MiB), 0);
	mem_fill(&m, 1);
	CHECK_EQ(save_beside(&m, p, &info), 0);
	snap_host_info_probe(&h, "kvm test");
	CHECK_EQ(snap_writer_open(&w, p, &h, NULL), 0);
	CHECK_EQ(snap_write_blob(w, "config", 0, 1, 0, cfg, strlen(cfg)), 0);
	CHECK_EQ(snap_ram_write_section(w, &info), 0);
	CHECK_EQ(snap_write_section(w, &insp_desc, 0, &st), 0);
	CHECK_EQ(snap_writer_commit(w), 0);

	out = capture(do_info_text, (void *)p, &rc);
	CHECK_EQ(rc, 0);
	CHECK(out && strstr(out, "vcpus:     2\n"));
	CHECK(out && strstr(out, "memory:    8388608 bytes"));
	CHECK(out && strstr(out, "virtio-blk:disk.img"));
	CHECK(out && strstr(out, "i.snap.ram, 8388608 bytes, 4 chunks"));
	CHECK(out && strstr(out, "nic #0 (version 3)"));
	CHECK(out && strstr(out, "[0 (x3), 7, 0x8000000000000000]"));
	CHECK(out && strstr(out, "bytes[6] 525400010203"));
	CHECK(out && strstr(out, "i64 -5\n"));
	CHECK(out && strstr(out, "bool true\n"));
	free(out);

	out = capture(do_info_json, (void *)p, &rc);
	CHECK_EQ(rc, 0);
	j = out ? json_loads(out, 0, NULL) : NULL;
	CHECK(j != NULL);
	if (j) {
		json_t *secs = json_object_get(j, "sections");
		json_t *nic = json_array_get(secs, 2);
		json_t *q = json_object_get(
			json_object_get(json_object_get(nic, "fields"), "q"),
			"value");

		CHECK_EQ(json_integer_value(json_object_get(j, "vcpus")), 2);
		CHECK_EQ(json_integer_value(json_object_get(j, "memory")),
			 8 * MiB);
		CHECK_EQ(json_array_size(secs), 3);
		CHECK(!strcmp(json_string_value(json_object_get(nic, "name")),
			      "nic"));
		CHECK_EQ(json_array_size(q), 5);
		CHECK_EQ(json_integer_value(json_array_get(q, 3)), 7);
		CHECK(!strcmp(json_string_value(json_array_get(q, 4)),
			      "9223372036854775808"));
		json_decref(j);
	}
	free(out);

	out = capture(do_verify, (void *)p, &rc);
	CHECK_EQ(rc, 0);
	CHECK(out && strstr(out, "section nic #0: ok"));
	CHECK(out && strstr(out, "(4 chunks)"));
	free(out);

	/* One flipped RAM byte fails verify and names the chunk. */
	{
		char ram[256];
		int fd;
		uint8_t b = 0x42;

		snap_ram_default_path(p, ram, sizeof(ram));
		fd = open(ram, O_WRONLY);
		CHECK(fd >= 0);
		CHECK_EQ(pwrite(fd, &b, 1, 3 * MiB), 1);
		close(fd);
	}
	out = capture(do_verify, (void *)p, &rc);
	CHECK_EQ(rc, -EBADMSG);
	CHECK(out && strstr(out, "FAILED: ") &&
	      strstr(out, "chunk 1 (offset 0x200000)"));
	free(out);
	snap_ram_info_free(&info);
	mem_free(&m);
}

int main(void)
{
	if (tdir_make("ram"))
		return 1;
	RUN(test_save_sparse_hashes);
	RUN(test_map_and_eager);
	RUN(test_resave_over_mapped);
	RUN(test_untouched_pages_not_read);
	RUN(test_live_copy_dirty_pass);
	RUN(test_split_regions);
	RUN(test_ram_section);
	RUN(test_inspect);
	tdir_remove();
	return unit_done();
}
