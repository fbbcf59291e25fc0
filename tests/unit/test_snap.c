/* SPDX-License-Identifier: BSD-2-Clause */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "common.h"
#include "snap.h"
#include "unit.h"

static char dir[64];

static const char *tpath(const char *name)
{
	static char buf[4][128];
	static unsigned n;
	char *p = buf[n++ % 4];

	snprintf(p, 128, "%s/%s", dir, name);
	return p;
}

/* ------------------------------------------------ every type, arrays */

struct all_state {
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	int64_t i64;
	uint8_t flag;
	uint8_t bytes[7];
	uint16_t arr16[5];
	uint32_t n32;
	uint32_t v32[8];
	uint8_t n64;
	uint64_t v64[4];
	uint16_t n8;
	uint8_t v8[16];
	uint8_t lim;
};

static const struct snap_field all_fields[] = {
	SNAP_U8(struct all_state, u8, 1),
	SNAP_U16(struct all_state, u16, 1),
	SNAP_U32(struct all_state, u32, 1),
	SNAP_U64(struct all_state, u64, 1),
	SNAP_I64(struct all_state, i64, 1),
	SNAP_BOOL(struct all_state, flag, 1),
	SNAP_BYTES(struct all_state, bytes, 7, 1),
	SNAP_U16_ARRAY(struct all_state, arr16, 5, 1),
	SNAP_U32_MAX(struct all_state, n32, 8, 1),
	SNAP_U32_VARRAY(struct all_state, v32, 8, n32, 1),
	SNAP_U8(struct all_state, n64, 1),
	SNAP_U64_VARRAY(struct all_state, v64, 4, n64, 1),
	SNAP_U16(struct all_state, n8, 1),
	SNAP_U8_VARRAY(struct all_state, v8, 16, n8, 1),
	SNAP_U8_MAX(struct all_state, lim, 16, 1),
};
static const struct snap_desc all_desc =
	SNAP_DESC("all", 1, 1, struct all_state, all_fields);

static void fill_all(struct all_state *s)
{
	memset(s, 0, sizeof(*s));
	s->u8 = 0xab;
	s->u16 = 0xbeef;
	s->u32 = 0xdeadbeef;
	s->u64 = 0x0123456789abcdefULL;
	s->i64 = -42;
	s->flag = 1;
	memcpy(s->bytes, "khyve!!", 7);
	for (unsigned i = 0; i < 5; i++)
		s->arr16[i] = (uint16_t)(1000 + i);
	s->n32 = 3;
	s->v32[0] = 7;
	s->v32[1] = 8;
	s->v32[2] = 9;
	s->v32[5] = 0x5555; /* dead slot: not saved */
	s->n64 = 4;
	for (unsigned i = 0; i < 4; i++)
		s->v64[i] = ~0ULL - i;
	s->n8 = 0;
	s->lim = 16;
}

static struct snap_writer *new_writer(const char *path)
{
	struct snap_host_info h;
	struct snap_writer *w = NULL;

	CHECK_EQ(snap_host_info_probe(&h, "test kvm info"), 0);
	CHECK_EQ(snap_writer_open(&w, path, &h, NULL), 0);
	return w;
}

