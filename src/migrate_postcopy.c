/* SPDX-License-Identifier: BSD-2-Clause */
/* Post-copy migration, both sides (see migrate_postcopy.h). */
#include "migrate_postcopy.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "log.h"
#include "snap.h"
#include "vm.h"

#define PC_REPLY_TIMEOUT_MS 60000 /* as the pre-copy switch-over */
#define PC_SILENCE_MS	    60000 /* a source silent this long is gone */
/*
 * Pages per pushed record: a requested page waits for the record being
 * sent (and what the socket holds), so small ones: 128 KiB takes 64 ms
 * at 2 MiB/s, where a 1 MiB record kept a guest's fault waiting 0.5 s.
 */
#define PC_PUSH_RUN 32

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static bool bit(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

static void clear_bit(uint64_t *bm, uint64_t i)
{
	bm[i / 64] &= ~(1ULL << (i % 64));
}

/* ---- the source ---- */

/* The missing pages of [pg, pg + n) sent, in runs; they count as @demand. */
static int send_missing(struct postcopy_src *p, uint64_t pg, uint64_t n,
			bool demand)
{
	uint64_t end = pg + n;

	while (pg < end) {
		uint64_t k = 0;
		int rc;

		while (pg < end && !bit(p->missing, pg))
			pg++;
		while (pg + k < end && k < SNAP_STREAM_RAM_RUN &&
		       bit(p->missing, pg + k))
			k++;
		if (!k)
			break;
		rc = snap_stream_send_pages(p->s, &p->vm->mem, pg * PAGE_SIZE,
					    k, p->st, p->err);
		if (rc)
			return rc;
		for (uint64_t i = 0; i < k; i++)
			clear_bit(p->missing, pg + i);
		p->left -= k;
		if (demand)
			p->on_demand += k;
		pg += k;
	}
	return 0;
}

/*
 * What the destination said, requests served as they come: 1 for a
 * REPLY (0: "yes", else its error), 0 when nothing came for @wait_ms
 * (after the last request), or -errno.
 */
static int serve(struct postcopy_src *p, int wait_ms)
{
	for (;;) {
		struct pollfd pf = {.fd = p->s->fd, .events = POLLIN};
		const uint8_t *pl;
		unsigned type;
		uint64_t off;
		uint32_t n;
		size_t len;
		int rc = poll(&pf, 1, wait_ms);

		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0)
			return rc < 0 ? err_sys(p->err, "poll") : 0;
		rc = snap_stream_recv(p->s, &type, &pl, &len, p->err);
		if (rc)
			return rc;
		if (type == SNAP_REC_REPLY && len >= 4) {
			uint32_t st = get_le32(pl);

			if (!st)
				return 1;
			return err_set(p->err, st > 4095 ? -EPROTO : -(int)st,
				       "the destination says: %.*s",
				       (int)(len - 4), pl + 4);
		}
		if (type == SNAP_REC_ABORT)
			return err_set(p->err, -ECANCELED,
				       "the destination stopped: %.*s",
				       (int)MIN(len, 400), (const char *)pl);
		if (type != SNAP_REC_PAGE_REQ)
			return err_set(p->err, -EPROTO,
				       "the destination sent a %s record in "
				       "post-copy",
				       snap_rec_name(type));
		rc = snap_stream_parse_page_req(pl, len, p->vm->mem.ram_size,
						&off, &n, p->err);
		if (!rc)
			rc = send_missing(p, off / PAGE_SIZE, n, true);
		if (rc)
			return rc;
	}
}

/* A reply within the timeout: 0, or why not. */
static int await_reply(struct postcopy_src *p, const char *what)
{
	int rc = serve(p, PC_REPLY_TIMEOUT_MS);

	if (!rc)
		rc = err_set(p->err, -ETIMEDOUT,
			     "the destination did not answer in %d s",
			     PC_REPLY_TIMEOUT_MS / 1000);
	if (rc < 0)
		err_prefix(p->err, "%s: ", what);
	return rc < 0 ? rc : 0;
}

