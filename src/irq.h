/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * An interrupt line a device model can raise and lower. In the VMM it ends
 * in KVM_IRQ_LINE (or an irqfd); unit tests plug in a recorder.
 */
#ifndef KHYVE_IRQ_H
#define KHYVE_IRQ_H

#include <stddef.h>

struct irq_line {
	int (*set_level)(void *opaque, unsigned gsi, int level);
	void *opaque;
	unsigned gsi;
};

static inline int irq_line_set(const struct irq_line *l, int level)
{
	if (!l || !l->set_level)
		return 0;
	return l->set_level(l->opaque, l->gsi, level);
}

#endif
