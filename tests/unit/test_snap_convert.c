/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * snapshot convert (src/snap/snap_convert.c), without KVM: a fake guest
 * RAM (data pages, zero pages, untouched holes, a run across a chunk
 * boundary) saved as a pair, converted to a stream and back; the RAM file
 * must come back byte for byte, and the stream must be refused - with no
 * output left - when cut at any record boundary or inside any record's
 * header or payload, with any byte flipped, or with bytes after its END.
 * An increment converts to the RAM of its whole chain (what merge gives).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "guest_mem.h"
#include "snap.h"
#include "snap_chain.h"
#include "snap_convert.h"
#include "snap_inspect.h"
#include "snap_ram.h"
#include "snap_ram_live.h"
#include "unit.h"
#include "unit_tmp.h"

#define RAM    (16 * MiB)
#define NPAGES (RAM / PAGE_SIZE)
#define WORDS  (NPAGES / 64)

static struct guest_mem m;
static char *config;
static uint8_t base_id[SNAP_SAVE_ID_LEN];
static uint64_t base_hash, *base_hashes;

/* A config a restore (and convert's HELLO) can read: 1 vCPU, RAM. */
static char *make_config(void)
{
	struct vm_config c = {.ncpus = 1, .mem_size = RAM};
	json_t *j;
	char *s;

	strcpy(c.name, "conv");
	j = config_to_json(&c);
	s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	return s;
}

/* Save m to @name: full, or (@changed) an increment over the base. */
static int save(const char *name, const uint64_t *changed)
{
	struct snap_host_info host;
	struct snap_ram_live *lv = NULL;
	struct snap_writer *w = NULL;
	struct snap_ram_info info = {0};
	struct snap_chain_parent par = {0};
	uint8_t id[SNAP_SAVE_ID_LEN];
	char ram[256];
	struct err e = {0};
	int rc;

	snap_host_info_probe(&host, "unit");
	rc = snap_save_id_new(id);
	if (!rc)
		rc = snap_ram_default_path(tpath(name), ram, sizeof(ram));
	if (!rc)
		rc = snap_ram_live_open(&m, ram, id, &lv);
	if (!rc)
		rc = snap_ram_live_copy(lv, changed, NULL);
	if (!rc)
		rc = snap_ram_live_info(lv, &info);
	if (!rc && changed)
		snap_chain_keep_hashes(&info, base_hashes, changed);
	if (!rc)
		rc = snap_writer_open(&w, tpath(name), &host, id);
	if (!rc)
		rc = snap_write_blob(w, "config", 0, 1, 0, config,
				     strlen(config));
	if (!rc)
		rc = snap_ram_write_section(w, &info);
	if (!rc && changed) {
		memcpy(par.id, base_id, SNAP_SAVE_ID_LEN);
		par.state_hash = base_hash;
		par.depth = 1;
		snprintf(par.file, sizeof(par.file), "base");
		par.npages = NPAGES;
		par.pages = (uint64_t *)changed;
		for (uint64_t i = 0; i < WORDS; i++)
			par.held += (uint64_t)__builtin_popcountll(changed[i]);
		rc = snap_chain_write_section(w, &par);
	}
	if (rc) {
		snap_writer_abort(w);
		snap_ram_live_abort(lv);
		snap_ram_info_free(&info);
		return rc;
	}
	rc = snap_ram_pair_commit(lv, w, 0, &e);
	if (!rc && !changed) {
		memcpy(base_id, id, sizeof(id));
		rc = snap_state_hash(tpath(name), &base_hash, &e);
		base_hashes = info.hashes;
		info.hashes = NULL;
	}
	snap_ram_info_free(&info);
	return rc;
}

static void page_set(uint64_t pg, unsigned seed, uint64_t *changed)
{
	uint8_t *p = m.base + pg * PAGE_SIZE;

	if (seed)
		for (unsigned i = 0; i < PAGE_SIZE; i += 8)
			p[i] = (uint8_t)(pg * 13 + i + seed) | 1;
	else
		memset(p, 0, PAGE_SIZE);
	if (changed)
		changed[pg / 64] |= 1ULL << (pg % 64);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *b;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st)) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	b = malloc((size_t)st.st_size + 1);
	if (b && read(fd, b, (size_t)st.st_size) != st.st_size) {
		free(b);
		b = NULL;
	}
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static void spit(const char *path, const uint8_t *b, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	CHECK(fd >= 0 && write(fd, b, len) == (ssize_t)len);
	if (fd >= 0)
		close(fd);
}

static bool same_file(const char *a, const char *b)
{
	size_t la = 0, lb = 0;
	uint8_t *x = slurp(a, &la), *y = slurp(b, &lb);
	bool same = x && y && la == lb && !memcmp(x, y, la);

	free(x);
	free(y);
	return same;
}