int postcopy_src_switch(struct postcopy_src *p, uint64_t *tgo)
{
	int rc = await_reply(p, "at the switch-over (the guest runs on here)");

	if (!rc)
		rc = snap_stream_send(p->s, SNAP_REC_GO, NULL, 0, NULL, 0,
				      p->err);
	*tgo = now_ns();
	return rc;
}

/* The next run of missing pages from the cursor: its first page, or end. */
static uint64_t next_missing(struct postcopy_src *p)
{
	uint64_t w = p->cursor / 64, words = (p->npages + 63) / 64;
	uint64_t m;

	if (w >= words)
		return p->npages;
	m = p->missing[w] & (~0ULL << (p->cursor % 64));
	while (!m && ++w < words)
		m = p->missing[w];
	if (!m)
		return p->npages;
	return MIN(w * 64 + (uint64_t)__builtin_ctzll(m), p->npages);
}

int postcopy_src_finish(struct postcopy_src *p)
{
	uint8_t end[16];
	int rc = 0;

	while (p->left && !rc) {
		rc = serve(p, 0);
		if (rc > 0)
			rc = err_set(p->err, -EPROTO,
				     "the destination said it was complete "
				     "with %" PRIu64 " pages not sent",
				     p->left);
		if (rc)
			break;
		p->cursor = next_missing(p);
		if (p->cursor >= p->npages) {
			p->cursor = 0; /* served out of order: wrap */
			continue;
		}
		rc = send_missing(p, p->cursor,
				  MIN(PC_PUSH_RUN, p->npages - p->cursor),
				  false);
		if (p->progress)
			p->progress((p->total - p->left) * PAGE_SIZE,
				    p->total * PAGE_SIZE);
	}
	if (rc)
		return rc;
	put_le64(end, p->total);
	put_le64(end + 8, p->on_demand);
	rc = snap_stream_send(p->s, SNAP_REC_POSTCOPY_END, end, sizeof(end),
			      NULL, 0, p->err);
	return rc ? rc : await_reply(p, "at the end of post-copy");
}

/* ---- the destination ---- */

enum pc_state { PC_WAIT_GO, PC_RUNNING, PC_DONE, PC_FAILED };

struct postcopy_in {
	struct vm *vm;
	char *addr;
	int uffd, stop_fd;
	uint8_t *base;
	uint64_t npages;
	uint64_t *missing, *requested;
	uint64_t total, left, faults, requests;
	struct snap_stream s;
	pthread_mutex_t send_lock; /* the stream's writes: thread and main */
	pthread_mutex_t lock;	   /* state, left */
	pthread_cond_t cond;
	enum pc_state state;
	struct err err;
	pthread_t thread;
	bool started;
	uint64_t t_go;
};

int postcopy_in_probe(struct err *err)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	struct uffdio_api api = {.api = UFFD_API};

	if (fd < 0)
		return err_sys(err, "userfaultfd (post-copy serves the "
				    "guest's page faults with it)");
	if (ioctl(fd, UFFDIO_API, &api)) {
		int rc = err_sys(err, "UFFDIO_API");

		close(fd);
		return rc;
	}
	close(fd);
	return 0;
}

/* Drop our stale copies of the missing pages, so each one faults. */
static int drop_missing(struct postcopy_in *pc, struct err *err)
{
	for (uint64_t pg = 0; pg < pc->npages;) {
		uint64_t k = 0;

		while (pg < pc->npages && !bit(pc->missing, pg))
			pg++;
		while (pg + k < pc->npages && bit(pc->missing, pg + k))
			k++;
		if (k && madvise(pc->base + pg * PAGE_SIZE, k * PAGE_SIZE,
				 MADV_DONTNEED))
			return err_sys(err, "madvise(MADV_DONTNEED) of the "
					    "missing pages");
		pg += k;
	}
	return 0;
}