static void test_roundtrip(void)
{
	struct all_state in, out;
	struct snap_reader *r = NULL;
	struct err err = {0};
	const char *p = tpath("rt.snap");
	struct snap_writer *w = new_writer(p);
	struct snap_section_info si;
	struct snap_field_info fi;

	fill_all(&in);
	CHECK_EQ(snap_write_section(w, &all_desc, 0, &in), 0);
	in.u8 = 0x11;
	CHECK_EQ(snap_write_section(w, &all_desc, 3, &in), 0);
	CHECK_EQ(snap_write_section(w, &all_desc, 3, &in), -EEXIST);
	CHECK_EQ(snap_writer_commit(w), 0);

	CHECK_EQ(snap_reader_open(&r, p, &err), 0);
	if (!r) {
		fprintf(stderr, "%s\n", err.msg);
		return;
	}
	CHECK(!strcmp(snap_reader_header(r)->arch, "x86_64"));
	CHECK(!strcmp(snap_reader_header(r)->khyve_version, KHYVE_VERSION));
	CHECK(!strcmp(snap_reader_header(r)->host.kvm_info, "test kvm info"));
	CHECK(snap_reader_header(r)->created > 1600000000);
	CHECK(snap_has_section(r, "all", 0));
	CHECK(snap_has_section(r, "all", 3));
	CHECK(!snap_has_section(r, "all", 1));
	CHECK_EQ(snap_reader_nsections(r), 2);

	memset(&out, 0x77, sizeof(out));
	CHECK_EQ(snap_read_section(r, &all_desc, 0, &out, &err), 0);
	fill_all(&in);
	in.v32[5] = 0; /* dead varray slots are zeroed on load */
	CHECK_EQ(out.u8, 0xab);
	CHECK_EQ(out.u16, 0xbeef);
	CHECK_EQ(out.u32, 0xdeadbeef);
	CHECK_EQ(out.u64, 0x0123456789abcdefULL);
	CHECK(out.i64 == -42);
	CHECK_EQ(out.flag, 1);
	CHECK(!memcmp(out.bytes, "khyve!!", 7));
	CHECK_EQ(out.arr16[4], 1004);
	CHECK_EQ(out.n32, 3);
	CHECK_EQ(out.v32[2], 9);
	CHECK_EQ(out.v32[5], 0);
	CHECK_EQ(out.v64[3], ~0ULL - 3);
	CHECK_EQ(out.n8, 0);
	CHECK_EQ(out.v8[0], 0);
	CHECK_EQ(out.v32[0], 7);
	CHECK_EQ(out.v32[1], 8);
	for (unsigned i = 0; i < 5; i++)
		CHECK_EQ(out.arr16[i], 1000 + i);
	for (unsigned i = 0; i < 4; i++)
		CHECK_EQ(out.v64[i], ~0ULL - i);
	CHECK_EQ(out.lim, 16);
	CHECK_EQ(snap_read_section(r, &all_desc, 3, &out, &err), 0);
	CHECK_EQ(out.u8, 0x11);

	/* The file describes itself: v32 has 3 elements tagged u32. */
	CHECK_EQ(snap_reader_section(r, 0, &si), 0);
	CHECK(!strcmp(si.name, "all"));
	CHECK_EQ(si.kind, SNAP_KIND_DESC);
	CHECK_EQ(si.nfields, ARRAY_SIZE(all_fields));
	CHECK_EQ(snap_reader_field(r, 0, 9, &fi), 0);
	CHECK(!strcmp(fi.name, "v32"));
	CHECK_EQ(fi.type, SNAP_T_U32);
	CHECK_EQ(fi.count, 3);
	CHECK_EQ(snap_field_elem(&fi, 1), 8);
	CHECK_EQ(snap_reader_field(r, 0, 4, &fi), 0);
	CHECK(snap_field_elem(&fi, 0) == (uint64_t)-42);
	CHECK_EQ(snap_reader_field(r, 0, 99, &fi), -ENOENT);
	CHECK_EQ(snap_reader_check_consumed(r, &err), 0);
	snap_reader_close(r);
}

/* ---------------------------------------------------- version evolution */

struct dev_v1 {
	uint32_t a;
	uint16_t b;
};
struct dev_v2 {
	uint32_t a;
	uint16_t b;
	uint64_t c; /* new in v2 */
};
static const struct snap_field dev_v1_fields[] = {
	SNAP_U32(struct dev_v1, a, 1),
	SNAP_U16(struct dev_v1, b, 1),
};
static const struct snap_field dev_v2_fields[] = {
	SNAP_U32(struct dev_v2, a, 1),
	SNAP_U16(struct dev_v2, b, 1),
	SNAP_U64(struct dev_v2, c, 2),
};
static const struct snap_desc dev_v1 =
	SNAP_DESC("dev", 1, 1, struct dev_v1, dev_v1_fields);
static const struct snap_desc dev_v2 =
	SNAP_DESC("dev", 2, 1, struct dev_v2, dev_v2_fields);
