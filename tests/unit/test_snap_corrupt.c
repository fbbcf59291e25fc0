/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Every single-byte corruption and every truncation of a realistic state
 * file must be refused with a message, never crash (this also runs under
 * ASan+UBSan). A second pass re-seals the checksums after corrupting, so
 * the structural and bound checks behind them are exercised too.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "common.h"
#include "snap.h"
#include "snap_ram.h"
#include "unit.h"

struct uart {
	uint8_t ier, lcr, rx_len;
	uint8_t rx_fifo[16];
	uint8_t irq_on;
	uint16_t divisor;
};
static const struct snap_field uart_fields[] = {
	SNAP_U8(struct uart, ier, 1),
	SNAP_U8(struct uart, lcr, 1),
	SNAP_U8_MAX(struct uart, rx_len, 16, 1),
	SNAP_U8_VARRAY(struct uart, rx_fifo, 16, rx_len, 1),
	SNAP_BOOL(struct uart, irq_on, 1),
	SNAP_U16(struct uart, divisor, 2),
};
static const struct snap_desc uart_desc =
	SNAP_DESC("uart8250", 2, 1, struct uart, uart_fields);

struct cpu {
	uint64_t regs[16];
	uint64_t rip, rflags;
	int64_t tsc_offset;
	uint32_t nmsr;
	uint32_t msr_idx[32];
	uint64_t msr_val[32];
	uint8_t pending[8];
};
static const struct snap_field cpu_fields[] = {
	SNAP_U64_ARRAY(struct cpu, regs, 16, 1),
	SNAP_U64(struct cpu, rip, 1),
	SNAP_U64(struct cpu, rflags, 1),
	SNAP_I64(struct cpu, tsc_offset, 1),
	SNAP_U32_MAX(struct cpu, nmsr, 32, 1),
	SNAP_U32_VARRAY(struct cpu, msr_idx, 32, nmsr, 1),
	SNAP_U64_VARRAY(struct cpu, msr_val, 32, nmsr, 1),
	SNAP_BYTES(struct cpu, pending, 8, 1),
};
static const struct snap_desc cpu_desc =
	SNAP_DESC("vcpu", 1, 1, struct cpu, cpu_fields);

static uint8_t *file;
static size_t file_len;

static int build_file(const char *path)
{
	struct snap_host_info h;
	struct snap_writer *w;
	struct uart u = {
		.ier = 3, .lcr = 0x83, .rx_len = 5, .irq_on = 1, .divisor = 12};
	struct cpu c;
	static const char cfg[] = "{\"vcpus\":2,\"memory\":\"512M\","
				  "\"devices\":[\"uart8250\",\"virtio-blk\"]}";
	uint64_t hashes[4] = {1, 2, 3, 4};
	struct snap_ram_info ri = {.file = "t.snap.ram",
				   .ram_size = 8 * MiB,
				   .chunk_size = 2 * MiB,
				   .nchunks = 4,
				   .hashes = hashes};
	uint8_t xsave[512];
	FILE *f;
	long n;
	int rc;

	memcpy(u.rx_fifo, "hello", 5);
	memset(&c, 0, sizeof(c));
	for (unsigned i = 0; i < 16; i++)
		c.regs[i] = 0x1111111111111111ULL * i;
	c.rip = 0xffffffff81000000ULL;
	c.rflags = 0x202;
	c.tsc_offset = -123456789;
	c.nmsr = 3;
	for (unsigned i = 0; i < 3; i++) {
		c.msr_idx[i] = 0xc0000080 + i;
		c.msr_val[i] = i + 100;
	}
	for (unsigned i = 0; i < sizeof(xsave); i++)
		xsave[i] = (uint8_t)(i * 13);
	snap_host_info_probe(&h, "kvm_pvm api 12");
	rc = snap_writer_open(&w, path, &h, NULL);
	if (rc)
		return rc;
	rc = snap_write_blob(w, "config", 0, 1, 0, cfg, strlen(cfg));
	if (!rc)
		rc = snap_write_section(w, &cpu_desc, 0, &c);
	if (!rc)
		rc = snap_write_blob(w, "xsave", 0, 1, 0, xsave, sizeof(xsave));
	if (!rc)
		rc = snap_write_section(w, &uart_desc, 0, &u);
	if (!rc)
		rc = snap_ram_write_section(w, &ri);
	if (rc) {
		snap_writer_abort(w);
		return rc;
	}
	rc = snap_writer_commit(w);
	if (rc)
		return rc;
	f = fopen(path, "rb");
	if (!f)
		return -errno;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	file = malloc((size_t)n);
	file_len = file && fread(file, 1, (size_t)n, f) == (size_t)n ? (size_t)n
								     : 0;
	fclose(f);
	return file_len ? 0 : -EIO;
}

