/* SPDX-License-Identifier: BSD-2-Clause */
/* khyvectl snapshot info / verify. */
#include "snap_inspect.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "config.h"
#include "snap_chain.h"
#include "snap_convert.h"
#include "snap_ram.h"

#define MAX_PRINT_BYTES 64 /* of a byte array in text output */

static const char *kind_name(uint16_t kind)
{
	return kind == SNAP_KIND_BLOB ? "blob" : "fields";
}

static void fmt_time(uint64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t > (uint64_t)INT64_MAX || !gmtime_r(&tt, &tm) ||
	    !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "@%" PRIu64, t);
}

/* Integer element as JSON (signed for i64; above 2^63 as a string). */
static json_t *elem_json(const struct snap_field_info *f, uint32_t i)
{
	uint64_t v = snap_field_elem(f, i);
	char buf[24];

	if (f->type == SNAP_T_BOOL)
		return json_boolean(v);
	if (f->type == SNAP_T_I64 || v <= (uint64_t)INT64_MAX)
		return json_integer((json_int_t)v);
	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	return json_string(buf);
}

static json_t *field_json(const struct snap_field_info *f)
{
	json_t *o = json_object(), *v;

	json_object_set_new(o, "type", json_string(snap_type_name(f->type)));
	json_object_set_new(o, "count", json_integer(f->count));
	if (f->type == SNAP_T_BYTES ||
	    (f->type == SNAP_T_U8 && f->count != 1)) {
		char *hex = malloc(2 * (size_t)f->count + 1);

		if (!hex)
			return o;
		for (uint32_t i = 0; i < f->count; i++)
			snprintf(hex + 2 * i, 3, "%02x",
				 ((const uint8_t *)f->data)[i]);
		hex[2 * f->count] = 0;
		v = json_string(hex);
		free(hex);
	} else if (f->count == 1) {
		v = elem_json(f, 0);
	} else {
		v = json_array();
		for (uint32_t i = 0; i < f->count; i++)
			json_array_append_new(v, elem_json(f, i));
	}
	json_object_set_new(o, "value", v);
	return o;
}

static void print_elem(FILE *out, const struct snap_field_info *f, uint32_t i)
{
	uint64_t v = snap_field_elem(f, i);

	if (f->type == SNAP_T_I64)
		fprintf(out, "%" PRId64, (int64_t)v);
	else if (f->type == SNAP_T_BOOL)
		fprintf(out, "%s", v ? "true" : "false");
	else if (v < 10)
		fprintf(out, "%" PRIu64, v);
	else
		fprintf(out, "0x%" PRIx64, v);
}

/* Arrays compactly: bytes as hex, runs of equal values as "v (xN)". */
static void print_field(FILE *out, const struct snap_field_info *f)
{
	fprintf(out, "    %-20s %s", f->name, snap_type_name(f->type));
	if (f->count != 1 || f->type == SNAP_T_BYTES)
		fprintf(out, "[%u]", f->count);
	fputs(" ", out);
	if (f->type == SNAP_T_BYTES ||
	    (f->type == SNAP_T_U8 && f->count != 1)) {
		uint32_t n = MIN(f->count, MAX_PRINT_BYTES);

		for (uint32_t i = 0; i < n; i++)
			fprintf(out, "%02x", ((const uint8_t *)f->data)[i]);
		if (n < f->count)
			fprintf(out, "... (%u more)", f->count - n);
		fputs("\n", out);
		return;
	}
	if (f->count == 1) {
		print_elem(out, f, 0);
		fputs("\n", out);
		return;
	}
	fputs("[", out);
	for (uint32_t i = 0; i < f->count;) {
		uint32_t j = i + 1;

		while (j < f->count &&
		       snap_field_elem(f, j) == snap_field_elem(f, i))
			j++;
		if (i)
			fputs(", ", out);
		print_elem(out, f, i);
		if (j - i > 2)
			fprintf(out, " (x%u)", j - i);
		else
			j = i + 1;
		i = j;
	}
	fputs("]\n", out);
}

/* The embedded machine configuration, parsed if it is JSON. */
static json_t *load_config(struct snap_reader *r)
{
	const void *data;
	size_t len;
	struct err e;

	if (snap_read_blob(r, "config", 0, &data, &len, NULL, &e))
		return NULL;
	return json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
}

