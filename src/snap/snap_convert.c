/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Mapped pair <-> recorded stream (snap_convert.h). Both directions go
 * through guest RAM composed in anonymous memory, as a merge does: the
 * input is read and checked whole there first (chain links and chunk
 * hashes, or every record), then written by the code that writes that
 * form anyway (snap_stream_send_ram and the STATE/END records of a
 * migration; snap_ram_live and the pair commit of a save).
 */
#include "snap_convert.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "snap.h"
#include "snap_chain.h"
#include "snap_file.h"
#include "snap_ram.h"
#include "snap_ram_live.h"

int snap_form_of(const char *path, enum snap_form *form, struct err *err)
{
	uint8_t m[8];
	struct stat st;
	ssize_t n;
	int fd = snap_open_regular(path, O_RDONLY | O_CLOEXEC, &st, err);

	if (fd < 0)
		return fd;
	n = pread(fd, m, sizeof(m), 0);
	close(fd);
	if (n < 0)
		return err_sys(err, "%s", path);
	if (n == sizeof(m) && !memcmp(m, "KHYVSNAP", 8)) {
		*form = SNAP_FORM_PAIR;
		return 0;
	}
	if (n >= 4 && get_le32(m) == SNAP_STREAM_MAGIC) {
		*form = SNAP_FORM_STREAM;
		return 0;
	}
	return err_set(err, -EPROTO,
		       "%s: %s: neither a khyve snapshot state file nor a "
		       "snapshot stream",
		       path, n ? "unknown magic" : "empty file");
}

/* ---- reading a recorded stream ---- */

void snap_stream_file_free(struct snap_stream_file *f)
{
	free(f->config);
	free(f->state);
	snap_scratch_free(&f->mem);
	f->config = NULL;
	f->state = NULL;
}

/*
 * The next record; the end of the file at a record boundary is a
 * truncated stream here (a recorded stream ends after END, read by the
 * caller), said as such.
 */
static int next_rec(struct snap_stream *s, unsigned last, unsigned *type,
		    const uint8_t **p, size_t *len, struct err *err)
{
	uint64_t before = s->bytes_in;
	int rc = snap_stream_recv(s, type, p, len, err);

	if (rc == -ECONNRESET && s->bytes_in == before)
		return err_set(err, -EPROTO,
			       "%s: the stream ends after record %u (%s), "
			       "before its END record: truncated",
			       s->peer, s->seq_in - 1, snap_rec_name(last));
	if (rc == -ECONNRESET) {
		rc = -EPROTO; /* cut inside a record: the message says where */
		err->code = rc;
	}
	return rc;
}

static int read_hello(struct snap_stream *s, struct snap_stream_file *f,
		      struct err *err)
{
	const uint8_t *p;
	unsigned type;
	size_t len;
	int rc = next_rec(s, 0, &type, &p, &len, err);

	if (rc)
		return rc;
	if (type != SNAP_REC_HELLO)
		return err_set(err, -EPROTO,
			       "%s: the stream starts with a %s record, not "
			       "HELLO",
			       s->peer, snap_rec_name(type));
	rc = snap_stream_parse_hello(p, len, &f->hello, err);
	if (rc) {
		err_prefix(err, "%s: ", s->peer);
		return rc;
	}
	f->config = malloc(f->hello.config_len + 1);
	if (!f->config)
		return err_set(err, -ENOMEM, "out of memory");
	memcpy(f->config, f->hello.config, f->hello.config_len);
	f->config[f->hello.config_len] = '\0';
	f->hello.config = f->config;
	if (!f->hello.ram_size || f->hello.ram_size % PAGE_SIZE)
		return err_set(err, -EPROTO,
			       "%s: HELLO record: %" PRIu64 " bytes of RAM",
			       s->peer, f->hello.ram_size);
	return 0;
}