/* Load everything the way a restore would; returns 0 or -errno. */
static int load_all(struct snap_reader *r, struct err *err)
{
	struct uart u = {0};
	struct cpu c = {0};
	struct snap_ram_info ri;
	const void *d;
	size_t len;
	int rc;

	rc = snap_read_section(r, &uart_desc, 0, &u, err);
	if (!rc) {
		/* Whatever got through must respect the description. */
		CHECK(u.rx_len <= 16);
		CHECK(u.irq_on <= 1);
		rc = snap_read_section(r, &cpu_desc, 0, &c, err);
	}
	if (!rc)
		CHECK(c.nmsr <= 32);
	if (!rc)
		rc = snap_read_blob(r, "config", 0, &d, &len, NULL, err);
	if (!rc)
		rc = snap_read_blob(r, "xsave", 0, &d, &len, NULL, err);
	if (!rc) {
		rc = snap_ram_read_section(r, &ri, err);
		snap_ram_info_free(&ri);
	}
	if (!rc)
		rc = snap_reader_check_consumed(r, err);
	return rc;
}

static void test_pristine(void)
{
	struct snap_reader *r = NULL;
	struct err err = {0};

	CHECK(file_len > 1024 && file_len < 8192);
	CHECK_EQ(snap_reader_open_mem(&r, "t.snap", file, file_len, &err), 0);
	if (r)
		CHECK_EQ(load_all(r, &err), 0);
	snap_reader_close(r);
}

static void test_flips(void)
{
	uint8_t *buf = malloc(file_len);
	static const uint8_t masks[] = {0x01, 0x80, 0xff};
	unsigned refused = 0, silent = 0;

	if (!buf)
		return;
	for (size_t off = 0; off < file_len; off++) {
		for (unsigned m = 0; m < ARRAY_SIZE(masks); m++) {
			struct snap_reader *r = NULL;
			struct err err = {0};
			int rc;

			memcpy(buf, file, file_len);
			buf[off] ^= masks[m];
			rc = snap_reader_open_mem(&r, "t.snap", buf, file_len,
						  &err);
			if (!rc)
				rc = load_all(r, &err);
			snap_reader_close(r);
			if (rc < 0 && err.msg[0] &&
			    !strncmp(err.msg, "t.snap", 6))
				refused++;
			else if (!rc)
				silent++;
		}
	}
	CHECK_EQ(refused, file_len * ARRAY_SIZE(masks));
	CHECK_EQ(silent, 0);
	free(buf);
}

static void test_truncations(void)
{
	unsigned refused = 0;

	for (size_t len = 0; len < file_len; len++) {
		struct snap_reader *r = NULL;
		struct err err = {0};
		/* An exact-size heap copy lets ASan catch any over-read. */
		uint8_t *buf = malloc(len ? len : 1);

		if (!buf)
			return;
		memcpy(buf, file, len);
		if (snap_reader_open_mem(&r, "t.snap", buf, len, &err) < 0 &&
		    err.msg[0] && r == NULL)
			refused++;
		snap_reader_close(r);
		free(buf);
	}
	CHECK_EQ(refused, file_len);
}

/* Re-seal the header, every section and the whole file after a change. */
static void reseal(uint8_t *b, size_t len)
{
	uint32_t hlen = get_le32(b + 12);
	uint64_t off;

	if (hlen < 64 || hlen > len)
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
		XXH3_64bits_reset(s);
		XXH3_64bits_update(s, b + off, 32);
		XXH3_64bits_update(s, b + off + 40, nlen + plen);
		put_le64(b + off + 32, XXH3_64bits_digest(s));
		XXH3_freeState(s);
		off += 40 + nlen + plen;
	}
	put_le64(b + len - 8, XXH3_64bits(b, len - 8));
}

