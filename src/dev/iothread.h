/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A worker thread with an epoll loop, so device back-ends (disk I/O, TAP)
 * run off the vCPU threads. Handlers are called on the worker thread;
 * an eventfd-backed "kick" wakes one from any thread (and the VMM can
 * hand the same eventfd to KVM as an ioeventfd).
 */
#ifndef KHYVE_IOTHREAD_H
#define KHYVE_IOTHREAD_H

#include <stdint.h>

struct iothread;

/* Called on the worker thread with the epoll events that fired. */
typedef void (*iothread_fn)(void *opaque, uint32_t events);

int iothread_create(struct iothread **out, const char *name);
/* Stops and joins the thread; handlers must be removed or harmless. */
void iothread_destroy(struct iothread *t);

/* Watch @fd (level-triggered) for @events (EPOLLIN, ...). */
int iothread_add_fd(struct iothread *t, int fd, uint32_t events, iothread_fn fn,
		    void *opaque);
/* After return, @fd's handler is not running and will not run again. */
int iothread_del_fd(struct iothread *t, int fd);

/*
 * Kick objects: an eventfd the worker drains before calling @fn.
 * iothread_kick() is async-signal-safe and cheap (one write).
 */
struct iothread_kick;
int iothread_kick_new(struct iothread *t, iothread_fn fn, void *opaque,
		      struct iothread_kick **out);
void iothread_kick_free(struct iothread_kick *k);
int iothread_kick(struct iothread_kick *k);
int iothread_kick_fd(const struct iothread_kick *k);
/* Kicks seen by the worker so far (coalesced ones each count). */
uint64_t iothread_kick_count(const struct iothread_kick *k);

/*
 * Park the worker between handler calls and wait until it is parked
 * (no handler runs until iothread_resume). Nests. -EDEADLK if called on
 * the worker itself.
 */
int iothread_pause(struct iothread *t);
void iothread_resume(struct iothread *t);
/* True when called on @t's worker thread. */
int iothread_is_current(const struct iothread *t);

#endif
