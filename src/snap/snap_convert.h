/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A snapshot in its two forms (docs/snapshot-format.md, "Converting"):
 * the mapped pair (state file + RAM file, the fast restore) and a
 * recorded stream (one file of checksummed records, RAM zstd-compressed
 * record by record: what `khyvectl --checkpoint=-` writes and `khyve -r`
 * reads), and `khyvectl snapshot convert` between them.
 *
 *   snap_form_of(path, &form, &err);      which of the two a file is
 *   snap_convert(in, out, &res, &err);    the other form at @out
 *   snap_stream_file_read(path, true, &f, &err);  a stream, checked whole
 */
#ifndef KHYVE_SNAP_CONVERT_H
#define KHYVE_SNAP_CONVERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "guest_mem.h"
#include "snap_stream.h"

enum snap_form {
	SNAP_FORM_PAIR = 1,   /* a state file (KHYVSNAP) and its RAM file */
	SNAP_FORM_STREAM = 2, /* a recorded stream (KHMG records) */
};

/* By the file's first bytes; -EPROTO (with why) for anything else. */
int snap_form_of(const char *path, enum snap_form *form, struct err *err);

/* A recorded stream, read whole and every record checked. */
struct snap_stream_file {
	struct snap_hello hello; /* .config points into @config */
	char *config;		 /* the HELLO's machine configuration */
	uint8_t *state;		 /* the STATE record: a state file */
	size_t state_len;
	uint64_t records, pages, zero_pages, zstd_records, data_pages;
	uint64_t bytes; /* the file's length */
	/* With @load: the guest RAM the stream gives (anonymous memory). */
	struct guest_mem mem;
};

/*
 * Read the recorded stream at @path: HELLO, RAM records, STATE (opened as
 * a state file: every section checked), END (its counts against what
 * came), and nothing after it. @load: each RAM record is also applied to
 * f->mem (range checked, decompressed); else only its checksum is. A
 * truncated or corrupt stream is -EPROTO/-EBADMSG naming the record.
 */
int snap_stream_file_read(const char *path, bool load,
			  struct snap_stream_file *f, struct err *err);
void snap_stream_file_free(struct snap_stream_file *f);

struct snap_convert_result {
	enum snap_form from, to;
	unsigned links;	     /* chain links flattened (1: a full snapshot) */
	uint64_t ram_size;   /* guest RAM */
	uint64_t data_pages; /* non-zero pages carried */
	uint64_t in_bytes, out_bytes; /* files read (RAM files' allocation
					 for a pair) and written */
};

/*
 * @in in the other form at @out: a pair (a full snapshot, or the tip of
 * an incremental chain, flattened) becomes a stream, a stream becomes a
 * full pair (@out and @out.ram). @in is checked whole before anything is
 * written (chain links, chunk hashes, every record); @out is written
 * under temporary names and renamed at the end, so on any failure there
 * is no @out and a previous one is untouched. @out may not be @in or any
 * file @in is made of.
 */
int snap_convert(const char *in, const char *out,
		 struct snap_convert_result *res, struct err *err);

#endif
