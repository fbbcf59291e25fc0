/* SPDX-License-Identifier: BSD-2-Clause */
#include "guest_mem.h"

#include <errno.h>
#include <string.h>

#include "common.h"

int guest_mem_layout(struct guest_mem *m, uint64_t ram_size)
{
	uint64_t low;

	if (ram_size == 0 || ram_size % PAGE_SIZE)
		return -EINVAL;
	memset(m, 0, sizeof(*m));
	m->ram_size = ram_size;
	low = MIN(ram_size, GUEST_PCI_HOLE_START);
	m->r[0] = (struct guest_mem_region){ .gpa = 0, .size = low, .offset = 0 };
	m->nr = 1;
	if (ram_size > low) {
		m->r[1] = (struct guest_mem_region){ .gpa = GUEST_PCI_HOLE_END,
						     .size = ram_size - low,
						     .offset = low };
		m->nr = 2;
	}
	return 0;
}

void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < m->nr; i++) {
		const struct guest_mem_region *r = &m->r[i];

		if (gpa < r->gpa || gpa - r->gpa >= r->size)
			continue;
		if (len > r->size - (gpa - r->gpa) || !r->hva)
			return NULL;
		return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *buf,
		   uint64_t len)
{
	void *p = guest_mem_ptr(m, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(buf, p, len);
	return 0;
}

int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *buf,
		    uint64_t len)
{
	void *p = guest_mem_ptr(m, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, buf, len);
	return 0;
}

uint64_t guest_mem_end(const struct guest_mem *m)
{
	const struct guest_mem_region *r = &m->r[m->nr - 1];

	return r->gpa + r->size;
}
