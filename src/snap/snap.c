/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Snapshot state file writer and reader. Layout: docs/snapshot-format.md.
 * The reader loads the whole (bounded) file and validates every byte of it
 * in snap_reader_open(), so later lookups only have to match descriptions.
 */
#include "snap.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "common.h"
#include "snap_fault.h"
#include "snap_file.h"

#define HDR_MAGIC "KHYVSNAP"
#define HDR_FIXED 48	      /* bytes before the strings */
#define SEC_MAGIC 0x54434553u /* "SECT" */
#define SEC_HDR	  40
#define END_MAGIC 0x444e454bu /* "KEND" */
#define END_LEN	  24
#define FLD_HDR	  8

struct snap_writer {
	struct snap_tmpfile f; /* path, temporary name, fd */
	uint64_t off;
	uint32_t nsections;
	XXH3_state_t *file_hash;
	/* (name, instance) already written, to refuse duplicates early. */
	char **names;
	uint32_t *instances;
	unsigned nnames;
	int err; /* sticky: once a write failed the file is useless */
	char msg[512];
	/* snap_writer_open_mem: the bytes collect here, not in a file. */
	bool in_mem;
	uint8_t *mem;
	size_t mem_len, mem_cap;
};

struct rfield {
	char name[SNAP_MAX_NAME + 1];
	uint8_t type;
	uint32_t count;
	const uint8_t *data;
};

struct rsec {
	char name[SNAP_MAX_NAME + 1];
	uint32_t instance;
	uint16_t kind, version, min_version;
	uint32_t flags;
	uint64_t offset, payload_len, checksum;
	const uint8_t *payload;
	struct rfield *fields;	/* in file order */
	unsigned *field_sorted; /* indexes into fields, sorted by name */
	unsigned nfields;
	bool consumed;
};

struct snap_reader {
	char *path;
	uint8_t *buf;
	size_t len;
	struct snap_header_info hdr;
	struct rsec *secs; /* in file order */
	unsigned *sorted;  /* indexes into secs by (name, instance) */
	unsigned nsecs;
};

unsigned snap_type_size(uint8_t type)
{
	switch (type) {
	case SNAP_T_U8:
	case SNAP_T_BOOL:
	case SNAP_T_BYTES:
		return 1;
	case SNAP_T_U16:
		return 2;
	case SNAP_T_U32:
		return 4;
	case SNAP_T_U64:
	case SNAP_T_I64:
		return 8;
	}
	return 0;
}

const char *snap_type_name(uint8_t type)
{
	static const char *const names[] = {
		[SNAP_T_U8] = "u8",	  [SNAP_T_U16] = "u16",
		[SNAP_T_U32] = "u32",	  [SNAP_T_U64] = "u64",
		[SNAP_T_I64] = "i64",	  [SNAP_T_BOOL] = "bool",
		[SNAP_T_BYTES] = "bytes",
	};

	if (type < ARRAY_SIZE(names) && names[type])
		return names[type];
	return "?";
}

static bool is_int_type(uint8_t type)
{
	return type >= SNAP_T_U8 && type <= SNAP_T_U64;
}

/* Names end up in messages and JSON: keep them short and printable. */
static bool name_ok(const char *s, size_t len)
{
	if (len == 0 || len > SNAP_MAX_NAME)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\'' ||
		    c == '\\')
			return false;
	}
	return true;
}

static uint64_t load_elem(const uint8_t *p, uint8_t type)
{
	switch (snap_type_size(type)) {
	case 1:
		return p[0];
	case 2:
		return get_le16(p);
	case 4:
		return get_le32(p);
	default:
		return get_le64(p);
	}
}

static void store_elem(uint8_t *p, uint8_t type, uint64_t v)
{
	switch (snap_type_size(type)) {
	case 1:
		p[0] = (uint8_t)v;
		break;
	case 2:
		put_le16(p, (uint16_t)v);
		break;
	case 4:
		put_le32(p, (uint32_t)v);
		break;
	default:
		put_le64(p, v);
		break;
	}
}

/* State structs hold native integers; read one as uint64_t. */
static uint64_t state_get(const void *state, uint32_t off, uint8_t type)
{
	const uint8_t *p = (const uint8_t *)state + off;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;

	switch (snap_type_size(type)) {
	case 1:
		memcpy(&u8, p, 1);
		return u8;
	case 2:
		memcpy(&u16, p, 2);
		return u16;
	case 4:
		memcpy(&u32, p, 4);
		return u32;
	default:
		memcpy(&u64, p, 8);
		return u64;
	}
}

static void state_set(void *state, uint32_t off, uint8_t type, uint64_t v)
{
	uint8_t *p = (uint8_t *)state + off;
	uint8_t u8 = (uint8_t)v;
	uint16_t u16 = (uint16_t)v;
	uint32_t u32 = (uint32_t)v;

	switch (snap_type_size(type)) {
	case 1:
		memcpy(p, &u8, 1);
		break;
	case 2:
		memcpy(p, &u16, 2);
		break;
	case 4:
		memcpy(p, &u32, 4);
		break;
	default:
		memcpy(p, &v, 8);
		break;
	}
}

uint64_t snap_field_elem(const struct snap_field_info *f, uint32_t i)
{
	unsigned sz = snap_type_size(f->type);

	if (!sz || i >= f->count)
		return 0;
	return load_elem((const uint8_t *)f->data + (size_t)i * sz, f->type);
}

/* Is @v acceptable for a field of @type bounded by @max (0 = none)? */
static bool value_ok(uint8_t type, uint64_t max, uint64_t v)
{
	if (type == SNAP_T_BOOL)
		return v <= 1;
	if (type == SNAP_T_BYTES || !max)
		return true;
	if (type == SNAP_T_I64)
		return (int64_t)v <= (int64_t)max;
	return v <= max;
}

static const struct snap_field *desc_field(const struct snap_desc *d,
					   const char *name)
{
	for (unsigned i = 0; i < d->nfields; i++)
		if (!strcmp(d->fields[i].name, name))
			return &d->fields[i];
	return NULL;
}

