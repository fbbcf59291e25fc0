/* SPDX-License-Identifier: BSD-2-Clause */
#include "virtio_net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "log.h"

static const struct snap_field virtio_net_fields[] = {
	SNAP_U8_ARRAY(struct virtio_net_state, mac, 6, 1),
};

const struct snap_desc virtio_net_snap = SNAP_DESC(
	"virtio_net", 1, 1, struct virtio_net_state, virtio_net_fields);

static void *net_snap_state(void *opaque)
{
	return &((struct virtio_net *)opaque)->st;
}

static void stat_add(uint64_t *c, uint64_t v)
{
	__atomic_add_fetch(c, v, __ATOMIC_RELAXED);
}

static bool running(struct virtio_net *net)
{
	uint8_t s = virtio_pci_status(&net->vp);

	return !net->paused && (s & VIRTIO_STATUS_DRIVER_OK) &&
	       !(s & VIRTIO_STATUS_NEEDS_RESET);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* One popped chain (header + frame, what the TAP takes) to the TAP. */
static void tx_send(struct virtio_net *net, const struct virtq_elem *e)
{
	ssize_t r;

	if (e->n_out == 0 || e->out_len <= VIRTIO_NET_HDR_LEN) {
		stat_add(&net->stats.tx_errors, 1);
		return;
	}
	do {
		r = writev(net->fd, e->iov, (int)e->n_out);
	} while (r < 0 && errno == EINTR);
	if (r < 0) {
		/* Full or gone: drop, like a congested NIC. */
		stat_add(&net->stats.tx_errors, 1);
		return;
	}
	stat_add(&net->stats.tx_packets, 1);
	stat_add(&net->stats.tx_bytes, e->out_len - VIRTIO_NET_HDR_LEN);
}

/*
 * Caller holds net->lock. Sends what the ring holds, at most @budget
 * frames, then one interrupt (if the driver wants it) for all of them.
 * Frames sent, or -EIO once the queue is broken or gone.
 */
static int tx_drain(struct virtio_net *net, unsigned budget)
{
	struct virtq *vq = &net->vp.vqs[VIRTIO_NET_TXQ];
	struct virtq_elem *e = net->elem;
	int n = 0, p = 0;

	while ((unsigned)n < budget && (p = virtq_pop(vq, e)) == 1) {
		tx_send(net, e);
		if (virtq_push(vq, e, 0)) {
			p = -EIO;
			break;
		}
		n++;
	}
	if (n)
		virtio_pci_notify_queue(&net->vp, VIRTIO_NET_TXQ);
	return p < 0 ? -EIO : n;
}

/*
 * Watch the ring for up to poll_ns: a driver that sends a frame as soon
 * as the last one came back (one frame per kick) adds it within a few
 * microseconds, and finding it here saves its kick (a trapped MMIO
 * write) and this thread's sleep and wake-up. Only while frames come
 * that densely: when the kick that started this run came more than
 * poll_ns after the last run went to sleep, polling would have been in
 * vain and is skipped (sparse traffic, or a guest not running: a loaded
 * host). True if a frame came.
 */
static bool tx_poll(struct virtio_net *net)
{
	struct virtq *vq = &net->vp.vqs[VIRTIO_NET_TXQ];
	uint64_t end;

	if (!net->tx_poll_on)
		return false;
	end = now_ns() + net->poll_ns;
	do {
		for (unsigned i = 0; i < 32; i++) {
			if (virtq_has_work(vq))
				return true;
			__builtin_ia32_pause();
		}
	} while (running(net) && now_ns() < end);
	return false;
}

/*
 * Caller holds net->lock. While frames keep coming, the driver need not
 * kick (VIRTQ_USED_F_NO_NOTIFY, or avail_event left behind with
 * EVENT_IDX): kicks come back on before the handler returns, and the
 * ring is looked at once more after that, so a frame added meanwhile is
 * not stranded. After TX_BURST frames the handler yields to the loop
 * (the TAP's receive side shares the thread) and kicks itself.
 */
#define TX_BURST 256
static void tx_process(struct virtio_net *net)
{
	struct virtq *vq = &net->vp.vqs[VIRTIO_NET_TXQ];
	unsigned left = TX_BURST;

	if (!running(net))
		return;
	if (net->poll_ns) {
		uint64_t t = now_ns();

		net->tx_poll_on = t - net->tx_slept_ns <= net->poll_ns;
	}
	virtq_set_notify(vq, false);
	for (;;) {
		int n = tx_drain(net, left);

		if (n < 0)
			break;
		left -= (unsigned)n;
		if (!left) {
			if (net->poll_ns)
				net->tx_slept_ns = now_ns();
			virtq_set_notify(vq, true);
			stat_add(&net->stats.tx_self_kicks, 1);
			iothread_kick(net->tx_kick);
			return;
		}
		if (n)
			continue;
		if (tx_poll(net)) {
			stat_add(&net->stats.tx_polled, 1);
			continue;
		}
		virtq_set_notify(vq, true);
		if (!virtq_has_work(vq) || !running(net)) {
			if (net->poll_ns)
				net->tx_slept_ns = now_ns();
			return;
		}
		virtq_set_notify(vq, false);
	}
	virtq_set_notify(vq, true); /* broken: the guest must reset */
}

/*
 * Caller holds net->lock. Moves frames from the TAP into rx buffers until
 * either runs out. The TAP is watched edge-triggered, so frames left
 * behind for want of buffers are picked up on the driver's next rx kick;
 * kicks are asked for only then (as QEMU does), not while buffers wait.
 * Not state either: a restore's first kick (virtio_pci_post_load) runs
 * this again, which sets the ring's flag or avail_event to match.
 */
static void rx_process(struct virtio_net *net)
{
	struct virtq *vq = &net->vp.vqs[VIRTIO_NET_RXQ];
	struct virtq_elem *e = net->elem;
	bool pushed = false;

	if (!running(net))
		return;
	for (;;) {
		ssize_t r;
		int p = virtq_pop(vq, e);

		if (p == 0 && vq->notify_off) {
			/* Out of buffers: a kick must say when more come. */
			virtq_set_notify(vq, true);
			if (virtq_has_work(vq))
				continue;
		}
		if (p != 1)
			break;
		if (e->n_in == 0 || e->in_len < VIRTIO_NET_HDR_LEN) {
			virtq_fail(vq, "virtio-net rx buffer too small");
			break;
		}
		do {
			r = readv(net->fd, e->iov + e->n_out, (int)e->n_in);
		} while (r < 0 && errno == EINTR);
		if (r <= 0) {
			virtq_unpop(vq); /* nothing to read: keep buffer */
			/*
			 * Buffers are left, so the driver's kicks for more
			 * would only wake this thread for nothing: the TAP's
			 * own event says when frames come.
			 */
			virtq_set_notify(vq, false);
			break;
		}
		if (virtq_push(vq, e, (uint32_t)r))
			break;
		stat_add(&net->stats.rx_packets, 1);
		stat_add(&net->stats.rx_bytes,
			 (uint64_t)r > VIRTIO_NET_HDR_LEN
				 ? (uint64_t)r - VIRTIO_NET_HDR_LEN
				 : 0);
		pushed = true;
	}
	if (pushed)
		virtio_pci_notify_queue(&net->vp, VIRTIO_NET_RXQ);
}

static void rx_event(void *opaque, uint32_t events)
{
	struct virtio_net *net = opaque;

	pthread_mutex_lock(&net->lock);
	rx_process(net);
	pthread_mutex_unlock(&net->lock);
}

static void tx_event(void *opaque, uint32_t events)
{
	struct virtio_net *net = opaque;

	pthread_mutex_lock(&net->lock);
	tx_process(net);
	pthread_mutex_unlock(&net->lock);
}

/*
 * tx=vcpu: the kick's own vCPU thread sends what the ring holds (no
 * ioeventfd for the queue, so the trapped write comes here). No thread
 * hand-off, sleep or wake-up per kick; a burst too long for one go, or a
 * kick while the iothread holds the queue, is left to the iothread.
 */
static bool tx_inline(struct virtio_net *net)
{
	int n;

	if (pthread_mutex_trylock(&net->lock))
		return false;
	n = running(net) ? tx_drain(net, TX_BURST) : 0;
	pthread_mutex_unlock(&net->lock);
	if (n == TX_BURST) /* more may wait: the iothread goes on */
		return false;
	stat_add(&net->stats.tx_inline, 1);
	return true;
}

static void net_queue_notify(void *opaque, unsigned q)
{
	struct virtio_net *net = opaque;

	if (q == VIRTIO_NET_TXQ && net->tx_vcpu && tx_inline(net))
		return;
	if (q == VIRTIO_NET_RXQ)
		iothread_kick(net->rx_kick);
	else if (q == VIRTIO_NET_TXQ)
		iothread_kick(net->tx_kick);
}

static void net_reset(void *opaque)
{
	struct virtio_net *net = opaque;

	/* DRIVER_OK is already clear: wait out a running handler. */
	pthread_mutex_lock(&net->lock);
	pthread_mutex_unlock(&net->lock);
}

static void net_config_read(void *opaque, uint32_t off, void *data,
			    unsigned size)
{
	struct virtio_net *net = opaque;
	uint8_t c[VIRTIO_NET_CONFIG_SIZE] = {0};

	memcpy(c, net->st.mac, 6);
	put_le16(c + 6, VIRTIO_NET_S_LINK_UP);
	memcpy(data, c + off, size);
}

static const struct virtio_dev_ops net_ops_template = {
	.device_id = VIRTIO_ID_NET,
	.class_code = 0x020000, /* ethernet controller */
	.num_queues = 2,
	.config_size = VIRTIO_NET_CONFIG_SIZE,
	.config_read = net_config_read,
	.queue_notify = net_queue_notify,
	.reset = net_reset,
	.snap = &virtio_net_snap,
	.snap_state = net_snap_state,
};

static int tap_open(struct virtio_net *net, const char *ifname, struct err *err)
{
	struct ifreq ifr = {0};
	int hdr = VIRTIO_NET_HDR_LEN, fd, ret;

	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return err_sys(err, "cannot open /dev/net/tun");
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ifname)
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		ret = err_sys(err, "cannot attach TAP %s",
			      ifname ? ifname : "(new)");
		goto err;
	}
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
		ret = err_sys(err, "TAP %s: TUNSETVNETHDRSZ", ifr.ifr_name);
		goto err;
	}
	/* No offloads negotiated: the TAP must hand us plain frames. */
	if (ioctl(fd, TUNSETOFFLOAD, 0) < 0)
		log_warn("virtio-net: TUNSETOFFLOAD: %s", strerror(errno));
	snprintf(net->ifname, sizeof(net->ifname), "%s", ifr.ifr_name);
	net->fd = fd;
	net->own_fd = true;
	return 0;