/* A RAM record not applied: its header must still make sense. */
static int count_ram(struct snap_stream *s, struct snap_stream_file *f,
		     const uint8_t *p, size_t len, bool load, struct err *err)
{
	uint64_t n = len >= 16 ? get_le32(p + 8) : 0;
	uint32_t flags = len >= 16 ? get_le32(p + 12) : 0;
	uint64_t pages = 0;
	int rc = 0;

	if (load)
		rc = snap_stream_apply_ram(s, &f->mem, p, len, &pages, err);
	else if (len < 16 || !n || n > SNAP_STREAM_RAM_RUN ||
		 get_le64(p) > f->hello.ram_size ||
		 n * PAGE_SIZE > f->hello.ram_size - get_le64(p))
		rc = err_set(err, -EPROTO, "a RAM record out of guest RAM");
	if (rc) {
		err_prefix(err, "%s: record %u: ", s->peer, s->seq_in - 1);
		return rc;
	}
	f->records++;
	f->pages += n;
	if (flags & SNAP_RAM_REC_ZERO)
		f->zero_pages += n;
	else
		f->data_pages += n;
	f->zstd_records += !!(flags & SNAP_RAM_REC_ZSTD);
	return 0;
}

/* RAM records up to STATE (kept in f->state). */
static int read_body(struct snap_stream *s, struct snap_stream_file *f,
		     bool load, struct err *err)
{
	unsigned type = SNAP_REC_HELLO;
	const uint8_t *p;
	size_t len;
	int rc;

	for (;;) {
		rc = next_rec(s, type, &type, &p, &len, err);
		if (rc)
			return rc;
		if (type == SNAP_REC_SYNC)
			continue; /* a round's end: nothing to apply */
		if (type != SNAP_REC_RAM)
			break;
		rc = count_ram(s, f, p, len, load, err);
		if (rc)
			return rc;
	}
	if (type == SNAP_REC_ABORT)
		return err_set(err, -EPROTO,
			       "%s: the stream was abandoned by its source: "
			       "%.*s",
			       s->peer, (int)MIN(len, 400), (const char *)p);
	if (type != SNAP_REC_STATE)
		return err_set(err, -EPROTO,
			       "%s: record %u: a %s record where RAM or the "
			       "state was due",
			       s->peer, s->seq_in - 1, snap_rec_name(type));
	f->state = malloc(len ? len : 1);
	if (!f->state)
		return err_set(err, -ENOMEM, "out of memory");
	memcpy(f->state, p, len);
	f->state_len = len;
	return 0;
}

/* END, its counts, and nothing after it. */
static int read_end(struct snap_stream *s, struct snap_stream_file *f,
		    struct err *err)
{
	const uint8_t *p;
	unsigned type;
	size_t len;
	uint64_t before;
	int rc = next_rec(s, SNAP_REC_STATE, &type, &p, &len, err);

	if (rc)
		return rc;
	if (type != SNAP_REC_END || len < 32 || get_le64(p) != f->records ||
	    get_le64(p + 8) != f->pages)
		return err_set(err, -EPROTO,
			       "%s: record %u: the stream's end (%s record) "
			       "does not match the %" PRIu64 " RAM records "
			       "read",
			       s->peer, s->seq_in - 1, snap_rec_name(type),
			       f->records);
	before = s->bytes_in;
	rc = snap_stream_recv(s, &type, &p, &len, err);
	if (rc == -ECONNRESET && s->bytes_in == before) {
		f->bytes = s->bytes_in;
		err_clear(err); /* the end of the file, where it belongs */
		return 0;
	}
	return err_set(err, -EPROTO,
		       "%s: data after the stream's END record (record %u)",
		       s->peer, s->seq_in - (rc ? 0 : 1));
}

/* The STATE record is a whole state file, with no RAM file of its own. */
static int check_state(const char *path, const struct snap_stream_file *f,
		       struct err *err)
{
	struct snap_reader *r = NULL;
	char name[4200];
	int rc;

	snprintf(name, sizeof(name), "%s: STATE record", path);
	rc = snap_reader_open_mem(&r, name, f->state, f->state_len, err);
	if (rc)
		return rc;
	if (snap_has_section(r, SNAP_RAM_SECTION, 0) ||
	    snap_has_section(r, SNAP_CHAIN_SECTION, 0))
		rc = err_set(err, -EPROTO,
			     "%s: has a '%s' section: a stream carries its "
			     "RAM as records",
			     name,
			     snap_has_section(r, SNAP_RAM_SECTION, 0)
				     ? SNAP_RAM_SECTION
				     : SNAP_CHAIN_SECTION);
	else if (!snap_has_section(r, "config", 0))
		rc = err_set(err, -EPROTO, "%s: no 'config' section", name);
	snap_reader_close(r);
	return rc;
}

