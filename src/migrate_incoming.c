/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A migration's destination (see migrate_incoming.h; the stream:
 * snap_stream.h). Guest RAM comes as page records straight into the new
 * VM's memory; the machine state comes as one state file, checked whole
 * (vm_snapshot_load_state) before KVM sees any of it. The guest runs only
 * once the source has said GO: until then nothing here has run and an
 * error simply ends this process.
 */
#include "migrate_incoming.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "log.h"
#include "migrate.h"
#include "migrate_postcopy.h"
#include "snap.h"
#include "snap_stream.h"
#include "vm.h"
#include "vm_snapshot.h"

#define SILENCE_MS 60000 /* a source that says nothing this long is gone */

struct migrate_in {
	char *addr;
	int listen_fd, fd;
	char unix_path[108];
	struct snap_stream s;
	uint64_t t0;
	bool recorded; /* nobody to answer (SNAP_HELLO_RECORDED) */
	bool postcopy; /* asked for (SNAP_HELLO_POSTCOPY) */
	/* post-copy: the thread that owns the stream once END is here (the
	 * VM owns it: vm->postcopy) */
	struct postcopy_in *pc;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/*
 * What the source still sends, read and dropped until it closes (for at
 * most @ms): closing with unread data would reset the connection, and
 * the source could lose the reply that says why.
 */
static void drain(int fd, int ms)
{
	static uint8_t sink[65536];
	struct pollfd pf = {.fd = fd, .events = POLLIN};

	shutdown(fd, SHUT_WR);
	while (poll(&pf, 1, ms) > 0 && read(fd, sink, sizeof(sink)) > 0)
		;
}

/* Our error, and the source told it (best effort), prefixed. */
static int fail(struct migrate_in *mi, int ret, struct err *err)
{
	if (mi->s.fd >= 0 && !mi->recorded && ret != -ECONNRESET &&
	    ret != -EPIPE &&
	    !snap_stream_reply(&mi->s, ret, err_msg(err), NULL))
		drain(mi->s.fd, 3000);
	err_prefix(err, "migration from %s: ", mi->addr);
	return ret;
}

/* An ABORT's reason, as the error. */
static int aborted(const uint8_t *p, size_t len, struct err *err)
{
	return err_set(err, -ECANCELED, "the source gave up: %.*s",
		       (int)MIN(len, 400), (const char *)p);
}

/* The source's HELLO: its format, its host and its machine. */
static int read_hello(struct migrate_in *mi, const struct vm_config *cmd,
		      struct vm_config *cfg, struct err *err)
{
	struct snap_host_info here;
	struct snap_hello h;
	const uint8_t *p;
	unsigned type;
	size_t len;
	json_error_t je;
	json_t *j;
	int ret;

	ret = snap_stream_recv(&mi->s, &type, &p, &len, err);
	if (ret)
		return ret;
	if (type != SNAP_REC_HELLO)
		return err_set(err, -EPROTO,
			       "the stream starts with a %s record, not HELLO",
			       snap_rec_name(type));
	ret = snap_stream_parse_hello(p, len, &h, err);
	if (ret)
		return ret;
	mi->recorded = h.flags & SNAP_HELLO_RECORDED;
	mi->postcopy = h.flags & SNAP_HELLO_POSTCOPY;
	if (mi->postcopy && mi->recorded)
		return err_set(err, -EPROTO,
			       "HELLO record: post-copy in a recorded stream");
	if (mi->postcopy) {
		ret = postcopy_in_probe(err);
		if (ret) {
			err_prefix(err, "post-copy is not possible here: ");
			return ret;
		}
	}
	snap_host_info_probe(&here, NULL);
	if (h.cpu_vendor[0] && strcmp(h.cpu_vendor, here.cpu_vendor))
		return err_set(err, -EINVAL,
			       "the guest runs on a %s CPU, this host has a "
			       "%s CPU (a guest cannot move between CPU "
			       "vendors)",
			       h.cpu_vendor, here.cpu_vendor);
	if (h.cpuid_hash != here.cpuid_hash)
		log_info("migration: the source's CPU features differ from "
			 "this host's; the vCPU restore checks each one the "
			 "guest uses");
	j = json_loadb(h.config, h.config_len, 0, &je);
	if (!j)
		return err_set(err, -EPROTO, "HELLO record: config: %s",
			       je.text);
	ret = config_from_json(cfg, j, err);
	json_decref(j);
	if (ret)
		return ret;
	ret = config_merge_restore(cfg, cmd, err);
	if (!ret && h.ram_size != cfg->mem_size)
		ret = err_set(err, -EPROTO,
			      "HELLO record: %" PRIu64 " bytes of RAM, its "
			      "config says %" PRIu64,
			      h.ram_size, cfg->mem_size);
	if (!ret && h.ncpus != cfg->ncpus)
		ret = err_set(err, -EPROTO,
			      "HELLO record: %u vCPUs, its config says %u",
			      h.ncpus, cfg->ncpus);
	cfg->incoming_recorded = mi->recorded;
	if (!ret && !(cfg->incoming = strdup(cmd->incoming)))
		ret = err_set(err, -ENOMEM, "out of memory");
	if (!ret)
		ret = config_check_strict_bindings(cfg, err);
	if (ret)
		config_free(cfg);
	return ret;
}

int migrate_in_open(struct migrate_in **out, const struct vm_config *cmd,
		    struct vm_config *cfg, struct err *err)
{
	struct migrate_in *mi = calloc(1, sizeof(*mi));
	bool listener;
	int ret;

