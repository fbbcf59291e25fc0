/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Snapshot state file: writer, reader and description-driven encode/decode.
 * The byte layout, versioning rules and compatibility promise are in
 * docs/snapshot-format.md.
 *
 * Save:
 *   snap_host_info_probe(&host, kvm_info);
 *   snap_writer_open(&w, path, &host, save_id);   (save_id NULL-able)
 *   snap_write_blob(w, "config", 0, 1, 0, json, len);
 *   snap_write_section(w, &uart8250_snap, 0, &uart_state);   (per device)
 *   snap_writer_commit(w);            (or snap_writer_abort(w) on error)
 *
 * Restore:
 *   snap_reader_open(&r, path, &err);  (validates the whole file)
 *   snap_read_section(r, &uart8250_snap, 0, &uart_state, &err);
 *   snap_reader_check_consumed(r, &err);  (required sections not loaded?)
 *   snap_reader_close(r);
 */
#ifndef KHYVE_SNAP_H
#define KHYVE_SNAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "err.h"
#include "snap_desc.h"

#define SNAP_FORMAT_MAJOR 1
/* 1.1: the save id in the header; 1.2: incremental snapshots (snap_chain.h) */
#define SNAP_FORMAT_MINOR 2
#define SNAP_ARCH	  "x86_64"
/* Bound on the state file so a hostile file cannot make us allocate much. */
#define SNAP_MAX_FILE_SIZE (256ULL * 1024 * 1024)
#define SNAP_MAX_NAME	   64	 /* section and field names, bytes */
#define SNAP_MAX_SECTIONS  65536 /* per file */
/* A random id per save, in the state file's header and the RAM file. */
#define SNAP_SAVE_ID_LEN 16
#define SNAP_SAVE_ID_STR (2 * SNAP_SAVE_ID_LEN + 1)

/* Where the snapshot was taken; restore compares it to the current host. */
struct snap_host_info {
	char cpu_vendor[16]; /* CPUID leaf 0, e.g. "GenuineIntel" */
	uint32_t family, model, stepping;
	uint64_t cpuid_hash; /* XXH3-64 of the relevant CPUID feature leaves */
	char kvm_info[128];  /* free form, provided by the caller */
};

/* Header as read back from a file. */
struct snap_header_info {
	uint16_t major, minor;
	uint64_t created; /* seconds since the epoch, UTC */
	char arch[16];
	char khyve_version[64];
	struct snap_host_info host;
	/* Format 1.1 on: the save's id (all zero: none, e.g. 1.0 files). */
	uint8_t save_id[SNAP_SAVE_ID_LEN];
	bool has_save_id;
};

enum snap_section_kind {
	SNAP_KIND_DESC = 1, /* self-describing fields from a snap_desc */
	SNAP_KIND_BLOB = 2, /* raw bytes */
};

struct snap_section_info {
	const char *name; /* valid while the reader is open */
	uint32_t instance;
	uint16_t version, min_version;
	uint16_t kind; /* enum snap_section_kind */
	uint32_t flags;
	uint64_t offset;      /* of the section header in the file */
	uint64_t payload_len; /* bytes */
	uint64_t checksum;    /* XXH3-64 as stored (already verified) */
	unsigned nfields;     /* SNAP_KIND_DESC only */
};

/* One field of a described section, decoded from the file's own tags. */
struct snap_field_info {
	const char *name; /* valid while the reader is open */
	uint8_t type;	  /* enum snap_type */
	uint32_t count;	  /* elements stored */
	const void *data; /* count elements, little-endian */
};

struct snap_writer;
struct snap_reader;

/*
 * Open a snapshot file (@flags: O_RDONLY...) without following a symlink
 * and without blocking on a FIFO or device; anything but a regular file is
 * refused with a message naming what is there. The fd (O_NONBLOCK set:
 * harmless on regular files), or -errno with @err.
 */
int snap_open_regular(const char *path, int flags, struct stat *st,
		      struct err *err);
/* "a FIFO", "a character device", ... for messages. */
const char *snap_file_type(mode_t mode);

/* Fill @h from CPUID of this host; @kvm_info may be NULL. */
int snap_host_info_probe(struct snap_host_info *h, const char *kvm_info);

/*
 * Start writing @path: the data goes to a temporary name in the same
 * directory and only replaces @path on a successful commit. @save_id
 * (NULL: none) goes into the header.
 */
int snap_writer_open(struct snap_writer **w, const char *path,
		     const struct snap_host_info *host, const uint8_t *save_id);
/*
 * The same into memory (a migration stream carries the state file as one
 * record): @name is for messages. Sections as above, then
 * snap_writer_take_mem() instead of a commit.
 */
int snap_writer_open_mem(struct snap_writer **w, const char *name,
			 const struct snap_host_info *host,
			 const uint8_t *save_id);