static void test_resealed(void)
{
	uint8_t *buf = malloc(file_len);
	unsigned loaded = 0, refused = 0, total = 0;

	if (!buf)
		return;
	for (size_t off = 0; off < file_len - 8; off++) {
		for (unsigned v = 0; v < 3; v++) {
			struct snap_reader *r = NULL;
			struct err err = {0};
			static const uint8_t vals[] = {0xff, 0x11, 0x00};
			int rc;

			memcpy(buf, file, file_len);
			if (buf[off] == vals[v])
				continue;
			buf[off] = vals[v];
			reseal(buf, file_len);
			total++;
			rc = snap_reader_open_mem(&r, "t.snap", buf, file_len,
						  &err);
			if (!rc)
				rc = load_all(r, &err);
			snap_reader_close(r);
			if (!rc)
				loaded++; /* a value change that is in bounds */
			else if (err.msg[0])
				refused++;
		}
	}
	/* Both outcomes occur and nothing fails without a message. */
	CHECK(loaded > 0);
	CHECK(refused > 0);
	CHECK_EQ(loaded + refused, total);
	free(buf);
}

/* Targeted: re-sealed values that break one rule each. */
static void test_resealed_rules(void)
{
	uint8_t *buf = malloc(file_len);
	struct snap_reader *r = NULL;
	struct err err = {0};
	uint8_t *p;

	if (!buf)
		return;
	memcpy(buf, file, file_len);
	/* rx_len is stored as: name_len 6, type u8, 0, count 1, "rx_len". */
	p = memmem(buf, file_len, "rx_len", 6);
	CHECK(p != NULL);
	if (!p)
		goto out;
	p[6] = 200;
	reseal(buf, file_len);
	CHECK_EQ(snap_reader_open_mem(&r, "vm1.snap", buf, file_len, &err), 0);
	if (r) {
		struct uart u = {0};

		CHECK(snap_read_section(r, &uart_desc, 0, &u, &err) < 0);
		CHECK(!strcmp(err.msg, "vm1.snap: section 'uart8250' #0: "
				       "field 'rx_len': value 200 exceeds "
				       "maximum 16"));
		snap_reader_close(r);
		r = NULL;
	}
	/* Bool that is not 0/1 is an encoding error at open. */
	memcpy(buf, file, file_len);
	p = memmem(buf, file_len, "irq_on", 6);
	CHECK(p != NULL);
	if (p) {
		p[6] = 7;
		reseal(buf, file_len);
		CHECK(snap_reader_open_mem(&r, "vm1.snap", buf, file_len,
					   &err) < 0);
		CHECK(strstr(err.msg, "field 'irq_on': bool value 7"));
	}
	/* nmsr says 4 but the varrays carry 3. */
	memcpy(buf, file, file_len);
	p = memmem(buf, file_len, "nmsr", 4);
	CHECK(p != NULL);
	if (p) {
		p[4] = 4;
		reseal(buf, file_len);
		CHECK_EQ(snap_reader_open_mem(&r, "vm1.snap", buf, file_len,
					      &err),
			 0);
		if (r) {
			struct cpu c = {0};

			CHECK(snap_read_section(r, &cpu_desc, 0, &c, &err) < 0);
			CHECK(strstr(err.msg, "field 'msr_idx': 3 elements in "
					      "the file but 'nmsr' = 4"));
			snap_reader_close(r);
		}
	}
	/* A payload length of 2^63 (header re-sealed by hand: reseal()
	 * stops at a length beyond the file). */
	memcpy(buf, file, file_len);
	/* The name right after a section header (the config names it too). */
	p = buf;
	while ((p = memmem(p, file_len - (size_t)(p - buf), "uart8250", 8)) &&
	       (p - buf < 40 || memcmp(p - 40, "SECT", 4)))
		p++;
	CHECK(p != NULL);
	if (p) {
		uint8_t *sh = p - 40;
		XXH3_state_t *st = XXH3_createState();

		put_le64(sh + 24, 1ULL << 63);
		XXH3_64bits_reset(st);
		XXH3_64bits_update(st, sh, 32);
		XXH3_64bits_update(st, p, 8);
		put_le64(sh + 32, XXH3_64bits_digest(st));
		XXH3_freeState(st);
		reseal(buf, file_len);
		CHECK(snap_reader_open_mem(&r, "vm1.snap", buf, file_len,
					   &err) < 0);
		CHECK(strstr(err.msg, "vm1.snap: section 'uart8250'"));
		CHECK(strstr(err.msg, "payload of 9223372036854775808 bytes "
				      "overruns the file"));
	}
out:
	free(buf);
}

int main(void)
{
	char dir[64] = "/tmp/khyve-test-corrupt-XXXXXX", path[96];

	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/t.snap", dir);
	CHECK_EQ(build_file(path), 0);
	unlink(path);
	rmdir(dir);
	if (!file)
		return unit_done();
	RUN(test_pristine);
	RUN(test_flips);
	RUN(test_truncations);
	RUN(test_resealed);
	RUN(test_resealed_rules);
	free(file);
	return unit_done();
}