static void print_config(FILE *out, json_t *cfg)
{
	json_t *cpus = json_object_get(cfg, "cpus");
	json_t *mem = json_object_get(cfg, "memory");
	json_t *devs = json_object_get(cfg, "devices"), *d;
	size_t i;

	if (json_is_integer(cpus))
		fprintf(out, "vcpus:     %" JSON_INTEGER_FORMAT "\n",
			json_integer_value(cpus));
	if (json_is_integer(mem))
		fprintf(out,
			"memory:    %" JSON_INTEGER_FORMAT " bytes (%g MiB)\n",
			json_integer_value(mem),
			(double)json_integer_value(mem) / (double)MiB);
	if (json_is_array(devs)) {
		fprintf(out, "devices:  ");
		json_array_foreach(devs, i, d)
		{
			json_t *e = json_object_get(d, "emulation");
			json_t *c = json_object_get(d, "conf");

			if (json_is_string(d))
				fprintf(out, " %s", json_string_value(d));
			else if (json_is_string(e))
				fprintf(out, " %s%s%s", json_string_value(e),
					json_is_string(c) ? ":" : "",
					json_is_string(c) ? json_string_value(c)
							  : "");
		}
		fprintf(out, "\n");
	}
}

/*
 * ---- What a restore opens on the host ----
 * The RAM file (beside the state file), then every host binding of the
 * embedded configuration (console, disks, TAPs, console sockets): a
 * restore opens them unless the command line names others (-l, -s).
 */
struct bind_list {
	FILE *out;   /* text */
	json_t *arr; /* or JSON */
};

static void add_binding(void *opaque, const char *what, const char *kind,
			const char *target)
{
	struct bind_list *b = opaque;

	if (b->arr) {
		json_array_append_new(
			b->arr, json_pack("{s:s, s:s, s:s}", "what", what,
					  "kind", kind, "target", target));
		return;
	}
	fprintf(b->out, "  %-22s %-8s %s%s\n", what, kind, target,
		*target && *target != '/' && strcmp(kind, "tap")
			? "  (relative to khyve's working directory)"
			: "");
}

/* An increment's restore opens every link of its chain too. */
static void chain_bindings(struct snap_reader *r, struct bind_list *b)
{
	struct snap_chain c;
	struct err e = {0};
	char what[32];

	if (!snap_has_section(r, SNAP_CHAIN_SECTION, 0))
		return;
	if (snap_chain_open(snap_reader_path(r), &c, &e)) {
		add_binding(b, "parent", "invalid", e.msg);
		return;
	}
	for (unsigned k = c.n - 1; k-- > 0;) {
		snprintf(what, sizeof(what), "parent %u", c.n - 1 - k);
		add_binding(b, what, "snapshot", c.l[k].path);
		snprintf(what, sizeof(what), "parent %u ram", c.n - 1 - k);
		add_binding(b, what, "ram", c.l[k].ram_path);
	}
	snap_chain_close(&c);
}

static void list_bindings(struct snap_reader *r, json_t *cfg,
			  struct bind_list *b)
{
	struct snap_ram_info ri;
	struct err e;
	struct vm_config c;
	char ram[4096];

	if (!snap_ram_read_section(r, &ri, &e)) {
		if (snap_ram_resolve(snap_reader_path(r), ri.file, ram,
				     sizeof(ram)))
			snprintf(ram, sizeof(ram), "(bad name) %s", ri.file);
		add_binding(b, "ram", "ram", ram);
		snap_ram_info_free(&ri);
	} else if (snap_has_section(r, SNAP_RAM_SECTION, 0)) {
		add_binding(b, "ram", "invalid", e.msg);
	}
	chain_bindings(r, b);
	if (!cfg)
		return;
	if (config_from_json(&c, cfg, &e)) {
		add_binding(b, "config", "invalid", err_msg(&e));
		return;
	}
	config_host_bindings(&c, add_binding, b);
	config_free(&c);
}