int snap_desc_check(const struct snap_desc *d, struct err *err)
{
	if (!d || !d->name || !name_ok(d->name, strlen(d->name)))
		return err_set(err, -EINVAL, "snap_desc: bad section name");
	if (d->version < 1 || d->min_version < 1 || d->min_version > d->version)
		return err_set(err, -EINVAL,
			       "snap_desc '%s': bad version %u/min %u", d->name,
			       d->version, d->min_version);
	if (d->nfields > 65535 || (d->nfields && !d->fields))
		return err_set(err, -EINVAL, "snap_desc '%s': bad field table",
			       d->name);
	for (unsigned i = 0; i < d->nfields; i++) {
		const struct snap_field *f = &d->fields[i];
		unsigned sz = snap_type_size(f->type);
		const struct snap_field *cf;

		if (!f->name || !name_ok(f->name, strlen(f->name)))
			return err_set(err, -EINVAL,
				       "snap_desc '%s': field %u: bad name",
				       d->name, i);
		if (!sz || f->count < 1 || f->since < 1 ||
		    f->since > d->version ||
		    (uint64_t)f->offset + (uint64_t)f->count * sz >
			    d->state_size)
			return err_set(err, -EINVAL,
				       "snap_desc '%s': field '%s': bad type, "
				       "count, since or offset",
				       d->name, f->name);
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(d->fields[j].name, f->name))
				return err_set(err, -EINVAL,
					       "snap_desc '%s': field '%s' "
					       "appears twice",
					       d->name, f->name);
		if (!f->count_field)
			continue;
		cf = NULL;
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(d->fields[j].name, f->count_field))
				cf = &d->fields[j];
		/* The count must be loaded before the array it sizes. */
		if (!cf || !is_int_type(cf->type) || cf->count != 1 ||
		    cf->since > f->since)
			return err_set(
				err, -EINVAL,
				"snap_desc '%s': field '%s': count field "
				"'%s' must be an earlier integer scalar",
				d->name, f->name, f->count_field);
	}
	return 0;
}

/* ---------------------------------------------------------------- host */

#if defined(__x86_64__)
/* Own helper: src/arch/x86/cpuid.h shadows the compiler's <cpuid.h>. */
static void host_cpuid(uint32_t leaf, uint32_t sub, unsigned *a, unsigned *b,
		       unsigned *c, unsigned *d)
{
	__asm__ volatile("cpuid"
			 : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d)
			 : "a"(leaf), "c"(sub));
}
#define CPUID(l, a, b, c, d)	      host_cpuid(l, 0, &a, &b, &c, &d)
#define CPUID_COUNT(l, s, a, b, c, d) host_cpuid(l, s, &a, &b, &c, &d)
#endif

int snap_host_info_probe(struct snap_host_info *h, const char *kvm_info)
{
	memset(h, 0, sizeof(*h));
	if (kvm_info)
		snprintf(h->kvm_info, sizeof(h->kvm_info), "%s", kvm_info);
#if defined(__x86_64__)
	{
		unsigned a, b, c, d, max_leaf, max_ext;
		uint32_t feat[16] = {0};
		unsigned n = 0;

		CPUID(0, max_leaf, b, c, d);
		memcpy(h->cpu_vendor, &b, 4);
		memcpy(h->cpu_vendor + 4, &d, 4);
		memcpy(h->cpu_vendor + 8, &c, 4);
		if (max_leaf >= 1) {
			unsigned fam, model;

			CPUID(1, a, b, c, d);
			fam = (a >> 8) & 0xf;
			model = (a >> 4) & 0xf;
			if (fam == 0xf)
				fam += (a >> 20) & 0xff;
			if (fam == 6 || fam >= 0xf)
				model |= ((a >> 16) & 0xf) << 4;
			h->family = fam;
			h->model = model;
			h->stepping = a & 0xf;
			/* EBX holds the APIC ID: per CPU, not a feature. */
			feat[n++] = c;
			feat[n++] = d;
		}
		if (max_leaf >= 7) {
			CPUID_COUNT(7, 0, a, b, c, d);
			feat[n++] = b;
			feat[n++] = c;
			feat[n++] = d;
		}
		if (max_leaf >= 0xd) {
			/* Supported XSAVE components decide XSAVE layouts. */
			CPUID_COUNT(0xd, 0, a, b, c, d);
			feat[n++] = a;
			feat[n++] = d;
			CPUID_COUNT(0xd, 1, a, b, c, d);
			feat[n++] = a;
		}
		CPUID(0x80000000, max_ext, b, c, d);
		if (max_ext >= 0x80000001) {
			CPUID(0x80000001, a, b, c, d);
			feat[n++] = c;
			feat[n++] = d;
		}
		uint8_t le[sizeof(feat)];
		for (unsigned i = 0; i < n; i++)
			put_le32(le + 4 * i, feat[i]);
		h->cpuid_hash = XXH3_64bits(le, 4 * n);
	}
#else
	snprintf(h->cpu_vendor, sizeof(h->cpu_vendor), "unknown");
#endif
	return 0;
}

/* -------------------------------------------------------------- writer */

static int wfail(struct snap_writer *w, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int wfail(struct snap_writer *w, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->msg, sizeof(w->msg), fmt, ap);
	va_end(ap);
	return rc;
}

const char *snap_writer_error(const struct snap_writer *w)
{
	return w ? w->msg : "";
}

const char *snap_writer_why(const struct snap_writer *w, int rc)
{
	return snap_writer_error(w)[0] ? snap_writer_error(w) : strerror(-rc);
}

/* A memory writer's append (the buffer doubles). */
static int mem_append(struct snap_writer *w, const void *buf, size_t len)
{
	if (w->mem_len + len > w->mem_cap) {
		size_t cap = MAX(w->mem_cap * 2, w->mem_len + len + 4096);
		uint8_t *p = realloc(w->mem, cap);

		if (!p)
			return -ENOMEM;
		w->mem = p;
		w->mem_cap = cap;
	}
	memcpy(w->mem + w->mem_len, buf, len);
	w->mem_len += len;
	return 0;
}

/* Append to the file and the running whole-file hash; errors stick. */
static int wappend(struct snap_writer *w, const void *buf, size_t len)
{
	int rc;

	if (w->err)
		return w->err;
	rc = snap_fault(SNAP_FAULT_STATE_WRITE);
	if (rc) {
		w->err = rc;
		return wfail(w, rc, "%s: write: %s (injected fault)",
			     w->f.tmp ? w->f.tmp : w->f.path, strerror(-rc));
	}
	if (w->off + len + END_LEN > SNAP_MAX_FILE_SIZE) {
		w->err = -EFBIG;
		return wfail(w, w->err,
			     "%s: state file would exceed %llu bytes",
			     w->f.path, (unsigned long long)SNAP_MAX_FILE_SIZE);
	}
	rc = w->in_mem ? mem_append(w, buf, len)
		       : snap_write_full(w->f.fd, buf, len);
	if (rc) {
		w->err = rc;
		return wfail(w, rc, "%s: write: %s",
			     w->f.tmp ? w->f.tmp : w->f.path, strerror(-rc));
	}
	XXH3_64bits_update(w->file_hash, buf, len);
	w->off += len;
	return 0;
}

static size_t put_str(uint8_t *p, const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	put_le16(p, (uint16_t)n);
	memcpy(p + 2, s, n);
	return 2 + n;
}