/*
 * A memory writer's end marker appended and its bytes handed over (the
 * caller frees *@data); @w stays for snap_writer_abort() to free.
 */
int snap_writer_take_mem(struct snap_writer *w, uint8_t **data, size_t *len);
/* A fresh random save id (getrandom). */
int snap_save_id_new(uint8_t id[SNAP_SAVE_ID_LEN]);
/* As 32 hex digits. */
void snap_save_id_str(const uint8_t id[SNAP_SAVE_ID_LEN],
		      char out[SNAP_SAVE_ID_STR]);
/* Encode @state (a struct described by @d). */
int snap_write_section(struct snap_writer *w, const struct snap_desc *d,
		       uint32_t instance, const void *state);
/* A raw byte section; @flags 0 (required) or SNAP_F_OPTIONAL. */
int snap_write_blob(struct snap_writer *w, const char *name, uint32_t instance,
		    uint16_t version, uint32_t flags, const void *data,
		    size_t len);
/*
 * Section @idx of @r, as it is (kind, versions, flags, payload): for a
 * tool that rewrites a snapshot (snap_chain_merge).
 */
int snap_write_copy(struct snap_writer *w, const struct snap_reader *r,
		    unsigned idx);
/* Why the last writer call failed (empty if it did not). */
const char *snap_writer_error(const struct snap_writer *w);
/* The same, or strerror(-@rc) when the writer said nothing (@w may be NULL). */
const char *snap_writer_why(const struct snap_writer *w, int rc);
/*
 * Write the end marker, fsync, rename over the destination, fsync the
 * directory. Frees @w whatever the outcome; on failure the temporary file
 * is removed and a previous file at the destination is untouched.
 */
int snap_writer_commit(struct snap_writer *w);
/* Remove the temporary file and free @w. */
void snap_writer_abort(struct snap_writer *w);
/*
 * snap_writer_commit() in two steps, for a caller that commits the state
 * file together with another one (snap_ram_pair_commit): _seal writes the
 * end marker, fsyncs and closes the temporary file; _publish renames it
 * over the destination (and fsyncs the directory if @sync_dir). Neither
 * frees @w: snap_writer_abort() does, and removes the temporary file
 * unless it was published.
 */
int snap_writer_seal(struct snap_writer *w);
int snap_writer_publish(struct snap_writer *w, bool sync_dir);
const char *snap_writer_path(const struct snap_writer *w);

/*
 * Read and validate the whole file: header, sizes, every checksum, every
 * field encoding. On failure *r is NULL and @err says why.
 */
int snap_reader_open(struct snap_reader **r, const char *path, struct err *err);
/* The same from memory (@data is copied); @name is used in messages. */
int snap_reader_open_mem(struct snap_reader **r, const char *name,
			 const void *data, size_t len, struct err *err);
void snap_reader_close(struct snap_reader *r);
const char *snap_reader_path(const struct snap_reader *r);
const struct snap_header_info *snap_reader_header(const struct snap_reader *r);
/* XXH3-64 of the whole file as read (what a child increment records). */
uint64_t snap_reader_hash(const struct snap_reader *r);

/*
 * Load section (d->name, @instance) into @state. The caller preloads
 * @state with defaults: fields newer than the file's section keep them.
 * -ENOENT if the section is absent, -EINVAL/-EPROTO with @err otherwise.
 */
int snap_read_section(struct snap_reader *r, const struct snap_desc *d,
		      uint32_t instance, void *state, struct err *err);
/* Blob bytes stay owned by the reader. */
int snap_read_blob(struct snap_reader *r, const char *name, uint32_t instance,
		   const void **data, size_t *len, uint16_t *version,
		   struct err *err);
bool snap_has_section(const struct snap_reader *r, const char *name,
		      uint32_t instance);
/*
 * After loading: -EPROTO naming the first section that was never read and
 * is not SNAP_F_OPTIONAL (this khyve does not know how to restore it).
 */
int snap_reader_check_consumed(const struct snap_reader *r, struct err *err);

/* Iteration for dumping tools. */
unsigned snap_reader_nsections(const struct snap_reader *r);
int snap_reader_section(const struct snap_reader *r, unsigned idx,
			struct snap_section_info *info);
int snap_reader_field(const struct snap_reader *r, unsigned sec_idx,
		      unsigned field_idx, struct snap_field_info *f);
/* Element @i of a field as an integer (I64 sign-extended into uint64_t). */
uint64_t snap_field_elem(const struct snap_field_info *f, uint32_t i);
/* Bytes per element of @type, 0 if unknown. */
unsigned snap_type_size(uint8_t type);
const char *snap_type_name(uint8_t type);

/* Check a description for programming errors (offsets, count fields). */
int snap_desc_check(const struct snap_desc *d, struct err *err);

#endif