	*out = NULL;
	if (!mi)
		return err_set(err, -ENOMEM, "out of memory");
	mi->listen_fd = mi->fd = -1;
	mi->addr = strdup(cmd->incoming);
	if (!mi->addr) {
		free(mi);
		return err_set(err, -ENOMEM, "out of memory");
	}
	snap_stream_init(&mi->s, -1, "the source");
	ret = migrate_listen(cmd->incoming, &mi->fd, &listener, mi->unix_path,
			     sizeof(mi->unix_path), err);
	if (ret)
		goto fail;
	if (listener) {
		mi->listen_fd = mi->fd;
		log_info("migration: waiting for a source on %s",
			 cmd->incoming);
		do
			mi->fd = accept4(mi->listen_fd, NULL, NULL,
					 SOCK_CLOEXEC);
		while (mi->fd < 0 && errno == EINTR);
		if (mi->fd < 0) {
			ret = err_set(err, -errno, "%s: accept: %s",
				      cmd->incoming, strerror(errno));
			goto fail;
		}
	}
	mi->t0 = now_ns();
	if (!listener && cmd->incoming_label) {
		free(mi->addr); /* khyve -r: say it as the user did */
		mi->addr = strdup(cmd->incoming_label);
		if (!mi->addr) {
			ret = err_set(err, -ENOMEM, "out of memory");
			goto fail;
		}
	}
	snap_stream_init(&mi->s, mi->fd, "the source");
	mi->s.listen_fd = mi->listen_fd;
	mi->s.timeout_ms = SILENCE_MS;
	ret = read_hello(mi, cmd, cfg, err);
	if (ret) {
		fail(mi, ret, err);
		goto fail;
	}
	*out = mi;
	return 0;
fail:
	migrate_in_close(mi);
	return ret;
}

int migrate_in_accept(struct migrate_in *mi, int ret, const struct err *why,
		      struct err *err)
{
	if (ret) {
		err_set(err, ret, "%s", err_msg(why));
		return fail(mi, ret, err);
	}
	ret = mi->recorded ? 0 : snap_stream_reply(&mi->s, 0, "accepted", err);
	if (ret)
		err_prefix(err, "migration from %s: ", mi->addr);
	return ret;
}

/* The counts in END say nothing was lost between the records. */
static int check_end(struct migrate_in *mi, uint64_t records, uint64_t pages,
		     struct err *err)
{
	const uint8_t *p;
	unsigned type;
	size_t len;
	int ret = snap_stream_recv(&mi->s, &type, &p, &len, err);