/* Where the file came from: format, khyve version, host, save id. */
static void print_header_text(struct snap_reader *r, FILE *out)
{
	const struct snap_header_info *h = snap_reader_header(r);
	char when[40];

	fmt_time(h->created, when, sizeof(when));
	fprintf(out, "file:      %s\n", snap_reader_path(r));
	fprintf(out, "format:    %u.%u\n", h->major, h->minor);
	fprintf(out, "arch:      %s\n", h->arch);
	fprintf(out, "khyve:     %s\n", h->khyve_version);
	fprintf(out, "created:   %s\n", when);
	fprintf(out,
		"host:      %s family %u model %u stepping %u, cpuid hash "
		"%016" PRIx64 "\n",
		h->host.cpu_vendor, h->host.family, h->host.model,
		h->host.stepping, h->host.cpuid_hash);
	if (h->host.kvm_info[0])
		fprintf(out, "kvm:       %s\n", h->host.kvm_info);
	if (h->has_save_id) {
		char id[SNAP_SAVE_ID_STR];

		snap_save_id_str(h->save_id, id);
		fprintf(out, "save id:   %s\n", id);
	} else {
		fprintf(out,
			"save id:   none (RAM file checked by size only)\n");
	}
}

/* The RAM file the state file names, or why its section is unreadable. */
static void print_ram_text(struct snap_reader *r, FILE *out)
{
	struct snap_ram_info ri;
	struct err e;

	if (!snap_ram_read_section(r, &ri, &e)) {
		fprintf(out,
			"ram:       %s, %" PRIu64
			" bytes, %u chunks of %" PRIu64 "\n",
			ri.file, ri.ram_size, ri.nchunks, ri.chunk_size);
		snap_ram_info_free(&ri);
	} else if (snap_has_section(r, SNAP_RAM_SECTION, 0)) {
		fprintf(out, "ram:       INVALID: %s\n", e.msg);
	}
}

/*
 * An increment: its parent, and the chain down to its base as far as it
 * can be followed (where it breaks, why).
 */
static void print_chain_text(struct snap_reader *r, FILE *out)
{
	struct snap_chain_parent par;
	struct snap_chain c;
	char id[SNAP_SAVE_ID_STR];
	struct err e = {0};

	if (snap_chain_read_section(r, &par, &e) == -ENOENT)
		return;
	if (e.msg[0]) {
		fprintf(out, "parent:    INVALID: %s\n", e.msg);
		return;
	}
	snap_save_id_str(par.id, id);
	fprintf(out,
		"parent:    %s (save %s), %" PRIu64 " pages held (%" PRIu64
		" bytes), %u links below\n",
		par.file, id, par.held, par.held * 4096, par.depth);
	snap_chain_parent_free(&par);
	if (snap_chain_open(snap_reader_path(r), &c, &e)) {
		fprintf(out, "chain:     BROKEN: %s\n", e.msg);
		return;
	}
	fprintf(out, "chain:     %u snapshots, base first\n", c.n);
	for (unsigned k = 0; k < c.n; k++) {
		snap_save_id_str(c.l[k].hdr.save_id, id);
		if (k)
			fprintf(out,
				"  %u %s save %s, increment of %" PRIu64
				" pages\n",
				k, c.l[k].path, id, c.l[k].par.held);
		else
			fprintf(out, "  0 %s save %s, full\n", c.l[k].path, id);
	}
	snap_chain_close(&c);
}

static json_t *chain_json(struct snap_reader *r)
{
	struct snap_chain_parent par;
	json_t *j, *links;
	struct snap_chain c;
	char id[SNAP_SAVE_ID_STR];
	struct err e = {0};

	if (snap_chain_read_section(r, &par, &e) == -ENOENT)
		return NULL;
	if (e.msg[0])
		return json_pack("{s:s}", "invalid", e.msg);
	snap_save_id_str(par.id, id);
	j = json_pack("{s:s, s:s, s:I, s:I, s:i}", "file", par.file, "save_id",
		      id, "pages_held", (json_int_t)par.held, "bytes_held",
		      (json_int_t)(par.held * 4096), "depth", (int)par.depth);
	snap_chain_parent_free(&par);
	if (!j)
		return NULL;
	if (snap_chain_open(snap_reader_path(r), &c, &e)) {
		json_object_set_new(j, "broken", json_string(e.msg));
		return j;
	}
	links = json_array();
	for (unsigned k = 0; k < c.n; k++) {
		snap_save_id_str(c.l[k].hdr.save_id, id);
		json_array_append_new(
			links,
			json_pack("{s:s, s:s, s:b, s:I}", "file", c.l[k].path,
				  "save_id", id, "full", k == 0, "pages_held",
				  (json_int_t)(k ? c.l[k].par.held : 0)));
	}
	json_object_set_new(j, "chain", links);
	snap_chain_close(&c);
	return j;
}

