/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer harness: split-virtqueue walking over a guest RAM image the
 * fuzzer controls entirely (rings, descriptors, indirect tables, indices).
 *
 * Input: [0] feature bits (bit 0 INDIRECT_DESC, bit 1 EVENT_IDX),
 *        [1] log2 of the queue size (mod 9, so 1..256),
 *        [2..3] starting last_avail_idx, [4..] guest RAM from address 0.
 * Every segment a pop hands out is read and written end to end, so ASan
 * flags any pointer outside the 64 KiB of RAM.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "guest_mem.h"
#include "log.h"
#include "virtqueue.h"

#define FUZZ_RAM (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct virtq_elem e;
	struct guest_mem mem;
	struct virtq vq;
	uint8_t *ram;
	uint64_t feats = 0;

	if (size < 4)
		return 0;
	log_set_level(LOG_ERR);
	/* Exactly-sized allocation: any overrun is an ASan report. */
	ram = calloc(1, FUZZ_RAM);
	if (!ram)
		return 0;
	memcpy(ram, data + 4, MIN(size - 4, (size_t)FUZZ_RAM));
	guest_mem_layout(&mem, FUZZ_RAM);
	mem.r[0].hva = ram;

	virtq_init(&vq, &mem, 0, 256);
	vq.st.size = (uint16_t)(1u << (data[1] % 9));
	vq.st.desc = 0;
	vq.st.avail = 0x1000;
	vq.st.used = 0x2000;
	if (data[0] & 1)
		feats |= 1ULL << VIRTIO_RING_F_INDIRECT_DESC;
	if (data[0] & 2)
		feats |= 1ULL << VIRTIO_RING_F_EVENT_IDX;
	virtq_set_features(&vq, feats);
	if (virtq_enable(&vq))
		goto out;
	vq.st.last_avail_idx = get_le16(data + 2);

	for (unsigned n = 0; n < 512; n++) {
		uint32_t written = 0;
		int r = virtq_pop(&vq, &e);

		if (r != 1)
			break;
		for (unsigned i = 0; i < e.n_out + e.n_in; i++) {
			volatile uint8_t *p = e.iov[i].iov_base;
			size_t l = e.iov[i].iov_len;

			if (!l)
				continue;
			(void)p[0];
			(void)p[l - 1];
			if (i >= e.n_out) {
				p[0] = 0xa5;
				p[l - 1] = 0x5a;
				written += (uint32_t)l;
			}
		}
		if (virtq_push(&vq, &e, written))
			break;
		(void)virtq_should_notify(&vq);
		virtq_set_notify(&vq, n & 1);
	}
out:
	free(ram);
	return 0;
}
