/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The migration stream (src/snap/snap_stream.c): guest RAM carried page
 * by page arrives exactly, plain and zstd-compressed, and every damaged,
 * cut, reordered or out-of-range record is refused before anything of it
 * is applied.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "guest_mem.h"
#include "snap_stream.h"
#include "unit.h"
#include "unit_tmp.h"

#define RAM (16 * MiB)

/* Every 7th page a pattern (half of it compressible), the rest zero. */
static void mem_fill(struct guest_mem *m, uint8_t seed)
{
	for (uint64_t pg = 0; pg < m->ram_size / PAGE_SIZE; pg += 7)
		for (unsigned i = 0; i < PAGE_SIZE; i++)
			m->base[pg * PAGE_SIZE + i] =
				i < PAGE_SIZE / 2
					? (uint8_t)(pg * 131 + i * 7 + seed)
					: (uint8_t)seed;
}

struct sender {
	struct snap_stream s;
	const struct guest_mem *m;
	const uint64_t *dirty;
	struct snap_stream_ram_stats st;
	int rc;
};

static void *send_thread(void *arg)
{
	struct sender *x = arg;
	struct err e = {0};

	x->rc = snap_stream_send_ram(&x->s, x->m, x->dirty, NULL, NULL, &x->st,
				     &e);
	if (!x->rc)
		x->rc = snap_stream_send(&x->s, SNAP_REC_END, NULL, 0, NULL, 0,
					 &e);
	return NULL;
}

/* @src's pages (@dirty, or all) over a socket pair into @dst. */
static int carry(const struct guest_mem *src, const uint64_t *dirty,
		 struct guest_mem *dst, bool compress, uint64_t *wire)
{
	struct sender x = {.m = src, .dirty = dirty};
	struct snap_stream in;
	struct err e = {0};
	uint64_t pages = 0;
	pthread_t t;
	int sv[2], rc;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return -errno;
	snap_stream_init(&x.s, sv[0], "the destination");
	x.s.compress = compress;
	snap_stream_init(&in, sv[1], "the source");
	pthread_create(&t, NULL, send_thread, &x);
	for (;;) {
		const uint8_t *p;
		unsigned type;
		size_t len;

		rc = snap_stream_recv(&in, &type, &p, &len, &e);
		if (rc || type != SNAP_REC_RAM)
			break;
		rc = snap_stream_apply_ram(&in, dst, p, len, &pages, &e);
		if (rc)
			break;
	}
	pthread_join(t, NULL);
	*wire = x.s.bytes_out;
	snap_stream_free(&x.s);
	snap_stream_free(&in);
	close(sv[0]);
	close(sv[1]);
	return rc ? rc : x.rc;
}

static void test_round_trip(bool compress)
{
	struct guest_mem a, b;
	uint64_t wire = 0, *dirty;

	CHECK(!mem_new(&a, RAM) && !mem_new(&b, RAM));
	mem_fill(&a, 3);
	CHECK_EQ(carry(&a, NULL, &b, compress, &wire), 0);
	CHECK(!memcmp(a.base, b.base, RAM));
	/* Data pages: 1/7 of RAM; compressed, about half of that. */
	if (compress)
		CHECK(wire < RAM / 7 * 3 / 4);
	else
		CHECK(wire > RAM / 7);
	/* A later round: some pages changed, one became zero. */
	dirty = calloc(RAM / PAGE_SIZE / 64, 8);
	memset(a.base + 5 * PAGE_SIZE, 0x77, 3 * PAGE_SIZE);
	memset(a.base + 7 * PAGE_SIZE, 0, PAGE_SIZE);
	for (unsigned pg = 5; pg < 8; pg++)
		dirty[0] |= 1ULL << pg;
	CHECK_EQ(carry(&a, dirty, &b, compress, &wire), 0);
	CHECK(!memcmp(a.base, b.base, RAM));
	free(dirty);
	munmap(a.base, RAM);
	munmap(b.base, RAM);
}

static void test_plain(void)
{
	test_round_trip(false);
}

static void test_zstd(void)
{
	test_round_trip(true);
}