/* One line per section. */
static void print_sections_text(struct snap_reader *r, FILE *out)
{
	fprintf(out, "sections:  %u\n", snap_reader_nsections(r));
	fprintf(out, "  %-20s %5s %4s %4s %-6s %-8s %10s\n", "NAME", "INST",
		"VER", "MIN", "KIND", "FLAGS", "BYTES");
	for (unsigned i = 0; i < snap_reader_nsections(r); i++) {
		struct snap_section_info si;

		snap_reader_section(r, i, &si);
		fprintf(out, "  %-20s %5u %4u %4u %-6s %-8s %10" PRIu64 "\n",
			si.name, si.instance, si.version, si.min_version,
			kind_name(si.kind),
			si.flags & SNAP_F_OPTIONAL ? "optional" : "required",
			si.payload_len);
	}
}

/* --all: every described section's fields. */
static void print_fields_text(struct snap_reader *r, FILE *out)
{
	for (unsigned i = 0; i < snap_reader_nsections(r); i++) {
		struct snap_section_info si;

		snap_reader_section(r, i, &si);
		if (si.kind != SNAP_KIND_DESC)
			continue;
		fprintf(out, "\n  %s #%u (version %u)\n", si.name, si.instance,
			si.version);
		for (unsigned k = 0; k < si.nfields; k++) {
			struct snap_field_info f;

			snap_reader_field(r, i, k, &f);
			print_field(out, &f);
		}
	}
}

static void print_text(struct snap_reader *r, json_t *cfg, bool all, FILE *out)
{
	struct bind_list b = {out, NULL};

	print_header_text(r, out);
	if (cfg)
		print_config(out, cfg);
	print_ram_text(r, out);
	print_chain_text(r, out);
	fprintf(out, "opens:     on restore, unless -l or -s name "
		     "others:\n");
	list_bindings(r, cfg, &b);
	print_sections_text(r, out);
	if (!all)
		return;
	print_fields_text(r, out);
	if (cfg) {
		fprintf(out, "\n  config:\n");
		json_dumpf(cfg, out, JSON_INDENT(2) | JSON_SORT_KEYS);
		fputs("\n", out);
	}
}

/* File, format and creation time, and the save id. */
static void json_add_header(json_t *doc, struct snap_reader *r)
{
	const struct snap_header_info *h = snap_reader_header(r);
	char when[40], buf[32];

	fmt_time(h->created, when, sizeof(when));
	snprintf(buf, sizeof(buf), "%u.%u", h->major, h->minor);
	json_object_set_new(doc, "file", json_string(snap_reader_path(r)));
	json_object_set_new(doc, "format", json_string(buf));
	json_object_set_new(doc, "arch", json_string(h->arch));
	json_object_set_new(doc, "khyve_version",
			    json_string(h->khyve_version));
	json_object_set_new(doc, "created", json_string(when));
	json_object_set_new(doc, "created_epoch",
			    json_integer((json_int_t)h->created));
	if (h->has_save_id) {
		char id[SNAP_SAVE_ID_STR];

		snap_save_id_str(h->save_id, id);
		json_object_set_new(doc, "save_id", json_string(id));
	} else {
		json_object_set_new(doc, "save_id", json_null());
	}
}

/* The host the snapshot was taken on. */
static json_t *host_json(const struct snap_header_info *h)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%016" PRIx64, h->host.cpuid_hash);
	return json_pack("{s:s, s:i, s:i, s:i, s:s, s:s}", "cpu_vendor",
			 h->host.cpu_vendor, "family", (int)h->host.family,
			 "model", (int)h->host.model, "stepping",
			 (int)h->host.stepping, "cpuid_hash", buf, "kvm",
			 h->host.kvm_info);
}

/* The embedded configuration, and its most asked-for fields on top. */
static void json_add_config(json_t *doc, json_t *cfg)
{
	json_t *cpus = json_object_get(cfg, "cpus");
	json_t *mem = json_object_get(cfg, "memory");

	if (cpus)
		json_object_set(doc, "vcpus", cpus);
	if (mem)
		json_object_set(doc, "memory", mem);
	if (json_object_get(cfg, "devices"))
		json_object_set(doc, "devices",
				json_object_get(cfg, "devices"));
	json_object_set(doc, "config", cfg);
}