int snap_save_id_new(uint8_t id[SNAP_SAVE_ID_LEN])
{
	static const uint8_t zero[SNAP_SAVE_ID_LEN];
	size_t got = 0;

	while (got < SNAP_SAVE_ID_LEN) {
		ssize_t n = getrandom(id + got, SNAP_SAVE_ID_LEN - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		got += (size_t)n;
	}
	/* All zero means "no id": never hand that out. */
	if (!memcmp(id, zero, SNAP_SAVE_ID_LEN))
		id[0] = 1;
	return 0;
}

void snap_save_id_str(const uint8_t id[SNAP_SAVE_ID_LEN],
		      char out[SNAP_SAVE_ID_STR])
{
	for (unsigned i = 0; i < SNAP_SAVE_ID_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}

/* The file header; returns its length. */
static size_t header_build(uint8_t *hdr, const struct snap_host_info *host,
			   const uint8_t *save_id)
{
	size_t n;

	memcpy(hdr, HDR_MAGIC, 8);
	put_le16(hdr + 8, SNAP_FORMAT_MAJOR);
	put_le16(hdr + 10, SNAP_FORMAT_MINOR);
	put_le64(hdr + 16, (uint64_t)time(NULL));
	put_le32(hdr + 24, host->family);
	put_le32(hdr + 28, host->model);
	put_le32(hdr + 32, host->stepping);
	put_le64(hdr + 40, host->cpuid_hash);
	n = HDR_FIXED;
	n += put_str(hdr + n, SNAP_ARCH, 15);
	n += put_str(hdr + n, KHYVE_VERSION, 63);
	n += put_str(hdr + n, host->cpu_vendor,
		     MIN(15, sizeof(host->cpu_vendor)));
	n += put_str(hdr + n, host->kvm_info, MIN(127, sizeof(host->kvm_info)));
	/* 1.1 extension: the save id (zeros: none). */
	if (save_id)
		memcpy(hdr + n, save_id, SNAP_SAVE_ID_LEN);
	n += SNAP_SAVE_ID_LEN;
	put_le32(hdr + 12, (uint32_t)(n + 8));
	put_le64(hdr + n, XXH3_64bits(hdr, n));
	return n + 8;
}

static int writer_open(struct snap_writer **wp, const char *path,
		       const struct snap_host_info *host,
		       const uint8_t *save_id, bool in_mem)
{
	struct snap_writer *w;
	uint8_t hdr[HDR_FIXED + 8 + 16 + 64 + 16 + 128 + SNAP_SAVE_ID_LEN + 8];
	int rc;

	*wp = NULL;
	if (!path || !*path || !host)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->in_mem = in_mem;
	if (in_mem) {
		w->f.fd = w->f.hold = -1;
		w->f.path = strdup(path);
		rc = w->f.path ? 0 : -ENOMEM;
	} else {
		rc = snap_tmpfile_open(&w->f, path);
	}
	if (rc)
		goto fail;
	w->file_hash = XXH3_createState();
	if (!w->file_hash) {
		rc = -ENOMEM;
		goto fail;
	}
	XXH3_64bits_reset(w->file_hash);
	memset(hdr, 0, sizeof(hdr));
	rc = wappend(w, hdr, header_build(hdr, host, save_id));
	if (rc)
		goto fail;
	*wp = w;
	return 0;
fail:
	snap_writer_abort(w);
	return rc;
}

int snap_writer_open(struct snap_writer **wp, const char *path,
		     const struct snap_host_info *host, const uint8_t *save_id)
{
	return writer_open(wp, path, host, save_id, false);
}

int snap_writer_open_mem(struct snap_writer **wp, const char *name,
			 const struct snap_host_info *host,
			 const uint8_t *save_id)
{
	return writer_open(wp, name, host, save_id, true);
}

static void free_writer(struct snap_writer *w)
{
	free(w->mem);
	for (unsigned i = 0; i < w->nnames; i++)
		free(w->names[i]);
	free(w->names);
	free(w->instances);
	if (w->file_hash)
		XXH3_freeState(w->file_hash);
	free(w);
}

void snap_writer_abort(struct snap_writer *w)
{
	if (!w)
		return;
	snap_tmpfile_discard(&w->f);
	free_writer(w);
}

static int note_name(struct snap_writer *w, const char *name, uint32_t instance)
{
	char **names;
	uint32_t *inst;

	for (unsigned i = 0; i < w->nnames; i++)
		if (w->instances[i] == instance && !strcmp(w->names[i], name))
			return wfail(w, -EEXIST,
				     "%s: section '%s' #%u written twice",
				     w->f.path, name, instance);
	names = realloc(w->names, (w->nnames + 1) * sizeof(*names));
	if (!names)
		return -ENOMEM;
	w->names = names;
	inst = realloc(w->instances, (w->nnames + 1) * sizeof(*inst));
	if (!inst)
		return -ENOMEM;
	w->instances = inst;
	w->names[w->nnames] = strdup(name);
	if (!w->names[w->nnames])
		return -ENOMEM;
	w->instances[w->nnames++] = instance;
	return 0;
}

/* Header + name + payload as one section, checksummed. */
static int write_sec(struct snap_writer *w, const char *name, uint32_t instance,
		     uint16_t kind, uint16_t version, uint16_t min_version,
		     uint32_t flags, const void *payload, size_t len)
{
	uint8_t hdr[SEC_HDR];
	size_t nlen = strlen(name);
	XXH3_state_t *hs;
	int rc;

	if (w->err)
		return w->err;
	if (!name_ok(name, nlen))
		return wfail(w, -EINVAL, "%s: bad section name", w->f.path);
	if (w->nsections >= SNAP_MAX_SECTIONS)
		return wfail(w, -E2BIG, "%s: too many sections", w->f.path);
	rc = note_name(w, name, instance);
	if (rc)
		return rc;
	memset(hdr, 0, sizeof(hdr));
	put_le32(hdr, SEC_MAGIC);
	put_le16(hdr + 4, kind);
	put_le16(hdr + 6, (uint16_t)nlen);
	put_le16(hdr + 8, version);
	put_le16(hdr + 10, min_version);
	put_le32(hdr + 12, flags);
	put_le32(hdr + 16, instance);
	put_le64(hdr + 24, len);
	hs = XXH3_createState();
	if (!hs)
		return -ENOMEM;
	XXH3_64bits_reset(hs);
	XXH3_64bits_update(hs, hdr, 32);
	XXH3_64bits_update(hs, name, nlen);
	XXH3_64bits_update(hs, payload, len);
	put_le64(hdr + 32, XXH3_64bits_digest(hs));
	XXH3_freeState(hs);
	rc = wappend(w, hdr, sizeof(hdr));
	if (!rc)
		rc = wappend(w, name, nlen);
	if (!rc)
		rc = wappend(w, payload, len);
	if (!rc)
		w->nsections++;
	return rc;
}

int snap_write_blob(struct snap_writer *w, const char *name, uint32_t instance,
		    uint16_t version, uint32_t flags, const void *data,
		    size_t len)
{
	if (!w || !name || (len && !data))
		return -EINVAL;
	if (version < 1)
		return wfail(w, -EINVAL, "%s: blob '%s': version must be >= 1",
			     w->f.path, name);
	return write_sec(w, name, instance, SNAP_KIND_BLOB, version, 1, flags,
			 data ? data : "", len);
}

int snap_write_copy(struct snap_writer *w, const struct snap_reader *r,
		    unsigned idx)
{
	const struct rsec *s;

	if (!w || !r || idx >= r->nsecs)
		return -EINVAL;
	s = &r->secs[idx];
	return write_sec(w, s->name, s->instance, s->kind, s->version,
			 s->min_version, s->flags, s->payload,
			 (size_t)s->payload_len);
}

/* Number of elements of @f saved from @state, or -errno. */
static int64_t live_count(const struct snap_desc *d, const struct snap_field *f,
			  const void *state)
{
	const struct snap_field *cf;
	uint64_t n;

	if (!f->count_field)
		return f->count;
	cf = desc_field(d, f->count_field);
	n = state_get(state, cf->offset, cf->type);
	return n > f->count ? -ERANGE : (int64_t)n;
}

int snap_write_section(struct snap_writer *w, const struct snap_desc *d,
		       uint32_t instance, const void *state)
{
	struct err e;
	uint8_t *buf = NULL, *p;
	size_t len = 4;
	int rc;

	if (!w || !state)
		return -EINVAL;
	if (w->err)
		return w->err;
	rc = snap_desc_check(d, &e);
	if (rc)
		return wfail(w, rc, "%s", e.msg);
	/* Size first, validating what we are about to promise to a reader. */
	for (unsigned i = 0; i < d->nfields; i++) {
		const struct snap_field *f = &d->fields[i];
		unsigned sz = snap_type_size(f->type);
		int64_t n = live_count(d, f, state);

		if (n < 0)
			return wfail(
				w, -ERANGE,
				"%s: section '%s' #%u: field '%s': count "
				"'%s' = %llu exceeds capacity %u",
				w->f.path, d->name, instance, f->name,
				f->count_field,
				(unsigned long long)state_get(
					state,
					desc_field(d, f->count_field)->offset,
					desc_field(d, f->count_field)->type),
				f->count);
		for (int64_t k = 0; k < n; k++) {
			uint64_t v = state_get(
				state, f->offset + (uint32_t)k * sz, f->type);

			if (!value_ok(f->type, f->max, v))
				return wfail(
					w, -ERANGE,
					"%s: section '%s' #%u: field "
					"'%s': value %llu exceeds maximum "
					"%llu",
					w->f.path, d->name, instance, f->name,
					(unsigned long long)v,
					(unsigned long long)(f->type == SNAP_T_BOOL
								     ? 1
								     : f->max));
		}
		len += FLD_HDR + strlen(f->name) + (size_t)n * sz;
	}
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	put_le32(buf, d->nfields);
	p = buf + 4;
	for (unsigned i = 0; i < d->nfields; i++) {
		const struct snap_field *f = &d->fields[i];
		unsigned sz = snap_type_size(f->type);
		uint32_t n = (uint32_t)live_count(d, f, state);
		size_t nlen = strlen(f->name);

		p[0] = (uint8_t)nlen;
		p[1] = f->type;
		put_le16(p + 2, 0);
		put_le32(p + 4, n);
		memcpy(p + FLD_HDR, f->name, nlen);
		p += FLD_HDR + nlen;
		for (uint32_t k = 0; k < n; k++, p += sz)
			store_elem(
				p, f->type,
				state_get(state, f->offset + k * sz, f->type));
	}
	rc = write_sec(w, d->name, instance, SNAP_KIND_DESC, d->version,
		       d->min_version, d->flags, buf, len);
	free(buf);
	return rc;
}

/* The end record after the last section, its hash the whole file's. */
static void end_record(struct snap_writer *w, uint8_t end[END_LEN])
{
	put_le32(end, END_MAGIC);
	put_le32(end + 4, w->nsections);
	put_le64(end + 8, w->off + END_LEN);
	XXH3_64bits_update(w->file_hash, end, 16);
	put_le64(end + 16, XXH3_64bits_digest(w->file_hash));
}

int snap_writer_seal(struct snap_writer *w)
{
	struct err e;
	uint8_t end[END_LEN];
	int rc;

	if (!w || w->f.fd < 0)
		return -EINVAL;
	rc = w->err;
	if (rc)
		return rc;
	end_record(w, end);
	rc = snap_write_full(w->f.fd, end, sizeof(end));
	if (rc) {
		w->err = rc;
		return wfail(w, rc, "%s: write: %s", w->f.tmp, strerror(-rc));
	}
	rc = snap_tmpfile_seal(&w->f, true, &e);
	if (rc) {
		w->err = rc;
		return wfail(w, rc, "%s", e.msg);
	}
	return 0;
}

int snap_writer_take_mem(struct snap_writer *w, uint8_t **data, size_t *len)
{
	uint8_t end[END_LEN];
	int rc;

	if (!w || !w->in_mem)
		return -EINVAL;
	rc = w->err;
	if (rc)
		return rc;
	end_record(w, end);
	rc = mem_append(w, end, sizeof(end));
	if (rc)
		return wfail(w, rc, "%s: out of memory", w->f.path);
	*data = w->mem;
	*len = w->mem_len;
	w->mem = NULL;
	w->mem_len = w->mem_cap = 0;
	return 0;
}

int snap_writer_publish(struct snap_writer *w, bool sync_dir)
{
	struct err e;
	int rc;

	if (!w || w->f.fd >= 0 || !w->f.tmp || w->err)
		return -EINVAL;
	rc = snap_fault(SNAP_FAULT_STATE_COMMIT);
	if (rc)
		return wfail(w, rc, "%s: rename: %s (injected fault)",
			     w->f.path, strerror(-rc));
	rc = snap_tmpfile_publish(&w->f, sync_dir, &e);
	return rc ? wfail(w, rc, "%s", e.msg) : 0;
}

const char *snap_writer_path(const struct snap_writer *w)
{
	return w ? w->f.path : "";
}

int snap_writer_commit(struct snap_writer *w)
{
	int rc;

	if (!w)
		return -EINVAL;
	rc = snap_writer_seal(w);
	if (!rc)
		rc = snap_writer_publish(w, true);
	snap_writer_abort(w);
	return rc;
}

/* -------------------------------------------------------------- reader */

#define RERR(rc, ...) err_set(err, rc, __VA_ARGS__)

static int sec_cmp_key(const struct rsec *a, const char *name, uint32_t inst)
{
	int c = strcmp(a->name, name);

	if (c)
		return c;
	return a->instance < inst ? -1 : a->instance > inst;
}

static const struct snap_reader *sort_reader; /* qsort has no context arg */

static int sec_sort_cmp(const void *a, const void *b)
{
	const struct rsec *sb = &sort_reader->secs[*(const unsigned *)b];

	return sec_cmp_key(&sort_reader->secs[*(const unsigned *)a], sb->name,
			   sb->instance);
}

static const struct rsec *sort_sec;

static int fld_sort_cmp(const void *a, const void *b)
{
	return strcmp(sort_sec->fields[*(const unsigned *)a].name,
		      sort_sec->fields[*(const unsigned *)b].name);
}

/* Field @i of @s at *@p (before @end): decoded into s->fields[i]. */
static int parse_field(const struct snap_reader *r, struct rsec *s, uint32_t i,
		       const uint8_t **pp, const uint8_t *end, struct err *err)
{
	struct rfield *f = &s->fields[i];
	const uint8_t *p = *pp;
	unsigned nlen, sz;
	uint64_t dlen;

	if ((size_t)(end - p) < FLD_HDR)
		return RERR(-EPROTO,
			    "%s: section '%s' #%u: field %u: truncated",
			    r->path, s->name, s->instance, i);
	nlen = p[0];
	f->type = p[1];
	f->count = get_le32(p + 4);
	if (get_le16(p + 2) || nlen == 0 || nlen > SNAP_MAX_NAME ||
	    (size_t)(end - p - FLD_HDR) < nlen ||
	    !name_ok((const char *)p + FLD_HDR, nlen))
		return RERR(-EPROTO, "%s: section '%s' #%u: field %u: bad name",
			    r->path, s->name, s->instance, i);
	memcpy(f->name, p + FLD_HDR, nlen);
	f->name[nlen] = 0;
	p += FLD_HDR + nlen;
	sz = snap_type_size(f->type);
	if (!sz)
		return RERR(-EPROTO,
			    "%s: section '%s' #%u: field '%s': unknown type %u",
			    r->path, s->name, s->instance, f->name, f->type);
	dlen = (uint64_t)f->count * sz;
	if (dlen > (uint64_t)(end - p))
		return RERR(-EPROTO,
			    "%s: section '%s' #%u: field '%s': %u elements "
			    "overrun the section",
			    r->path, s->name, s->instance, f->name, f->count);
	f->data = p;
	if (f->type == SNAP_T_BOOL)
		for (uint32_t k = 0; k < f->count; k++)
			if (p[k] > 1)
				return RERR(-EPROTO,
					    "%s: section '%s' #%u: field '%s': "
					    "bool value %u is not 0 or 1",
					    r->path, s->name, s->instance,
					    f->name, p[k]);
	*pp = p + dlen;
	return 0;
}

static int parse_fields(struct snap_reader *r, struct rsec *s, struct err *err)
{
	const uint8_t *p = s->payload, *end = s->payload + s->payload_len;
	uint32_t n;
	int rc;

	if (s->payload_len < 4)
		return RERR(-EPROTO, "%s: section '%s' #%u: payload too short",
			    r->path, s->name, s->instance);
	n = get_le32(p);
	p += 4;
	/* Every field takes at least FLD_HDR + 1 bytes: bounds the array. */
	if (n > (s->payload_len - 4) / (FLD_HDR + 1))
		return RERR(-EPROTO,
			    "%s: section '%s' #%u: %u fields cannot fit in "
			    "%llu bytes",
			    r->path, s->name, s->instance, n,
			    (unsigned long long)s->payload_len);
	s->fields = calloc(n ? n : 1, sizeof(*s->fields));
	s->field_sorted = calloc(n ? n : 1, sizeof(*s->field_sorted));
	if (!s->fields || !s->field_sorted)
		return RERR(-ENOMEM, "%s: out of memory", r->path);
	for (uint32_t i = 0; i < n; i++) {
		rc = parse_field(r, s, i, &p, end, err);
		if (rc)
			return rc;
		s->field_sorted[i] = i;
	}
	if (p != end)
		return RERR(-EPROTO,
			    "%s: section '%s' #%u: %zu trailing bytes after "
			    "the last field",
			    r->path, s->name, s->instance, (size_t)(end - p));
	s->nfields = n;
	sort_sec = s;
	qsort(s->field_sorted, n, sizeof(*s->field_sorted), fld_sort_cmp);
	for (uint32_t i = 1; i < n; i++)
		if (!strcmp(s->fields[s->field_sorted[i]].name,
			    s->fields[s->field_sorted[i - 1]].name))
			return RERR(-EPROTO,
				    "%s: section '%s' #%u: field '%s' "
				    "appears twice",
				    r->path, s->name, s->instance,
				    s->fields[s->field_sorted[i]].name);
	return 0;
}

static int get_str(const struct snap_reader *r, const uint8_t **p,
		   const uint8_t *end, char *out, size_t outsz,
		   const char *what, struct err *err)
{
	size_t n;

	if (end - *p < 2)
		return RERR(-EPROTO, "%s: header truncated in %s", r->path,
			    what);
	n = get_le16(*p);
	if (n >= outsz || (size_t)(end - *p - 2) < n)
		return RERR(-EPROTO, "%s: header: %s is too long (%zu bytes)",
			    r->path, what, n);
	memcpy(out, *p + 2, n);
	out[n] = 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)out[i] < 0x20 ||
		    (unsigned char)out[i] >= 0x7f)
			return RERR(-EPROTO,
				    "%s: header: %s has non-printable bytes",
				    r->path, what);
	*p += 2 + n;
	return 0;
}

