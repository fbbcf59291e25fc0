/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Writes seed inputs for fuzz_snap_reader into the directory given: a
 * realistic state file prefixed with each mode byte the harness knows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "snap.h"
#include "snap_ram.h"

struct dev {
	uint8_t n;
	uint32_t q[8];
	uint8_t on;
	int64_t off;
	uint8_t mac[6];
	uint16_t div;
};
static const struct snap_field dev_fields[] = {
	SNAP_U8_MAX(struct dev, n, 8, 1),
	SNAP_U32_VARRAY(struct dev, q, 8, n, 1),
	SNAP_BOOL(struct dev, on, 1),
	SNAP_I64(struct dev, off, 1),
	SNAP_BYTES(struct dev, mac, 6, 1),
	SNAP_U16(struct dev, div, 2),
};
static const struct snap_desc dev_desc =
	SNAP_DESC("dev", 2, 1, struct dev, dev_fields);

int main(int argc, char **argv)
{
	static const uint8_t modes[] = {0x00, 0x01, 0x0b, 0x0f, 0x81};
	struct dev s = {.n = 3,
			.q = {1, 2, 3},
			.on = 1,
			.off = -7,
			.mac = {1, 2, 3, 4, 5, 6},
			.div = 12};
	static const char cfg[] = "{\"cpus\":1,\"memory\":2097152}";
	uint64_t hashes[1] = {42};
	struct snap_ram_info ri = {.file = "s.ram",
				   .ram_size = 2 * MiB,
				   .chunk_size = 2 * MiB,
				   .nchunks = 1,
				   .hashes = hashes};
	struct snap_host_info h;
	struct snap_writer *w;
	char path[4096];
	uint8_t buf[8192];
	size_t n;
	FILE *f;

	if (argc != 2)
		return 2;
	snprintf(path, sizeof(path), "%s/.seed.snap", argv[1]);
	snap_host_info_probe(&h, "seed");
	if (snap_writer_open(&w, path, &h, NULL))
		return 1;
	if (snap_write_blob(w, "config", 0, 1, 0, cfg, strlen(cfg)) ||
	    snap_write_section(w, &dev_desc, 0, &s) ||
	    snap_write_section(w, &dev_desc, 1, &s) ||
	    snap_ram_write_section(w, &ri)) {
		snap_writer_abort(w);
		return 1;
	}
	if (snap_writer_commit(w))
		return 1;
	f = fopen(path, "rb");
	if (!f)
		return 1;
	n = fread(buf + 1, 1, sizeof(buf) - 1, f);
	fclose(f);
	remove(path);
	for (unsigned i = 0; i < sizeof(modes); i++) {
		snprintf(path, sizeof(path), "%s/seed-%02x", argv[1], modes[i]);
		buf[0] = modes[i];
		f = fopen(path, "wb");
		if (!f || fwrite(buf, 1, n + 1, f) != n + 1)
			return 1;
		fclose(f);
	}
	return 0;
}