/* v3 drops compatibility with v1/v2 readers. */
static const struct snap_desc dev_v3_strict =
	SNAP_DESC("dev", 3, 3, struct dev_v2, dev_v2_fields);
/* v2 that old readers may still load (they ignore 'c'). */
static const struct snap_desc dev_v2_compat =
	SNAP_DESC("dev", 2, 1, struct dev_v2, dev_v2_fields);
/* A reader that insists on v2 at least. */
static const struct snap_desc dev_v2_new_only =
	SNAP_DESC("dev", 2, 2, struct dev_v2, dev_v2_fields);
/* A v2 that forgot to write 'c' is wrong: v2 promises it. */
static const struct snap_desc dev_v2_missing =
	SNAP_DESC("dev", 2, 1, struct dev_v1, dev_v1_fields);

static int write_one(const char *p, const struct snap_desc *d, const void *st)
{
	struct snap_writer *w = new_writer(p);
	int rc;

	if (!w)
		return -EIO;
	rc = snap_write_section(w, d, 0, st);
	if (rc) {
		snap_writer_abort(w);
		return rc;
	}
	return snap_writer_commit(w);
}

static void test_versions(void)
{
	struct dev_v1 s1 = {.a = 11, .b = 22}, o1;
	struct dev_v2 s2 = {.a = 33, .b = 44, .c = 55}, o2;
	struct snap_reader *r = NULL;
	struct err err = {0};
	const char *p = tpath("ver.snap");

	/* Old file, new code: 'c' keeps the preloaded value. */
	CHECK_EQ(write_one(p, &dev_v1, &s1), 0);
	CHECK_EQ(snap_reader_open(&r, p, &err), 0);
	o2 = (struct dev_v2){.c = 0xc0ffee};
	CHECK_EQ(snap_read_section(r, &dev_v2, 0, &o2, &err), 0);
	CHECK_EQ(o2.a, 11);
	CHECK_EQ(o2.b, 22);
	CHECK_EQ(o2.c, 0xc0ffee);
	/* ...unless the new code no longer loads v1. */
	CHECK_EQ(snap_read_section(r, &dev_v2_new_only, 0, &o2, &err), -EPROTO);
	CHECK(strstr(err.msg, "version 1 is older than the oldest"));
	snap_reader_close(r);

	/* Newer file whose min_version allows us: unknown 'c' ignored. */
	CHECK_EQ(write_one(p, &dev_v2_compat, &s2), 0);
	CHECK_EQ(snap_reader_open(&r, p, &err), 0);
	memset(&o1, 0, sizeof(o1));
	CHECK_EQ(snap_read_section(r, &dev_v1, 0, &o1, &err), 0);
	CHECK_EQ(o1.a, 33);
	CHECK_EQ(o1.b, 44);
	snap_reader_close(r);

	/* Newer file that says we cannot read it. */
	CHECK_EQ(write_one(p, &dev_v3_strict, &s2), 0);
	CHECK_EQ(snap_reader_open(&r, p, &err), 0);
	o1 = (struct dev_v1){.a = 1, .b = 2};
	CHECK_EQ(snap_read_section(r, &dev_v1, 0, &o1, &err), -EPROTO);
	CHECK(strstr(err.msg, "'dev' #0: version 3 needs a reader of version "
			      "3 or later, this khyve has 1"));
	CHECK_EQ(o1.a, 1); /* untouched on failure */
	CHECK_EQ(snap_read_section(r, &dev_v3_strict, 0, &o2, &err), 0);
	snap_reader_close(r);

	/* A v2 section lacking the v2 field 'c' is refused by v2 code. */
	CHECK_EQ(write_one(p, &dev_v2_missing, &s1), 0);
	CHECK_EQ(snap_reader_open(&r, p, &err), 0);
	CHECK_EQ(snap_read_section(r, &dev_v2, 0, &o2, &err), -EPROTO);
	CHECK(strstr(err.msg, "field 'c': missing"));
	snap_reader_close(r);
}

/* ---------------------------------------------------------- bounds */