static int parse_header(struct snap_reader *r, uint64_t *hlen, struct err *err)
{
	struct snap_header_info *h = &r->hdr;
	const uint8_t *b = r->buf, *p, *end;
	uint32_t len;
	int rc;

	if (r->len < 8 || memcmp(b, HDR_MAGIC, 8))
		return RERR(-EPROTO, "%s: not a khyve snapshot (bad magic)",
			    r->path);
	if (r->len < HDR_FIXED)
		return RERR(-EPROTO, "%s: truncated header (%zu bytes)",
			    r->path, r->len);
	h->major = get_le16(b + 8);
	h->minor = get_le16(b + 10);
	if (h->major > SNAP_FORMAT_MAJOR)
		return RERR(-EPROTO,
			    "%s: format %u.%u is newer than this khyve "
			    "supports (%u.%u)",
			    r->path, h->major, h->minor, SNAP_FORMAT_MAJOR,
			    SNAP_FORMAT_MINOR);
	if (h->major < 1)
		return RERR(-EPROTO, "%s: format %u.%u is not supported",
			    r->path, h->major, h->minor);
	len = get_le32(b + 12);
	if (len < HDR_FIXED + 4 * 2 + 8 || len > r->len - END_LEN ||
	    len > r->len)
		return RERR(-EPROTO,
			    "%s: bad header length %u (file %zu bytes)",
			    r->path, len, r->len);
	if (XXH3_64bits(b, len - 8) != get_le64(b + len - 8))
		return RERR(-EPROTO, "%s: header checksum mismatch", r->path);
	h->created = get_le64(b + 16);
	h->host.family = get_le32(b + 24);
	h->host.model = get_le32(b + 28);
	h->host.stepping = get_le32(b + 32);
	h->host.cpuid_hash = get_le64(b + 40);
	p = b + HDR_FIXED;
	/* Bytes after the strings are a newer minor's extension: skipped. */
	end = b + len - 8;
	rc = get_str(r, &p, end, h->arch, sizeof(h->arch), "arch", err);
	if (!rc)
		rc = get_str(r, &p, end, h->khyve_version,
			     sizeof(h->khyve_version), "khyve version", err);
	if (!rc)
		rc = get_str(r, &p, end, h->host.cpu_vendor,
			     sizeof(h->host.cpu_vendor), "cpu vendor", err);
	if (!rc)
		rc = get_str(r, &p, end, h->host.kvm_info,
			     sizeof(h->host.kvm_info), "kvm info", err);
	if (rc)
		return rc;
	/* 1.1: the save id opens the extension (a 1.0 file has none). */
	if (h->minor >= 1) {
		static const uint8_t zero[SNAP_SAVE_ID_LEN];

		if (end - p < SNAP_SAVE_ID_LEN)
			return RERR(-EPROTO,
				    "%s: header: format %u.%u without its save "
				    "id",
				    r->path, h->major, h->minor);
		memcpy(h->save_id, p, SNAP_SAVE_ID_LEN);
		h->has_save_id = memcmp(h->save_id, zero, SNAP_SAVE_ID_LEN);
	}
	if (strcmp(h->arch, SNAP_ARCH))
		return RERR(-EPROTO,
			    "%s: snapshot is for arch '%s', this khyve is %s",
			    r->path, h->arch, SNAP_ARCH);
	*hlen = len;
	return 0;
}