int snap_stream_file_read(const char *path, bool load,
			  struct snap_stream_file *f, struct err *err)
{
	struct snap_stream s;
	struct stat st;
	int rc, fd;

	memset(f, 0, sizeof(*f));
	fd = snap_open_regular(path, O_RDONLY | O_CLOEXEC, &st, err);
	if (fd < 0)
		return fd;
	snap_stream_init(&s, fd, path);
	rc = read_hello(&s, f, err);
	if (!rc && load)
		rc = snap_scratch_mem(&f->mem, f->hello.ram_size, err);
	if (!rc)
		rc = read_body(&s, f, load, err);
	if (!rc)
		rc = read_end(&s, f, err);
	if (!rc)
		rc = check_state(path, f, err);
	snap_stream_free(&s);
	close(fd);
	if (rc)
		snap_stream_file_free(f);
	return rc;
}

/* ---- where the output goes ---- */

static bool same_file(const char *a, const struct stat *sb)
{
	struct stat sa;

	return !stat(a, &sa) && sa.st_dev == sb->st_dev &&
	       sa.st_ino == sb->st_ino;
}

/*
 * @out (nothing, or a regular file) may not be any of the @n input files
 * @in: it is replaced only at the end, and the input is read to the end.
 */
static int dest_ok(const char *out, const char *const *in, unsigned n,
		   struct err *err)
{
	struct stat st;

	if (lstat(out, &st))
		return errno == ENOENT ? 0 : err_sys(err, "%s", out);
	if (!S_ISREG(st.st_mode))
		return err_set(err, -EEXIST,
			       "%s: %s is there, not a regular file: not "
			       "replacing it",
			       out, snap_file_type(st.st_mode));
	for (unsigned i = 0; i < n; i++)
		if (same_file(in[i], &st))
			return err_set(err, -EBUSY,
				       "%s: is %s, an input of the conversion: "
				       "write the other form elsewhere",
				       out, in[i]);
	return 0;
}

/* Every file of a chain: each link's state file and RAM file. */
static int chain_dest_ok(const struct snap_chain *c, const char *out,
			 struct err *err)
{
	const char *in[2 * SNAP_CHAIN_MAX];

	for (unsigned k = 0; k < c->n; k++) {
		in[2 * k] = c->l[k].path;
		in[2 * k + 1] = c->l[k].ram_path;
	}
	return dest_ok(out, in, 2 * c->n, err);
}

/* ---- pair -> stream ---- */

/*
 * The tip's state file as a stream's STATE: every section but "ram" and
 * "parent", the header's host; its save id kept for a full snapshot (the
 * pair it converts back to is that save again), none for a flattened
 * chain (a new snapshot, as a merge makes). The config for the HELLO.
 */
static int stream_state(const struct snap_chain *c, uint8_t **state,
			size_t *len, char **config, struct err *err)
{
	const struct snap_chain_link *t = &c->l[c->n - 1];
	struct snap_reader *r = NULL;
	struct snap_writer *w = NULL;
	const void *cdata;
	size_t clen;
	int rc = snap_reader_open(&r, t->path, err);

	if (rc)
		return rc;
	if (snap_reader_hash(r) != t->state_hash) {
		rc = err_set(err, -ESTALE, "%s: changed while converting",
			     t->path);
		goto out;
	}
	rc = snap_read_blob(r, "config", 0, &cdata, &clen, NULL, err);
	if (!rc && !(*config = strndup(cdata, clen)))
		rc = err_set(err, -ENOMEM, "out of memory");
	if (!rc)
		rc = snap_writer_open_mem(&w, "stream state", &t->hdr.host,
					  c->n == 1 && t->hdr.has_save_id
						  ? t->hdr.save_id
						  : NULL);
	for (unsigned i = 0; !rc && i < snap_reader_nsections(r); i++) {
		struct snap_section_info si;

		snap_reader_section(r, i, &si);
		if (strcmp(si.name, SNAP_CHAIN_SECTION) &&
		    strcmp(si.name, SNAP_RAM_SECTION))
			rc = snap_write_copy(w, r, i);
	}
	if (!rc)
		rc = snap_writer_take_mem(w, state, len);
	if (rc && w && !err->msg[0])
		err_set(err, rc, "%s: %s", t->path, snap_writer_why(w, rc));
out:
	snap_writer_abort(w);
	snap_reader_close(r);
	return rc;
}

