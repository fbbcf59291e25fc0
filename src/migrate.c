/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Live migration, the source side (see migrate.h).
 *
 * Pre-copy: KVM's dirty log and khyve's own bitmap (vm_snapshot_dirty_*,
 * the same tracking as a live checkpoint) say which pages the guest
 * wrote since the last round; each round sends those. The rounds go on
 * until the pages left, at the bandwidth the last round achieved, fit
 * in the maximum downtime. A guest that dirties memory faster than the
 * link carries never gets there: at the deadline the migration gives up
 * (the destination is told, the guest runs on here) or, if asked,
 * throttles the guest (its vCPUs held outside KVM_RUN for a growing share
 * of each 50 ms) until it converges.
 *
 * The switch-over: the guest is paused (the pause contract: no device
 * I/O in flight), the last pages and the state file (vm_snapshot_state_mem)
 * are sent, the destination loads them and says "ready", and then this
 * side sends GO and stops with KHYVE_EXIT_MIGRATED. Up to GO every
 * failure resumes the guest here; the destination, without GO, exits and
 * runs nothing.
 */
#include "migrate.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "log.h"
#include "migrate_postcopy.h"
#include "snap.h"
#include "snap_stream.h"
#include "vm.h"
#include "vm_snapshot.h"

#define REPLY_TIMEOUT_MS   60000 /* the destination loads a state file */
#define THROTTLE_PERIOD_NS (50ULL * 1000 * 1000)
#define THROTTLE_STEP	   20
#define THROTTLE_MAX	   95
#define MIGRATE_FEW_PAGES  64 /* a rest this small goes in the pause */
#define MIGRATE_MAX_ROUNDS 30 /* shrinking rounds before settling */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

/* ---- addresses ---- */

/* "tcp:HOST:PORT" into host and port ("[v6]" unbracketed). */
static int split_tcp(const char *addr, char *host, size_t hlen, char *port,
		     size_t plen, struct err *err)
{
	const char *a = addr + 4, *colon = strrchr(a, ':');
	size_t n;

	if (!colon || !colon[1])
		return err_set(err, -EINVAL, "%s: expected tcp:HOST:PORT",
			       addr);
	n = (size_t)(colon - a);
	if (n >= 2 && a[0] == '[' && a[n - 1] == ']') {
		a++;
		n -= 2;
	}
	if (n >= hlen || strlen(colon + 1) >= plen)
		return err_set(err, -EINVAL, "%s: address too long", addr);
	memcpy(host, a, n);
	host[n] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static int unix_addr(const char *addr, struct sockaddr_un *sa, struct err *err)
{
	const char *path = addr + 5;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (!*path || strlen(path) >= sizeof(sa->sun_path))
		return err_set(err, -EINVAL,
			       "%s: expected unix:PATH (at most %zu bytes)",
			       addr, sizeof(sa->sun_path) - 1);
	strcpy(sa->sun_path, path);
	return 0;
}

static int fd_addr(const char *addr, int *fd, struct err *err)
{
	char *end;
	long n = strtol(addr + 3, &end, 10);
	struct stat st;

	if (!addr[3] || *end || n < 0 || n > 65535)
		return err_set(err, -EINVAL, "%s: expected fd:N", addr);
	if (fstat((int)n, &st))
		return err_set(err, -EBADF, "%s: %s", addr, strerror(errno));
	*fd = (int)n;
	return 0;
}

/* A tcp: address through getaddrinfo: the first that works. */
static int tcp_socket(const char *addr, bool listening, int *out,
		      struct err *err)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = listening ? AI_PASSIVE : 0};
	struct addrinfo *res = NULL, *ai;
	char host[256], port[16];
	int ret, fd = -1, saved = 0;

	ret = split_tcp(addr, host, sizeof(host), port, sizeof(port), err);
	if (ret)
		return ret;
	ret = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (ret)
		return err_set(err, -EINVAL, "%s: %s", addr, gai_strerror(ret));
	for (ai = res; ai; ai = ai->ai_next) {
		int one = 1;

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		if (listening)
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
				   sizeof(one));
		/*
		 * The exchanges at the switch-over are small records each
		 * way: Nagle would hold each one for the peer's delayed ACK
		 * (40 ms), in the guest's downtime. (Inherited by accept.)
		 */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (listening ? !bind(fd, ai->ai_addr, ai->ai_addrlen) &&
					!listen(fd, 4)
			      : !connect(fd, ai->ai_addr, ai->ai_addrlen))
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return err_set(err, -(saved ? saved : EINVAL), "%s: %s", addr,
			       strerror(saved ? saved : EINVAL));
	*out = fd;
	return 0;
}