/* The end marker at @off (@left bytes to the end of the file). */
static int parse_end(const struct snap_reader *r, uint64_t off, uint64_t left,
		     struct err *err)
{
	const uint8_t *p = r->buf + off;

	if (left != END_LEN)
		return RERR(-EPROTO,
			    "%s: end marker at offset %llu but file has %llu "
			    "more bytes",
			    r->path, (unsigned long long)off,
			    (unsigned long long)left);
	if (get_le32(p + 4) != r->nsecs || get_le64(p + 8) != r->len)
		return RERR(-EPROTO,
			    "%s: end marker disagrees with the file (%u "
			    "sections, %zu bytes)",
			    r->path, r->nsecs, r->len);
	if (XXH3_64bits(r->buf, r->len - 8) != get_le64(p + 16))
		return RERR(-EPROTO, "%s: whole-file checksum mismatch",
			    r->path);
	return 0;
}

/* A free slot in r->secs (grown as needed) in *@out. */
static int new_sec(struct snap_reader *r, uint64_t *cap, struct rsec **out,
		   struct err *err)
{
	struct rsec *n;

	if (r->nsecs >= SNAP_MAX_SECTIONS)
		return RERR(-EPROTO, "%s: more than %u sections", r->path,
			    SNAP_MAX_SECTIONS);
	if (r->nsecs == *cap) {
		n = realloc(r->secs, *cap * 2 * sizeof(*n));
		if (!n)
			return RERR(-ENOMEM, "%s: out of memory", r->path);
		*cap *= 2;
		r->secs = n;
	}
	*out = &r->secs[r->nsecs];
	memset(*out, 0, sizeof(**out));
	return 0;
}