/* Section @i's entry; with --all a described section's fields too. */
static json_t *section_json(struct snap_reader *r, unsigned i, bool all)
{
	struct snap_section_info si;
	json_t *s;

	snap_reader_section(r, i, &si);
	s = json_pack("{s:s, s:i, s:i, s:i, s:s, s:b, s:I}", "name", si.name,
		      "instance", (int)si.instance, "version", (int)si.version,
		      "min_version", (int)si.min_version, "kind",
		      kind_name(si.kind), "optional",
		      !!(si.flags & SNAP_F_OPTIONAL), "bytes",
		      (json_int_t)si.payload_len);
	if (all && si.kind == SNAP_KIND_DESC) {
		json_t *fields = json_object();

		for (unsigned k = 0; k < si.nfields; k++) {
			struct snap_field_info f;

			snap_reader_field(r, i, k, &f);
			json_object_set_new(fields, f.name, field_json(&f));
		}
		json_object_set_new(s, "fields", fields);
	}
	return s;
}

static json_t *build_json(struct snap_reader *r, json_t *cfg, bool all)
{
	json_t *doc = json_object(), *secs = json_array();
	struct bind_list b = {NULL, json_array()};
	struct snap_ram_info ri;
	struct err e;

	json_add_header(doc, r);
	list_bindings(r, cfg, &b);
	json_object_set_new(doc, "host_bindings", b.arr);
	json_object_set_new(doc, "host", host_json(snap_reader_header(r)));
	if (cfg)
		json_add_config(doc, cfg);
	if (!snap_ram_read_section(r, &ri, &e)) {
		json_object_set_new(
			doc, "ram",
			json_pack("{s:s, s:I, s:I, s:i}", "file", ri.file,
				  "size", (json_int_t)ri.ram_size, "chunk_size",
				  (json_int_t)ri.chunk_size, "chunks",
				  (int)ri.nchunks));
		snap_ram_info_free(&ri);
	}
	{
		json_t *ch = chain_json(r);

		if (ch)
			json_object_set_new(doc, "parent", ch);
	}
	for (unsigned i = 0; i < snap_reader_nsections(r); i++)
		json_array_append_new(secs, section_json(r, i, all));
	json_object_set_new(doc, "sections", secs);
	return doc;
}

/* A recorded stream's records, before the state file it carries. */
static void print_stream_text(const char *path,
			      const struct snap_stream_file *f, FILE *out)
{
	fprintf(out,
		"stream:    %s, stream format %u.%u%s, %" PRIu64 " bytes\n",
		path, f->hello.major, f->hello.minor,
		(f->hello.flags & SNAP_HELLO_RECORDED) ? ", recorded" : "",
		f->bytes);
	fprintf(out,
		"records:   %" PRIu64 " RAM (%" PRIu64 " zstd-compressed): "
		"%" PRIu64 " pages of data, %" PRIu64 " zero pages, of %" PRIu64
		" bytes of RAM; the state file below is its STATE record\n",
		f->records, f->zstd_records, f->data_pages, f->zero_pages,
		f->hello.ram_size);
}

static json_t *stream_json(const struct snap_stream_file *f)
{
	return json_pack(
		"{s:i, s:i, s:b, s:I, s:I, s:I, s:I, s:I, s:I}", "major",
		f->hello.major, "minor", f->hello.minor, "recorded",
		(f->hello.flags & SNAP_HELLO_RECORDED) != 0, "bytes",
		(json_int_t)f->bytes, "ram_size", (json_int_t)f->hello.ram_size,
		"ram_records", (json_int_t)f->records, "zstd_records",
		(json_int_t)f->zstd_records, "data_pages",
		(json_int_t)f->data_pages, "zero_pages",
		(json_int_t)f->zero_pages);
}

/* Info of an open state file (@f: the stream it came from, or NULL). */
static int show(struct snap_reader *r, const struct snap_stream_file *f,
		bool json, bool all, FILE *out, struct err *err)
{
	json_t *cfg = load_config(r);
	int rc = 0;

	if (json) {
		json_t *doc = build_json(r, cfg, all);

		if (f)
			json_object_set_new(doc, "stream", stream_json(f));
		rc = json_dumpf(doc, out, JSON_INDENT(2)) ? -EIO : 0;
		fputs("\n", out);
		json_decref(doc);
		if (rc)
			snprintf(err->msg, sizeof(err->msg),
				 "%s: cannot print JSON", snap_reader_path(r));
	} else {
		if (f)
			print_stream_text(snap_reader_path(r), f, out);
		print_text(r, cfg, all, out);
	}
	json_decref(cfg);
	return rc;
}