err:
	close(fd);
	return ret;
}

/* The MAC -s gave (kept to override a restored one), or a random one. */
static int net_set_mac(struct virtio_net *net, const uint8_t *mac)
{
	if (mac) {
		memcpy(net->st.mac, mac, 6);
		memcpy(net->mac_conf, mac, 6);
		net->mac_given = true;
		return 0;
	}
	if (getrandom(net->st.mac, 6, 0) != 6)
		return -EIO;
	/* Unicast, locally administered. */
	net->st.mac[0] = (uint8_t)((net->st.mac[0] & 0xfc) | 0x02);
	return 0;
}

int virtio_net_init(struct virtio_net *net, const struct virtio_net_opts *o,
		    const struct guest_mem *mem, struct iothread *iot,
		    const struct msi_sink *msi, struct err *err)
{
	uint16_t qs = o->queue_size ? o->queue_size : 256;
	int ret;

	memset(net, 0, sizeof(*net));
	net->fd = -1;
	net->paused = o->start_paused;
	if ((qs & (qs - 1)) || qs < 2 || qs > VIRTQ_MAX_SIZE ||
	    o->poll_us > VIRTIO_NET_POLL_US_MAX)
		return -EINVAL;
	net->tx_vcpu = o->tx_vcpu;
	net->poll_ns = 1000ULL * (uint64_t)(o->poll_us < 0 ? VIRTIO_NET_POLL_US
							   : o->poll_us);
	ret = net_set_mac(net, o->mac);
	if (ret)
		return ret;
	if (o->tap_fd >= 0) {
		net->fd = o->tap_fd;
	} else {
		ret = tap_open(net, o->ifname, err);
		if (ret)
			return ret;
	}
	net->elem = malloc(sizeof(*net->elem));
	if (!net->elem) {
		ret = -ENOMEM;
		goto err_fd;
	}
	ret = -pthread_mutex_init(&net->lock, NULL);
	if (ret)
		goto err_elem;
	if (!iot) {
		ret = iothread_create(&iot, "virtio-net");
		if (ret)
			goto err_lock;
		net->own_iot = true;
	}
	net->iot = iot;
	net->ops = net_ops_template;
	net->ops.queue_max_size = qs;
	ret = virtio_pci_init(&net->vp, "virtio-net", mem, &net->ops, net,
			      (1ULL << VIRTIO_NET_F_MAC) |
				      (1ULL << VIRTIO_NET_F_STATUS),
			      msi);
	if (ret)
		goto err_iot;
	ret = iothread_kick_new(iot, rx_event, net, &net->rx_kick);
	if (ret)
		goto err_vp;
	ret = iothread_kick_new(iot, tx_event, net, &net->tx_kick);
	if (ret)
		goto err_rxk;
	ret = iothread_add_fd(iot, net->fd, EPOLLIN | EPOLLET, rx_event, net);
	if (ret)
		goto err_txk;
	net->fd_registered = true;
	return 0;
err_txk:
	iothread_kick_free(net->tx_kick);
err_rxk:
	iothread_kick_free(net->rx_kick);
err_vp:
	virtio_pci_destroy(&net->vp);
err_iot:
	if (net->own_iot)
		iothread_destroy(net->iot);
err_lock:
	pthread_mutex_destroy(&net->lock);
err_elem:
	free(net->elem);
err_fd:
	if (net->own_fd)
		close(net->fd);
	net->fd = -1;
	return ret;
}

