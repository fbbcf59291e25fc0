/* SPDX-License-Identifier: BSD-2-Clause */
#include "virtio_console.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "common.h"
#include "config.h"
#include "log.h"

static const struct snap_field virtio_console_fields[] = {
	SNAP_U32_MAX(struct virtio_console_state, in_len, VIRTIO_CONSOLE_IN_MAX,
		     1),
	SNAP_U32_MAX(struct virtio_console_state, out_len,
		     VIRTIO_CONSOLE_OUT_MAX, 1),
	SNAP_U8_VARRAY(struct virtio_console_state, in_buf,
		       VIRTIO_CONSOLE_IN_MAX, in_len, 1),
	SNAP_U8_VARRAY(struct virtio_console_state, out_buf,
		       VIRTIO_CONSOLE_OUT_MAX, out_len, 1),
};

const struct snap_desc virtio_console_snap =
	SNAP_DESC("virtio_console", 1, 1, struct virtio_console_state,
		  virtio_console_fields);

static void *con_snap_state(void *opaque)
{
	return &((struct virtio_console *)opaque)->st;
}

static void stat_add(uint64_t *c, uint64_t v)
{
	__atomic_add_fetch(c, v, __ATOMIC_RELAXED);
}

static bool running(struct virtio_console *con)
{
	uint8_t s = virtio_pci_status(&con->vp);

	return (s & VIRTIO_STATUS_DRIVER_OK) &&
	       !(s & VIRTIO_STATUS_NEEDS_RESET);
}

/* Caller holds con->lock. Held output first, once a client is there. */
static void out_flush(struct virtio_console *con)
{
	if (!con->st.out_len || !chardev_connected(con->cd))
		return;
	chardev_write(con->cd, con->st.out_buf, con->st.out_len);
	con->st.out_len = 0;
}

/* Caller holds con->lock. */
static void out_emit(struct virtio_console *con, const void *p, size_t len)
{
	size_t room;

	stat_add(&con->stats.tx_bytes, len);
	out_flush(con);
	if (!con->st.out_len && chardev_connected(con->cd)) {
		chardev_write(con->cd, p, len);
		return;
	}
	room = MIN(len, VIRTIO_CONSOLE_OUT_MAX - (size_t)con->st.out_len);
	memcpy(con->st.out_buf + con->st.out_len, p, room);
	con->st.out_len += (uint32_t)room;
	stat_add(&con->stats.tx_held, room);
	stat_add(&con->stats.tx_dropped, len - room);
}

/*
 * Caller holds con->lock. Bounded: a chain may repeat all of guest RAM
 * in up to 1024 segments, which a file: back-end would write in full. A
 * chain's output stops at VIRTIO_CONSOLE_TX_CHAIN_MAX (the rest counts
 * as dropped), and after VIRTIO_CONSOLE_TX_KICK_MAX bytes the iothread
 * gets back to its other events and comes back for the rest.
 */
static void tx_process(struct virtio_console *con)
{
	struct virtq *vq = &con->vp.vqs[VIRTIO_CONSOLE_TXQ];
	struct virtq_elem *e = con->elem;
	size_t budget = VIRTIO_CONSOLE_TX_KICK_MAX;
	bool pushed = false;

	if (!running(con))
		return;
	out_flush(con);
	while (budget && virtq_pop(vq, e) == 1) {
		size_t left = VIRTIO_CONSOLE_TX_CHAIN_MAX;

		/* Writable segments carry nothing for us: ignored. */
		for (unsigned i = 0; i < e->n_out && left; i++) {
			size_t l = MIN(e->iov[i].iov_len, left);

			out_emit(con, e->iov[i].iov_base, l);
			left -= l;
		}
		stat_add(&con->stats.tx_dropped,
			 e->out_len - (VIRTIO_CONSOLE_TX_CHAIN_MAX - left));
		budget -= MIN(budget, VIRTIO_CONSOLE_TX_CHAIN_MAX - left);
		if (virtq_push(vq, e, 0))
			break;
		pushed = true;
	}
	if (pushed)
		virtio_pci_notify_queue(&con->vp, VIRTIO_CONSOLE_TXQ);
	if (!budget)
		iothread_kick(con->tx_kick);
}