	if (ret)
		return ret;
	if (type == SNAP_REC_ABORT)
		return aborted(p, len, err);
	if (type != SNAP_REC_END || len < 32 || get_le64(p) != records ||
	    get_le64(p + 8) != pages)
		return err_set(err, -EPROTO,
			       "the stream's end (%s record) does not "
			       "match the %" PRIu64 " RAM records "
			       "received",
			       snap_rec_name(type), records);
	return 0;
}

/*
 * Post-copy: STATE (@p) and END are here; from now on the thread owns the
 * stream and serves page faults, the state loads (its writes to guest RAM
 * fault like any other), and an error is the source's to hear through the
 * thread's stream.
 */
static int receive_postcopy_end(struct migrate_in *mi, struct vm *vm,
				const uint8_t *p, size_t len, uint64_t records,
				uint64_t pages, struct err *err)
{
	uint8_t *state = malloc(len ? len : 1);
	struct err why = {0};
	int ret;

	if (!state)
		return fail(mi, err_set(err, -ENOMEM, "out of memory"), err);
	memcpy(state, p, len);
	ret = check_end(mi, records, pages, err);
	if (ret) {
		free(state);
		return fail(mi, ret, err);
	}
	ret = postcopy_in_start(mi->pc, &mi->s, err);
	if (!ret) {
		mi->fd = -1; /* the thread's now */
		ret = vm_snapshot_load_state(vm,
					     "migration stream: STATE "
					     "record",
					     state, len, err);
	}
	free(state);
	if (ret && mi->fd < 0) {
		why = *err;
		postcopy_in_ready(mi->pc, ret, &why, err);
	} else if (ret) {
		fail(mi, ret, err);
	}
	if (ret)
		err_prefix(err, "migration from %s: ", mi->addr);
	return ret;
}

int migrate_in_receive(struct migrate_in *mi, struct vm *vm, struct err *err)
{
	uint64_t pages = 0, records = 0;
	const uint8_t *p;
	unsigned type;
	size_t len;
	int ret;

	for (;;) {
		ret = snap_stream_recv(&mi->s, &type, &p, &len, err);
		if (ret)
			return fail(mi, ret, err);
		if (type == SNAP_REC_ABORT)
			return fail(mi, aborted(p, len, err), err);
		/* A round's end: everything before it is in guest RAM. */
		if (type == SNAP_REC_SYNC) {
			ret = mi->recorded ? 0
					   : snap_stream_reply(&mi->s, 0,
							       "synced", err);
			if (ret)
				return fail(mi, ret, err);
			continue;
		}
		if (type == SNAP_REC_POSTCOPY && mi->postcopy && !mi->pc) {
			ret = postcopy_in_create(&mi->pc, vm, mi->addr, p, len,
						 err);
			if (ret)
				return fail(mi, ret, err);
			vm->postcopy = mi->pc;
			continue;
		}
		if (type != SNAP_REC_RAM)
			break;
		ret = snap_stream_apply_ram(&mi->s, &vm->mem, p, len, &pages,
					    err);
		if (ret)
			return fail(mi, ret, err);
		records++;
	}
	if (type != SNAP_REC_STATE)
		return fail(mi,
			    err_set(err, -EPROTO,
				    "a %s record where RAM or the state was "
				    "due",
				    snap_rec_name(type)),
			    err);
	if (mi->pc)
		return receive_postcopy_end(mi, vm, p, len, records, pages,
					    err);
	log_debug("migration: STATE at %" PRIu64 " us", now_ns() / 1000);
	ret = vm_snapshot_load_state(vm, "migration stream: STATE record", p,
				     len, err);
	log_debug("migration: state loaded at %" PRIu64 " us", now_ns() / 1000);
	if (ret)
		return fail(mi, ret, err);
	ret = check_end(mi, records, pages, err);
	if (ret)
		return fail(mi, ret, err);
	log_info("migration: %" PRIu64 " pages in %" PRIu64 " records, "
		 "%" PRIu64 " bytes received in %.1f ms",
		 pages, records, mi->s.bytes_in,
		 (double)(now_ns() - mi->t0) / 1e6);
	return 0;
}

int migrate_in_switch(struct migrate_in *mi, int ret, const struct err *why,
		      struct err *err)
{
	const uint8_t *p;
	unsigned type;
	size_t len;

	if (ret && mi->pc) {
		postcopy_in_ready(mi->pc, ret, why, err);
		err_prefix(err, "migration from %s: ", mi->addr);
		return ret;
	}
	if (ret) {
		err_set(err, ret, "%s", err_msg(why));
		return fail(mi, ret, err);
	}
	if (mi->recorded)
		return 0; /* a recorded stream: END was the last word */
	if (mi->pc) {
		ret = postcopy_in_ready(mi->pc, 0, NULL, err);
		if (ret)
			err_prefix(err,
				   "migration from %s: at the switch-over (the "
				   "guest was not started here): ",
				   mi->addr);
		return ret;
	}
	ret = snap_stream_reply(&mi->s, 0, "ready", err);
	log_debug("migration: ready sent at %" PRIu64 " us", now_ns() / 1000);
	if (!ret)
		ret = snap_stream_recv(&mi->s, &type, &p, &len, err);
	log_debug("migration: GO at %" PRIu64 " us", now_ns() / 1000);
	if (!ret && type == SNAP_REC_ABORT)
		ret = aborted(p, len, err);
	else if (!ret && type != SNAP_REC_GO)
		ret = err_set(err, -EPROTO, "a %s record where GO was due",
			      snap_rec_name(type));
	if (ret)
		err_prefix(err,
			   "migration from %s: at the switch-over (the guest "
			   "was not started here): ",
			   mi->addr);
	return ret;
}

void migrate_in_close(struct migrate_in *mi)
{
	if (!mi)
		return;
	snap_stream_free(&mi->s);
	if (mi->fd >= 0 && mi->fd != mi->listen_fd)
		close(mi->fd);
	if (mi->listen_fd >= 0)
		close(mi->listen_fd);
	if (mi->unix_path[0])
		unlink(mi->unix_path);
	free(mi->addr);
	free(mi);
}
