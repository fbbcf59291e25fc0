/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer harness for the migration stream's reader (a destination, or
 * `khyve -r -`). The first input byte picks a mode: even = the rest is
 * read as is (checksums and sequence numbers must hold, as on the wire);
 * odd = every record's sequence number and checksum are re-sealed first,
 * so mutations reach the checks behind them. Records are then read as a
 * destination does: HELLO parsed, RAM records applied to a 16 MiB guest
 * memory (their ranges, flags, zstd frames checked), post-copy's
 * POSTCOPY bitmaps and PAGE_REQ records parsed, until an error or END.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "common.h"
#include "guest_mem.h"
#include "snap_stream.h"

#define RAM (16 * MiB)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void reseal(uint8_t *b, size_t len)
{
	uint32_t seq = 0;

	for (size_t off = 0; off + SNAP_STREAM_HDR <= len; seq++) {
		uint64_t plen = get_le32(b + off + 12);

		if (plen > len - off - SNAP_STREAM_HDR)
			plen = len - off - SNAP_STREAM_HDR;
		put_le32(b + off + 8, seq);
		{
			XXH3_state_t *s = XXH3_createState();

			XXH3_64bits_reset(s);
			XXH3_64bits_update(s, b + off, 16);
			XXH3_64bits_update(s, b + off + SNAP_STREAM_HDR, plen);
			put_le64(b + off + 16, XXH3_64bits_digest(s));
			XXH3_freeState(s);
		}
		off += SNAP_STREAM_HDR + plen;
	}
}

static struct guest_mem *mem(void)
{
	static struct guest_mem m;
	static bool done;

	if (!done) {
		void *p = mmap(NULL, RAM, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
			       0);

		if (p == MAP_FAILED || guest_mem_layout(&m, RAM))
			abort();
		m.base = p;
		for (unsigned i = 0; i < m.nr; i++)
			m.r[i].hva = m.base + m.r[i].offset;
		done = true;
	}
	return &m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap_stream s;
	struct err e = {0};
	uint8_t *b;
	uint64_t pages = 0;
	int fd;

	if (!size)
		return 0;
	b = malloc(size);
	if (!b)
		return 0;
	memcpy(b, data + 1, size - 1);
	if (data[0] & 1)
		reseal(b, size - 1);
	fd = memfd_create("stream", 0);
	if (fd < 0 || write(fd, b, size - 1) != (ssize_t)(size - 1) ||
	    lseek(fd, 0, SEEK_SET)) {
		if (fd >= 0)
			close(fd);
		free(b);
		return 0;
	}
	snap_stream_init(&s, fd, "the source");
	for (;;) {
		struct snap_hello h;
		const uint8_t *p;
		unsigned type;
		size_t len;

		if (snap_stream_recv(&s, &type, &p, &len, &e))
			break;
		if (type == SNAP_REC_HELLO &&
		    snap_stream_parse_hello(p, len, &h, &e))
			break;
		if (type == SNAP_REC_RAM &&
		    snap_stream_apply_ram(&s, mem(), p, len, &pages, &e))
			break;
		if (type == SNAP_REC_POSTCOPY) {
			uint64_t *bm = NULL, n;

			if (snap_stream_parse_postcopy(p, len, RAM, &bm, &n,
						       &e))
				break;
			free(bm);
		}
		if (type == SNAP_REC_PAGE_REQ) {
			uint64_t off;
			uint32_t n;

			if (snap_stream_parse_page_req(p, len, RAM, &off, &n,
						       &e))
				break;
		}
		if (type == SNAP_REC_END)
			break;
	}
	snap_stream_free(&s);
	close(fd);
	free(b);
	return 0;
}