/* Neither tcp: nor fd:, so unix:PATH: its address in @sa, a socket in *@s. */
static int unix_socket(const char *addr, struct sockaddr_un *sa, int *s,
		       struct err *err)
{
	int ret;

	if (strncmp(addr, "unix:", 5))
		return err_set(err, -EINVAL,
			       "%s: expected tcp:HOST:PORT, unix:PATH or fd:N",
			       addr);
	ret = unix_addr(addr, sa, err);
	if (ret)
		return ret;
	*s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*s < 0)
		return err_set(err, -errno, "socket: %s", strerror(errno));
	return 0;
}

int migrate_connect(const char *addr, int *fd, struct err *err)
{
	struct sockaddr_un sa;
	int ret, s;

	if (!strncmp(addr, "tcp:", 4))
		return tcp_socket(addr, false, fd, err);
	if (!strncmp(addr, "fd:", 3))
		return fd_addr(addr, fd, err);
	ret = unix_socket(addr, &sa, &s, err);
	if (ret)
		return ret;
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = err_set(err, -errno, "%s: %s", addr, strerror(errno));
		close(s);
		return ret;
	}
	*fd = s;
	return 0;
}

int migrate_listen(const char *addr, int *fd, bool *listener, char *unix_path,
		   size_t pathlen, struct err *err)
{
	struct sockaddr_un sa;
	int ret, s, acc = 0;
	socklen_t len = sizeof(acc);

	*listener = true;
	unix_path[0] = '\0';
	if (!strncmp(addr, "tcp:", 4))
		return tcp_socket(addr, true, fd, err);
	if (!strncmp(addr, "fd:", 3)) {
		ret = fd_addr(addr, fd, err);
		if (!ret &&
		    (getsockopt(*fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) ||
		     !acc))
			*listener = false; /* a connection (or a file) */
		return ret;
	}
	ret = unix_socket(addr, &sa, &s, err);
	if (ret)
		return ret;
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) || listen(s, 4)) {
		ret = err_set(err, -errno, "%s: %s", addr, strerror(errno));
		close(s);
		return ret;
	}
	snprintf(unix_path, pathlen, "%s", sa.sun_path);
	*fd = s;
	return 0;
}

/* ---- the source ---- */

struct mig {
	struct vm *vm;
	const struct migrate_opts *o;
	struct snap_stream s;
	struct snap_stream_ram_stats st;
	uint64_t *bm, words;
	uint64_t t0, deadline;
	/* the current round, for progress */
	uint64_t round_pages, round_done;
	/* throttling */
	unsigned throttle;
	bool held;
	uint64_t period0;
	struct err *err;
};

static void hold_vcpus(struct mig *g, bool hold)
{
	if (hold == g->held)
		return;
	if (hold)
		g->held = vm_vcpus_hold(g->vm) == 0;
	else {
		vm_vcpus_release(g->vm);
		g->held = false;
	}
}

/* After each record: stop if the VM went away, throttle, progress. */
static int tick(void *opaque, uint64_t pages)
{
	struct mig *g = opaque;
	uint64_t t = now_ns();
	bool stop;
	int rc;

	pthread_mutex_lock(&g->vm->lock);
	stop = g->vm->stop;
	pthread_mutex_unlock(&g->vm->lock);
	if (stop)
		return err_set(g->err, -ESHUTDOWN,
			       "the guest stopped during the migration");
	if (g->deadline && t > g->deadline && !g->o->throttle)
		return -ETIMEDOUT; /* the caller says why */
	if (g->throttle) {
		uint64_t phase = (t - g->period0) % THROTTLE_PERIOD_NS;

		hold_vcpus(g, phase < THROTTLE_PERIOD_NS * g->throttle / 100);
	}
	/* A destination that stops says why first (and then drains). */
	rc = snap_stream_check_peer(&g->s, 0, g->err);
	if (rc)
		return rc;
	g->round_done += pages;
	if (g->o->progress)
		g->o->progress(g->round_done * PAGE_SIZE,
			       g->round_pages * PAGE_SIZE);
	return 0;
}