/* Caller holds con->lock. Buffered input into posted receive buffers. */
static void rx_process(struct virtio_console *con)
{
	struct virtq *vq = &con->vp.vqs[VIRTIO_CONSOLE_RXQ];
	struct virtq_elem *e = con->elem;
	bool pushed = false;

	if (!running(con))
		return;
	while (con->st.in_len) {
		size_t n;

		if (virtq_pop(vq, e) != 1)
			break;
		if (e->n_in == 0) {
			virtq_fail(vq, "virtio-console receive buffer is not "
				       "writable");
			break;
		}
		n = buf_to_iov(e->iov + e->n_out, e->n_in, 0, con->st.in_buf,
			       con->st.in_len);
		if (virtq_push(vq, e, (uint32_t)n))
			break;
		memmove(con->st.in_buf, con->st.in_buf + n, con->st.in_len - n);
		con->st.in_len -= (uint32_t)n;
		stat_add(&con->stats.rx_bytes, n);
		pushed = true;
	}
	if (pushed)
		virtio_pci_notify_queue(&con->vp, VIRTIO_CONSOLE_RXQ);
}

static void in_event(void *opaque, uint32_t events);

/*
 * On the iothread, caller holds con->lock. The input fd is watched
 * (level-triggered) only while there is room to read into, so a full
 * buffer leaves input in the back-end instead of spinning the thread.
 */
static void in_watch(struct virtio_console *con, bool want)
{
	if (con->in_fd < 0 || con->in_eof)
		want = false;
	if (want == con->in_watched)
		return;
	if (want) {
		if (iothread_add_fd(con->iot, con->in_fd, EPOLLIN, in_event,
				    con))
			return; /* retried on the next rx kick */
	} else {
		iothread_del_fd(con->iot, con->in_fd);
	}
	con->in_watched = want;
}

static void in_event(void *opaque, uint32_t events)
{
	struct virtio_console *con = opaque;
	struct virtio_console_state *st = &con->st;

	pthread_mutex_lock(&con->lock);
	if (con->paused) {
		in_watch(con, false); /* resume re-arms */
		goto out;
	}
	while (st->in_len < VIRTIO_CONSOLE_IN_MAX) {
		ssize_t n = chardev_read(con->cd, st->in_buf + st->in_len,
					 VIRTIO_CONSOLE_IN_MAX - st->in_len);

		if (n == 0)
			break;
		if (n < 0) {
			/* stdin at EOF or a broken fd: nothing more comes. */
			con->in_eof = true;
			break;
		}
		st->in_len += (uint32_t)n;
	}
	/* A socket client may just have connected: give it what we held. */
	out_flush(con);
	rx_process(con);
	in_watch(con, st->in_len < VIRTIO_CONSOLE_IN_MAX);
out:
	pthread_mutex_unlock(&con->lock);
}

static void rx_event(void *opaque, uint32_t events)
{
	struct virtio_console *con = opaque;

	pthread_mutex_lock(&con->lock);
	if (!con->paused) {
		rx_process(con);
		in_watch(con, con->st.in_len < VIRTIO_CONSOLE_IN_MAX);
	}
	pthread_mutex_unlock(&con->lock);
}

static void tx_event(void *opaque, uint32_t events)
{
	struct virtio_console *con = opaque;

	pthread_mutex_lock(&con->lock);
	if (!con->paused)
		tx_process(con);
	pthread_mutex_unlock(&con->lock);
}

static void con_queue_notify(void *opaque, unsigned q)
{
	struct virtio_console *con = opaque;

	if (q == VIRTIO_CONSOLE_RXQ)
		iothread_kick(con->rx_kick);
	else if (q == VIRTIO_CONSOLE_TXQ)
		iothread_kick(con->tx_kick);
}

