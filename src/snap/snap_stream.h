/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The migration stream (docs/snapshot-format.md, "Stream"): checksummed,
 * numbered records over a socket (or a pipe or file), carrying guest RAM
 * page by page and the machine state as one state file in the snapshot
 * format, so a stream holds the same sections as a snapshot.
 *
 * Source (src/migrate.c):           Destination (src/migrate_incoming.c):
 *   HELLO (version, host, config) ->
 *                                 <- REPLY accept, or refuse with why
 *   RAM ... SYNC (a round, guest running)
 *                                 <- REPLY "synced": all of it applied
 *   ... guest paused ...
 *   RAM ... (the last dirty pages)
 *   STATE (a whole state file)
 *   END (counts)                  ->  state loaded into KVM
 *                                 <- REPLY ready, or the error
 *   GO                            ->  the guest runs here
 *   (exits, KHYVE_EXIT_MIGRATED)
 *
 * A source that gives up sends ABORT with its reason. Every record is
 * checked before it is used: a destination applies nothing of a record
 * that is cut, corrupt or out of sequence.
 */
#ifndef KHYVE_SNAP_STREAM_H
#define KHYVE_SNAP_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "guest_mem.h"

#define SNAP_STREAM_MAGIC 0x474d484bu /* "KHMG" */
#define SNAP_STREAM_MAJOR 1
#define SNAP_STREAM_MINOR 1
#define SNAP_STREAM_HDR	  24
/* Pages per RAM record: 1 MiB of data, copied before it is hashed. */
#define SNAP_STREAM_RAM_RUN 256

enum snap_rec_type {
	SNAP_REC_HELLO = 1,
	SNAP_REC_REPLY = 2,
	SNAP_REC_RAM = 3,
	SNAP_REC_STATE = 4,
	SNAP_REC_END = 5,
	SNAP_REC_GO = 6,
	SNAP_REC_ABORT = 7,
	SNAP_REC_SYNC = 8,
	/* post-copy (1.1): the missing pages, a request, the last page sent */
	SNAP_REC_POSTCOPY = 9,
	SNAP_REC_PAGE_REQ = 10,
	SNAP_REC_POSTCOPY_END = 11,
};

#define SNAP_RAM_REC_ZERO      0x1 /* RAM record flag: the pages are zero */
#define SNAP_RAM_REC_ZSTD      0x2 /* RAM record flag: the pages, one zstd frame */
#define SNAP_STREAM_ZSTD_LEVEL 1 /* fast: it must keep up with the link */

struct snap_stream {
	int fd;
	/* A listener whose every further connection is refused, or -1. */
	int listen_fd;
	const char *peer; /* "the source", "the destination" */
	uint32_t seq_out, seq_in;
	uint64_t bytes_out, bytes_in;
	uint64_t bw_limit; /* bytes per second sent, 0: no limit */
	uint64_t bw_t0, bw_bytes;
	int timeout_ms; /* a peer silent this long is gone (-1: never) */
	uint8_t *buf;	/* the last record received */
	size_t cap;
	uint8_t *ram_buf; /* one RAM record's pages, copied */
	/* zstd: RAM records compressed when that makes them smaller */
	bool compress;
	void *zctx, *zbuf;  /* ZSTD_CCtx or ZSTD_DCtx; its output */
	uint64_t raw_bytes; /* page data before compression */
};

/*
 * HELLO flag: a recorded stream (written to a file or a pipe, e.g. by
 * `khyvectl --checkpoint=-`): nobody answers, there is no GO, the stream
 * ends after END; `khyve -r -` reads it.
 */
#define SNAP_HELLO_RECORDED 0x1
/*
 * HELLO flag: post-copy asked for: the destination checks that it can
 * serve page faults (userfaultfd) before it accepts.
 */
#define SNAP_HELLO_POSTCOPY 0x2

/* What a source says about itself first. */
struct snap_hello {
	uint16_t major, minor;
	uint32_t flags;
	uint64_t ram_size;
	uint32_t ncpus;
	uint64_t cpuid_hash;
	char cpu_vendor[16];
	const char
		*config; /* JSON, config_len bytes (points into the record) */
	uint32_t config_len;
};

/* Counts of what a stream carried (END, and the report). */
struct snap_stream_ram_stats {
	uint64_t records, pages, zero_pages, bytes;
};

void snap_stream_init(struct snap_stream *s, int fd, const char *peer);
void snap_stream_free(struct snap_stream *s);
const char *snap_rec_name(unsigned type);

/* One record: @a then @b (either may be empty) as its payload. */
int snap_stream_send(struct snap_stream *s, unsigned type, const void *a,
		     size_t alen, const void *b, size_t blen, struct err *err);