static int uffd_register(struct postcopy_in *pc, struct err *err)
{
	struct uffdio_api api = {.api = UFFD_API};
	struct uffdio_register reg = {
		.range = {.start = (uintptr_t)pc->base,
			  .len = pc->npages * PAGE_SIZE},
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	const uint64_t need = 1ULL << _UFFDIO_COPY | 1ULL << _UFFDIO_ZEROPAGE |
			      1ULL << _UFFDIO_WAKE;

	pc->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (pc->uffd < 0)
		return err_sys(err, "userfaultfd");
	if (ioctl(pc->uffd, UFFDIO_API, &api))
		return err_sys(err, "UFFDIO_API");
	if (ioctl(pc->uffd, UFFDIO_REGISTER, &reg))
		return err_sys(err, "UFFDIO_REGISTER of guest RAM");
	if ((reg.ioctls & need) != need)
		return err_set(err, -ENOTSUP,
			       "userfaultfd cannot copy pages into guest RAM "
			       "here");
	return 0;
}

int postcopy_in_create(struct postcopy_in **out, struct vm *vm,
		       const char *addr, const uint8_t *p, size_t len,
		       struct err *err)
{
	struct postcopy_in *pc = calloc(1, sizeof(*pc));
	uint64_t words;
	int rc;

	*out = NULL;
	if (!pc)
		return err_set(err, -ENOMEM, "out of memory");
	pc->vm = vm;
	pc->uffd = pc->stop_fd = -1;
	pc->base = vm->mem.base;
	pc->npages = vm->mem.ram_size / PAGE_SIZE;
	words = (pc->npages + 63) / 64;
	pthread_mutex_init(&pc->send_lock, NULL);
	pthread_mutex_init(&pc->lock, NULL);
	pthread_cond_init(&pc->cond, NULL);
	snap_stream_init(&pc->s, -1, "the source");
	pc->addr = strdup(addr);
	pc->requested = calloc(words + 1, 8);
	rc = pc->addr && pc->requested
		     ? snap_stream_parse_postcopy(p, len, vm->mem.ram_size,
						  &pc->missing, &pc->total, err)
		     : err_set(err, -ENOMEM, "out of memory");
	pc->left = pc->total;
	if (!rc)
		rc = drop_missing(pc, err);
	if (!rc)
		rc = uffd_register(pc, err);
	if (rc) {
		postcopy_in_free(pc);
		return rc;
	}
	log_info("migration: post-copy: %" PRIu64 " of %" PRIu64
		 " pages will come after the switch-over",
		 pc->total, pc->npages);
	*out = pc;
	return 0;
}

static int send_locked(struct postcopy_in *pc, unsigned type, const void *a,
		       size_t alen, struct err *err)
{
	int rc;

	pthread_mutex_lock(&pc->send_lock);
	rc = snap_stream_send(&pc->s, type, a, alen, NULL, 0, err);
	pthread_mutex_unlock(&pc->send_lock);
	return rc;
}

/* A page that needs nothing from the source: a zero page, or a wake-up. */
static int zero_or_wake(struct postcopy_in *pc, uint64_t pg, struct err *err)
{
	struct uffdio_range r = {.start = (uintptr_t)pc->base + pg * PAGE_SIZE,
				 .len = PAGE_SIZE};
	struct uffdio_zeropage z = {.range = r};

	while (ioctl(pc->uffd, UFFDIO_ZEROPAGE, &z)) {
		if (errno == EAGAIN) {
			z.zeropage = 0;
			continue;
		}
		if (errno != EEXIST)
			return err_sys(err, "UFFDIO_ZEROPAGE");
		/* Present by now: whoever faulted just retries. */
		if (ioctl(pc->uffd, UFFDIO_WAKE, &r))
			return err_sys(err, "UFFDIO_WAKE");
		break;
	}
	return 0;
}

/* Guest page faults read from the uffd: each asked for, or resolved. */
static int on_faults(struct postcopy_in *pc, struct err *err)
{
	struct uffd_msg msg[16];
	ssize_t n = read(pc->uffd, msg, sizeof(msg));
	int rc = 0;

	if (n < 0)
		return errno == EAGAIN ? 0 : err_sys(err, "reading faults");
	for (size_t i = 0; i < (size_t)n / sizeof(msg[0]) && !rc; i++) {
		uint64_t a = msg[i].arg.pagefault.address, pg;

		if (msg[i].event != UFFD_EVENT_PAGEFAULT ||
		    a < (uintptr_t)pc->base)
			continue;
		pg = (a - (uintptr_t)pc->base) / PAGE_SIZE;
		if (pg >= pc->npages)
			continue;
		pc->faults++;
		pthread_mutex_lock(&pc->lock);
		if (!bit(pc->missing, pg)) {
			pthread_mutex_unlock(&pc->lock);
			rc = zero_or_wake(pc, pg, err);
			continue;
		}
		pthread_mutex_unlock(&pc->lock);
		if (bit(pc->requested, pg))
			continue; /* on its way */
		pc->requested[pg / 64] |= 1ULL << (pg % 64);
		pc->requests++;
		pthread_mutex_lock(&pc->send_lock);
		rc = snap_stream_send_page_req(&pc->s, pg * PAGE_SIZE, 1, err);
		pthread_mutex_unlock(&pc->send_lock);
	}
	return rc;
}

/* @k missing pages from @pg placed (@data NULL: zero), waking faulters. */
static int place(struct postcopy_in *pc, uint64_t pg, uint64_t k,
		 const uint8_t *data, struct err *err)
{
	uint64_t dst = (uintptr_t)pc->base + pg * PAGE_SIZE;
	int rc;

	if (data) {
		struct uffdio_copy c = {.dst = dst,
					.src = (uintptr_t)data,
					.len = k * PAGE_SIZE};

		rc = ioctl(pc->uffd, UFFDIO_COPY, &c);
		if (rc && c.copy > 0 && (uint64_t)c.copy < k * PAGE_SIZE) {
			uint64_t done = (uint64_t)c.copy / PAGE_SIZE;

			return place(pc, pg + done, k - done,
				     data + done * PAGE_SIZE, err);
		}
	} else {
		struct uffdio_zeropage z = {
			.range = {.start = dst, .len = k * PAGE_SIZE}};

		rc = ioctl(pc->uffd, UFFDIO_ZEROPAGE, &z);
	}
	if (rc && errno == EAGAIN)
		return place(pc, pg, k, data, err);
	if (rc && errno == EEXIST && k > 1) { /* one by one, then */
		for (uint64_t i = 0; i < k && !rc; i++)
			rc = place(pc, pg + i, 1,
				   data ? data + i * PAGE_SIZE : NULL, err);
		return rc;
	}
	if (rc && errno != EEXIST)
		return err_sys(err, "placing %" PRIu64 " pages at 0x%" PRIx64,
			       k, (uint64_t)(pg * PAGE_SIZE));
	return 0;
}

/* A RAM record: its missing pages placed (others were here already). */
static int on_ram(struct postcopy_in *pc, const uint8_t *p, size_t len,
		  struct err *err)
{
	uint64_t off, n, first;
	const uint8_t *data;
	int rc = snap_stream_parse_ram(&pc->s, pc->npages * PAGE_SIZE, p, len,
				       &off, &n, &data, err);

	if (rc)
		return rc;
	first = off / PAGE_SIZE;
	for (uint64_t i = 0; i < n && !rc;) {
		uint64_t k = 0;

		while (i < n && !bit(pc->missing, first + i))
			i++;
		while (i + k < n && bit(pc->missing, first + i + k))
			k++;
		if (!k)
			break;
		rc = place(pc, first + i, k, data ? data + i * PAGE_SIZE : NULL,
			   err);
		pthread_mutex_lock(&pc->lock);
		for (uint64_t j = 0; j < k && !rc; j++)
			clear_bit(pc->missing, first + i + j);
		if (!rc)
			pc->left -= k;
		pthread_mutex_unlock(&pc->lock);
		i += k;
	}
	return rc;
}

static void set_state(struct postcopy_in *pc, enum pc_state st)
{
	pthread_mutex_lock(&pc->lock);
	pc->state = st;
	pthread_cond_broadcast(&pc->cond);
	pthread_mutex_unlock(&pc->lock);
}

/* One record from the source: 1 when post-copy is complete. */
static int on_record(struct postcopy_in *pc, struct err *err)
{
	const uint8_t *p;
	unsigned type;
	size_t len;
	int rc = snap_stream_recv(&pc->s, &type, &p, &len, err);

	if (rc)
		return rc;
	if (type == SNAP_REC_RAM)
		return on_ram(pc, p, len, err);
	if (type == SNAP_REC_GO && pc->state == PC_WAIT_GO) {
		pc->t_go = now_ns();
		set_state(pc, PC_RUNNING);
		return 0;
	}
	if (type == SNAP_REC_ABORT)
		return err_set(err, -ECANCELED, "the source gave up: %.*s",
			       (int)MIN(len, 400), (const char *)p);
	if (type != SNAP_REC_POSTCOPY_END || pc->state != PC_RUNNING)
		return err_set(err, -EPROTO, "a %s record in post-copy",
			       snap_rec_name(type));
	if (len != 16 || get_le64(p) != pc->total || pc->left)
		return err_set(err, -EPROTO,
			       "POSTCOPY_END: the source sent %" PRIu64
			       " pages, %" PRIu64 " of %" PRIu64
			       " are still missing here",
			       len == 16 ? get_le64(p) : 0, pc->left,
			       pc->total);
	rc = send_locked(pc, SNAP_REC_REPLY, "\0\0\0\0complete", 12, err);
	return rc ? rc : 1;
}

/* The thread's failure: before GO the main thread says it; after, here. */
static void lost(struct postcopy_in *pc, int rc, struct err *err)
{
	bool running;

	pthread_mutex_lock(&pc->lock);
	running = pc->state == PC_RUNNING;
	pc->err = *err;
	if (!pc->err.msg[0])
		err_set(&pc->err, rc, "%s", strerror(-rc));
	pthread_mutex_unlock(&pc->lock);
	set_state(pc, PC_FAILED);
	if (!running)
		return;
	log_err("migration from %s: post-copy failed: %s; %" PRIu64
		" of %" PRIu64 " pages are still at the source, and the guest "
		"cannot go on without them (its memory is split between the "
		"hosts): stopping with status %d",
		pc->addr, err_msg(&pc->err), pc->left, pc->total,
		KHYVE_EXIT_POSTCOPY_LOST);
	vm_request_stop(pc->vm, KHYVE_EXIT_POSTCOPY_LOST);
}

static void *pc_thread(void *opaque)
{
	struct postcopy_in *pc = opaque;
	struct err e = {0};
	int rc = 0;

	while (!rc) {
		struct pollfd pf[3] = {{.fd = pc->s.fd, .events = POLLIN},
				       {.fd = pc->uffd, .events = POLLIN},
				       {.fd = pc->stop_fd, .events = POLLIN}};
		int n = poll(pf, 3, PC_SILENCE_MS);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n ? err_sys(&e, "poll")
			       : err_set(&e, -ETIMEDOUT,
					 "the source sent nothing for %d s",
					 PC_SILENCE_MS / 1000);
			break;
		}
		if (pf[2].revents) {
			/* The guest stopped here: the source is told. */
			static const char why[] = "the guest stopped at the "
						  "destination in post-copy";

			if (pc->left)
				send_locked(pc, SNAP_REC_ABORT, why,
					    sizeof(why) - 1, NULL);
			set_state(pc, PC_FAILED);
			return NULL;
		}
		if (pf[1].revents)
			rc = on_faults(pc, &e);
		if (!rc && pf[0].revents)
			rc = on_record(pc, &e);
	}
	if (rc < 0) {
		lost(pc, rc, &e);
		return NULL;
	}
	log_info("migration: post-copy complete: %" PRIu64 " pages in %.1f "
		 "ms after the switch-over, %" PRIu64 " of them asked for on "
		 "%" PRIu64 " faults",
		 pc->total, (double)(now_ns() - pc->t_go) / 1e6, pc->requests,
		 pc->faults);
	/* Every page is here: faults are the kernel's again. */
	close(pc->uffd);
	pc->uffd = -1;
	set_state(pc, PC_DONE);
	return NULL;
}