static void con_reset(void *opaque)
{
	struct virtio_console *con = opaque;

	/*
	 * DRIVER_OK is already clear: wait out a running handler. Held input
	 * stays: it is the host's, and the next driver gets it.
	 */
	pthread_mutex_lock(&con->lock);
	pthread_mutex_unlock(&con->lock);
}

static void con_config_read(void *opaque, uint32_t off, void *data,
			    unsigned size)
{
	struct virtio_console *con = opaque;
	uint8_t c[VIRTIO_CONSOLE_CONFIG_SIZE] = {0};

	put_le16(c, con->cols);
	put_le16(c + 2, con->rows);
	/* max_nr_ports (4) is only valid with MULTIPORT; emerg_wr reads 0. */
	memcpy(data, c + off, size);
}

static void con_config_write(void *opaque, uint32_t off, const void *data,
			     unsigned size)
{
	struct virtio_console *con = opaque;

	/* emerg_wr: one character, usable before the queues are set up. */
	if (off != 8)
		return;
	pthread_mutex_lock(&con->lock);
	if (!con->paused)
		out_emit(con, data, 1);
	pthread_mutex_unlock(&con->lock);
}

static const struct virtio_dev_ops con_ops_template = {
	.device_id = VIRTIO_ID_CONSOLE,
	.class_code = 0x078000, /* other communication controller, as QEMU */
	.num_queues = 2,
	.config_size = VIRTIO_CONSOLE_CONFIG_SIZE,
	.config_read = con_config_read,
	.config_write = con_config_write,
	.queue_notify = con_queue_notify,
	.reset = con_reset,
	.snap = &virtio_console_snap,
	.snap_state = con_snap_state,
};

int virtio_console_init(struct virtio_console *con,
			const struct virtio_console_opts *o,
			const struct guest_mem *mem, struct iothread *iot,
			const struct msi_sink *msi)
{
	uint16_t qs = o->queue_size ? o->queue_size : 64;
	uint64_t features = 1ULL << VIRTIO_CONSOLE_F_EMERG_WRITE;
	int ret;

	memset(con, 0, sizeof(*con));
	con->cd = o->cd;
	con->in_fd = -1;
	if (!o->cd || (qs & (qs - 1)) || qs < 2 || qs > VIRTQ_MAX_SIZE) {
		ret = -EINVAL;
		goto err_cd;
	}
	con->in_fd = chardev_input_fd(o->cd);
	if (o->cols && o->rows) {
		con->cols = o->cols;
		con->rows = o->rows;
		features |= 1ULL << VIRTIO_CONSOLE_F_SIZE;
	}
	con->elem = malloc(sizeof(*con->elem));
	if (!con->elem) {
		ret = -ENOMEM;
		goto err_cd;
	}
	ret = -pthread_mutex_init(&con->lock, NULL);
	if (ret)
		goto err_elem;
	if (!iot) {
		ret = iothread_create(&iot, "virtio-console");
		if (ret)
			goto err_lock;
		con->own_iot = true;
	}
	con->iot = iot;
	con->ops = con_ops_template;
	con->ops.queue_max_size = qs;
	ret = virtio_pci_init(&con->vp, "virtio-console", mem, &con->ops, con,
			      features, msi);
	if (ret)
		goto err_iot;
	ret = iothread_kick_new(iot, rx_event, con, &con->rx_kick);
	if (ret)
		goto err_vp;
	ret = iothread_kick_new(iot, tx_event, con, &con->tx_kick);
	if (ret)
		goto err_rxk;
	con->paused = o->start_paused;
	if (con->in_fd >= 0 && !con->paused) {
		ret = iothread_add_fd(iot, con->in_fd, EPOLLIN, in_event, con);
		if (ret)
			goto err_txk;
		con->in_watched = true;
	}
	return 0;
err_txk:
	iothread_kick_free(con->tx_kick);
err_rxk:
	iothread_kick_free(con->rx_kick);
err_vp:
	virtio_pci_destroy(&con->vp);
err_iot:
	if (con->own_iot)
		iothread_destroy(con->iot);
err_lock:
	pthread_mutex_destroy(&con->lock);
err_elem:
	free(con->elem);
	con->elem = NULL;
err_cd:
	chardev_close(o->cd);
	con->cd = NULL;
	return ret;
}

