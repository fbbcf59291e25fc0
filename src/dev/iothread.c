/* SPDX-License-Identifier: BSD-2-Clause */
#include "iothread.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "confine_seccomp.h"
#include "log.h"

struct io_handler {
	int fd;
	iothread_fn fn;
	void *opaque;
	bool dead;
	struct io_handler *next;
};

struct iothread {
	pthread_t tid;
	int epfd, ctl_fd;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned pause_req;
	bool parked, stop;
	struct io_handler *handlers; /* live */
	struct io_handler *zombies;  /* removed from inside a handler */
	struct io_handler ctl;	     /* wakes the loop for pause/stop */
	char name[16];
};

struct iothread_kick {
	struct iothread *t;
	int fd;
	iothread_fn fn;
	void *opaque;
	uint64_t count; /* kicks received (eventfd values summed) */
};

static void *iothread_main(void *arg)
{
	struct iothread *t = arg;
	struct epoll_event ev[32];

	pthread_setname_np(pthread_self(), t->name);
	confine_seccomp_enter(CONFINE_ROLE_IOTHREAD);
	for (;;) {
		struct io_handler *z;
		int n;

		/* Park only between batches: events of a batch point at
		 * handlers that must stay alive until it is done. */
		pthread_mutex_lock(&t->lock);
		while (t->pause_req && !t->stop) {
			t->parked = true;
			pthread_cond_broadcast(&t->cond);
			pthread_cond_wait(&t->cond, &t->lock);
		}
		t->parked = false;
		if (t->stop) {
			/* iothread_destroy() frees what is left. */
			pthread_mutex_unlock(&t->lock);
			break;
		}
		z = t->zombies;
		t->zombies = NULL;
		pthread_mutex_unlock(&t->lock);
		while (z) {
			struct io_handler *nx = z->next;

			free(z);
			z = nx;
		}

		n = epoll_wait(t->epfd, ev, (int)(sizeof(ev) / sizeof(ev[0])),
			       -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("iothread %s: epoll_wait: %s", t->name,
				strerror(errno));
			/* Let pausers see the loop is gone. */
			pthread_mutex_lock(&t->lock);
			t->stop = true;
			pthread_cond_broadcast(&t->cond);
			pthread_mutex_unlock(&t->lock);
			break;
		}
		for (int i = 0; i < n; i++) {
			struct io_handler *h = ev[i].data.ptr;

			if (h == &t->ctl) {
				uint64_t v;

				if (read(t->ctl_fd, &v, sizeof(v)) < 0 &&
				    errno != EAGAIN)
					log_warn("iothread %s: ctl read: %s",
						 t->name, strerror(errno));
				continue;
			}
			if (!h->dead)
				h->fn(h->opaque, ev[i].events);
		}
	}
	return NULL;
}

static void ctl_wake(struct iothread *t)
{
	uint64_t one = 1;

	if (write(t->ctl_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("iothread %s: wake: %s", t->name, strerror(errno));
}

int iothread_create(struct iothread **out, const char *name)
{
	struct iothread *t = calloc(1, sizeof(*t));
	struct epoll_event ev = {.events = EPOLLIN};
	int ret;

	if (!t)
		return -ENOMEM;
	snprintf(t->name, sizeof(t->name), "%s", name ? name : "iothread");
	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (t->epfd < 0) {
		ret = -errno;
		goto err_free;
	}
	t->ctl_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->ctl_fd < 0) {
		ret = -errno;
		goto err_ep;
	}
	ev.data.ptr = &t->ctl;
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->ctl_fd, &ev) < 0) {
		ret = -errno;
		goto err_ctl;
	}
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	ret = -pthread_create(&t->tid, NULL, iothread_main, t);
	if (ret)
		goto err_sync;
	*out = t;
	return 0;
err_sync:
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
err_ctl:
	close(t->ctl_fd);
err_ep:
	close(t->epfd);
err_free:
	free(t);
	return ret;
}

static void free_list(struct io_handler *h)
{
	while (h) {
		struct io_handler *nx = h->next;

		free(h);
		h = nx;
	}
}

