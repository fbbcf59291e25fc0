/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The migration stream's records (format: docs/snapshot-format.md,
 * "Stream"; protocol: snap_stream.h).
 */
#include "snap_stream.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include "common.h"
#include "snap.h"
#include "snap_ram_pages.h"

#define HELLO_FIXED 52
/* A record's payload: a state file at most, and a RAM record. */
#define MAX_PAYLOAD                                                            \
	MAX(SNAP_MAX_FILE_SIZE, 16 + SNAP_STREAM_RAM_RUN * PAGE_SIZE)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void snap_stream_init(struct snap_stream *s, int fd, const char *peer)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->listen_fd = -1;
	s->peer = peer;
	s->timeout_ms = -1;
}

void snap_stream_free(struct snap_stream *s)
{
	free(s->buf);
	free(s->ram_buf);
	free(s->zbuf);
	if (s->zctx && s->compress)
		ZSTD_freeCCtx(s->zctx);
	else if (s->zctx)
		ZSTD_freeDCtx(s->zctx);
	s->buf = s->ram_buf = NULL;
	s->zbuf = s->zctx = NULL;
	s->cap = 0;
}

const char *snap_rec_name(unsigned type)
{
	static const char *const names[] = {
		"?",  "HELLO", "REPLY", "RAM",	    "STATE",	"END",
		"GO", "ABORT", "SYNC",	"POSTCOPY", "PAGE_REQ", "POSTCOPY_END"};

	return type < ARRAY_SIZE(names) ? names[type] : "unknown";
}

/* Bandwidth limit: sleep until @s has sent no faster than asked. */
static void bw_wait(struct snap_stream *s, size_t n)
{
	uint64_t due;

	if (!s->bw_limit)
		return;
	if (!s->bw_t0)
		s->bw_t0 = now_ns();
	s->bw_bytes += n;
	due = s->bw_t0 + s->bw_bytes * 1000000000ULL / s->bw_limit;
	for (uint64_t t = now_ns(); t < due; t = now_ns()) {
		struct timespec ts = {
			.tv_sec = (time_t)((due - t) / 1000000000),
			.tv_nsec = (long)((due - t) % 1000000000)};

		nanosleep(&ts, NULL);
	}
}