void virtio_net_destroy(struct virtio_net *net)
{
	if (net->fd_registered)
		iothread_del_fd(net->iot, net->fd);
	iothread_kick_free(net->tx_kick);
	iothread_kick_free(net->rx_kick);
	if (net->own_iot)
		iothread_destroy(net->iot);
	virtio_pci_destroy(&net->vp);
	pthread_mutex_destroy(&net->lock);
	free(net->elem);
	if (net->own_fd && net->fd >= 0)
		close(net->fd);
	net->fd = -1;
}

void virtio_net_get_stats(struct virtio_net *net, struct virtio_net_stats *s)
{
	s->rx_packets =
		__atomic_load_n(&net->stats.rx_packets, __ATOMIC_RELAXED);
	s->rx_bytes = __atomic_load_n(&net->stats.rx_bytes, __ATOMIC_RELAXED);
	s->tx_packets =
		__atomic_load_n(&net->stats.tx_packets, __ATOMIC_RELAXED);
	s->tx_bytes = __atomic_load_n(&net->stats.tx_bytes, __ATOMIC_RELAXED);
	s->tx_errors = __atomic_load_n(&net->stats.tx_errors, __ATOMIC_RELAXED);
	s->tx_polled = __atomic_load_n(&net->stats.tx_polled, __ATOMIC_RELAXED);
	s->tx_self_kicks =
		__atomic_load_n(&net->stats.tx_self_kicks, __ATOMIC_RELAXED);
	/* Guest kicks only: the device's own wake-ups are not the guest's. */
	s->tx_inline = __atomic_load_n(&net->stats.tx_inline, __ATOMIC_RELAXED);
	s->tx_kicks = iothread_kick_count(net->tx_kick) - s->tx_self_kicks +
		      s->tx_inline;
	s->rx_kicks = iothread_kick_count(net->rx_kick);
}