/* HELLO: a recorded stream of this machine, the snapshot's host. */
static int send_hello(struct snap_stream *s, const struct snap_chain_link *t,
		      const char *config, struct err *err)
{
	struct snap_hello h = {
		.major = SNAP_STREAM_MAJOR,
		.minor = SNAP_STREAM_MINOR,
		.flags = SNAP_HELLO_RECORDED,
		.ram_size = t->ram.ram_size,
		.cpuid_hash = t->hdr.host.cpuid_hash,
		.config = config,
		.config_len = (uint32_t)strlen(config),
	};
	struct vm_config cfg;
	json_error_t je;
	json_t *j = json_loads(config, 0, &je);
	int rc;

	if (!j)
		return err_set(err, -EPROTO, "%s: section 'config': %s",
			       t->path, je.text);
	rc = config_from_json(&cfg, j, err);
	json_decref(j);
	if (rc) {
		err_prefix(err, "%s: section 'config': ", t->path);
		return rc;
	}
	h.ncpus = cfg.ncpus;
	config_free(&cfg);
	memcpy(h.cpu_vendor, t->hdr.host.cpu_vendor, sizeof(h.cpu_vendor));
	return snap_stream_send_hello(s, &h, err);
}

/* The whole stream into @fd: HELLO, RAM, STATE, END. */
static int write_stream(int fd, const char *out, const struct snap_chain *c,
			const struct guest_mem *m, const uint8_t *state,
			size_t len, const char *config,
			struct snap_convert_result *res, struct err *err)
{
	struct snap_stream_ram_stats st = {0};
	struct snap_stream s;
	uint8_t end[32];
	int rc;

	snap_stream_init(&s, fd, out);
	s.compress = true;
	rc = send_hello(&s, &c->l[c->n - 1], config, err);
	if (!rc)
		rc = snap_stream_send_ram(&s, m, NULL, NULL, NULL, &st, err);
	if (!rc)
		rc = snap_stream_send(&s, SNAP_REC_STATE, state, len, NULL, 0,
				      err);
	memset(end, 0, sizeof(end));
	put_le64(end, st.records);
	put_le64(end + 8, st.pages);
	put_le64(end + 16, s.bytes_out);
	if (!rc)
		rc = snap_stream_send(&s, SNAP_REC_END, end, sizeof(end), NULL,
				      0, err);
	res->data_pages = st.pages - st.zero_pages;
	res->out_bytes = s.bytes_out;
	snap_stream_free(&s);
	return rc;
}

static uint64_t allocated(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : (uint64_t)st.st_blocks * 512;
}

static int pair_to_stream(const char *in, const char *out,
			  struct snap_convert_result *res, struct err *err)
{
	struct snap_tmpfile t = {.fd = -1, .hold = -1};
	struct guest_mem m = {0};
	struct snap_chain c;
	uint8_t *state = NULL;
	char *config = NULL;
	size_t len = 0;
	int rc = snap_chain_open(in, &c, err);

	if (rc)
		return rc;
	res->links = c.n;
	res->ram_size = c.l[0].ram.ram_size;
	for (unsigned k = 0; k < c.n; k++)
		res->in_bytes +=
			allocated(c.l[k].path) + allocated(c.l[k].ram_path);
	rc = chain_dest_ok(&c, out, err);
	if (!rc)
		rc = snap_scratch_mem(&m, res->ram_size, err);
	if (!rc)
		rc = snap_chain_load_eager(&m, &c, NULL, err);
	if (!rc)
		rc = snap_chain_check_hashes(&m, &c, err);
	if (!rc)
		rc = stream_state(&c, &state, &len, &config, err);
	if (rc)
		goto out;
	rc = snap_tmpfile_open(&t, out);
	if (rc) {
		err_set(err, rc, "%s: %s", out, strerror(-rc));
		goto out;
	}
	rc = write_stream(t.fd, out, &c, &m, state, len, config, res, err);
	if (!rc)
		rc = snap_tmpfile_commit(&t, true, err);
out:
	snap_tmpfile_discard(&t);
	free(state);
	free(config);
	snap_scratch_free(&m);
	snap_chain_close(&c);
	return rc;
}

/* ---- stream -> pair ---- */