void virtio_console_destroy(struct virtio_console *con)
{
	/* Parked, the worker cannot change in_watched under us. */
	iothread_pause(con->iot);
	if (con->in_watched)
		iothread_del_fd(con->iot, con->in_fd);
	con->in_watched = false;
	iothread_kick_free(con->tx_kick);
	iothread_kick_free(con->rx_kick);
	iothread_resume(con->iot);
	if (con->own_iot)
		iothread_destroy(con->iot);
	virtio_pci_destroy(&con->vp);
	pthread_mutex_destroy(&con->lock);
	free(con->elem);
	con->elem = NULL;
	chardev_close(con->cd);
	con->cd = NULL;
}

void virtio_console_get_stats(struct virtio_console *con,
			      struct virtio_console_stats *s)
{
	s->rx_bytes = __atomic_load_n(&con->stats.rx_bytes, __ATOMIC_RELAXED);
	s->tx_bytes = __atomic_load_n(&con->stats.tx_bytes, __ATOMIC_RELAXED);
	s->tx_held = __atomic_load_n(&con->stats.tx_held, __ATOMIC_RELAXED);
	s->tx_dropped =
		__atomic_load_n(&con->stats.tx_dropped, __ATOMIC_RELAXED);
}

int virtio_console_kick_fd(struct virtio_console *con, unsigned q)
{
	if (q == VIRTIO_CONSOLE_RXQ)
		return iothread_kick_fd(con->rx_kick);
	if (q == VIRTIO_CONSOLE_TXQ)
		return iothread_kick_fd(con->tx_kick);
	return -EINVAL;
}

void virtio_console_pause(struct virtio_console *con)
{
	/* A handler in flight finishes first: it holds the lock. */
	pthread_mutex_lock(&con->lock);
	con->paused = true;
	pthread_mutex_unlock(&con->lock);
}

void virtio_console_resume(struct virtio_console *con)
{
	pthread_mutex_lock(&con->lock);
	con->paused = false;
	pthread_mutex_unlock(&con->lock);
	/* Kicks that came while paused were ignored; rx also re-arms input. */
	iothread_kick(con->rx_kick);
	iothread_kick(con->tx_kick);
}

/* ---- the device's life cycle (dev_ops.h) ---- */

/* "unix=P" / "file=P" (the -s spelling) -> chardev's "socket:P" / "file:P". */
static int console_backend(const char *conf, char *spec, size_t len)
{
	const char *comma = strchr(conf, ',');
	size_t bl = comma ? (size_t)(comma - conf) : strlen(conf);
	const char *pfx = "";
	size_t skip = 0;

	if (bl >= 5 && !strncmp(conf, "unix=", 5)) {
		pfx = "socket:";
		skip = 5;
	} else if (bl >= 5 && !strncmp(conf, "file=", 5)) {
		pfx = "file:";
		skip = 5;
	}
	if (bl == 0 || strlen(pfx) + bl - skip >= len)
		return -EINVAL;
	snprintf(spec, len, "%s%.*s", pfx, (int)(bl - skip), conf + skip);
	return 0;
}

/* "BACKEND[,cols=N,rows=N]" -> the chardev spec in @spec and @o's size. */
static int con_parse(const char *conf, const struct dev_env *env,
		     struct virtio_console_opts *o, char *spec, size_t len,
		     struct err *err)
{
	unsigned long cols = 0, rows = 0;
	char num[16];

	if (console_backend(conf, spec, len))
		return err_set(err, -EINVAL,
			       "-s %u,virtio-console: expected a back-end "
			       "first (stdio, null, unix=PATH or file=PATH)",
			       env->slot);
	if (config_opt_get(conf, "cols", num, sizeof(num)))
		cols = strtoul(num, NULL, 10);
	if (config_opt_get(conf, "rows", num, sizeof(num)))
		rows = strtoul(num, NULL, 10);
	if ((cols || rows) &&
	    (!cols || !rows || cols > 0xffff || rows > 0xffff))
		return err_set(err, -EINVAL,
			       "-s %u,virtio-console: cols= and rows= go "
			       "together, 1-65535 each",
			       env->slot);
	o->cols = (uint16_t)cols;
	o->rows = (uint16_t)rows;
	return 0;
}