void virtio_net_pause(struct virtio_net *net)
{
	/* A handler in flight finishes first: it holds the lock. */
	pthread_mutex_lock(&net->lock);
	net->paused = true;
	pthread_mutex_unlock(&net->lock);
}

void virtio_net_resume(struct virtio_net *net)
{
	pthread_mutex_lock(&net->lock);
	net->paused = false;
	pthread_mutex_unlock(&net->lock);
	/*
	 * Kicks that came while paused were dropped, and the TAP is
	 * edge-triggered: frames that arrived meanwhile wait for this.
	 */
	iothread_kick(net->rx_kick);
	stat_add(&net->stats.tx_self_kicks, 1);
	iothread_kick(net->tx_kick);
}

int virtio_net_kick_fd(struct virtio_net *net, unsigned q)
{
	if (q == VIRTIO_NET_RXQ)
		return iothread_kick_fd(net->rx_kick);
	if (q == VIRTIO_NET_TXQ && !net->tx_vcpu)
		return iothread_kick_fd(net->tx_kick);
	return -EINVAL;
}

/* ---- the device's life cycle (dev_ops.h) ---- */

/* "52:54:00:12:34:56" -> 6 bytes; a unicast address only. */
static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &tail) != 6 ||
	    strlen(s) != 17)
		return -EINVAL;
	for (unsigned i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return (mac[0] & 1) ? -EINVAL : 0; /* multicast bit */
}