static void test_round_trip(void)
{
	struct snap_convert_result res;
	struct err e = {0};
	FILE *devnull = fopen("/dev/null", "w");

	CHECK_EQ(snap_convert(tpath("base"), tpath("s"), &res, &e), 0);
	if (e.msg[0])
		fprintf(stderr, "%s\n", e.msg);
	CHECK_EQ(res.from, SNAP_FORM_PAIR);
	CHECK_EQ(res.to, SNAP_FORM_STREAM);
	CHECK_EQ(res.links, 1);
	CHECK_EQ(snap_convert(tpath("s"), tpath("back"), &res, &e), 0);
	CHECK_EQ(res.from, SNAP_FORM_STREAM);
	if (e.msg[0])
		fprintf(stderr, "%s\n", e.msg);
	CHECK(same_file(tpath("base.ram"), tpath("back.ram")));
	CHECK_EQ(snap_inspect_verify(tpath("back"), devnull, &e), 0);
	CHECK_EQ(snap_inspect_verify(tpath("s"), devnull, &e), 0);
	CHECK_EQ(snap_inspect_info(tpath("s"), true, true, devnull, &e), 0);
	/* Nothing overwrites an input. */
	CHECK_EQ(snap_convert(tpath("s"), tpath("s"), &res, &e), -EBUSY);
	CHECK_EQ(snap_convert(tpath("base"), tpath("base.ram"), &res, &e),
		 -EBUSY);
	fclose(devnull);
}

/* @b, @len as the input: refused, no output, no temporary file. */
static void refused(const uint8_t *b, size_t len, const char *what)
{
	struct snap_convert_result res;
	struct err e = {0};
	struct stat st;
	int rc;

	spit(tpath("bad"), b, len);
	rc = snap_convert(tpath("bad"), tpath("out"), &res, &e);
	if (rc != -EPROTO && rc != -EBADMSG) {
		fprintf(stderr, "%s (%zu bytes): %d %s\n", what, len, rc,
			e.msg);
		CHECK(0);
	}
	CHECK(strstr(e.msg, tpath("bad")) != NULL);
	CHECK(stat(tpath("out"), &st) && errno == ENOENT);
	CHECK(stat(tpath("out.ram"), &st) && errno == ENOENT);
}

static void test_bad_streams(void)
{
	size_t len = 0, n = 0;
	uint8_t *s = slurp(tpath("s"), &len);
	unsigned recs = 0;

	CHECK(s != NULL);
	if (!s)
		return;
	/* Cut at every record boundary, and inside each header and payload. */
	for (size_t off = 0; off + SNAP_STREAM_HDR <= len; recs++) {
		size_t plen = get_le32(s + off + 12);

		if (off)
			refused(s, off, "cut at a record boundary");
		refused(s, off + 1, "cut in a header");
		refused(s, off + SNAP_STREAM_HDR - 1, "cut in a header");
		if (plen)
			refused(s, off + SNAP_STREAM_HDR + plen / 2,
				"cut in a payload");
		off += SNAP_STREAM_HDR + plen;
		n = off;
	}
	CHECK_EQ(n, len);
	CHECK(recs > 4);
	/* A byte flipped (the checksum, the sequence, or the data). */
	for (size_t off = 0; off < len; off += len / 61 + 1) {
		s[off] ^= 0x20;
		refused(s, len, "a byte flipped");
		s[off] ^= 0x20;
	}
	s = realloc(s, len + 1);
	s[len] = 0;
	refused(s, len + 1, "a byte after END");
	free(s);
}

static void test_increment_flattened(void)
{
	uint64_t *changed = calloc(WORDS, 8);
	struct snap_convert_result res;
	struct err e = {0};
	size_t a = 0, b = 0;
	uint8_t *x, *y;

	for (uint64_t pg = 3; pg < NPAGES; pg += 37)
		page_set(pg, 9, changed);
	for (uint64_t pg = 1; pg < NPAGES; pg += 97 * 3)
		page_set(pg, 0, changed); /* data that became zero */
	for (uint64_t pg = 0; pg < NPAGES; pg += 64)
		page_set(pg, 0, changed); /* zero, held */
	CHECK_EQ(save("inc", changed), 0);
	CHECK_EQ(snap_convert(tpath("inc"), tpath("is"), &res, &e), 0);
	CHECK_EQ(res.links, 2);
	CHECK_EQ(snap_convert(tpath("is"), tpath("iback"), &res, &e), 0);
	CHECK_EQ(snap_chain_merge(tpath("inc"), tpath("merged"), false, &e),
		 0);
	/* The same RAM (both trailers carry new save ids). */
	x = slurp(tpath("iback.ram"), &a);
	y = slurp(tpath("merged.ram"), &b);
	CHECK(x && y && a == b && a == RAM + SNAP_RAM_TRAILER &&
	      !memcmp(x, y, RAM));
	CHECK(x && !memcmp(x, m.base, RAM));
	free(x);
	free(y);
	free(changed);
}

int main(void)
{
	if (tdir_make("convert") || mem_new(&m, RAM) ||
	    !(config = make_config()))
		return 1;
	for (uint64_t pg = 1; pg < NPAGES; pg += 97)
		page_set(pg, 1, NULL);
	for (uint64_t pg = 508; pg < 520; pg++)
		page_set(pg, 2, NULL); /* across a chunk boundary */
	if (save("base", NULL))
		return 1;
	RUN(test_round_trip);
	RUN(test_bad_streams);
	RUN(test_increment_flattened);
	free(base_hashes);
	free(config);
	mem_free(&m);
	tdir_remove();
	return unit_done();
}