static int send_round(struct mig *g, const uint64_t *dirty, uint64_t pages)
{
	g->round_pages = pages;
	g->round_done = 0;
	return snap_stream_send_ram(&g->s, &g->vm->mem, dirty, tick, g, &g->st,
				    g->err);
}

static int send_hello(struct mig *g)
{
	struct snap_host_info host;
	json_t *cj = config_to_json(g->vm->cfg);
	char *json = cj ? json_dumps(cj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	struct snap_hello h = {
		.major = SNAP_STREAM_MAJOR,
		.minor = SNAP_STREAM_MINOR,
		.ram_size = g->vm->mem.ram_size,
		.ncpus = g->vm->ncpus,
	};
	int ret;

	json_decref(cj);
	if (!json)
		return err_set(g->err, -ENOMEM, "out of memory");
	snap_host_info_probe(&host, NULL);
	h.cpuid_hash = host.cpuid_hash;
	memcpy(h.cpu_vendor, host.cpu_vendor, sizeof(h.cpu_vendor));
	h.config = json;
	h.config_len = (uint32_t)strlen(json);
	h.flags = (g->o->record ? SNAP_HELLO_RECORDED : 0) |
		  (g->o->postcopy ? SNAP_HELLO_POSTCOPY : 0);
	ret = snap_stream_send_hello(&g->s, &h, g->err);
	free(json);
	if (!ret && !g->o->record)
		ret = snap_stream_expect_reply(&g->s, "migration refused", NULL,
					       0, g->err);
	return ret;
}

/* Best effort: the destination learns why, exits and runs nothing. */
static void send_abort(struct mig *g, const char *why)
{
	snap_stream_send(&g->s, SNAP_REC_ABORT, why, strlen(why), NULL, 0,
			 NULL);
}

static int sync_round(struct mig *g)
{
	int ret;

	if (g->o->record)
		return 0; /* nobody to answer */
	ret = snap_stream_send(&g->s, SNAP_REC_SYNC, NULL, 0, NULL, 0, g->err);

	return ret ? ret
		   : snap_stream_expect_reply(&g->s, "after a round", NULL, 0,
					      g->err);
}

/*
 * Time to pause, with @n pages left (@prev the round before)? Not while
 * another round still shrinks the set well: a first round of seconds
 * leaves all it saw written meanwhile, a second one only what was written
 * during it, so the pause is as short as the guest allows, not just
 * within the maximum. Then when the rest, at the rate the last round
 * achieved, fits in @max_ms.
 */
static bool converged(uint64_t n, uint64_t prev, unsigned rounds, uint64_t rate,
		      double max_ms)
{
	bool fits =
		rate ? (double)(n * PAGE_SIZE) * 1000.0 / (double)rate <= max_ms
		     : !n;

	if (n <= MIGRATE_FEW_PAGES)
		return fits;
	if (n * 4 < prev * 3 && rounds < MIGRATE_MAX_ROUNDS)
		return false; /* shrinking by a quarter or more: go on */
	return fits;
}

/*
 * Rounds while the guest runs, until the rest fits in the downtime.
 * -ETIMEDOUT (with why) at the deadline, unless throttling.
 */
static int precopy(struct mig *g, struct migrate_result *res)
{
	const struct migrate_opts *o = g->o;
	uint64_t npages = g->vm->mem.ram_size / PAGE_SIZE;
	uint64_t n = 0, prev = UINT64_MAX, t, bytes0;
	uint64_t rate = 0; /* bytes per second */
	int ret;

	g->words = (npages + 63) / 64;
	g->bm = calloc(g->words, 8);
	if (!g->bm)
		return err_set(g->err, -ENOMEM, "no memory for a dirty bitmap");
	for (;;) {
		bytes0 = g->s.bytes_out;
		t = now_ns();
		ret = res->rounds ? send_round(g, g->bm, n)
				  : send_round(g, NULL, npages);
		/*
		 * The round counts once the destination has it all in
		 * guest RAM: the rate is then end to end, and the pause does
		 * not wait for a backlog in socket buffers to be applied.
		 */
		if (!ret)
			ret = sync_round(g);
		if (ret == -ETIMEDOUT)
			break;
		if (ret)
			return ret;
		res->rounds++;
		memset(g->bm, 0, g->words * 8);
		t = now_ns() - t;
		if (t && g->s.bytes_out > bytes0)
			rate = (g->s.bytes_out - bytes0) * 1000000000ULL / t;
		ret = vm_snapshot_dirty_collect(g->vm, g->bm, g->words, &n);
		if (ret)
			return err_set(g->err, ret, "KVM_GET_DIRTY_LOG: %s",
				       strerror(-ret));
		/* Post-copy: the rest goes after the switch-over. */
		if (o->postcopy && res->rounds >= o->postcopy_after)
			return 0;
		if (converged(n, prev, res->rounds, rate, o->max_downtime_ms))
			return 0;
		prev = n;
		if (g->deadline && now_ns() > g->deadline) {
			if (!o->throttle)
				break;
			if (g->throttle < THROTTLE_MAX) {
				g->throttle = MIN(g->throttle + THROTTLE_STEP,
						  THROTTLE_MAX);
				g->period0 = now_ns();
				log_info("migration: throttling the vCPUs to "
					 "%u%% of the time",
					 100 - g->throttle);
			}
		}
	}
	return err_set(g->err, -ETIMEDOUT,
		       "gave up after %.0f s (the deadline) and %u rounds: "
		       "the guest writes its memory faster than %.1f MiB/s "
		       "(what the link carried) lets the rest fit in %.0f "
		       "ms; the guest runs on here",
		       o->deadline_s, res->rounds, (double)rate / MiB,
		       o->max_downtime_ms);
}

/* Paused: the last pages, the state, END; then the destination's word. */
/*
 * TCP only: hold partial segments while the last records go out (@on),
 * then push them all at once, so the destination is not woken for each
 * of many small records in the guest's downtime.
 */
static void cork(struct mig *g, bool on)
{
	int v = on;

	setsockopt(g->s.fd, IPPROTO_TCP, TCP_CORK, &v, sizeof(v));
}

/* The state file and END (which uncorks): the destination may load. */
static int send_state_end(struct mig *g, struct migrate_result *res)
{
	uint8_t *state = NULL;
	size_t len = 0;
	uint8_t end[32];
	int ret = vm_snapshot_state_mem(g->vm, &state, &len, g->err);

	if (!ret)
		ret = snap_stream_send(&g->s, SNAP_REC_STATE, state, len, NULL,
				       0, g->err);
	free(state);
	res->state_bytes = len;
	if (ret)
		return ret;
	memset(end, 0, sizeof(end));
	put_le64(end, g->st.records);
	put_le64(end + 8, g->st.pages);
	put_le64(end + 16, g->s.bytes_out);
	put_le32(end + 24, res->rounds);
	ret = snap_stream_send(&g->s, SNAP_REC_END, end, sizeof(end), NULL, 0,
			       g->err);
	cork(g, false);
	return ret;
}

static int finish(struct mig *g, bool live, struct migrate_result *res)
{
	uint64_t n, pages0 = g->st.pages, t0 = now_ns(), t1, t2;
	int ret = 0;

	cork(g, true);
	if (live) {
		ret = vm_snapshot_dirty_collect(g->vm, g->bm, g->words, &n);
		vm_snapshot_dirty_stop(g->vm);
		if (ret)
			return err_set(g->err, ret, "KVM_GET_DIRTY_LOG: %s",
				       strerror(-ret));
		ret = send_round(g, g->bm, n);
	} else {
		ret = send_round(g, NULL, g->vm->mem.ram_size / PAGE_SIZE);
	}
	res->final_pages = g->st.pages - pages0;
	t1 = now_ns();
	if (!ret)
		ret = send_state_end(g, res);
	if (ret)
		return ret;
	t2 = now_ns();
	if (g->o->record)
		return 0; /* the stream ends here */
	ret = snap_stream_expect_reply(&g->s,
				       "at the switch-over (the guest "
				       "runs on here)",
				       NULL, 0, g->err);
	log_debug("migration: paused work from %" PRIu64 " us, END sent at "
		  "%" PRIu64 " us, ready at %" PRIu64 " us",
		  t0 / 1000, t2 / 1000, now_ns() / 1000);
	res->phases.pages = ms(t1 - t0);
	res->phases.state = ms(t2 - t1);
	res->phases.dest_load = ms(now_ns() - t2);
	if (!ret)
		ret = snap_stream_send(&g->s, SNAP_REC_GO, NULL, 0, NULL, 0,
				       g->err);
	return ret;
}

/* Connected, the destination has accepted the HELLO. */
static int mig_open(struct mig *g)
{
	/* A destination that stops reading must not hang us. */
	struct timeval tv = {.tv_sec = REPLY_TIMEOUT_MS / 1000};
	int fd, ret = migrate_connect(g->o->to, &fd, g->err);

	if (ret)
		return ret;
	snap_stream_init(&g->s, fd, "the destination");
	g->s.timeout_ms = REPLY_TIMEOUT_MS;
	g->s.bw_limit = g->o->bandwidth;
	g->s.compress = g->o->compress;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return send_hello(g);
}

/* The rounds while the guest runs (none if it cannot be tracked). */
static int mig_precopy(struct mig *g, bool was_paused,
		       struct migrate_result *res)
{
	uint64_t tpre = now_ns();
	struct err e = {0};
	int ret = 0;

	res->live = !was_paused;
	/* Post-copy at once: nothing to track, every page comes later. */
	if (g->o->postcopy && !g->o->postcopy_after) {
		res->precopy_ms = 0;
		return 0;
	}
	if (res->live && vm_snapshot_dirty_start(g->vm, &e)) {
		log_warn("migration: not live (%s): the guest stays paused "
			 "while all of its RAM is sent",
			 err_msg(&e));
		res->live = false;
	}
	if (g->o->deadline_s > 0)
		g->deadline = tpre + (uint64_t)(g->o->deadline_s * 1e9);
	if (res->live) {
		ret = precopy(g, res);
		hold_vcpus(g, false);
		if (ret)
			vm_snapshot_dirty_stop(g->vm);
	}
	res->precopy_ms = ms(now_ns() - tpre);
	if (res->precopy_ms > 0)
		res->mbps = (double)g->s.bytes_out / MiB /
			    (res->precopy_ms / 1000.0);
	res->throttle_pct = g->throttle;
	g->deadline = 0; /* the last pages go whatever the time */
	g->throttle = 0;
	return ret;
}

/*
 * Post-copy, paused: the pages the destination lacks (those written since
 * the last round, or every page that may hold data when none ran) as
 * POSTCOPY, the state, END; then requests served until "ready", and GO.
 */
static int finish_postcopy(struct mig *g, struct migrate_result *res,
			   struct postcopy_src *p, uint64_t *tgo)
{
	uint64_t npages = g->vm->mem.ram_size / PAGE_SIZE, n = 0, t0 = now_ns();
	int ret = 0;

	g->words = (npages + 63) / 64;
	if (!g->bm && !(g->bm = calloc(g->words, 8)))
		return err_set(g->err, -ENOMEM, "no memory for a bitmap");
	cork(g, true);
	if (res->rounds) {
		ret = vm_snapshot_dirty_collect(g->vm, g->bm, g->words, &n);
		vm_snapshot_dirty_stop(g->vm);
		if (ret)
			return err_set(g->err, ret, "KVM_GET_DIRTY_LOG: %s",
				       strerror(-ret));
		n = 0;
		for (uint64_t w = 0; w < g->words; w++)
			n += (uint64_t)__builtin_popcountll(g->bm[w]);
	} else {
		ret = snap_stream_ram_needed(&g->vm->mem, g->bm, &n, g->err);
	}
	if (!ret)
		ret = snap_stream_send_postcopy(&g->s, g->vm->mem.ram_size,
						g->bm, n, g->err);
	res->phases.pages = ms(now_ns() - t0);
	t0 = now_ns();
	if (!ret)
		ret = send_state_end(g, res);
	res->phases.state = ms(now_ns() - t0);
	if (ret)
		return ret;
	*p = (struct postcopy_src){.vm = g->vm,
				   .s = &g->s,
				   .st = &g->st,
				   .missing = g->bm,
				   .npages = npages,
				   .left = n,
				   .total = n,
				   .progress = g->o->progress,
				   .err = g->err};
	t0 = now_ns();
	ret = postcopy_src_switch(p, tgo);
	res->phases.dest_load = ms(*tgo - t0);
	return ret;
}

/*
 * After GO in post-copy: the rest pushed. A failure now leaves the guest
 * split between the hosts: it stays paused here, for good.
 */
static int mig_postcopy_rest(struct mig *g, struct postcopy_src *p,
			     struct migrate_result *res, uint64_t tgo)
{
	int ret = postcopy_src_finish(p);

	res->postcopy = true;
	res->postcopy_pages = p->total;
	res->on_demand_pages = p->on_demand;
	res->postcopy_ms = ms(now_ns() - tgo);
	if (!ret) {
		vm_request_stop(g->vm, KHYVE_EXIT_MIGRATED);
		return 0;
	}
	pthread_mutex_lock(&g->vm->lock);
	g->vm->postcopy_split = true;
	pthread_mutex_unlock(&g->vm->lock);
	err_prefix(g->err,
		   "post-copy failed after the switch-over with %" PRIu64
		   " of %" PRIu64 " pages not sent: ",
		   p->left, p->total);
	log_err("migration to %s: %s; the guest ran at the destination "
		"since then, so it stays paused here and is not resumed "
		"(a checkpoint of it holds the guest as at the switch-over)",
		g->o->to, err_msg(g->err));
	return ret;
}

/* Paused: the rest, the destination's "ready", GO; or resumed again. */
static int mig_switch(struct mig *g, bool was_paused,
		      struct migrate_result *res)
{
	struct vm_pause_times pt;
	struct postcopy_src pc;
	struct err e = {0};
	uint64_t tgo;
	int ret = vm_pause(g->vm, &pt, &e);

	if (ret) {
		if (res->live)
			vm_snapshot_dirty_stop(g->vm);
		return err_set(g->err, ret, "cannot pause the VM: %s",
			       err_msg(&e));
	}
	res->phases.pause = ms(pt.stopped - pt.parked);
	if (g->o->postcopy) {
		ret = finish_postcopy(g, res, &pc, &tgo);
	} else {
		ret = finish(g, res->live, res);
		tgo = now_ns();
	}
	if (ret) {
		if (!was_paused)
			vm_resume(g->vm);
		return ret;
	}
	res->downtime_ms = was_paused ? 0 : ms(tgo - pt.parked);
	if (g->o->postcopy) {
		ret = mig_postcopy_rest(g, &pc, res, tgo);
		res->total_ms = ms(now_ns() - g->t0);
		return ret;
	}
	/* The destination runs the guest now: this one is gone. */
	if (!g->o->record)
		vm_request_stop(g->vm, KHYVE_EXIT_MIGRATED);
	else if (!was_paused)
		vm_resume(g->vm); /* a snapshot: it runs on here */
	res->total_ms = ms(tgo - g->t0);
	return 0;
}

int migrate_run(struct vm *vm, const struct migrate_opts *o,
		struct migrate_result *res, struct err *err)
{
	struct mig g = {.vm = vm, .o = o, .err = err, .t0 = now_ns()};
	bool was_paused;
	int ret;

	memset(res, 0, sizeof(*res));
	snap_stream_init(&g.s, -1, "the destination");
	ret = vm_snapshot_migration_begin(vm, err);
	if (ret)
		return ret;
	ret = mig_open(&g);
	if (ret)
		goto out;
	pthread_mutex_lock(&vm->lock);
	was_paused = vm->state == VM_PAUSED;
	pthread_mutex_unlock(&vm->lock);
	ret = mig_precopy(&g, was_paused, res);
	if (!ret)
		ret = mig_switch(&g, was_paused, res);
	/* A write that failed: the destination's reason, if it gave one
	 * (post-copy reads its replies itself: requests are in the way). */
	if ((ret == -EPIPE || ret == -ECONNRESET) && !o->postcopy)
		snap_stream_check_peer(&g.s, 1000, err);
	if (ret) {
		send_abort(&g, err_msg(err));
		goto out;
	}
	res->bytes = g.s.bytes_out;
	res->raw_bytes = g.s.raw_bytes;
	res->ram_pages = g.st.pages;
	res->zero_pages = g.st.zero_pages;
	log_info("migrated to %s in %.1f ms (%u rounds, %" PRIu64
		 " bytes, down %.1f ms)",
		 o->to, res->total_ms, res->rounds, res->bytes,
		 res->downtime_ms);
	if (res->postcopy)
		log_info("post-copy: %" PRIu64 " pages after the switch-over "
			 "in %.1f ms, %" PRIu64 " of them asked for on a fault",
			 res->postcopy_pages, res->postcopy_ms,
			 res->on_demand_pages);
out:
	free(g.bm);
	snap_stream_free(&g.s);
	/* fd:N belongs to whoever handed it over, but its job is done. */
	if (g.s.fd >= 0)
		close(g.s.fd);
	vm_snapshot_migration_end(vm);
	return ret;
}