int postcopy_in_start(struct postcopy_in *pc, struct snap_stream *s,
		      struct err *err)
{
	int rc;

	pc->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (pc->stop_fd < 0)
		return err_sys(err, "eventfd");
	pc->s = *s;
	snap_stream_init(s, -1, s->peer);
	pc->s.timeout_ms = PC_SILENCE_MS;
	rc = -pthread_create(&pc->thread, NULL, pc_thread, pc);
	if (rc)
		return err_set(err, rc, "cannot start the post-copy thread: %s",
			       strerror(-rc));
	pc->started = true;
	return 0;
}

int postcopy_in_ready(struct postcopy_in *pc, int ret, const struct err *why,
		      struct err *err)
{
	uint8_t st[4];
	const char *msg = !ret ? "ready" : why ? err_msg(why) : strerror(-ret);
	uint8_t buf[4 + 1024];
	size_t n = strnlen(msg, 1024);
	int rc;

	put_le32(st, (uint32_t)-ret);
	memcpy(buf, st, 4);
	memcpy(buf + 4, msg, n);
	rc = send_locked(pc, SNAP_REC_REPLY, buf, 4 + n, err);
	if (ret)
		return err_set(err, ret, "%s", msg);
	if (rc)
		return rc;
	pthread_mutex_lock(&pc->lock);
	while (pc->state == PC_WAIT_GO)
		pthread_cond_wait(&pc->cond, &pc->lock);
	rc = pc->state == PC_FAILED ? pc->err.code : 0;
	if (rc)
		*err = pc->err;
	pthread_mutex_unlock(&pc->lock);
	return rc ? rc : 0;
}

bool postcopy_in_busy(struct postcopy_in *pc, uint64_t *left, uint64_t *total)
{
	bool busy;

	if (!pc)
		return false;
	pthread_mutex_lock(&pc->lock);
	busy = pc->state == PC_WAIT_GO || pc->state == PC_RUNNING;
	*left = pc->left;
	*total = pc->total;
	pthread_mutex_unlock(&pc->lock);
	return busy;
}

void postcopy_in_free(struct postcopy_in *pc)
{
	uint64_t one = 1;

	if (!pc)
		return;
	if (pc->started) {
		if (write(pc->stop_fd, &one, sizeof(one)) < 0) {
			/* an eventfd write cannot fail here */
		}
		pthread_join(pc->thread, NULL);
	}
	if (pc->uffd >= 0)
		close(pc->uffd);
	if (pc->stop_fd >= 0)
		close(pc->stop_fd);
	if (pc->s.fd >= 0)
		close(pc->s.fd);
	snap_stream_free(&pc->s);
	pthread_mutex_destroy(&pc->send_lock);
	pthread_mutex_destroy(&pc->lock);
	pthread_cond_destroy(&pc->cond);
	free(pc->missing);
	free(pc->requested);
	free(pc->addr);
	free(pc);
}