/* The first word is the TAP name unless it is an option. */
static int net_parse_ifname(const char *conf, const struct dev_env *env,
			    char ifname[IFNAMSIZ], const char **out,
			    struct err *err)
{
	const char *comma = strchr(conf, ',');
	size_t nl = comma ? (size_t)(comma - conf) : strlen(conf);

	if (!nl || memchr(conf, '=', nl))
		return 0;
	if (nl >= IFNAMSIZ)
		return err_set(err, -EINVAL,
			       "-s %u,virtio-net: TAP name longer than %d",
			       env->slot, IFNAMSIZ - 1);
	memcpy(ifname, conf, nl);
	ifname[nl] = 0;
	*out = ifname;
	/*
	 * TUNSETIFF would create a TAP that does not exist: not one a
	 * snapshot names (docs/security.md). A nameless one is new anyway
	 * and takes over nothing.
	 */
	if (env->from_snapshot && !if_nametoindex(ifname))
		return err_set(err, -ENODEV,
			       "-s %u,virtio-net: TAP %s (named by the "
			       "snapshot) does not exist; khyve creates no "
			       "interface a snapshot names: create it, or give "
			       "-s %u,virtio-net,TAP",
			       env->slot, ifname, env->slot);
	return 0;
}

static int net_create(const char *conf, const struct dev_env *env,
		      struct dev_instance *out, struct err *err)
{
	struct virtio_net_opts o = {
		.tap_fd = -1, .start_paused = env->start_paused, .poll_us = -1};
	char ifname[IFNAMSIZ], macs[32], poll[16], txm[16];
	struct virtio_net *net;
	uint8_t mac[6];
	int ret;

	ret = net_parse_ifname(conf, env, ifname, &o.ifname, err);
	if (ret)
		return ret;
	if (config_opt_get(conf, "mac", macs, sizeof(macs))) {
		if (parse_mac(macs, mac))
			return err_set(err, -EINVAL,
				       "-s %u,virtio-net: bad MAC \"%s\" (want "
				       "a unicast xx:xx:xx:xx:xx:xx)",
				       env->slot, macs);
		o.mac = mac;
	}
	if (config_opt_get(conf, "tx", txm, sizeof(txm))) {
		if (strcmp(txm, "vcpu") && strcmp(txm, "iothread"))
			return err_set(err, -EINVAL,
				       "-s %u,virtio-net: tx=%s (want vcpu or "
				       "iothread)",
				       env->slot, txm);
		o.tx_vcpu = !strcmp(txm, "vcpu");
	}
	if (config_opt_get(conf, "poll_us", poll, sizeof(poll))) {
		char *end;
		long v = strtol(poll, &end, 10);

		if (!poll[0] || *end || v < 0 || v > VIRTIO_NET_POLL_US_MAX)
			return err_set(err, -EINVAL,
				       "-s %u,virtio-net: poll_us=\"%s\" (want "
				       "0..%d microseconds)",
				       env->slot, poll, VIRTIO_NET_POLL_US_MAX);
		o.poll_us = (int)v;
	}
	net = calloc(1, sizeof(*net));
	if (!net)
		return -ENOMEM;
	err_clear(err);
	ret = virtio_net_init(net, &o, env->mem, env->io, env->msi, err);
	if (ret) {
		/* The TAP's own message names it; else name it here. */
		if (err && err->msg[0])
			err_prefix(err, "-s %u,virtio-net: ", env->slot);
		else
			err_set(err, ret, "-s %u,virtio-net,%s: TAP: %s",
				env->slot, o.ifname ? o.ifname : "(new)",
				strerror(-ret));
		free(net);
		return ret;
	}
	out->dev = net;
	out->vp = &net->vp;
	return 0;
}