/* XXH3-64 of a section: its header's first 32 bytes, name and payload. */
static int sec_sum(const uint8_t *p, size_t tail, uint64_t *sum)
{
	XXH3_state_t *hs = XXH3_createState();

	if (!hs)
		return -ENOMEM;
	XXH3_64bits_reset(hs);
	XXH3_64bits_update(hs, p, 32);
	XXH3_64bits_update(hs, p + SEC_HDR, tail);
	*sum = XXH3_64bits_digest(hs);
	XXH3_freeState(hs);
	return 0;
}

/* The section at @off: validated into r->secs; *@len its size. */
static int parse_section(struct snap_reader *r, uint64_t off, uint64_t *cap,
			 uint64_t *len, struct err *err)
{
	const uint8_t *p = r->buf + off;
	uint64_t left = r->len - off, sum;
	struct rsec *s = NULL;
	unsigned nlen;
	int rc;

	if (left < SEC_HDR)
		return RERR(-EPROTO,
			    "%s: truncated section header at offset %llu",
			    r->path, (unsigned long long)off);
	if (get_le32(p) != SEC_MAGIC)
		return RERR(-EPROTO, "%s: bad section magic at offset %llu",
			    r->path, (unsigned long long)off);
	rc = new_sec(r, cap, &s, err);
	if (rc)
		return rc;
	nlen = get_le16(p + 6);
	if (nlen == 0 || nlen > SNAP_MAX_NAME || left - SEC_HDR < nlen ||
	    !name_ok((const char *)p + SEC_HDR, nlen))
		return RERR(-EPROTO, "%s: bad section name at offset %llu",
			    r->path, (unsigned long long)off);
	memcpy(s->name, p + SEC_HDR, nlen);
	s->kind = get_le16(p + 4);
	s->version = get_le16(p + 8);
	s->min_version = get_le16(p + 10);
	s->flags = get_le32(p + 12);
	s->instance = get_le32(p + 16);
	s->payload_len = get_le64(p + 24);
	s->checksum = get_le64(p + 32);
	s->offset = off;
	r->nsecs++; /* owned now: freed by close even on error */
	if (s->payload_len > left - SEC_HDR - nlen)
		return RERR(-EPROTO,
			    "%s: section '%s' #%u: payload of %llu bytes "
			    "overruns the file",
			    r->path, s->name, s->instance,
			    (unsigned long long)s->payload_len);
	s->payload = p + SEC_HDR + nlen;
	if (sec_sum(p, nlen + s->payload_len, &sum))
		return RERR(-ENOMEM, "%s: out of memory", r->path);
	if (sum != s->checksum)
		return RERR(-EPROTO, "%s: section '%s' #%u: checksum mismatch",
			    r->path, s->name, s->instance);
	if (get_le32(p + 20) || s->version < 1 || s->min_version < 1 ||
	    s->min_version > s->version ||
	    (s->kind != SNAP_KIND_DESC && s->kind != SNAP_KIND_BLOB))
		return RERR(-EPROTO,
			    "%s: section '%s' #%u: bad header (kind %u, "
			    "version %u, min version %u)",
			    r->path, s->name, s->instance, s->kind, s->version,
			    s->min_version);
	*len = SEC_HDR + nlen + s->payload_len;
	return s->kind == SNAP_KIND_DESC ? parse_fields(r, s, err) : 0;
}