void iothread_destroy(struct iothread *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	ctl_wake(t);
	pthread_join(t->tid, NULL);
	free_list(t->handlers);
	free_list(t->zombies);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	close(t->ctl_fd);
	close(t->epfd);
	free(t);
}

int iothread_is_current(const struct iothread *t)
{
	return pthread_equal(pthread_self(), t->tid);
}

int iothread_pause(struct iothread *t)
{
	if (iothread_is_current(t))
		return -EDEADLK;
	pthread_mutex_lock(&t->lock);
	t->pause_req++;
	pthread_mutex_unlock(&t->lock);
	ctl_wake(t);
	pthread_mutex_lock(&t->lock);
	while (!t->parked && !t->stop)
		pthread_cond_wait(&t->cond, &t->lock);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

void iothread_resume(struct iothread *t)
{
	pthread_mutex_lock(&t->lock);
	if (t->pause_req && --t->pause_req == 0)
		pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

int iothread_add_fd(struct iothread *t, int fd, uint32_t events, iothread_fn fn,
		    void *opaque)
{
	struct io_handler *h = calloc(1, sizeof(*h));
	struct epoll_event ev = {.events = events};
	int ret = 0;

	if (!h)
		return -ENOMEM;
	h->fd = fd;
	h->fn = fn;
	h->opaque = opaque;
	ev.data.ptr = h;
	pthread_mutex_lock(&t->lock);
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		ret = -errno;
		free(h);
	} else {
		h->next = t->handlers;
		t->handlers = h;
	}
	pthread_mutex_unlock(&t->lock);
	return ret;
}

int iothread_del_fd(struct iothread *t, int fd)
{
	bool self = iothread_is_current(t);
	struct io_handler **pp, *h = NULL;

	if (!self)
		iothread_pause(t);
	pthread_mutex_lock(&t->lock);
	for (pp = &t->handlers; *pp; pp = &(*pp)->next) {
		if ((*pp)->fd == fd) {
			h = *pp;
			*pp = h->next;
			break;
		}
	}
	if (h) {
		epoll_ctl(t->epfd, EPOLL_CTL_DEL, fd, NULL);
		h->dead = true;
		/* The worker may still hold it in its current batch. */
		h->next = t->zombies;
		t->zombies = h;
	}
	pthread_mutex_unlock(&t->lock);
	if (!self)
		iothread_resume(t);
	return h ? 0 : -ENOENT;
}

static void kick_handler(void *opaque, uint32_t events)
{
	struct iothread_kick *k = opaque;
	uint64_t v;

	if (read(k->fd, &v, sizeof(v)) < 0)
		return; /* EAGAIN: already drained */
	__atomic_add_fetch(&k->count, v, __ATOMIC_RELAXED);
	k->fn(k->opaque, events);
}

int iothread_kick_new(struct iothread *t, iothread_fn fn, void *opaque,
		      struct iothread_kick **out)
{
	struct iothread_kick *k = calloc(1, sizeof(*k));
	int ret;

	if (!k)
		return -ENOMEM;
	k->t = t;
	k->fn = fn;
	k->opaque = opaque;
	k->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (k->fd < 0) {
		ret = -errno;
		goto err_free;
	}
	ret = iothread_add_fd(t, k->fd, EPOLLIN, kick_handler, k);
	if (ret)
		goto err_close;
	*out = k;
	return 0;
err_close:
	close(k->fd);
err_free:
	free(k);
	return ret;
}

void iothread_kick_free(struct iothread_kick *k)
{
	if (!k)
		return;
	iothread_del_fd(k->t, k->fd);
	close(k->fd);
	free(k);
}

int iothread_kick(struct iothread_kick *k)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is saturated: a wakeup is pending. */
	if (write(k->fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

int iothread_kick_fd(const struct iothread_kick *k)
{
	return k->fd;
}

uint64_t iothread_kick_count(const struct iothread_kick *k)
{
	return k ? __atomic_load_n(&k->count, __ATOMIC_RELAXED) : 0;
}