static void net_destroy(void *dev)
{
	virtio_net_destroy(dev);
	free(dev);
}

/* Nothing to flush: a frame is sent or dropped within its handler. */
static int net_pause(void *dev)
{
	virtio_net_pause(dev);
	return 0;
}

static void net_resume(void *dev)
{
	virtio_net_resume(dev);
}

static unsigned net_stats(void *dev, struct dev_stat *out)
{
	struct virtio_net_stats s;
	unsigned n = 0;

	virtio_net_get_stats(dev, &s);
	out[n++] = (struct dev_stat){"rx_packets", s.rx_packets};
	out[n++] = (struct dev_stat){"rx_bytes", s.rx_bytes};
	out[n++] = (struct dev_stat){"tx_packets", s.tx_packets};
	out[n++] = (struct dev_stat){"tx_bytes", s.tx_bytes};
	out[n++] = (struct dev_stat){"tx_errors", s.tx_errors};
	out[n++] = (struct dev_stat){"tx_kicks", s.tx_kicks};
	out[n++] = (struct dev_stat){"tx_polled", s.tx_polled};
	out[n++] = (struct dev_stat){"tx_inline", s.tx_inline};
	out[n++] = (struct dev_stat){"rx_kicks", s.rx_kicks};
	return n;
}

static int net_kick_fd(void *dev, unsigned q)
{
	return virtio_net_kick_fd(dev, q);
}

static int net_snap_foreach(void *dev, uint32_t instance, virtio_snap_fn fn,
			    void *ctx)
{
	return virtio_pci_snap_foreach(&((struct virtio_net *)dev)->vp,
				       instance, fn, ctx);
}

/*
 * A clone given its own mac= reports that one from now on. The guest's
 * driver read the saved one at probe (Linux never re-reads it), so it is
 * the guest's to pick the new one up: docs/architecture.md, "Clones".
 */
static int net_post_load(void *dev, struct err *err)
{
	struct virtio_net *net = dev;

	if (net->mac_given && memcmp(net->st.mac, net->mac_conf, 6)) {
		log_info("virtio-net: MAC %02x:%02x:%02x:%02x:%02x:%02x "
			 "replaces the snapshot's",
			 net->mac_conf[0], net->mac_conf[1], net->mac_conf[2],
			 net->mac_conf[3], net->mac_conf[4], net->mac_conf[5]);
		memcpy(net->st.mac, net->mac_conf, 6);
	}
	return virtio_pci_post_load(&net->vp, err);
}

/* The TAP by name; none (or an option first): a new TAP, nothing named. */
static void net_host_binding(const char *conf, struct dev_binding *b)
{
	char first[DEV_BINDING_MAX];

	config_opt_first(conf, first, sizeof(first));
	snprintf(b->kind, sizeof(b->kind), "tap");
	snprintf(b->target, sizeof(b->target), "%s",
		 strchr(first, '=') ? "" : first);
}

const struct dev_ops virtio_net_dev_ops = {
	.name = "virtio-net",
	.help = "virtio-net,TAPNAME[,mac=xx:xx:xx:xx:xx:xx][,poll_us=N]: TAP "
		"device (created if it does not exist)",
	.create = net_create,
	.destroy = net_destroy,
	.pause = net_pause,
	.resume = net_resume,
	.stats = net_stats,
	.kick_fd = net_kick_fd,
	.snap_foreach = net_snap_foreach,
	.post_load = net_post_load,
	.host_binding = net_host_binding,
};