/* r->sorted: sections by (name, instance), each pair at most once. */
static int index_sections(struct snap_reader *r, struct err *err)
{
	r->sorted = calloc(r->nsecs ? r->nsecs : 1, sizeof(*r->sorted));
	if (!r->sorted)
		return RERR(-ENOMEM, "%s: out of memory", r->path);
	for (unsigned i = 0; i < r->nsecs; i++)
		r->sorted[i] = i;
	sort_reader = r;
	qsort(r->sorted, r->nsecs, sizeof(*r->sorted), sec_sort_cmp);
	for (unsigned i = 1; i < r->nsecs; i++) {
		const struct rsec *a = &r->secs[r->sorted[i - 1]];
		const struct rsec *b = &r->secs[r->sorted[i]];

		if (!sec_cmp_key(a, b->name, b->instance))
			return RERR(-EPROTO,
				    "%s: section '%s' #%u appears twice",
				    r->path, b->name, b->instance);
	}
	return 0;
}

static int parse(struct snap_reader *r, struct err *err)
{
	uint64_t off = 0, cap = 16, len = 0;
	int rc;

	rc = parse_header(r, &off, err);
	if (rc)
		return rc;
	r->secs = calloc(cap, sizeof(*r->secs));
	if (!r->secs)
		return RERR(-ENOMEM, "%s: out of memory", r->path);
	while (off < r->len) {
		uint64_t left = r->len - off;

		if (left >= 4 && get_le32(r->buf + off) == END_MAGIC) {
			rc = parse_end(r, off, left, err);
			return rc ? rc : index_sections(r, err);
		}
		rc = parse_section(r, off, &cap, &len, err);
		if (rc)
			return rc;
		off += len;
	}
	return RERR(-EPROTO, "%s: no end marker (file truncated?)", r->path);
}

const char *snap_file_type(mode_t mode)
{
	return S_ISFIFO(mode)	? "a FIFO"
	       : S_ISCHR(mode)	? "a character device"
	       : S_ISBLK(mode)	? "a block device"
	       : S_ISSOCK(mode) ? "a socket"
	       : S_ISDIR(mode)	? "a directory"
	       : S_ISLNK(mode)	? "a symbolic link"
				: "not a regular file";
}

/*
 * Neither a symlink followed (it could point anywhere) nor a FIFO or
 * device waited on (an open, or the first read, would hang khyve): a
 * snapshot file is a regular file or it is refused.
 */