struct wide {
	uint8_t rx_len;
	uint32_t n;
	uint32_t q[32];
	uint16_t t;
	uint8_t fifo[16];
	uint8_t on;
	uint8_t fifo2[20];
};
static const struct snap_field wide_fields[] = {
	SNAP_U8(struct wide, rx_len, 1),
	SNAP_U32(struct wide, n, 1),
	SNAP_U32_VARRAY(struct wide, q, 32, n, 1),
	SNAP_U16(struct wide, t, 1),
	SNAP_U8_ARRAY(struct wide, fifo, 16, 1),
	SNAP_BOOL(struct wide, on, 1),
	SNAP_U8_ARRAY(struct wide, fifo2, 20, 1),
};
static const struct snap_desc wide_desc =
	SNAP_DESC("uart8250", 1, 1, struct wide, wide_fields);

struct narrow {
	uint8_t rx_len;
	uint32_t n;
	uint32_t q[16];
	uint16_t t;
	uint8_t fifo[16];
	uint8_t on;
	uint8_t fifo2[16];
};
#define NARROW(rxmax, ttype)                                                   \
	{                                                                      \
		SNAP_U8_MAX(struct narrow, rx_len, rxmax, 1),                  \
			SNAP_U32(struct narrow, n, 1),                         \
			SNAP_U32_VARRAY(struct narrow, q, 16, n, 1),           \
			SNAP__F(struct narrow, t, ttype, 1, 1, 0, NULL),       \
			SNAP_U8_ARRAY(struct narrow, fifo, 16, 1),             \
			SNAP_BOOL(struct narrow, on, 1),                       \
	}

static const struct snap_field narrow_ok[] = NARROW(255, SNAP_T_U16);
static const struct snap_field narrow_max[] = NARROW(16, SNAP_T_U16);
static const struct snap_field narrow_type[] = NARROW(255, SNAP_T_U32);
static const struct snap_field narrow_fifo_only[] = {
	SNAP_U8_ARRAY(struct narrow, fifo2, 16, 1),
};

static void expect_fail(const char *p, const struct snap_field *f, unsigned n,
			const char *want)
{
	struct snap_desc d = {.name = "uart8250",
			      .version = 1,
			      .min_version = 1,
			      .fields = f,
			      .nfields = n,
			      .state_size = sizeof(struct narrow)};
	struct snap_reader *r = NULL;
	struct err err = {0};
	struct narrow o;
	int rc;

	memset(&o, 0x5a, sizeof(o));
	CHECK_EQ(snap_reader_open(&r, p, &err), 0);
	if (!r)
		return;
	rc = snap_read_section(r, &d, 0, &o, &err);
	CHECK(rc < 0);
	if (!strstr(err.msg, want)) {
		fprintf(stderr, "got '%s', want '%s'\n", err.msg, want);
		CHECK(0);
	}
	CHECK_EQ(o.rx_len, 0x5a);
	snap_reader_close(r);
}