/* A stream of records in a file, read back by snap_stream_recv. */
static int stream_file(void)
{
	char path[] = "/tmp/test_snap_stream-XXXXXX";
	int fd = mkstemp(path);

	if (fd >= 0)
		unlink(path);
	return fd;
}

static int read_back(int fd, unsigned *type, struct err *e)
{
	struct snap_stream in;
	const uint8_t *p;
	size_t len;
	int rc;

	lseek(fd, 0, SEEK_SET);
	snap_stream_init(&in, fd, "the source");
	do
		rc = snap_stream_recv(&in, type, &p, &len, e);
	while (!rc && *type != SNAP_REC_END);
	snap_stream_free(&in);
	return rc;
}

/* Three records, the middle one with a 100-byte payload. */
static int three(int fd)
{
	struct snap_stream out;
	uint8_t pay[100];
	int rc;

	memset(pay, 0x3c, sizeof(pay));
	lseek(fd, 0, SEEK_SET);
	snap_stream_init(&out, fd, "the destination");
	rc = snap_stream_send(&out, SNAP_REC_SYNC, NULL, 0, NULL, 0, NULL);
	if (!rc)
		rc = snap_stream_send(&out, SNAP_REC_ABORT, pay, sizeof(pay),
				      NULL, 0, NULL);
	if (!rc)
		rc = snap_stream_send(&out, SNAP_REC_END, NULL, 0, NULL, 0,
				      NULL);
	snap_stream_free(&out);
	return rc;
}

static void test_damage(void)
{
	struct err e = {0};
	unsigned type;
	uint8_t b;
	int fd = stream_file();

	CHECK(fd >= 0);
	CHECK_EQ(three(fd), 0);
	CHECK_EQ(read_back(fd, &type, &e), 0);
	/* One bit of the middle record's payload. */
	CHECK_EQ(pread(fd, &b, 1, 24 + 24 + 50), 1);
	b ^= 0x10;
	CHECK_EQ(pwrite(fd, &b, 1, 24 + 24 + 50), 1);
	CHECK_EQ(read_back(fd, &type, &e), -EBADMSG);
	CHECK(strstr(e.msg, "record 1 (ABORT, 100 bytes)"));
	CHECK(strstr(e.msg, "checksum mismatch"));
	/* Cut in the middle of it. */
	CHECK(!ftruncate(fd, 24 + 24 + 60));
	CHECK_EQ(read_back(fd, &type, &e), -ECONNRESET);
	CHECK(strstr(e.msg, "ends in the middle of record 1 (ABORT): 60 of "
			    "100 bytes"));
	/* A record left out: the next one's number gives it away. */
	CHECK(!ftruncate(fd, 0));
	CHECK_EQ(three(fd), 0);
	{
		uint8_t all[24 + 124 + 24];

		CHECK_EQ(pread(fd, all, sizeof(all), 0), (ssize_t)sizeof(all));
		CHECK(!ftruncate(fd, 0));
		CHECK_EQ(pwrite(fd, all + 24 + 124, 24, 0), 24);
	}
	CHECK_EQ(read_back(fd, &type, &e), -EPROTO);
	CHECK(strstr(e.msg, "numbered 2 where 0 was due"));
	/* Not a stream at all. */
	CHECK(!ftruncate(fd, 0));
	CHECK_EQ(pwrite(fd, "KHYVSNAP and more bytes to fill a header", 40, 0),
		 40);
	CHECK_EQ(read_back(fd, &type, &e), -EPROTO);
	CHECK(strstr(e.msg, "not a khyve migration stream"));
	close(fd);
}