int snap_open_regular(const char *path, int flags, struct stat *st,
		      struct err *err)
{
	int fd = open(path, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	int rc;

	if (fd < 0) {
		rc = -errno;
		if (rc == -ELOOP)
			return err_set(err, rc,
				       "%s: is a symbolic link (snapshot "
				       "files are not followed)",
				       path);
		return err_set(err, rc, "%s: %s", path, strerror(-rc));
	}
	if (fstat(fd, st)) {
		rc = -errno;
		close(fd);
		return err_set(err, rc, "%s: %s", path, strerror(-rc));
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		return err_set(err, -EINVAL, "%s: not a regular file (%s)",
			       path, snap_file_type(st->st_mode));
	}
	return fd;
}

int snap_reader_open_mem(struct snap_reader **rp, const char *name,
			 const void *data, size_t len, struct err *err)
{
	struct snap_reader *r;
	int rc;

	*rp = NULL;
	if (len > SNAP_MAX_FILE_SIZE)
		return RERR(-EFBIG,
			    "%s: %zu bytes is larger than the %llu "
			    "a state file may have",
			    name, len, (unsigned long long)SNAP_MAX_FILE_SIZE);
	r = calloc(1, sizeof(*r));
	if (!r)
		return RERR(-ENOMEM, "%s: out of memory", name);
	r->path = strdup(name);
	r->buf = malloc(len ? len : 1);
	if (!r->path || !r->buf) {
		rc = RERR(-ENOMEM, "%s: out of memory", name);
		goto fail;
	}
	if (len)
		memcpy(r->buf, data, len);
	r->len = len;
	rc = parse(r, err);
	if (rc)
		goto fail;
	*rp = r;
	return 0;
fail:
	snap_reader_close(r);
	return rc;
}

int snap_reader_open(struct snap_reader **rp, const char *path, struct err *err)
{
	struct snap_reader *r = NULL;
	struct stat st;
	size_t got = 0;
	int fd, rc;

	*rp = NULL;
	fd = snap_open_regular(path, O_RDONLY, &st, err);
	if (fd < 0)
		return fd;
	if ((uint64_t)st.st_size > SNAP_MAX_FILE_SIZE) {
		rc = RERR(-EFBIG,
			  "%s: %lld bytes is larger than the %llu a state "
			  "file may have",
			  path, (long long)st.st_size,
			  (unsigned long long)SNAP_MAX_FILE_SIZE);
		goto out;
	}
	r = calloc(1, sizeof(*r));
	if (!r || !(r->path = strdup(path)) ||
	    !(r->buf = malloc(st.st_size ? (size_t)st.st_size : 1))) {
		rc = RERR(-ENOMEM, "%s: out of memory", path);
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = pread(fd, r->buf + got, (size_t)st.st_size - got,
				  (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = RERR(-errno, "%s: read: %s", path,
				  strerror(errno));
			goto out;
		}
		if (n == 0)
			break; /* shrank under us: parse what we have */
		got += (size_t)n;
	}
	r->len = got;
	rc = parse(r, err);
	if (!rc) {
		*rp = r;
		r = NULL;
	}
out:
	snap_reader_close(r);
	close(fd);
	return rc;
}

void snap_reader_close(struct snap_reader *r)
{
	if (!r)
		return;
	for (unsigned i = 0; i < r->nsecs; i++) {
		free(r->secs[i].fields);
		free(r->secs[i].field_sorted);
	}
	free(r->secs);
	free(r->sorted);
	free(r->buf);
	free(r->path);
	free(r);
}

const char *snap_reader_path(const struct snap_reader *r)
{
	return r->path;
}

const struct snap_header_info *snap_reader_header(const struct snap_reader *r)
{
	return &r->hdr;
}

uint64_t snap_reader_hash(const struct snap_reader *r)
{
	return XXH3_64bits(r->buf, r->len);
}

static struct rsec *find_sec(const struct snap_reader *r, const char *name,
			     uint32_t instance)
{
	unsigned lo = 0, hi = r->nsecs;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		struct rsec *s = &r->secs[r->sorted[mid]];
		int c = sec_cmp_key(s, name, instance);

		if (!c)
			return s;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static const struct rfield *find_field(const struct rsec *s, const char *name)
{
	unsigned lo = 0, hi = s->nfields;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		const struct rfield *f = &s->fields[s->field_sorted[mid]];
		int c = strcmp(f->name, name);

		if (!c)
			return f;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

bool snap_has_section(const struct snap_reader *r, const char *name,
		      uint32_t instance)
{
	return r && name && find_sec(r, name, instance);
}

/* Decode one described field from @s into @tmp (a copy of the state). */
static int load_field(const struct snap_reader *r, const struct rsec *s,
		      const struct snap_desc *d, const struct snap_field *f,
		      void *tmp, struct err *err)
{
	unsigned sz = snap_type_size(f->type);
	const struct rfield *ff = find_field(s, f->name);
	uint32_t n = f->count;

#define FERR(rc, fmt, ...)                                                     \
	RERR(rc, "%s: section '%s' #%u: field '%s': " fmt, r->path, s->name,   \
	     s->instance, f->name, ##__VA_ARGS__)

	if (!ff)
		return FERR(-EPROTO,
			    "missing (this khyve expects it since section "
			    "version %u, file has version %u)",
			    f->since, s->version);
	if (ff->type != f->type)
		return FERR(-EPROTO, "type %s in the file, expected %s",
			    snap_type_name(ff->type), snap_type_name(f->type));
	if (f->count_field) {
		const struct snap_field *cf = desc_field(d, f->count_field);
		uint64_t live = state_get(tmp, cf->offset, cf->type);

		if (live > f->count)
			return FERR(-ERANGE,
				    "count '%s' = %llu exceeds capacity %u",
				    f->count_field, (unsigned long long)live,
				    f->count);
		if (ff->count != live)
			return FERR(-EPROTO,
				    "%u elements in the file but '%s' = %llu",
				    ff->count, f->count_field,
				    (unsigned long long)live);
		n = (uint32_t)live;
		/* Dead slots get zeroes, not stale caller data. */
		memset((uint8_t *)tmp + f->offset + (size_t)n * sz, 0,
		       (size_t)(f->count - n) * sz);
	} else {
		if (ff->count > f->count)
			return FERR(-ERANGE, "%u elements exceed capacity %u",
				    ff->count, f->count);
		n = ff->count;
	}
	for (uint32_t k = 0; k < n; k++) {
		uint64_t v = load_elem(ff->data + (size_t)k * sz, f->type);

		if (!value_ok(f->type, f->max, v)) {
			if (f->count > 1)
				return FERR(-ERANGE,
					    "element %u: value %llu exceeds "
					    "maximum %llu",
					    k, (unsigned long long)v,
					    (unsigned long long)f->max);
			return FERR(-ERANGE, "value %llu exceeds maximum %llu",
				    (unsigned long long)v,
				    (unsigned long long)f->max);
		}
		state_set(tmp, f->offset + k * sz, f->type, v);
	}
	return 0;
#undef FERR
}

int snap_read_section(struct snap_reader *r, const struct snap_desc *d,
		      uint32_t instance, void *state, struct err *err)
{
	struct rsec *s;
	void *tmp;
	int rc;

	if (!r || !state)
		return RERR(-EINVAL, "snap_read_section: bad arguments");
	rc = snap_desc_check(d, err);
	if (rc)
		return rc;
	s = find_sec(r, d->name, instance);
	if (!s)
		return RERR(-ENOENT, "%s: section '%s' #%u not found", r->path,
			    d->name, instance);
	if (s->kind != SNAP_KIND_DESC)
		return RERR(-EPROTO,
			    "%s: section '%s' #%u is a blob, not a described "
			    "section",
			    r->path, s->name, instance);
	if (s->version < d->min_version)
		return RERR(-EPROTO,
			    "%s: section '%s' #%u: version %u is older than "
			    "the oldest this khyve loads (%u)",
			    r->path, s->name, instance, s->version,
			    d->min_version);
	if (s->min_version > d->version)
		return RERR(-EPROTO,
			    "%s: section '%s' #%u: version %u needs a reader "
			    "of version %u or later, this khyve has %u",
			    r->path, s->name, instance, s->version,
			    s->min_version, d->version);
	/* Load into a copy so a failure leaves the caller's state as is. */
	tmp = malloc(d->state_size ? d->state_size : 1);
	if (!tmp)
		return RERR(-ENOMEM, "%s: out of memory", r->path);
	memcpy(tmp, state, d->state_size);
	for (unsigned i = 0; i < d->nfields; i++) {
		/* Newer than the file: keeps the caller's preloaded value. */
		if (d->fields[i].since > s->version)
			continue;
		rc = load_field(r, s, d, &d->fields[i], tmp, err);
		if (rc)
			goto out;
	}
	memcpy(state, tmp, d->state_size);
	s->consumed = true;
out:
	free(tmp);
	return rc;
}

int snap_read_blob(struct snap_reader *r, const char *name, uint32_t instance,
		   const void **data, size_t *len, uint16_t *version,
		   struct err *err)
{
	struct rsec *s;

	if (!r || !name || !data || !len)
		return RERR(-EINVAL, "snap_read_blob: bad arguments");
	s = find_sec(r, name, instance);
	if (!s)
		return RERR(-ENOENT, "%s: section '%s' #%u not found", r->path,
			    name, instance);
	if (s->kind != SNAP_KIND_BLOB)
		return RERR(-EPROTO,
			    "%s: section '%s' #%u is a described section, not "
			    "a blob",
			    r->path, name, instance);
	*data = s->payload;
	*len = (size_t)s->payload_len;
	if (version)
		*version = s->version;
	s->consumed = true;
	return 0;
}

int snap_reader_check_consumed(const struct snap_reader *r, struct err *err)
{
	for (unsigned i = 0; i < r->nsecs; i++) {
		const struct rsec *s = &r->secs[i];

		if (!s->consumed && !(s->flags & SNAP_F_OPTIONAL))
			return RERR(-EPROTO,
				    "%s: section '%s' #%u is required but "
				    "this khyve did not load it",
				    r->path, s->name, s->instance);
	}
	return 0;
}

unsigned snap_reader_nsections(const struct snap_reader *r)
{
	return r->nsecs;
}

int snap_reader_section(const struct snap_reader *r, unsigned idx,
			struct snap_section_info *info)
{
	const struct rsec *s;

	if (idx >= r->nsecs)
		return -ENOENT;
	s = &r->secs[idx];
	*info = (struct snap_section_info){
		.name = s->name,
		.instance = s->instance,
		.version = s->version,
		.min_version = s->min_version,
		.kind = s->kind,
		.flags = s->flags,
		.offset = s->offset,
		.payload_len = s->payload_len,
		.checksum = s->checksum,
		.nfields = s->nfields,
	};
	return 0;
}

int snap_reader_field(const struct snap_reader *r, unsigned sec_idx,
		      unsigned field_idx, struct snap_field_info *f)
{
	const struct rsec *s;

	if (sec_idx >= r->nsecs)
		return -ENOENT;
	s = &r->secs[sec_idx];
	if (field_idx >= s->nfields)
		return -ENOENT;
	f->name = s->fields[field_idx].name;
	f->type = s->fields[field_idx].type;
	f->count = s->fields[field_idx].count;
	f->data = s->fields[field_idx].data;
	return 0;
}