static int writev_full(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t w = writev(fd, iov, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

int snap_stream_send(struct snap_stream *s, unsigned type, const void *a,
		     size_t alen, const void *b, size_t blen, struct err *err)
{
	uint8_t hdr[SNAP_STREAM_HDR];
	XXH3_state_t *hs = XXH3_createState();
	struct iovec iov[3];
	int rc;

	if (!hs)
		return err_set(err, -ENOMEM, "out of memory");
	put_le32(hdr, SNAP_STREAM_MAGIC);
	put_le16(hdr + 4, (uint16_t)type);
	put_le16(hdr + 6, 0);
	put_le32(hdr + 8, s->seq_out);
	put_le32(hdr + 12, (uint32_t)(alen + blen));
	XXH3_64bits_reset(hs);
	XXH3_64bits_update(hs, hdr, 16);
	if (alen)
		XXH3_64bits_update(hs, a, alen);
	if (blen)
		XXH3_64bits_update(hs, b, blen);
	put_le64(hdr + 16, XXH3_64bits_digest(hs));
	XXH3_freeState(hs);
	iov[0] = (struct iovec){hdr, sizeof(hdr)};
	iov[1] = (struct iovec){(void *)a, alen};
	iov[2] = (struct iovec){(void *)b, blen};
	rc = writev_full(s->fd, iov, 3);
	if (rc)
		return err_set(err, rc, "sending record %u (%s) to %s: %s",
			       s->seq_out, snap_rec_name(type), s->peer,
			       strerror(-rc));
	s->seq_out++;
	s->bytes_out += sizeof(hdr) + alen + blen;
	bw_wait(s, sizeof(hdr) + alen + blen);
	return 0;
}

/* A second source at the listener: told why, and closed. */
static void refuse_newcomer(struct snap_stream *s)
{
	static const char msg[] = "a migration is already coming in to this "
				  "destination: it accepts one source only";
	struct snap_stream other;
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	snap_stream_init(&other, fd, "a second source");
	snap_stream_reply(&other, -EBUSY, msg, NULL);
	close(fd);
}

/* @len bytes, or -ECONNRESET at EOF (*@got says how far it came). */
static int read_full(struct snap_stream *s, void *buf, size_t len, size_t *got,
		     struct err *err)
{
	uint8_t *p = buf;

	*got = 0;
	while (*got < len) {
		struct pollfd pf[2] = {{.fd = s->fd, .events = POLLIN},
				       {.fd = s->listen_fd, .events = POLLIN}};
		ssize_t n;
		int rc = poll(pf, s->listen_fd >= 0 ? 2 : 1, s->timeout_ms);

		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return err_set(err, -errno, "poll: %s",
				       strerror(errno));
		if (!rc)
			return err_set(err, -ETIMEDOUT,
				       "%s sent nothing for %d s", s->peer,
				       s->timeout_ms / 1000);
		if (s->listen_fd >= 0 && pf[1].revents)
			refuse_newcomer(s);
		if (!pf[0].revents)
			continue;
		n = read(s->fd, p + *got, len - *got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_set(err, -errno, "reading from %s: %s",
				       s->peer, strerror(errno));
		if (!n)
			return -ECONNRESET;
		*got += (size_t)n;
		s->bytes_in += (uint64_t)n;
	}
	return 0;
}

int snap_stream_recv(struct snap_stream *s, unsigned *type,
		     const uint8_t **payload, size_t *len, struct err *err)
{
	uint8_t hdr[SNAP_STREAM_HDR];
	uint32_t seq, plen;
	size_t got;
	int rc;

	rc = read_full(s, hdr, sizeof(hdr), &got, err);
	if (rc == -ECONNRESET)
		return err_set(err, rc,
			       got ? "%s: the stream ends in the middle of "
				     "record %u's header"
				   : "%s closed the connection (after record "
				     "%u)",
			       s->peer, got ? s->seq_in : s->seq_in - 1);
	if (rc)
		return rc;
	if (get_le32(hdr) != SNAP_STREAM_MAGIC)
		return err_set(err, -EPROTO,
			       "record %u from %s: bad magic 0x%08x: not a "
			       "khyve migration stream, or corrupted",
			       s->seq_in, s->peer, get_le32(hdr));
	*type = get_le16(hdr + 4);
	seq = get_le32(hdr + 8);
	plen = get_le32(hdr + 12);
	if (seq != s->seq_in)
		return err_set(err, -EPROTO,
			       "record from %s numbered %u where %u was due: "
			       "records lost, repeated or corrupted",
			       s->peer, seq, s->seq_in);
	if (plen > MAX_PAYLOAD || get_le16(hdr + 6))
		return err_set(err, -EPROTO,
			       "record %u (%s) from %s: %s %u: corrupted", seq,
			       snap_rec_name(*type), s->peer,
			       get_le16(hdr + 6) ? "flags" : "length",
			       get_le16(hdr + 6) ? get_le16(hdr + 6) : plen);
	if (plen > s->cap) {
		uint8_t *b = realloc(s->buf, plen);

		if (!b)
			return err_set(err, -ENOMEM, "out of memory");
		s->buf = b;
		s->cap = plen;
	}
	rc = read_full(s, s->buf, plen, &got, err);
	if (rc == -ECONNRESET)
		return err_set(err, rc,
			       "%s: the stream ends in the middle of record "
			       "%u (%s): %zu of %u bytes",
			       s->peer, seq, snap_rec_name(*type), got, plen);
	if (rc)
		return rc;
	{
		XXH3_state_t *hs = XXH3_createState();
		uint64_t sum;

		if (!hs)
			return err_set(err, -ENOMEM, "out of memory");
		XXH3_64bits_reset(hs);
		XXH3_64bits_update(hs, hdr, 16);
		XXH3_64bits_update(hs, s->buf, plen);
		sum = XXH3_64bits_digest(hs);
		XXH3_freeState(hs);
		if (sum != get_le64(hdr + 16))
			return err_set(err, -EBADMSG,
				       "record %u (%s, %u bytes) from %s: "
				       "checksum mismatch: the stream is "
				       "corrupted",
				       seq, snap_rec_name(*type), plen,
				       s->peer);
	}
	s->seq_in++;
	*payload = s->buf;
	*len = plen;
	return 0;
}

int snap_stream_send_hello(struct snap_stream *s, const struct snap_hello *h,
			   struct err *err)
{
	uint8_t p[HELLO_FIXED];

	memset(p, 0, sizeof(p));
	put_le16(p, h->major);
	put_le16(p + 2, h->minor);
	put_le32(p + 4, h->flags);
	put_le64(p + 8, h->ram_size);
	put_le32(p + 16, h->ncpus);
	put_le32(p + 20, PAGE_SIZE);
	put_le64(p + 24, h->cpuid_hash);
	memcpy(p + 32, h->cpu_vendor, 16);
	put_le32(p + 48, h->config_len);
	return snap_stream_send(s, SNAP_REC_HELLO, p, sizeof(p), h->config,
				h->config_len, err);
}

int snap_stream_parse_hello(const uint8_t *p, size_t len, struct snap_hello *h,
			    struct err *err)
{
	memset(h, 0, sizeof(*h));
	if (len < 4)
		return err_set(err, -EPROTO, "HELLO record too short");
	h->major = get_le16(p);
	h->minor = get_le16(p + 2);
	if (h->major != SNAP_STREAM_MAJOR)
		return err_set(err, -EPROTONOSUPPORT,
			       "the source speaks migration stream format "
			       "%u.%u, this khyve reads %u.x only",
			       h->major, h->minor, SNAP_STREAM_MAJOR);
	/*
	 * A newer minor version may add to the end of HELLO (after the
	 * config): skipped here. Ours and older ones end with the config.
	 */
	if (len < HELLO_FIXED || len < HELLO_FIXED + (size_t)get_le32(p + 48) ||
	    (h->minor <= SNAP_STREAM_MINOR &&
	     len != HELLO_FIXED + (size_t)get_le32(p + 48)))
		return err_set(err, -EPROTO,
			       "HELLO record: %zu bytes do not match its "
			       "config length",
			       len);
	if (get_le32(p + 20) != PAGE_SIZE)
		return err_set(err, -EPROTO, "HELLO record: page size %u",
			       get_le32(p + 20));
	h->flags = get_le32(p + 4);
	if (h->flags & ~(uint32_t)(SNAP_HELLO_RECORDED | SNAP_HELLO_POSTCOPY))
		return err_set(err, -EPROTO, "HELLO record: unknown flags 0x%x",
			       h->flags);
	h->ram_size = get_le64(p + 8);
	h->ncpus = get_le32(p + 16);
	h->cpuid_hash = get_le64(p + 24);
	memcpy(h->cpu_vendor, p + 32, 15);
	h->config_len = get_le32(p + 48);
	h->config = (const char *)p + HELLO_FIXED;
	return 0;
}

int snap_stream_reply(struct snap_stream *s, int status, const char *msg,
		      struct err *err)
{
	uint8_t p[4];

	put_le32(p, (uint32_t)-status);
	return snap_stream_send(s, SNAP_REC_REPLY, p, sizeof(p), msg,
				msg ? strnlen(msg, 1024) : 0, err);
}

int snap_stream_expect_reply(struct snap_stream *s, const char *what, char *msg,
			     size_t msglen, struct err *err)
{
	const uint8_t *p;
	size_t len;
	unsigned type;
	uint32_t status;
	int rc = snap_stream_recv(s, &type, &p, &len, err);

	if (rc) {
		err_prefix(err, "%s: ", what);
		return rc;
	}
	if (type != SNAP_REC_REPLY || len < 4)
		return err_set(err, -EPROTO,
			       "%s: %s sent a %s record where a reply was due",
			       what, s->peer, snap_rec_name(type));
	status = get_le32(p);
	if (msg)
		snprintf(msg, msglen, "%.*s", (int)(len - 4), p + 4);
	if (!status)
		return 0;
	if (status > 4095)
		status = EPROTO;
	return err_set(err, -(int)status, "%s: %s says: %.*s", what, s->peer,
		       (int)(len - 4), p + 4);
}

int snap_stream_check_peer(struct snap_stream *s, int wait_ms, struct err *err)
{
	struct pollfd pf = {.fd = s->fd, .events = POLLIN};
	int old = s->timeout_ms, rc;
	const uint8_t *p;
	unsigned type;
	uint32_t status;
	size_t len;

	if (poll(&pf, 1, wait_ms) <= 0)
		return 0;
	s->timeout_ms = MAX(wait_ms, 1000);
	rc = snap_stream_recv(s, &type, &p, &len, NULL);
	s->timeout_ms = old;
	/* Closed (or garbled): no reason given, the caller's error stands. */
	if (rc)
		return 0;
	if (type != SNAP_REC_REPLY || len < 4 || !get_le32(p))
		return err_set(err, -EPROTO,
			       "%s sent a %s record in the middle of the "
			       "stream",
			       s->peer, snap_rec_name(type));
	status = get_le32(p);
	return err_set(err, status > 4095 ? -EPROTO : -(int)status,
		       "%s says: %.*s", s->peer, (int)(len - 4), p + 4);
}

/* The @n pages in ram_buf as one zstd frame in zbuf: its size, 0 on error. */
static size_t compress_run(struct snap_stream *s, uint64_t n, struct err *err)
{
	size_t bound = ZSTD_compressBound(SNAP_STREAM_RAM_RUN * PAGE_SIZE), z;

	if (!s->zctx)
		s->zctx = ZSTD_createCCtx();
	if (!s->zbuf)
		s->zbuf = malloc(bound);
	if (!s->zctx || !s->zbuf) {
		err_set(err, -ENOMEM, "out of memory");
		return 0;
	}
	z = ZSTD_compressCCtx(s->zctx, s->zbuf, bound, s->ram_buf,
			      n * PAGE_SIZE, SNAP_STREAM_ZSTD_LEVEL);
	if (ZSTD_isError(z)) {
		err_set(err, -EIO, "zstd: %s", ZSTD_getErrorName(z));
		return 0;
	}
	return z;
}

/* One record of @n pages from flat offset @off: copied, then sent. */
int snap_stream_send_pages(struct snap_stream *s, const struct guest_mem *m,
			   uint64_t off, uint64_t n,
			   struct snap_stream_ram_stats *st, struct err *err)
{
	uint8_t meta[16];
	uint64_t done = 0;
	uint64_t nz = 0, i;

	if (!s->ram_buf) {
		s->ram_buf = malloc(SNAP_STREAM_RAM_RUN * PAGE_SIZE);
		if (!s->ram_buf)
			return err_set(err, -ENOMEM, "out of memory");
	}
	/*
	 * Copied first: the guest may write a page while it is hashed and
	 * sent, and what is hashed must be what is sent. A page that is
	 * written meanwhile is dirty again and goes in a later round.
	 */
	while (done < n) {
		uint64_t avail;
		const uint8_t *p =
			snap_ram_ptr(m, off + done * PAGE_SIZE, &avail);
		uint64_t k = MIN(n - done, avail / PAGE_SIZE);

		if (!p || !k)
			return err_set(err, -EFAULT,
				       "flat RAM offset 0x%" PRIx64
				       " is not guest RAM",
				       (uint64_t)(off + done * PAGE_SIZE));
		memcpy(s->ram_buf + done * PAGE_SIZE, p, k * PAGE_SIZE);
		done += k;
	}
	for (i = 0; i < n; i++)
		nz += snap_ram_page_is_zero(s->ram_buf + i * PAGE_SIZE);
	put_le64(meta, off);
	put_le32(meta + 8, (uint32_t)n);
	put_le32(meta + 12, nz == n ? SNAP_RAM_REC_ZERO : 0);
	st->records++;
	st->pages += n;
	if (nz == n) {
		st->zero_pages += n;
		st->bytes += sizeof(meta) + SNAP_STREAM_HDR;
		return snap_stream_send(s, SNAP_REC_RAM, meta, sizeof(meta),
					NULL, 0, err);
	}
	s->raw_bytes += n * PAGE_SIZE;
	if (s->compress) {
		size_t z = compress_run(s, n, err);

		if (!z)
			return err->code;
		if (z < n * PAGE_SIZE) {
			put_le32(meta + 12, SNAP_RAM_REC_ZSTD);
			st->bytes += sizeof(meta) + SNAP_STREAM_HDR + z;
			return snap_stream_send(s, SNAP_REC_RAM, meta,
						sizeof(meta), s->zbuf, z, err);
		}
	}
	st->bytes += sizeof(meta) + SNAP_STREAM_HDR + n * PAGE_SIZE;
	return snap_stream_send(s, SNAP_REC_RAM, meta, sizeof(meta), s->ram_buf,
				n * PAGE_SIZE, err);
}

int snap_stream_send_ram(struct snap_stream *s, const struct guest_mem *m,
			 const uint64_t *dirty,
			 int (*tick)(void *opaque, uint64_t pages),
			 void *opaque, struct snap_stream_ram_stats *st,
			 struct err *err)
{
	uint64_t npages = m->ram_size / PAGE_SIZE;
	struct snap_ram_pages pp;
	uint64_t *need = NULL;
	uint64_t run0 = 0, runn = 0, skipped = 0;
	int rc = 0;

	if (!dirty) {
		need = calloc(SNAP_STREAM_RAM_RUN, sizeof(*need));
		if (!need)
			return err_set(err, -ENOMEM, "out of memory");
		snap_ram_pages_open(&pp, m);
	}
	for (uint64_t base = 0, n; base < npages && !rc; base += n) {
		n = MIN(SNAP_STREAM_RAM_RUN, npages - base);
		if (!dirty) {
			uint64_t avail;
			const uint8_t *p =
				snap_ram_ptr(m, base * PAGE_SIZE, &avail);

			n = MIN(n, avail / PAGE_SIZE);
			rc = p ? snap_ram_pages_needed(&pp, p, n, need)
			       : -EFAULT;
			if (rc) {
				err_set(err, rc, "reading guest RAM: %s",
					strerror(-rc));
				break;
			}
		}
		/* Runs of wanted pages, each sent as one record. */
		for (uint64_t i = 0; i < n && !rc; i++) {
			bool want = dirty ? snap_bit_test(dirty, base + i)
					  : need[i] != 0;

			skipped += !dirty && !want;

			if (want && runn && run0 + runn == base + i &&
			    runn < SNAP_STREAM_RAM_RUN) {
				runn++;
				continue;
			}
			if (runn)
				rc = snap_stream_send_pages(
					s, m, run0 * PAGE_SIZE, runn, st, err);
			if (!rc && tick && runn)
				rc = tick(opaque, runn);
			runn = 0;
			if (want) {
				run0 = base + i;
				runn = 1;
			}
		}
		/* A full pass counts the pages it need not send, too. */
		if (!rc && tick && skipped)
			rc = tick(opaque, skipped);
		skipped = 0;
	}
	if (!rc && runn) {
		rc = snap_stream_send_pages(s, m, run0 * PAGE_SIZE, runn, st,
					    err);
		if (!rc && tick)
			rc = tick(opaque, runn);
	}
	if (!dirty) {
		snap_ram_pages_close(&pp);
		free(need);
	}
	return rc;
}

/* A ZSTD record's payload into s->zbuf: exactly @n pages, or -EPROTO. */
static int decompress_run(struct snap_stream *s, const uint8_t *z, size_t len,
			  uint64_t n, uint64_t off, struct err *err)
{
	size_t got;

	if (!s->zctx)
		s->zctx = ZSTD_createDCtx();
	if (!s->zbuf)
		s->zbuf = malloc(SNAP_STREAM_RAM_RUN * PAGE_SIZE);
	if (!s->zctx || !s->zbuf)
		return err_set(err, -ENOMEM, "out of memory");
	got = ZSTD_decompressDCtx(s->zctx, s->zbuf,
				  SNAP_STREAM_RAM_RUN * PAGE_SIZE, z, len);
	if (ZSTD_isError(got) || got != n * PAGE_SIZE)
		return err_set(err, -EPROTO,
			       "RAM record at 0x%" PRIx64
			       ": the zstd frame %s, not %" PRIu64 " pages",
			       off,
			       ZSTD_isError(got) ? ZSTD_getErrorName(got)
						 : "has another size",
			       n);
	return 0;
}

int snap_stream_parse_ram(struct snap_stream *s, uint64_t ram_size,
			  const uint8_t *p, size_t len, uint64_t *offp,
			  uint64_t *np, const uint8_t **datap, struct err *err)
{
	const uint32_t known = SNAP_RAM_REC_ZERO | SNAP_RAM_REC_ZSTD;
	uint64_t off, n;
	const uint8_t *data;
	uint32_t flags;
	int rc;

	/* An empty record's payload pointer may be NULL: no arithmetic on it
	 * before its length is known (fuzz_snap_stream found it). */
	if (len < 16)
		return err_set(err, -EPROTO, "RAM record too short");
	data = p + 16;
	off = get_le64(p);
	n = get_le32(p + 8);
	flags = get_le32(p + 12);
	if (off % PAGE_SIZE || !n || n > SNAP_STREAM_RAM_RUN ||
	    off > ram_size || n * PAGE_SIZE > ram_size - off ||
	    (flags & ~known) || flags == known)
		return err_set(err, -EPROTO,
			       "RAM record: %" PRIu64 " pages at 0x%" PRIx64
			       " (flags 0x%x) do not fit %" PRIu64
			       " bytes of guest RAM",
			       n, off, flags, ram_size);
	if (flags & SNAP_RAM_REC_ZSTD) {
		rc = decompress_run(s, data, len - 16, n, off, err);
		if (rc)
			return rc;
		data = s->zbuf;
	} else if (len !=
		   16 + ((flags & SNAP_RAM_REC_ZERO) ? 0 : n * PAGE_SIZE)) {
		return err_set(err, -EPROTO,
			       "RAM record at 0x%" PRIx64
			       ": %zu bytes for %" PRIu64 " pages",
			       off, len, n);
	}
	*offp = off;
	*np = n;
	*datap = (flags & SNAP_RAM_REC_ZERO) ? NULL : data;
	return 0;
}

int snap_stream_apply_ram(struct snap_stream *s, const struct guest_mem *m,
			  const uint8_t *p, size_t len, uint64_t *pages,
			  struct err *err)
{
	uint64_t off, n, avail;
	const uint8_t *data;
	uint8_t *dst;
	int rc = snap_stream_parse_ram(s, m->ram_size, p, len, &off, &n, &data,
				       err);

	if (rc)
		return rc;
	/* Regions tile the flat RAM; a run may still cross from one to the
	 * next. */
	for (uint64_t done = 0; done < n;) {
		uint64_t k;

		dst = snap_ram_ptr(m, off + done * PAGE_SIZE, &avail);
		if (!dst)
			return err_set(err, -EPROTO,
				       "RAM record: offset 0x%" PRIx64
				       " is not guest RAM",
				       (uint64_t)(off + done * PAGE_SIZE));
		k = MIN(n - done, avail / PAGE_SIZE);
		if (!data) {
			/* An untouched page reads as zero: left unallocated. */
			for (uint64_t i = 0; i < k; i++)
				if (!snap_ram_page_is_zero(dst + i * PAGE_SIZE))
					memset(dst + i * PAGE_SIZE, 0,
					       PAGE_SIZE);
		} else {
			memcpy(dst, data + done * PAGE_SIZE, k * PAGE_SIZE);
		}
		done += k;
	}
	*pages += n;
	return 0;
}

/* ---- post-copy ---- */

int snap_stream_send_postcopy(struct snap_stream *s, uint64_t ram_size,
			      const uint64_t *bm, uint64_t nmissing,
			      struct err *err)
{
	uint64_t words = (ram_size / PAGE_SIZE + 63) / 64;
	uint8_t hdr[16];
	uint64_t *le = malloc(words * 8 + 1);
	int rc;

	if (!le)
		return err_set(err, -ENOMEM, "out of memory");
	for (uint64_t w = 0; w < words; w++)
		put_le64((uint8_t *)&le[w], bm[w]);
	put_le64(hdr, ram_size / PAGE_SIZE);
	put_le64(hdr + 8, nmissing);
	rc = snap_stream_send(s, SNAP_REC_POSTCOPY, hdr, sizeof(hdr), le,
			      words * 8, err);
	free(le);
	return rc;
}

int snap_stream_parse_postcopy(const uint8_t *p, size_t len, uint64_t ram_size,
			       uint64_t **bmp, uint64_t *nmissing,
			       struct err *err)
{
	uint64_t npages = ram_size / PAGE_SIZE, words = (npages + 63) / 64;
	uint64_t *bm, count = 0;

	*bmp = NULL;
	if (len < 16 || get_le64(p) != npages || len - 16 != words * 8)
		return err_set(err, -EPROTO,
			       "POSTCOPY record: %zu bytes do not describe "
			       "%" PRIu64 " pages of guest RAM",
			       len, npages);
	bm = calloc(words + 1, 8);
	if (!bm)
		return err_set(err, -ENOMEM, "out of memory");
	for (uint64_t w = 0; w < words; w++) {
		bm[w] = get_le64(p + 16 + w * 8);
		count += (uint64_t)__builtin_popcountll(bm[w]);
	}
	/* No page past the end, and the count says the bitmap is whole. */
	if ((npages % 64 && bm[words - 1] >> (npages % 64)) ||
	    count != get_le64(p + 8)) {
		free(bm);
		return err_set(err, -EPROTO,
			       "POSTCOPY record: the bitmap (%" PRIu64
			       " pages) does not match its count %" PRIu64
			       " or the RAM's %" PRIu64 " pages",
			       count, get_le64(p + 8), npages);
	}
	*bmp = bm;
	*nmissing = count;
	return 0;
}

int snap_stream_send_page_req(struct snap_stream *s, uint64_t off, uint32_t n,
			      struct err *err)
{
	uint8_t p[12];

	put_le64(p, off);
	put_le32(p + 8, n);
	return snap_stream_send(s, SNAP_REC_PAGE_REQ, p, sizeof(p), NULL, 0,
				err);
}

int snap_stream_parse_page_req(const uint8_t *p, size_t len, uint64_t ram_size,
			       uint64_t *off, uint32_t *n, struct err *err)
{
	if (len != 12)
		return err_set(err, -EPROTO, "PAGE_REQ record: %zu bytes", len);
	*off = get_le64(p);
	*n = get_le32(p + 8);
	if (*off % PAGE_SIZE || !*n || *n > SNAP_STREAM_RAM_RUN ||
	    *off > ram_size || (uint64_t)*n * PAGE_SIZE > ram_size - *off)
		return err_set(err, -EPROTO,
			       "PAGE_REQ record: %u pages at 0x%" PRIx64
			       " do not fit %" PRIu64 " bytes of guest RAM",
			       *n, *off, ram_size);
	return 0;
}

int snap_stream_ram_needed(const struct guest_mem *m, uint64_t *bm,
			   uint64_t *count, struct err *err)
{
	uint64_t npages = m->ram_size / PAGE_SIZE;
	uint64_t *need = calloc(SNAP_STREAM_RAM_RUN, sizeof(*need));
	struct snap_ram_pages pp;
	int rc = 0;

	if (!need)
		return err_set(err, -ENOMEM, "out of memory");
	*count = 0;
	snap_ram_pages_open(&pp, m);
	for (uint64_t base = 0, n; base < npages && !rc; base += n) {
		uint64_t avail;
		const uint8_t *p = snap_ram_ptr(m, base * PAGE_SIZE, &avail);

		n = MIN(MIN(SNAP_STREAM_RAM_RUN, npages - base),
			avail / PAGE_SIZE);
		rc = p && n ? snap_ram_pages_needed(&pp, p, n, need) : -EFAULT;
		if (rc) {
			err_set(err, rc, "reading guest RAM: %s",
				strerror(-rc));
			break;
		}
		for (uint64_t i = 0; i < n; i++)
			if (need[i]) {
				snap_bit_set(bm, base + i);
				(*count)++;
			}
	}
	snap_ram_pages_close(&pp);
	free(need);
	return rc;
}
