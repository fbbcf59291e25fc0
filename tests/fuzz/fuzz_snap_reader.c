/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer harness for the snapshot reader. The first input byte picks a
 * mode: even = the rest is parsed as is (checksums must hold, as in a real
 * file); odd = checksums are re-sealed first, so mutations reach the
 * structural and bound checks behind them. Every section that opens is
 * then decoded generically: fields from their own tags, and loaded through
 * a description built from those tags (varrays included), blobs as
 * config JSON, the RAM layout or an increment's parent.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "common.h"
#include "snap.h"
#include "snap_chain.h"
#include "snap_ram.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void reseal(uint8_t *b, size_t len)
{
	uint32_t hlen;
	uint64_t off;

	if (len < 64)
		return;
	hlen = get_le32(b + 12);
	if (hlen < 16 || hlen > len)
		return;
	put_le64(b + hlen - 8, XXH3_64bits(b, hlen - 8));
	off = hlen;
	while (off + 40 <= len && get_le32(b + off) == 0x54434553u) {
		uint64_t nlen = get_le16(b + off + 6);
		uint64_t plen = get_le64(b + off + 24);
		XXH3_state_t *s;

		if (plen > len || off + 40 + nlen + plen > len)
			break;
		s = XXH3_createState();
		if (!s)
			return;
		XXH3_64bits_reset(s);
		XXH3_64bits_update(s, b + off, 32);
		XXH3_64bits_update(s, b + off + 40, nlen + plen);
		put_le64(b + off + 32, XXH3_64bits_digest(s));
		XXH3_freeState(s);
		off += 40 + nlen + plen;
	}
	put_le64(b + len - 8, XXH3_64bits(b, len - 8));
}

/* Load section @i through a description derived from its own fields. */
static void load_generic(struct snap_reader *r, unsigned i,
			 const struct snap_section_info *si, uint8_t knobs)
{
	struct snap_field *fields = calloc(si->nfields + 1, sizeof(*fields));
	struct snap_desc d = {.name = si->name,
			      .version = si->version,
			      .min_version = 1,
			      .fields = fields,
			      .nfields = si->nfields};
	struct err err;
	size_t off = 0;
	void *state;

	if (!fields)
		return;
	for (unsigned k = 0; k < si->nfields; k++) {
		struct snap_field_info f;
		struct snap_field *df = &fields[k];
		unsigned sz;

		if (snap_reader_field(r, i, k, &f))
			goto out;
		sz = snap_type_size(f.type);
		df->name = f.name;
		df->type = f.type;
		df->offset = (uint32_t)off;
		/* Sometimes one short, to hit the capacity checks. */
		df->count = f.count ? f.count : 1;
		if ((knobs & 2) && df->count > 1)
			df->count--;
		df->since = 1;
		df->max = (knobs & 4) && f.type != SNAP_T_BYTES ? 100 : 0;
		if (f.type == SNAP_T_BOOL)
			df->max = 1;
		/* An integer scalar right before an array counts it. */
		if ((knobs & 8) && k > 0 && fields[k - 1].count == 1 &&
		    fields[k - 1].type >= SNAP_T_U8 &&
		    fields[k - 1].type <= SNAP_T_U64 &&
		    !fields[k - 1].count_field && f.type != SNAP_T_BOOL)
			df->count_field = fields[k - 1].name;
		off += (size_t)df->count * sz;
		off = ALIGN_UP(off, 8);
	}
	d.state_size = off;
	state = calloc(1, off ? off : 1);
	if (!state)
		goto out;
	/* Refusal is fine; it must just come with a message. */
	err.msg[0] = 0;
	if (snap_read_section(r, &d, si->instance, state, &err) && !err.msg[0])
		abort();
	free(state);
out:
	free(fields);
}

static void decode_all(struct snap_reader *r, uint8_t knobs)
{
	for (unsigned i = 0; i < snap_reader_nsections(r); i++) {
		struct snap_section_info si;
		struct err err;
		uint64_t acc = 0;

		if (snap_reader_section(r, i, &si))
			abort();
		if (si.kind == SNAP_KIND_DESC) {
			for (unsigned k = 0; k < si.nfields; k++) {
				struct snap_field_info f;

				if (snap_reader_field(r, i, k, &f))
					abort();
				for (uint32_t e = 0; e < f.count; e++)
					acc += snap_field_elem(&f, e);
			}
			load_generic(r, i, &si, knobs);
		} else {
			const void *data;
			size_t len;
			uint16_t ver;

			if (snap_read_blob(r, si.name, si.instance, &data, &len,
					   &ver, &err))
				abort(); /* it was listed: must be readable */
			if (!strcmp(si.name, SNAP_RAM_SECTION)) {
				struct snap_ram_info ri;

				snap_ram_decode(data, len, &ri, "fuzz", &err);
				snap_ram_info_free(&ri);
			} else if (!strcmp(si.name, "config")) {
				json_decref(json_loadb(data, len, 0, NULL));
			} else if (!strcmp(si.name, SNAP_CHAIN_SECTION)) {
				struct snap_chain_parent p;

				/* The guest RAM sizes a real file would have. */
				if (!snap_chain_decode(data, len, 64 * MiB, &p,
						       "fuzz", &err))
					snap_chain_parent_free(&p);
				if (!snap_chain_decode(data, len, 4096, &p,
						       "fuzz", &err))
					snap_chain_parent_free(&p);
			}
		}
		(void)acc;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap_reader *r = NULL;
	struct err err = {0};
	uint8_t *buf;
	uint8_t mode;

	if (size < 1)
		return 0;
	mode = data[0];
	buf = malloc(size - 1 ? size - 1 : 1);
	if (!buf)
		return 0;
	memcpy(buf, data + 1, size - 1);
	if (mode & 1)
		reseal(buf, size - 1);
	if (mode & 0x80) {
		/* The file path: through a memfd like a real state file. */
		int fd = memfd_create("fuzz.snap", 0);
		char path[64];

		if (fd >= 0 &&
		    write(fd, buf, size - 1) == (ssize_t)(size - 1)) {
			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			if (snap_reader_open(&r, path, &err))
				r = NULL;
		}
		if (fd >= 0)
			close(fd);
	} else if (snap_reader_open_mem(&r, "fuzz.snap", buf, size - 1, &err)) {
		r = NULL;
	}
	if (!r) {
		/* Every refusal must come with a message. */
		if (!err.msg[0])
			abort();
	} else {
		decode_all(r, mode);
		snap_reader_close(r);
	}
	free(buf);
	return 0;
}