static bool is_stream(const char *path)
{
	enum snap_form form;
	struct err e = {0};

	return !snap_form_of(path, &form, &e) && form == SNAP_FORM_STREAM;
}

int snap_inspect_info(const char *path, bool json, bool all, FILE *out,
		      struct err *err)
{
	struct snap_stream_file f = {0};
	struct snap_reader *r = NULL;
	bool stream = is_stream(path);
	int rc;

	/* A stream is read through (its STATE comes last), not applied. */
	rc = stream ? snap_stream_file_read(path, false, &f, err) : 0;
	if (!rc)
		rc = stream ? snap_reader_open_mem(&r, path, f.state,
						   f.state_len, err)
			    : snap_reader_open(&r, path, err);
	if (!rc)
		rc = show(r, stream ? &f : NULL, json, all, out, err);
	snap_reader_close(r);
	snap_stream_file_free(&f);
	return rc;
}

/* verify's line per section of an opened state file (pair or stream). */
static void print_sections_ok(struct snap_reader *r, FILE *out)
{
	for (unsigned i = 0; i < snap_reader_nsections(r); i++) {
		struct snap_section_info si;

		snap_reader_section(r, i, &si);
		fprintf(out, "section %s #%u: ok (xxh3 %016" PRIx64 ")\n",
			si.name, si.instance, si.checksum);
	}
}

/*
 * A recorded stream: every record checked and applied to scratch RAM (in
 * range, decompressed to the right size), END's counts, the STATE record
 * as a state file. A stream has no chunk hashes: each record has its own.
 */
static int verify_stream(const char *path, FILE *out, struct err *err)
{
	struct snap_stream_file f;
	struct snap_reader *r = NULL;
	int rc = snap_stream_file_read(path, true, &f, err);

	if (!rc)
		rc = snap_reader_open_mem(&r, path, f.state, f.state_len, err);
	if (rc) {
		fprintf(out, "%s: FAILED: %s\n", path, err->msg);
		return rc;
	}
	print_sections_ok(r, out);
	fprintf(out,
		"stream %s: ok (%" PRIu64 " RAM records, %" PRIu64 " pages, "
		"as its END record counts)\n",
		path, f.records, f.pages);
	fprintf(out, "%s: ok\n", path);
	snap_reader_close(r);
	snap_stream_file_free(&f);
	return 0;
}

/* Every link of an increment's chain, each RAM file with its hashes. */
static int verify_chain(const char *path, FILE *out, struct err *err)
{
	struct snap_chain c;
	int rc = snap_chain_open(path, &c, err);

	if (rc)
		return rc;
	rc = snap_chain_verify(&c, out, err);
	snap_chain_close(&c);
	return rc;
}

int snap_inspect_verify(const char *path, FILE *out, struct err *err)
{
	struct snap_reader *r = NULL;
	struct snap_ram_info ri;
	char ram[4096];
	int rc;

	if (is_stream(path))
		return verify_stream(path, out, err);
	rc = snap_reader_open(&r, path, err);
	if (rc) {
		fprintf(out, "%s: FAILED: %s\n", path, err->msg);
		return rc;
	}
	print_sections_ok(r, out);
	if (!snap_has_section(r, SNAP_RAM_SECTION, 0)) {
		fprintf(out, "%s: ok (no RAM file)\n", path);
		goto out;
	}
	if (snap_has_section(r, SNAP_CHAIN_SECTION, 0)) {
		rc = verify_chain(path, out, err);
		if (rc)
			goto fail;
		goto ok;
	}
	rc = snap_ram_read_section(r, &ri, err);
	if (rc)
		goto fail;
	rc = snap_ram_resolve(path, ri.file, ram, sizeof(ram));
	if (rc) {
		snprintf(err->msg, sizeof(err->msg),
			 "%s: RAM file name too long", path);
	} else {
		rc = snap_ram_verify(ram, &ri, err);
		if (!rc)
			fprintf(out, "ram %s: ok (%u chunks)\n", ram,
				ri.nchunks);
	}
	snap_ram_info_free(&ri);
	if (rc)
		goto fail;
ok:
	fprintf(out, "%s: ok\n", path);
out:
	snap_reader_close(r);
	return 0;
fail:
	fprintf(out, "%s: FAILED: %s\n", path, err->msg);
	snap_reader_close(r);
	return rc;
}