static void test_hello(void)
{
	struct snap_hello h;
	struct err e = {0};
	uint8_t p[60];

	memset(p, 0, sizeof(p));
	put_le16(p, 2);
	CHECK_EQ(snap_stream_parse_hello(p, sizeof(p), &h, &e),
		 -EPROTONOSUPPORT);
	CHECK(strstr(e.msg, "format 2.0, this khyve reads 1.x only"));
	put_le16(p, 1);
	put_le32(p + 4, 0x80); /* an unknown flag */
	put_le32(p + 20, PAGE_SIZE);
	put_le32(p + 48, 8);
	CHECK_EQ(snap_stream_parse_hello(p, sizeof(p), &h, &e), -EPROTO);
	CHECK(strstr(e.msg, "unknown flags 0x80"));
	put_le32(p + 4, SNAP_HELLO_RECORDED);
	CHECK_EQ(snap_stream_parse_hello(p, sizeof(p), &h, &e), 0);
	CHECK_EQ(h.flags, SNAP_HELLO_RECORDED);
	CHECK_EQ(h.config_len, 8);
	put_le32(p + 48, 9); /* more config than the record holds */
	CHECK_EQ(snap_stream_parse_hello(p, sizeof(p), &h, &e), -EPROTO);
	/* Bytes after the config: a newer minor version's, skipped. */
	put_le32(p + 48, 4);
	CHECK_EQ(snap_stream_parse_hello(p, sizeof(p), &h, &e), -EPROTO);
	put_le16(p + 2, SNAP_STREAM_MINOR + 1);
	CHECK_EQ(snap_stream_parse_hello(p, sizeof(p), &h, &e), 0);
	CHECK_EQ(h.config_len, 4);
	CHECK_EQ(h.minor, SNAP_STREAM_MINOR + 1);
	put_le32(p + 48, 9); /* still: not more config than there is */
	CHECK_EQ(snap_stream_parse_hello(p, sizeof(p), &h, &e), -EPROTO);
}

static void test_ram_bounds(void)
{
	struct snap_stream s;
	struct guest_mem m;
	struct err e = {0};
	uint8_t rec[16 + 64];
	uint64_t pages = 0;

	CHECK(!mem_new(&m, RAM));
	snap_stream_init(&s, -1, "the source");
	memset(rec, 0, sizeof(rec));
	/* Zero pages at the very end: fine; one past it: refused. */
	put_le64(rec, RAM - 2 * PAGE_SIZE);
	put_le32(rec + 8, 2);
	put_le32(rec + 12, SNAP_RAM_REC_ZERO);
	CHECK_EQ(snap_stream_apply_ram(&s, &m, rec, 16, &pages, &e), 0);
	CHECK_EQ(pages, 2);
	put_le32(rec + 8, 3);
	CHECK_EQ(snap_stream_apply_ram(&s, &m, rec, 16, &pages, &e), -EPROTO);
	put_le64(rec, UINT64_MAX - PAGE_SIZE + 1);
	put_le32(rec + 8, 1);
	CHECK_EQ(snap_stream_apply_ram(&s, &m, rec, 16, &pages, &e), -EPROTO);
	/* Unaligned, too many pages, both flags, a short data record. */
	put_le64(rec, 100);
	CHECK_EQ(snap_stream_apply_ram(&s, &m, rec, 16, &pages, &e), -EPROTO);
	put_le64(rec, 0);
	put_le32(rec + 8, SNAP_STREAM_RAM_RUN + 1);
	CHECK_EQ(snap_stream_apply_ram(&s, &m, rec, 16, &pages, &e), -EPROTO);
	put_le32(rec + 8, 1);
	put_le32(rec + 12, SNAP_RAM_REC_ZERO | SNAP_RAM_REC_ZSTD);
	CHECK_EQ(snap_stream_apply_ram(&s, &m, rec, 16, &pages, &e), -EPROTO);
	put_le32(rec + 12, 0);
	CHECK_EQ(snap_stream_apply_ram(&s, &m, rec, sizeof(rec), &pages, &e),
		 -EPROTO);
	/* A zstd frame that is garbage. */
	put_le32(rec + 12, SNAP_RAM_REC_ZSTD);
	memset(rec + 16, 0x55, 64);
	CHECK_EQ(snap_stream_apply_ram(&s, &m, rec, sizeof(rec), &pages, &e),
		 -EPROTO);
	CHECK(strstr(e.msg, "zstd frame"));
	CHECK_EQ(pages, 2);
	snap_stream_free(&s);
	munmap(m.base, RAM);
}

/* POSTCOPY and PAGE_REQ: what a source sends parses back, and nothing
 * else does (sizes, counts, pages past the end, ranges). */