/*
 * The next record, whole and checked (magic, sequence, length, checksum):
 * its payload stays in s->buf until the next call. -ECONNRESET when the
 * peer closed at a record boundary, -EPROTO/-EBADMSG for a bad record,
 * -ETIMEDOUT after s->timeout_ms of silence.
 */
int snap_stream_recv(struct snap_stream *s, unsigned *type,
		     const uint8_t **payload, size_t *len, struct err *err);

int snap_stream_send_hello(struct snap_stream *s, const struct snap_hello *h,
			   struct err *err);
/* -EPROTONOSUPPORT for a newer major version, naming both. */
int snap_stream_parse_hello(const uint8_t *p, size_t len, struct snap_hello *h,
			    struct err *err);
/* REPLY: @status 0 (yes) or a -errno, and a message. */
int snap_stream_reply(struct snap_stream *s, int status, const char *msg,
		      struct err *err);
/*
 * Wait for a REPLY: 0, or its -errno with "@what: the destination says:
 * MSG"; an ABORT or another record is -EPROTO.
 */
int snap_stream_expect_reply(struct snap_stream *s, const char *what, char *msg,
			     size_t msglen, struct err *err);

/*
 * Has the peer said something (waiting up to @wait_ms)? A destination
 * speaks in the middle of the stream only to say why it stops: 0 when
 * it said nothing (nothing came, or the connection ended without a
 * reply: the caller's own error stands), else its REPLY as the error
 * ("the destination says: ...").
 */
int snap_stream_check_peer(struct snap_stream *s, int wait_ms, struct err *err);

/*
 * Send guest RAM pages: those set in @dirty (flat RAM page bitmap), or
 * with @dirty NULL every page that can hold data (untouched anonymous
 * pages are zero and are not sent). @tick (NULL-able) is called after
 * each record with its pages, and in a full pass with the pages it
 * skipped too (throttling, progress: the counts add up to the pass); a
 * non-zero return stops the sending with that value (@tick fills @err).
 * Adds to @st.
 */
int snap_stream_send_ram(struct snap_stream *s, const struct guest_mem *m,
			 const uint64_t *dirty,
			 int (*tick)(void *opaque, uint64_t pages),
			 void *opaque, struct snap_stream_ram_stats *st,
			 struct err *err);
/*
 * One RAM record checked against @ram_size bytes of RAM (and decompressed
 * in @s's buffer): @n pages at flat offset @off, their data in *@data, or
 * *@data NULL when they are zero.
 */
int snap_stream_parse_ram(struct snap_stream *s, uint64_t ram_size,
			  const uint8_t *p, size_t len, uint64_t *off,
			  uint64_t *n, const uint8_t **data, struct err *err);
/* One RAM record of @n (<= SNAP_STREAM_RAM_RUN) pages from flat @off. */
int snap_stream_send_pages(struct snap_stream *s, const struct guest_mem *m,
			   uint64_t off, uint64_t n,
			   struct snap_stream_ram_stats *st, struct err *err);

/*
 * Post-copy (docs/snapshot-format.md "Post-copy"). POSTCOPY: the flat RAM
 * page bitmap of the @nmissing pages the destination does not have
 * (sent paused, before STATE). Parsing checks the size and the count and
 * returns a bitmap of its own (*@bm, free() it).
 */
int snap_stream_send_postcopy(struct snap_stream *s, uint64_t ram_size,
			      const uint64_t *bm, uint64_t nmissing,
			      struct err *err);
int snap_stream_parse_postcopy(const uint8_t *p, size_t len, uint64_t ram_size,
			       uint64_t **bm, uint64_t *nmissing,
			       struct err *err);
/*
 * Set in @bm (flat RAM page bitmap) the pages that may hold data (as a
 * full pass sends them); *@count of them.
 */
int snap_stream_ram_needed(const struct guest_mem *m, uint64_t *bm,
			   uint64_t *count, struct err *err);
/* PAGE_REQ (destination to source): @n pages at flat offset @off. */
int snap_stream_send_page_req(struct snap_stream *s, uint64_t off, uint32_t n,
			      struct err *err);
int snap_stream_parse_page_req(const uint8_t *p, size_t len, uint64_t ram_size,
			       uint64_t *off, uint32_t *n, struct err *err);

/*
 * Apply one RAM record to guest memory, after checking its range (and
 * decompressing it in @s's buffer).
 */
int snap_stream_apply_ram(struct snap_stream *s, const struct guest_mem *m,
			  const uint8_t *p, size_t len, uint64_t *pages,
			  struct err *err);

#endif