static void test_bounds(void)
{
	struct wide s = {0};
	const char *p = tpath("vm1.snap");
	struct snap_reader *r = NULL;
	struct err err = {0};
	struct narrow o;
	struct snap_desc d = wide_desc;
	char want[256];

	s.rx_len = 200;
	s.n = 10;
	s.on = 1;
	CHECK_EQ(write_one(p, &wide_desc, &s), 0);
	d.fields = narrow_ok;
	d.nfields = ARRAY_SIZE(narrow_ok);
	d.state_size = sizeof(struct narrow);
	CHECK_EQ(snap_reader_open(&r, p, &err), 0);
	CHECK_EQ(snap_read_section(r, &d, 0, &o, &err), 0);
	CHECK_EQ(o.rx_len, 200);
	snap_reader_close(r);

	snprintf(want, sizeof(want),
		 "%s: section 'uart8250' #0: field 'rx_len': value 200 exceeds "
		 "maximum 16",
		 p);
	expect_fail(p, narrow_max, ARRAY_SIZE(narrow_max), want);
	expect_fail(p, narrow_type, ARRAY_SIZE(narrow_type),
		    "field 't': type u16 in the file, expected u32");
	/* Fixed array longer in the file than our capacity. */
	expect_fail(p, narrow_fifo_only, 1,
		    "field 'fifo2': 20 elements exceed capacity 16");

	/* count_field beyond the varray's capacity. */
	s.rx_len = 1;
	s.n = 17;
	CHECK_EQ(write_one(p, &wide_desc, &s), 0);
	expect_fail(p, narrow_ok, ARRAY_SIZE(narrow_ok),
		    "field 'q': count 'n' = 17 exceeds capacity 16");

	/* Writers refuse values their own description forbids. */
	{
		struct snap_writer *w = new_writer(p);
		struct narrow ns = {.rx_len = 17};
		struct snap_desc nd = d;

		nd.fields = narrow_max;
		CHECK_EQ(snap_write_section(w, &nd, 0, &ns), -ERANGE);
		CHECK(strstr(snap_writer_error(w), "value 17 exceeds maximum"));
		ns.rx_len = 1;
		ns.n = 99;
		CHECK_EQ(snap_write_section(w, &nd, 0, &ns), -ERANGE);
		CHECK(strstr(snap_writer_error(w), "exceeds capacity 16"));
		ns.n = 0;
		ns.on = 2;
		CHECK_EQ(snap_write_section(w, &nd, 0, &ns), -ERANGE);
		snap_writer_abort(w);
	}
}

static void test_desc_check(void)
{
	struct err err;
	static const struct snap_field bad_cf[] = {
		SNAP_U32_VARRAY(struct narrow, q, 16, n, 1),
		SNAP_U32(struct narrow, n, 1),
	};
	static const struct snap_field bad_off[] = {
		SNAP_U32_ARRAY(struct narrow, q, 100, 1),
	};
	static const struct snap_field bad_since[] = {
		SNAP_U32(struct narrow, n, 2),
	};
	struct snap_desc d = SNAP_DESC("x", 1, 1, struct narrow, bad_cf);

	CHECK_EQ(snap_desc_check(&d, &err), -EINVAL);
	CHECK(strstr(err.msg, "count field 'n'"));
	d.fields = bad_off;
	d.nfields = 1;
	CHECK_EQ(snap_desc_check(&d, &err), -EINVAL);
	d.fields = bad_since;
	CHECK_EQ(snap_desc_check(&d, &err), -EINVAL);
	d.version = 2;
	CHECK_EQ(snap_desc_check(&d, &err), 0);
	d.name = "bad name";
	CHECK_EQ(snap_desc_check(&d, &err), -EINVAL);
	CHECK_EQ(snap_desc_check(&all_desc, &err), 0);
}

/* ------------------------------------------------------------- blobs */

static void test_blob(void)
{
	const char *p = tpath("blob.snap");
	struct snap_writer *w = new_writer(p);
	struct snap_reader *r = NULL;
	struct err err = {0};
	static const char cfg[] = "{\"vcpus\": 2, \"memory\": 536870912}";
	uint8_t big[70000];
	const void *data;
	size_t len;
	uint16_t ver;
	struct dev_v1 s1 = {1, 2};

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	CHECK_EQ(snap_write_blob(w, "config", 0, 1, 0, cfg, strlen(cfg)), 0);
	CHECK_EQ(snap_write_blob(w, "xsave", 1, 4, 0, big, sizeof(big)), 0);
	CHECK_EQ(snap_write_blob(w, "empty", 0, 1, 0, NULL, 0), 0);
	CHECK_EQ(snap_write_blob(w, "extra", 0, 1, SNAP_F_OPTIONAL, "x",
				       1),
		 0);
	CHECK_EQ(snap_write_section(w, &dev_v1, 0, &s1), 0);
	CHECK_EQ(snap_writer_commit(w), 0);

	CHECK_EQ(snap_reader_open(&r, p, &err), 0);
	if (!r)
		return;
	CHECK_EQ(snap_read_blob(r, "config", 0, &data, &len, &ver, &err), 0);
	CHECK_EQ(len, strlen(cfg));
	CHECK(!memcmp(data, cfg, len));
	CHECK_EQ(ver, 1);
	CHECK_EQ(snap_read_blob(r, "xsave", 1, &data, &len, &ver, &err), 0);
	CHECK_EQ(len, sizeof(big));
	CHECK(!memcmp(data, big, len));
	CHECK_EQ(ver, 4);
	CHECK_EQ(snap_read_blob(r, "xsave", 0, &data, &len, &ver, &err),
		 -ENOENT);
	CHECK(strstr(err.msg, "section 'xsave' #0 not found"));
	CHECK_EQ(snap_read_blob(r, "dev", 0, &data, &len, &ver, &err), -EPROTO);
	/* 'empty' and 'dev' are required and not loaded yet. */
	CHECK_EQ(snap_reader_check_consumed(r, &err), -EPROTO);
	CHECK(strstr(err.msg, "'empty' #0 is required"));
	CHECK_EQ(snap_read_blob(r, "empty", 0, &data, &len, NULL, &err), 0);
	CHECK_EQ(len, 0);
	CHECK_EQ(snap_reader_check_consumed(r, &err), -EPROTO);
	CHECK(strstr(err.msg, "'dev' #0 is required"));
	CHECK_EQ(snap_read_section(r, &dev_v1, 0, &s1, &err), 0);
	/* 'extra' is optional: fine to leave. */
	CHECK_EQ(snap_reader_check_consumed(r, &err), 0);
	snap_reader_close(r);
}