static void test_postcopy_records(void)
{
	const uint64_t npages = RAM / PAGE_SIZE, words = npages / 64;
	uint64_t *bm = calloc(words, 8), *got = NULL, n = 0, off;
	uint8_t *rec = calloc(1, 16 + words * 8 + 8);
	struct snap_stream s;
	struct err e = {0};
	uint32_t k;
	int sv[2];

	CHECK(bm && rec);
	CHECK(!socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	snap_stream_init(&s, sv[0], "the destination");
	bm[0] = 0x5;
	bm[words - 1] = 1ULL << 63;
	CHECK_EQ(snap_stream_send_postcopy(&s, RAM, bm, 3, &e), 0);
	{
		struct snap_stream in;
		const uint8_t *p;
		unsigned type;
		size_t len;

		snap_stream_init(&in, sv[1], "the source");
		CHECK_EQ(snap_stream_recv(&in, &type, &p, &len, &e), 0);
		CHECK_EQ(type, SNAP_REC_POSTCOPY);
		CHECK_EQ(len, 16 + words * 8);
		memcpy(rec, p, len);
		CHECK_EQ(snap_stream_parse_postcopy(p, len, RAM, &got, &n, &e),
			 0);
		CHECK_EQ(n, 3);
		CHECK(got && !memcmp(got, bm, words * 8));
		free(got);
		snap_stream_free(&in);
	}
	/* A count that does not match, a short or long record, another
	 * RAM size, a page past the end of a smaller RAM. */
	put_le64(rec + 8, 4);
	CHECK_EQ(snap_stream_parse_postcopy(rec, 16 + words * 8, RAM, &got, &n,
					    &e),
		 -EPROTO);
	CHECK(!got);
	put_le64(rec + 8, 3);
	CHECK_EQ(snap_stream_parse_postcopy(rec, 16 + words * 8 - 8, RAM, &got,
					    &n, &e),
		 -EPROTO);
	CHECK_EQ(snap_stream_parse_postcopy(rec, 16 + words * 8 + 8, RAM, &got,
					    &n, &e),
		 -EPROTO);
	CHECK_EQ(snap_stream_parse_postcopy(rec, 8, RAM, &got, &n, &e),
		 -EPROTO);
	put_le64(rec, npages - 1);
	CHECK_EQ(snap_stream_parse_postcopy(rec, 16 + words * 8,
					    RAM - PAGE_SIZE, &got, &n, &e),
		 -EPROTO); /* bit 63 of the last word is past its end */
	/* PAGE_REQ */
	put_le64(rec, RAM - PAGE_SIZE);
	put_le32(rec + 8, 1);
	CHECK_EQ(snap_stream_parse_page_req(rec, 12, RAM, &off, &k, &e), 0);
	CHECK_EQ(off, RAM - PAGE_SIZE);
	CHECK_EQ(k, 1);
	put_le32(rec + 8, 2);
	CHECK_EQ(snap_stream_parse_page_req(rec, 12, RAM, &off, &k, &e),
		 -EPROTO);
	put_le32(rec + 8, 0);
	CHECK_EQ(snap_stream_parse_page_req(rec, 12, RAM, &off, &k, &e),
		 -EPROTO);
	put_le64(rec, 4095);
	put_le32(rec + 8, 1);
	CHECK_EQ(snap_stream_parse_page_req(rec, 12, RAM, &off, &k, &e),
		 -EPROTO);
	put_le64(rec, UINT64_MAX - PAGE_SIZE + 1);
	CHECK_EQ(snap_stream_parse_page_req(rec, 12, RAM, &off, &k, &e),
		 -EPROTO);
	CHECK_EQ(snap_stream_parse_page_req(rec, 11, RAM, &off, &k, &e),
		 -EPROTO);
	snap_stream_free(&s);
	close(sv[0]);
	close(sv[1]);
	free(bm);
	free(rec);
}

int main(void)
{
	RUN(test_plain);
	RUN(test_zstd);
	RUN(test_damage);
	RUN(test_hello);
	RUN(test_ram_bounds);
	RUN(test_postcopy_records);
	return unit_done();
}
