/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Port-I/O and MMIO dispatch. Devices register address ranges at set-up;
 * vCPU threads dispatch KVM_EXIT_IO / KVM_EXIT_MMIO through bus_dispatch().
 * PCI BAR moves re-register at run time, so the table is behind a rwlock.
 */
#ifndef KHYVE_BUS_H
#define KHYVE_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * Handle an access of @size bytes (1, 2, 4 or 8) at @offset inside the
 * registered range. For reads the handler fills @data (little-endian);
 * unhandled reads should return all-ones as real hardware does.
 * Returns 0 or -errno (the access is then logged and ignored).
 */
typedef int (*bus_io_fn)(void *opaque, uint64_t offset, void *data,
			 unsigned size, bool is_write);

struct bus_range {
	uint64_t base;
	uint64_t len;
	bus_io_fn fn;
	void *opaque;
	const char *name;
};

struct bus {
	const char *name;	  /* "pio" or "mmio", for messages */
	struct bus_range *ranges; /* sorted by base, never overlapping */
	unsigned nr, cap;
	pthread_rwlock_t lock;
	uint64_t unhandled; /* accesses that hit no range */
};

int bus_init(struct bus *bus, const char *name);
void bus_destroy(struct bus *bus);
/* -EEXIST if the range overlaps one already registered. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_io_fn fn,
		 void *opaque, const char *name);
int bus_unregister(struct bus *bus, uint64_t base);
/*
 * Returns 0 when a device handled it, -ENOENT when nothing is mapped there
 * (reads then see all-ones), or the handler's -errno.
 */
int bus_dispatch(struct bus *bus, uint64_t addr, void *data, unsigned size,
		 bool is_write);

#endif