static int con_create(const char *conf, const struct dev_env *env,
		      struct dev_instance *out, struct err *err)
{
	/* Input read before the snapshot's buffers load would be lost. */
	struct virtio_console_opts o = {.start_paused = env->start_paused};
	char spec[600];
	struct virtio_console *con;
	int ret;

	ret = con_parse(conf, env, &o, spec, sizeof(spec), err);
	if (ret)
		return ret;
	ret = chardev_open(&o.cd, spec,
			   env->from_snapshot ? CHARDEV_NO_CREATE : 0, err);
	if (ret) {
		err_prefix(err, "-s %u,virtio-console: ", env->slot);
		return ret;
	}
	con = calloc(1, sizeof(*con));
	if (!con) {
		chardev_close(o.cd);
		return -ENOMEM;
	}
	/* The device owns the chardev from here, failure included. */
	ret = virtio_console_init(con, &o, env->mem, env->io, env->msi);
	if (ret) {
		err_set(err, ret, "-s %u,virtio-console: %s", env->slot,
			strerror(-ret));
		free(con);
		return ret;
	}
	out->dev = con;
	out->vp = &con->vp;
	return 0;
}

static void con_destroy(void *dev)
{
	virtio_console_destroy(dev);
	free(dev);
}

/* Output is written (or held, and saved) within its handler. */
static int con_pause(void *dev)
{
	virtio_console_pause(dev);
	return 0;
}

static void con_resume(void *dev)
{
	virtio_console_resume(dev);
}

static unsigned con_stats(void *dev, struct dev_stat *out)
{
	struct virtio_console *con = dev;
	struct virtio_console_stats s;
	struct chardev_stats cs;
	unsigned n = 0;

	virtio_console_get_stats(con, &s);
	chardev_get_stats(con->cd, &cs);
	out[n++] = (struct dev_stat){"rx_bytes", s.rx_bytes};
	out[n++] = (struct dev_stat){"tx_bytes", s.tx_bytes};
	out[n++] = (struct dev_stat){"tx_held", s.tx_held};
	/* No room to hold it, or the back-end's own. */
	out[n++] = (struct dev_stat){"dropped", s.tx_dropped + cs.dropped};
	out[n++] = (struct dev_stat){"clients", cs.clients};
	return n;
}

static int con_kick_fd(void *dev, unsigned q)
{
	return virtio_console_kick_fd(dev, q);
}

static int con_snap_foreach(void *dev, uint32_t instance, virtio_snap_fn fn,
			    void *ctx)
{
	return virtio_pci_snap_foreach(&((struct virtio_console *)dev)->vp,
				       instance, fn, ctx);
}

static int con_post_load_dev(void *dev, struct err *err)
{
	return virtio_pci_post_load(&((struct virtio_console *)dev)->vp, err);
}

/* The back-end's file or socket; stdio and null name nothing. */
static void con_host_binding(const char *conf, struct dev_binding *b)
{
	char first[DEV_BINDING_MAX];
	const char *kind, *target;

	config_opt_first(conf, first, sizeof(first));
	config_console_binding(first, &kind, &target);
	snprintf(b->kind, sizeof(b->kind), "%s", kind);
	snprintf(b->target, sizeof(b->target), "%s", target);
}

const struct dev_ops virtio_console_dev_ops = {
	.name = "virtio-console",
	.help = "virtio-console,BACKEND[,cols=N,rows=N]: one console port; "
		"BACKEND is stdio, null, unix=PATH (listening socket) or "
		"file=PATH",
	.create = con_create,
	.destroy = con_destroy,
	.pause = con_pause,
	.resume = con_resume,
	.stats = con_stats,
	.kick_fd = con_kick_fd,
	.snap_foreach = con_snap_foreach,
	.post_load = con_post_load_dev,
	.host_binding = con_host_binding,
};