/* ----------------------------------------------------- atomic writes */

static unsigned count_tmp_files(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	unsigned n = 0;

	if (!d)
		return 999;
	while ((e = readdir(d)))
		if (strstr(e->d_name, ".tmp-"))
			n++;
	closedir(d);
	return n;
}

static uint32_t read_a(const char *p)
{
	struct snap_reader *r = NULL;
	struct err err;
	struct dev_v1 o = {0};

	if (snap_reader_open(&r, p, &err))
		return 0;
	snap_read_section(r, &dev_v1, 0, &o, &err);
	snap_reader_close(r);
	return o.a;
}

static void test_atomic(void)
{
	const char *p = tpath("atomic.snap");
	struct dev_v1 s = {.a = 1};
	struct snap_writer *w;
	uint8_t big[64 * 1024];
	pid_t pid;
	int status = -1;
	struct snap_host_info h;

	CHECK_EQ(write_one(p, &dev_v1, &s), 0);
	CHECK_EQ(read_a(p), 1);

	/* Abort: the previous file stays, no temp file left. */
	w = new_writer(p);
	s.a = 2;
	CHECK_EQ(snap_write_section(w, &dev_v1, 0, &s), 0);
	CHECK_EQ(count_tmp_files(), 1);
	snap_writer_abort(w);
	CHECK_EQ(count_tmp_files(), 0);
	CHECK_EQ(read_a(p), 1);

	/*
	 * A disk that fills up (RLIMIT_FSIZE, in a child so the limit does
	 * not leak): the error is returned and the old file is intact.
	 */
	memset(big, 0xee, sizeof(big));
	pid = fork();
	if (pid == 0) {
		struct rlimit rl = {16 * 1024, 16 * 1024};
		struct snap_writer *cw;
		int rc;

		signal(SIGXFSZ, SIG_IGN);
		setrlimit(RLIMIT_FSIZE, &rl);
		cw = new_writer(p);
		if (!cw)
			_exit(10);
		s.a = 3;
		rc = snap_write_section(cw, &dev_v1, 0, &s);
		if (!rc)
			rc = snap_write_blob(cw, "big", 0, 1, 0, big, sizeof(big));
		if (rc != -EFBIG || !strstr(snap_writer_error(cw), "write"))
			_exit(11);
		/* Errors stick: commit fails and removes the temp file. */
		if (snap_writer_commit(cw) != -EFBIG)
			_exit(12);
		_exit(0);
	}
	CHECK(pid > 0);
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_EQ(count_tmp_files(), 0);
	CHECK_EQ(read_a(p), 1);

	/* A successful commit replaces it. */
	s.a = 4;
	CHECK_EQ(write_one(p, &dev_v1, &s), 0);
	CHECK_EQ(read_a(p), 4);
	CHECK_EQ(count_tmp_files(), 0);

	/* Unwritable directory: open fails cleanly. */
	memset(&h, 0, sizeof(h));
	CHECK(snap_writer_open(&w, "/nonexistent-dir/x.snap", &h, NULL) < 0);
	CHECK(w == NULL);
}