/*
 * The STATE record's sections as @out's state file, with the "ram"
 * section of the RAM file written (after "config", where a save puts it).
 */
static int pair_state(const struct snap_stream_file *f, const char *out,
		      const struct snap_ram_info *ram, const uint8_t *id,
		      struct snap_writer **wp, struct err *err)
{
	struct snap_reader *r = NULL;
	struct snap_writer *w = NULL;
	int rc = snap_reader_open_mem(&r, out, f->state, f->state_len, err);

	if (rc)
		return rc;
	rc = snap_writer_open(&w, out, &snap_reader_header(r)->host, id);
	if (rc) {
		err_set(err, rc, "%s: %s", out, strerror(-rc));
		goto out;
	}
	for (unsigned i = 0; !rc && i < snap_reader_nsections(r); i++) {
		struct snap_section_info si;

		snap_reader_section(r, i, &si);
		rc = snap_write_copy(w, r, i);
		if (!rc && !strcmp(si.name, "config"))
			rc = snap_ram_write_section(w, ram);
	}
	if (rc) {
		err_set(err, rc, "%s: %s", out, snap_writer_why(w, rc));
		snap_writer_abort(w);
		goto out;
	}
	*wp = w;
out:
	snap_reader_close(r);
	return rc;
}

/* The save id of the pair: the stream's own if it carries one. */
static int pair_id(const struct snap_stream_file *f, uint8_t *id,
		   struct err *err)
{
	struct snap_reader *r = NULL;
	int rc = snap_reader_open_mem(&r, "STATE", f->state, f->state_len, err);

	if (rc)
		return rc;
	if (snap_reader_header(r)->has_save_id)
		memcpy(id, snap_reader_header(r)->save_id, SNAP_SAVE_ID_LEN);
	else if ((rc = snap_save_id_new(id)))
		err_set(err, rc, "no random save id: %s", strerror(-rc));
	snap_reader_close(r);
	return rc;
}

static int stream_to_pair(const char *in, const char *out,
			  struct snap_convert_result *res, struct err *err)
{
	struct snap_stream_file f;
	struct snap_ram_live *lv = NULL;
	struct snap_writer *w = NULL;
	struct snap_ram_info info = {0};
	uint8_t id[SNAP_SAVE_ID_LEN];
	char ram_out[4096];
	const char *ins[1] = {in};
	int rc;

	if (snap_ram_default_path(out, ram_out, sizeof(ram_out)))
		return err_set(err, -ENAMETOOLONG, "%s: name too long", out);
	rc = dest_ok(out, ins, 1, err);
	if (!rc)
		rc = dest_ok(ram_out, ins, 1, err);
	if (!rc)
		rc = snap_stream_file_read(in, true, &f, err);
	if (rc)
		return rc;
	res->links = 1;
	res->ram_size = f.hello.ram_size;
	res->data_pages = f.data_pages;
	res->in_bytes = f.bytes;
	rc = pair_id(&f, id, err);
	if (rc)
		goto out;
	rc = snap_ram_live_open(&f.mem, ram_out, id, &lv);
	if (!rc)
		rc = snap_ram_live_copy(lv, NULL, NULL);
	if (!rc)
		rc = snap_ram_live_info(lv, &info);
	if (rc) {
		err_set(err, rc, "%s: %s", ram_out, strerror(-rc));
		goto out;
	}
	rc = pair_state(&f, out, &info, id, &w, err);
	if (rc)
		goto out;
	rc = snap_ram_pair_commit(lv, w, SNAP_RAM_FSYNC, err);
	lv = NULL;
	res->out_bytes = allocated(out) + allocated(ram_out);
out:
	snap_ram_live_abort(lv);
	snap_ram_info_free(&info);
	snap_stream_file_free(&f);
	return rc;
}

int snap_convert(const char *in, const char *out,
		 struct snap_convert_result *res, struct err *err)
{
	int rc;

	memset(res, 0, sizeof(*res));
	rc = snap_form_of(in, &res->from, err);
	if (rc)
		return rc;
	res->to =
		res->from == SNAP_FORM_PAIR ? SNAP_FORM_STREAM : SNAP_FORM_PAIR;
	return res->from == SNAP_FORM_PAIR ? pair_to_stream(in, out, res, err)
					   : stream_to_pair(in, out, res, err);
}