/* ------------------------------------------------- header checks */

static void test_header(void)
{
	const char *p = tpath("hdr.snap");
	struct dev_v1 s = {5, 6};
	struct snap_reader *r = NULL;
	struct err err = {0};
	uint8_t buf[4096];
	FILE *f;
	size_t n;
	uint32_t hlen;

	CHECK_EQ(write_one(p, &dev_v1, &s), 0);
	f = fopen(p, "rb");
	n = f ? fread(buf, 1, sizeof(buf), f) : 0;
	if (f)
		fclose(f);
	CHECK(n > 100 && n < sizeof(buf));

	/* Pretend a future khyve wrote format 2.3 (checksum fixed up). */
	put_le16(buf + 8, 2);
	put_le16(buf + 10, 3);
	hlen = get_le32(buf + 12);
	put_le64(buf + hlen - 8, XXH3_64bits(buf, hlen - 8));
	CHECK_EQ(snap_reader_open_mem(&r, "new.snap", buf, n, &err), -EPROTO);
	CHECK(!strcmp(err.msg, "new.snap: format 2.3 is newer than this "
			       "khyve supports (1.2)"));
	CHECK(r == NULL);

	/* Newer minor of our major is fine (additive); whole-file sum too. */
	put_le16(buf + 8, 1);
	put_le64(buf + hlen - 8, XXH3_64bits(buf, hlen - 8));
	put_le64(buf + n - 8, XXH3_64bits(buf, n - 8));
	CHECK_EQ(snap_reader_open_mem(&r, "minor.snap", buf, n, &err), 0);
	if (r)
		CHECK_EQ(snap_reader_header(r)->minor, 3);
	snap_reader_close(r);

	CHECK_EQ(snap_reader_open(&r, tpath("missing.snap"), &err), -ENOENT);
	CHECK(strstr(err.msg, "missing.snap: No such file"));
	CHECK_EQ(snap_reader_open_mem(&r, "junk", "hello", 5, &err), -EPROTO);
	CHECK(strstr(err.msg, "junk: not a khyve snapshot"));
}

/*
 * A state file built in memory (a migration's STATE record) closes no
 * descriptor of anyone else's: its writer once closed fd 0 (an unset
 * flock descriptor), stdin, whose number the control server's next
 * client then got - and the console, still reading "stdin", took bytes
 * of its requests.
 */
static void test_mem_writer_closes_nothing(void)
{
	struct snap_host_info h;
	struct snap_writer *w = NULL;
	uint8_t *data = NULL;
	size_t len = 0;
	int fd = dup(0);

	/* fd 0 exists here whatever stdin the test got. */
	if (fd < 0) {
		fd = open("/dev/null", O_RDONLY);
		CHECK_EQ(fd, 0);
		fd = -1;
	}
	CHECK_EQ(snap_host_info_probe(&h, "test kvm info"), 0);
	CHECK_EQ(snap_writer_open_mem(&w, "migration state", &h, NULL), 0);
	snap_writer_abort(w);
	CHECK(fcntl(0, F_GETFD) >= 0);
	CHECK_EQ(snap_writer_open_mem(&w, "migration state", &h, NULL), 0);
	CHECK_EQ(snap_writer_take_mem(w, &data, &len), 0);
	snap_writer_abort(w);
	CHECK(fcntl(0, F_GETFD) >= 0);
	free(data);
	if (fd >= 0)
		close(fd);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/khyve-test-snap-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	RUN(test_roundtrip);
	RUN(test_versions);
	RUN(test_bounds);
	RUN(test_desc_check);
	RUN(test_blob);
	RUN(test_atomic);
	RUN(test_header);
	RUN(test_mem_writer_closes_nothing);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd))
			fprintf(stderr, "cleanup of %s failed\n", dir);
	}
	return unit_done();
}
