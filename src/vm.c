/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * KVM VM set-up, the vCPU run loop, and pause/resume.
 *
 * Ordering rules KVM imposes, as used below:
 *  - KVM_SET_TSS_ADDR and KVM_SET_IDENTITY_MAP_ADDR before any vCPU exists
 *    (Intel VMX needs them for real-mode emulation).
 *  - KVM_CREATE_IRQCHIP before KVM_CREATE_VCPU, so every vCPU gets an
 *    in-kernel LAPIC; KVM_CREATE_PIT2 after the irqchip.
 *  - KVM_SET_CPUID2 right after KVM_CREATE_VCPU, before register state.
 *  - vCPU ioctls from another thread wait for KVM_RUN to return, so state
 *    is read only while vCPUs are parked (vm_pause).
 */
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "boot.h"
#include "common.h"
#include "confine_seccomp.h"
#include "layout.h"
#include "log.h"
#include "migrate_postcopy.h"
#include "vm_devices.h"
#include "vm_snapshot.h"

#define KICK_SIGNAL SIGUSR1

static void kick_handler(int sig)
{
	(void)sig; /* only interrupts KVM_RUN */
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int kvm_open(struct vm *vm, struct err *e)
{
	int ver;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		int en = errno;

		if (en == ENOENT || en == ENODEV || en == ENXIO)
			return err_set(e, -en,
				       "/dev/kvm: %s: KVM is not available on "
				       "this host (no kvm module bound)",
				       strerror(en));
		if (en == EACCES || en == EPERM)
			return err_set(e, -en,
				       "/dev/kvm: %s: run as root or join the "
				       "group that owns /dev/kvm",
				       strerror(en));
		return err_set(e, -en, "/dev/kvm: %s", strerror(en));
	}
	ver = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (ver != KVM_API_VERSION)
		return err_set(e, -ENOTSUP,
			       "/dev/kvm: KVM API version %d, need %d", ver,
			       KVM_API_VERSION);
	static const struct {
		int cap;
		const char *name;
	} need[] = {
		{KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
		{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
		{KVM_CAP_PIT2, "KVM_CAP_PIT2"},
		{KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
	};
	for (unsigned i = 0; i < ARRAY_SIZE(need); i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, need[i].cap) <= 0)
			return err_set(e, -ENOTSUP, "/dev/kvm lacks %s",
				       need[i].name);
	}
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size < (int)sizeof(struct kvm_run))
		return err_set(e, -EIO, "KVM_GET_VCPU_MMAP_SIZE: %s",
			       strerror(errno));
	return 0;
}

int kvm_probe(bool *software, struct err *e)
{
	struct vm vm = {.kvm_fd = -1};
	int ret = kvm_open(&vm, e);

	if (vm.kvm_fd >= 0)
		close(vm.kvm_fd);
	if (!ret && software)
		*software = cpuid_backend_is_software();
	return ret;
}

static int get_supported_cpuid(struct vm *vm, struct err *e)
{
	for (unsigned n = 128; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c =
			calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

		if (!c)
			return -ENOMEM;
		c->nent = n;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			vm->supported_cpuid = c;
			return 0;
		}
		free(c);
		if (errno != E2BIG)
			return err_sys(e, "KVM_GET_SUPPORTED_CPUID");
	}
	return err_set(e, -E2BIG, "KVM_GET_SUPPORTED_CPUID: too many entries");
}

/*
 * GSI routing as PCs wire it: ISA IRQ0 (the PIT) reaches IOAPIC pin 2, the
 * interrupt source override the MP table and MADT announce. KVM's default
 * routing would send GSI 0 to pin 0. Must follow KVM_CREATE_IRQCHIP.
 */
static int vm_setup_irq_routing(struct vm *vm)
{
	struct {
		struct kvm_irq_routing hdr;
		struct kvm_irq_routing_entry e[16 + 24];
	} r;
	unsigned n = 0;

	memset(&r, 0, sizeof(r));
	for (unsigned i = 0; i < 16; i++) {
		if (i == 2)
			continue; /* the cascade */
		r.e[n].gsi = i;
		r.e[n].type = KVM_IRQ_ROUTING_IRQCHIP;
		r.e[n].u.irqchip.irqchip =
			i < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
		r.e[n].u.irqchip.pin = i % 8;
		n++;
	}
	for (unsigned i = 0; i < 24; i++) {
		if (i == 2)
			continue;
		r.e[n].gsi = i;
		r.e[n].type = KVM_IRQ_ROUTING_IRQCHIP;
		r.e[n].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		r.e[n].u.irqchip.pin = i == 0 ? 2 : i;
		n++;
	}
	r.hdr.nr = n;
	return ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, &r) < 0 ? -errno : 0;
}

static uint64_t host_mem_bytes(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);

	return pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
}

static int vm_map_memory(struct vm *vm, struct err *e)
{
	uint64_t host = host_mem_bytes();
	int ret;

	ret = guest_mem_layout(&vm->mem, vm->cfg->mem_size);
	if (ret)
		return err_set(e, ret, "invalid guest memory size");
	if (host && vm->cfg->mem_size > host)
		return err_set(e, -ENOMEM,
			       "-m: %" PRIu64 " MiB of guest memory is more "
			       "than this host has (%" PRIu64 " MiB)",
			       (uint64_t)(vm->cfg->mem_size / MiB),
			       (uint64_t)(host / MiB));
	/*
	 * One mapping for all RAM: a restore can map the RAM file over it.
	 * 2 MiB aligned (over-allocate, trim): KVM maps a guest 2 MiB page
	 * huge only if the host address is aligned the same way, and kernels
	 * before 6.7 do not align large anonymous mappings. Unaligned, a guest
	 * writing its RAM ran ~8x slower than under QEMU on nested KVM.
	 */
	{
		size_t len = vm->cfg->mem_size + 2 * MiB, head, tail;
		uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
				  -1, 0);

		if (p == MAP_FAILED)
			return err_set(e, -ENOMEM,
				       "cannot map %" PRIu64
				       " MiB of guest memory: %s",
				       (uint64_t)(vm->cfg->mem_size / MiB),
				       strerror(errno));
		head = ALIGN_UP((uintptr_t)p, 2 * MiB) - (uintptr_t)p;
		tail = len - head - vm->cfg->mem_size;
		if (head)
			munmap(p, head);
		if (tail)
			munmap(p + head + vm->cfg->mem_size, tail);
		vm->mem.base = p + head;
	}
	madvise(vm->mem.base, vm->cfg->mem_size, MADV_HUGEPAGE);
	for (unsigned i = 0; i < vm->mem.nr; i++)
		vm->mem.r[i].hva = vm->mem.base + vm->mem.r[i].offset;
	return guest_mem_dontdump(&vm->mem, e);
}

/* (Re)register guest RAM with KVM: also after a restore remaps it. */
int vm_register_memory(struct vm *vm, struct err *e)
{
	for (unsigned i = 0; i < vm->mem.nr; i++) {
		struct kvm_userspace_memory_region r = {
			.slot = i,
			.guest_phys_addr = vm->mem.r[i].gpa,
			.memory_size = vm->mem.r[i].size,
			.userspace_addr = (uint64_t)(uintptr_t)vm->mem.r[i].hva,
		};

		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
			return err_sys(e, "KVM_SET_USER_MEMORY_REGION");
	}
	return 0;
}

static int vcpu_set_msr(struct vcpu *v, uint32_t index, uint64_t data)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = {.hdr.nmsrs = 1, .e = {.index = index, .data = data}};

	return ioctl(v->fd, KVM_SET_MSRS, &m) == 1 ? 0 : -EIO;
}

static int vcpu_create(struct vm *vm, unsigned id, struct err *e)
{
	struct vcpu *v = &vm->vcpus[id];
	size_t csz = sizeof(*vm->supported_cpuid) +
		     vm->supported_cpuid->nent *
			     sizeof(vm->supported_cpuid->entries[0]);
	struct kvm_cpuid2 *c;
	struct kvm_lapic_state lapic;
	int ret, serr;

	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
	if (v->fd < 0)
		return err_sys(e, "KVM_CREATE_VCPU %u", id);
	v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE,
		      MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		ret = err_sys(e, "mmap kvm_run");
		v->run = NULL;
		return ret;
	}
	c = malloc(csz);
	if (!c)
		return -ENOMEM;
	memcpy(c, vm->supported_cpuid, csz);
	cpuid_apply_policy(c, vm->policy, id, vm->ncpus, &vm->hidden);
	ret = ioctl(v->fd, KVM_SET_CPUID2, c);
	serr = errno; /* free may change it */
	free(c);
	if (ret < 0) {
		errno = serr;
		return err_sys(e, "KVM_SET_CPUID2");
	}
	/* Fast strings on, as firmware leaves it; MTRRs: write-back default. */
	if (vcpu_set_msr(v, 0x1a0, 1))
		log_debug("vCPU %u: MSR_IA32_MISC_ENABLE not settable", id);
	if (vcpu_set_msr(v, 0x2ff, 0x806))
		log_debug("vCPU %u: MSR_MTRRdefType not settable", id);
	/* LINT0 = ExtINT (the PIC), LINT1 = NMI, as a BIOS would leave them. */
	if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) == 0) {
		uint32_t *lint0 = (uint32_t *)&lapic.regs[0x350];
		uint32_t *lint1 = (uint32_t *)&lapic.regs[0x360];

		*lint0 = (*lint0 & ~0x700u & ~0x10000u) | (7u << 8);
		*lint1 = (*lint1 & ~0x700u & ~0x10000u) | (4u << 8);
		if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0)
			log_debug("vCPU %u: KVM_SET_LAPIC: %s", id,
				  strerror(errno));
	}
	return 0;
}

/* ---- what the devices get from the VM (struct vm_devices_host) ---- */

static int kvm_irq_line(void *opaque, unsigned gsi, int level)
{
	struct vm *vm = opaque;
	struct kvm_irq_level l = {.irq = gsi, .level = (uint32_t)level};

	return ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0 ? -errno : 0;
}

static int kvm_send_msi(void *opaque, uint64_t addr, uint32_t data)
{
	struct vm *vm = opaque;
	struct kvm_msi m = {.address_lo = (uint32_t)addr,
			    .address_hi = (uint32_t)(addr >> 32),
			    .data = data};

	return ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &m) < 0 ? -errno : 0;
}

/*
 * KVM_IOEVENTFD: a guest write to a queue's notify address signals the
 * device's kick eventfd inside KVM, without an exit to khyve. 2-byte
 * writes (virtio drivers write the queue index); each queue has its own
 * address, so no data match.
 */
static int kvm_ioeventfd(void *opaque, uint64_t addr, int fd, bool assign)
{
	struct vm *vm = opaque;
	struct kvm_ioeventfd e = {
		.addr = addr,
		.len = 2,
		.fd = fd,
		.flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};

	return ioctl(vm->vm_fd, KVM_IOEVENTFD, &e) < 0 ? -errno : 0;
}

static void vm_wake(void *opaque)
{
	struct vm *vm = opaque;
	uint64_t one = 1;

	if (vm->wake_fd >= 0 && write(vm->wake_fd, &one, sizeof(one)) < 0) {
		/* eventfd full: the main loop is awake anyway */
	}
}

static void devices_request_stop(void *opaque, int status)
{
	vm_request_stop(opaque, status);
}

static int vm_create_devices(struct vm *vm, struct err *e)
{
	const struct vm_devices_host host = {
		.cfg = vm->cfg,
		.mem = &vm->mem,
		.pio = &vm->pio,
		.mmio = &vm->mmio,
		.opaque = vm,
		.irq_line = kvm_irq_line,
		.send_msi = kvm_send_msi,
		.ioeventfd = kvm_ioeventfd,
		.request_stop = devices_request_stop,
		.wake = vm_wake,
	};

	return vm_devices_create(&vm->devs, &host, e);
}

/* The VM itself: its fd, the irqchip and routing, the PIT. */
static int kvm_vm_setup(struct vm *vm, struct err *e)
{
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	uint64_t idmap = 0xfffbc000ULL;
	int ret;

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return err_sys(e, "KVM_CREATE_VM");
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0)
		log_debug("KVM_SET_TSS_ADDR: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		log_debug("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
	/* Emulation failures come with the instruction bytes where supported.
	 */
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION,
		  KVM_CAP_EXIT_ON_EMULATION_FAILURE) > 0) {
		struct kvm_enable_cap cap = {
			.cap = KVM_CAP_EXIT_ON_EMULATION_FAILURE,
			.args = {1},
		};

		if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
			log_debug("KVM_CAP_EXIT_ON_EMULATION_FAILURE: %s",
				  strerror(errno));
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP) < 0)
		return err_sys(e, "KVM_CREATE_IRQCHIP");
	ret = vm_setup_irq_routing(vm);
	if (ret)
		return err_set(e, ret, "KVM_SET_GSI_ROUTING: %s",
			       strerror(-ret));
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return err_sys(e, "KVM_CREATE_PIT2");
	return 0;
}

int vm_create(struct vm *vm, struct vm_config *cfg, struct err *e)
{
	int ret;

	memset(vm, 0, sizeof(*vm));
	vm->cfg = cfg;
	vm->kvm_fd = vm->vm_fd = vm->wake_fd = -1;
	vm->ncpus = cfg->ncpus;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");

	ret = kvm_open(vm, e);
	if (ret)
		return ret;
	vm->sw_backend = cpuid_backend_is_software();
	vm->policy = cpuid_resolve_policy(cfg->cpu_policy, vm->sw_backend);
	ret = get_supported_cpuid(vm, e);
	if (ret)
		return ret;
	{
		int max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION,
				KVM_CAP_MAX_VCPUS);

		if (max <= 0)
			max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION,
				    KVM_CAP_NR_VCPUS);
		if (max > 0 && vm->ncpus > (unsigned)max)
			return err_set(e, -EINVAL,
				       "-c %u: this host's KVM allows at most "
				       "%d vCPUs",
				       vm->ncpus, max);
	}
	ret = kvm_vm_setup(vm, e);
	if (ret)
		return ret;
	ret = vm_map_memory(vm, e);
	if (ret)
		return ret;
	ret = vm_register_memory(vm, e);
	if (ret)
		return ret;
	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -ENOMEM;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		vm->vcpus[i].fd = -1;
		ret = vcpu_create(vm, i, e);
		if (ret)
			return ret;
	}
	ret = vcpu_msr_list_probe(vm->kvm_fd, vm->vcpus[0].fd, &vm->msrs);
	if (ret)
		return err_set(e, ret, "KVM_GET_MSR_INDEX_LIST: %s",
			       strerror(-ret));
	vm->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->wake_fd < 0)
		return -errno;
	return vm_create_devices(vm, e);
}

static void seg_from_boot(unsigned sel, struct kvm_segment *k)
{
	struct boot_segment b;

	boot_segment_from_gdt(sel, &b);
	memset(k, 0, sizeof(*k));
	k->base = b.base;
	k->limit = b.limit;
	k->selector = b.selector;
	k->type = b.type;
	k->present = b.present;
	k->dpl = b.dpl;
	k->db = b.db;
	k->s = b.s;
	k->l = b.l;
	k->g = b.g;
	k->avl = b.avl;
}

/* Register state for the boot vCPU, per the boot protocol in use. */
static int vcpu_set_boot_regs(struct vcpu *v, const struct boot_info *bi,
			      struct err *e)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		goto fail;
	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2;
	regs.rip = bi->entry;
	sregs.gdt.base = bi->gdt_gpa;
	sregs.gdt.limit = bi->gdt_limit;
	sregs.idt.base = bi->idt_gpa;
	sregs.idt.limit = 0;
	seg_from_boot(BOOT_SEL_TSS, &sregs.tr);
	if (bi->mode == BOOT_MODE_LINUX64) {
		/* 64-bit boot protocol: long mode, paging on, RSI = zero page.
		 */
		regs.rsi = bi->boot_params_gpa;
		regs.rsp = bi->stack_top;
		regs.rbp = bi->stack_top;
		seg_from_boot(BOOT_SEL_CODE64, &sregs.cs);
		seg_from_boot(BOOT_SEL_DATA, &sregs.ds);
		sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
		sregs.cr3 = bi->cr3;
		sregs.cr4 |= 0x20;	/* PAE */
		sregs.cr0 = 0x80000011; /* PG | ET | PE */
		sregs.efer |= 0x500;	/* LME | LMA */
	} else {
		/* PVH: 32-bit protected mode, paging off, EBX = start_info. */
		regs.rbx = bi->start_info_gpa;
		seg_from_boot(BOOT_SEL_CODE32, &sregs.cs);
		seg_from_boot(BOOT_SEL_DATA, &sregs.ds);
		sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
		sregs.cr0 = 0x11; /* ET | PE */
		sregs.cr4 = 0;
		sregs.efer = 0;
	}
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		goto fail;
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		goto fail;
	return 0;
fail:
	return err_sys(e, "setting boot registers");
}

int vm_boot(struct vm *vm, struct err *e)
{
	struct boot_config bc = {0};
	struct boot_info bi;
	uint8_t aml[1024];
	int ret;

	ret = vm_devices_dsdt_aml(vm->devs, aml, sizeof(aml), e);
	if (ret < 0)
		return ret;
	bc.dsdt_aml = aml;
	bc.dsdt_aml_len = (size_t)ret;
	bc.kernel_path = vm->cfg->kernel;
	bc.initrd_path = vm->cfg->initrd;
	bc.cmdline = vm->cfg->cmdline;
	/* The safe policy backs itself up on a Linux command line only. */
	bc.linux_extra = cpuid_policy_cmdline(vm->policy);
	bc.ncpus = vm->ncpus;
	bc.flags = vm->cfg->no_unpack ? BOOT_F_NO_UNPACK : 0;
	ret = kernel_load(&vm->mem, &bc, &bi, e);
	if (ret)
		return ret;
	log_info("kernel %s: %s%s entry 0x%" PRIx64, vm->cfg->kernel,
		 bi.is_linux ? "Linux, " : "",
		 bi.mode == BOOT_MODE_PVH ? "PVH" : "64-bit", bi.entry);
	if (bi.cmdline_appended) {
		snprintf(vm->cmdline_appended, sizeof(vm->cmdline_appended),
			 "%s", bc.linux_extra);
		log_info("cpu policy %s: appended \"%s\" to the Linux command "
			 "line",
			 vm->policy == CPU_POLICY_SAFE ? "safe" : "host",
			 bc.linux_extra);
	}
	return vcpu_set_boot_regs(&vm->vcpus[0], &bi, e);
}

/* ---- run loop ---- */

void vm_request_stop(struct vm *vm, int status)
{
	pthread_mutex_lock(&vm->lock);
	if (!vm->stop) {
		vm->stop = true;
		vm->exit_status = status;
		vm->state = VM_STOPPING;
	}
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; vm->vcpus && i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (v->run)
			__atomic_store_n(&v->run->immediate_exit, 1,
					 __ATOMIC_SEQ_CST);
		if (v->thread_started)
			pthread_kill(v->thread, KICK_SIGNAL);
	}
	vm_wake(vm);
}

/* Called by a vCPU thread between KVM_RUNs: park while paused. */
static bool vcpu_check_park(struct vcpu *v)
{
	struct vm *vm = v->vm;
	bool stop;

	pthread_mutex_lock(&vm->lock);
	if (vm->pause_req && !vm->stop) {
		vm->parked++;
		pthread_cond_broadcast(&vm->cond);
		while (vm->pause_req && !vm->stop)
			pthread_cond_wait(&vm->cond, &vm->lock);
		vm->parked--;
	}
	stop = vm->stop;
	/* Clear the kick before re-entering; a new kick sets it again. */
	__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	if (vm->pause_req || vm->stop)
		__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&vm->lock);
	return stop;
}

static void vcpu_report(struct vcpu *v, const char *what)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	uint8_t bytes[16];
	char hex[64] = "";
	uint64_t gpa;

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 ||
	    ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		log_err("vCPU %u: %s (registers unavailable)", v->id, what);
		return;
	}
	if (vm_translate(v, s.cs.base + r.rip, &gpa) == 0 &&
	    guest_mem_read(&v->vm->mem, gpa, bytes, sizeof(bytes)) == 0)
		for (unsigned i = 0; i < sizeof(bytes); i++)
			snprintf(hex + 3 * i, sizeof(hex) - 3 * i, "%02x ",
				 bytes[i]);
	log_err("vCPU %u: %s at rip=0x%llx: bytes %s", v->id, what, r.rip,
		hex[0] ? hex : "(not in guest memory)");
	log_err("  rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx", r.rax,
		r.rbx, r.rcx, r.rdx);
	log_err("  rsi=%016llx rdi=%016llx rsp=%016llx rbp=%016llx", r.rsi,
		r.rdi, r.rsp, r.rbp);
	log_err("  rflags=%016llx cr0=%llx cr3=%llx cr4=%llx efer=%llx cs=%04x",
		r.rflags, s.cr0, s.cr3, s.cr4, s.efer, s.cs.selector);
}

int vm_translate(struct vcpu *v, uint64_t gva, uint64_t *gpa)
{
	struct kvm_translation t = {.linear_address = gva};

	if (ioctl(v->fd, KVM_TRANSLATE, &t) < 0 || !t.valid)
		return -EFAULT;
	*gpa = t.physical_address;
	return 0;
}

/* Guest-virtual access for the emulation layer, page by page. */
static int emul_mem(struct vcpu *v, uint64_t gva, void *buf, unsigned len,
		    bool write)
{
	uint8_t *b = buf;

	while (len) {
		unsigned chunk = (unsigned)MIN(
			(uint64_t)len, PAGE_SIZE - (gva & (PAGE_SIZE - 1)));
		uint64_t gpa;
		int ret;

		if (vm_translate(v, gva, &gpa))
			return -EFAULT;
		ret = write ? guest_mem_write(&v->vm->mem, gpa, b, chunk)
			    : guest_mem_read(&v->vm->mem, gpa, b, chunk);
		if (ret)
			return ret;
		gva += chunk;
		b += chunk;
		len -= chunk;
	}
	return 0;
}

static int emul_read(void *o, uint64_t gva, void *buf, unsigned len)
{
	return emul_mem(o, gva, buf, len, false);
}

static int emul_write(void *o, uint64_t gva, const void *buf, unsigned len)
{
	return emul_mem(o, gva, (void *)buf, len, true);
}

static void emul_ctx_from_kvm(struct emul_ctx *c, const struct kvm_regs *r,
			      const struct kvm_sregs *s,
			      const struct kvm_fpu *fpu)
{
	memset(c, 0, sizeof(*c));
	c->gpr[R_AX] = r->rax, c->gpr[R_CX] = r->rcx, c->gpr[R_DX] = r->rdx;
	c->gpr[R_BX] = r->rbx, c->gpr[R_SP] = r->rsp, c->gpr[R_BP] = r->rbp;
	c->gpr[R_SI] = r->rsi, c->gpr[R_DI] = r->rdi;
	c->gpr[8] = r->r8, c->gpr[9] = r->r9, c->gpr[10] = r->r10;
	c->gpr[11] = r->r11, c->gpr[12] = r->r12, c->gpr[13] = r->r13;
	c->gpr[14] = r->r14, c->gpr[15] = r->r15;
	c->rip = r->rip;
	c->rflags = r->rflags;
	c->fs_base = s->fs.base;
	c->gs_base = s->gs.base;
	c->long_mode = s->cs.l;
	c->fcw = fpu->fcw;
	c->fsw = fpu->fsw;
	c->ftwx = fpu->ftwx;
	c->mxcsr = fpu->mxcsr;
}

static void emul_ctx_to_kvm_regs(const struct emul_ctx *c, struct kvm_regs *r)
{
	r->rax = c->gpr[R_AX], r->rcx = c->gpr[R_CX], r->rdx = c->gpr[R_DX];
	r->rbx = c->gpr[R_BX], r->rsp = c->gpr[R_SP], r->rbp = c->gpr[R_BP];
	r->rsi = c->gpr[R_SI], r->rdi = c->gpr[R_DI];
	r->r8 = c->gpr[8], r->r9 = c->gpr[9], r->r10 = c->gpr[10];
	r->r11 = c->gpr[11], r->r12 = c->gpr[12], r->r13 = c->gpr[13];
	r->r14 = c->gpr[14], r->r15 = c->gpr[15];
	r->rip = c->rip;
	r->rflags = c->rflags;
}

/* Complete an instruction KVM's emulator gave up on (see emulate.h). */
static int vcpu_handle_emulation_failure(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	struct kvm_regs r;
	struct kvm_sregs s;
	struct kvm_fpu fpu;
	struct emul_ctx c;
	uint8_t insn[15];
	unsigned len = 0;
	uint64_t gpa;
	int ret;

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 ||
	    ioctl(v->fd, KVM_GET_SREGS, &s) < 0 ||
	    ioctl(v->fd, KVM_GET_FPU, &fpu) < 0)
		return -errno;
	if (run->emulation_failure.ndata >= 3 &&
	    (run->emulation_failure.flags &
	     KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
		len = MIN(run->emulation_failure.insn_size, sizeof(insn));
		memcpy(insn, run->emulation_failure.insn_bytes, len);
	} else if (vm_translate(v, s.cs.base + r.rip, &gpa) == 0) {
		len = (unsigned)MIN((uint64_t)sizeof(insn),
				    PAGE_SIZE - (gpa & (PAGE_SIZE - 1)));
		if (guest_mem_read(&v->vm->mem, gpa, insn, len))
			len = 0;
	}
	emul_ctx_from_kvm(&c, &r, &s, &fpu);
	c.read = emul_read;
	c.write = emul_write;
	c.opaque = v;
	ret = emul_complete(&c, insn, len);
	if (ret)
		return ret;
	emul_ctx_to_kvm_regs(&c, &r);
	if (ioctl(v->fd, KVM_SET_REGS, &r) < 0)
		return -errno;
	if (c.fpu_dirty) {
		fpu.fcw = c.fcw;
		fpu.fsw = c.fsw;
		fpu.ftwx = c.ftwx;
		fpu.mxcsr = c.mxcsr;
		if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
			return -errno;
	}
	if (c.inject_bp) {
		struct kvm_vcpu_events ev;

		if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
			return -errno;
		ev.exception.injected = 1;
		ev.exception.nr = 3;
		ev.exception.has_error_code = 0;
		ev.flags = 0;
		if (ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
			return -errno;
	}
	v->emulated[c.kind]++;
	log_debug("vCPU %u: completed %s at 0x%llx", v->id,
		  emul_kind_names[c.kind], (unsigned long long)(c.rip - c.len));
	return 0;
}

static void vcpu_handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool out = run->io.direction == KVM_EXIT_IO_OUT;

	for (uint32_t i = 0; i < run->io.count; i++) {
		bus_dispatch(&v->vm->pio, run->io.port, data, run->io.size,
			     out);
		data += run->io.size;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);
	confine_seccomp_enter(CONFINE_ROLE_VCPU);
	for (;;) {
		int ret;

		if (vcpu_check_park(v))
			break;
		ret = ioctl(v->fd, KVM_RUN, 0);
		if (ret < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				v->exits[KVM_EXIT_INTR]++;
				continue;
			}
			log_err("vCPU %u: KVM_RUN: %s", v->id, strerror(errno));
			vm_request_stop(vm, KHYVE_EXIT_ERROR);
			break;
		}
		if (v->run->exit_reason < VM_EXIT_REASONS)
			v->exits[v->run->exit_reason]++;
		switch (v->run->exit_reason) {
		case KVM_EXIT_IO:
			vcpu_handle_io(v);
			break;
		case KVM_EXIT_MMIO:
			bus_dispatch(&vm->mmio, v->run->mmio.phys_addr,
				     v->run->mmio.data, v->run->mmio.len,
				     v->run->mmio.is_write);
			break;
		case KVM_EXIT_INTR:
			break;
		case KVM_EXIT_HLT:
			log_info("vCPU %u halted", v->id);
			vm_request_stop(vm, KHYVE_EXIT_HALT);
			break;
		case KVM_EXIT_SHUTDOWN:
			vcpu_report(v, "triple fault");
			vm_request_stop(vm, KHYVE_EXIT_TRIPLEFAULT);
			break;
		case KVM_EXIT_SYSTEM_EVENT:
			if (v->run->system_event.type == KVM_SYSTEM_EVENT_RESET)
				vm_request_stop(vm, KHYVE_EXIT_REBOOT);
			else
				vm_request_stop(vm, KHYVE_EXIT_POWEROFF);
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			if (v->run->internal.suberror ==
				    KVM_INTERNAL_ERROR_EMULATION &&
			    vcpu_handle_emulation_failure(v) == 0)
				break;
			vcpu_report(v,
				    "KVM internal error (emulation failure)");
			log_err("vCPU %u: KVM internal error, suberror %u",
				v->id, v->run->internal.suberror);
			vm_request_stop(vm, KHYVE_EXIT_ERROR);
			break;
		case KVM_EXIT_FAIL_ENTRY:
			vcpu_report(v, "VM entry failed");
			log_err("vCPU %u: hardware entry failure reason 0x%llx",
				v->id,
				(unsigned long long)v->run->fail_entry
					.hardware_entry_failure_reason);
			vm_request_stop(vm, KHYVE_EXIT_ERROR);
			break;
		default:
			vcpu_report(v, "unexpected exit");
			log_err("vCPU %u: unhandled KVM exit reason %u", v->id,
				v->run->exit_reason);
			vm_request_stop(vm, KHYVE_EXIT_ERROR);
			break;
		}
	}
	return NULL;
}

/*
 * Park every vCPU; 1 if they were parked already (VM_PAUSED), 0 once
 * this call parked them, or -ESHUTDOWN.
 */
static int vcpus_park(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->stop) {
		pthread_mutex_unlock(&vm->lock);
		return -ESHUTDOWN;
	}
	if (vm->state == VM_PAUSED) {
		pthread_mutex_unlock(&vm->lock);
		return 1;
	}
	vm->pause_req = true;
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		__atomic_store_n(&vm->vcpus[i].run->immediate_exit, 1,
				 __ATOMIC_SEQ_CST);
		if (vm->vcpus[i].thread_started)
			pthread_kill(vm->vcpus[i].thread, KICK_SIGNAL);
	}
	pthread_mutex_lock(&vm->lock);
	while (vm->parked < vm->ncpus && !vm->stop) {
		struct timespec ts;

		/* Re-kick: a vCPU may have slipped past its first kick. */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) ==
		    ETIMEDOUT) {
			for (unsigned i = 0; i < vm->ncpus; i++)
				if (vm->vcpus[i].thread_started)
					pthread_kill(vm->vcpus[i].thread,
						     KICK_SIGNAL);
		}
	}
	if (vm->stop) {
		vm->pause_req = false;
		pthread_mutex_unlock(&vm->lock);
		return -ESHUTDOWN;
	}
	vm->state = VM_PAUSED;
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

static void vcpus_release(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->pause_req = false;
	if (vm->state == VM_PAUSED)
		vm->state = VM_RUNNING;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

int vm_vcpus_hold(struct vm *vm)
{
	int ret = vcpus_park(vm);

	return ret > 0 ? -EALREADY : ret;
}

void vm_vcpus_release(struct vm *vm)
{
	vcpus_release(vm);
}

int vm_pause(struct vm *vm, struct vm_pause_times *times, struct err *e)
{
	uint64_t t0 = now_ns(), tparked;
	int was, ret;

	was = vcpus_park(vm);
	if (was < 0)
		return err_set(e, was, "%s", strerror(-was));
	tparked = now_ns();
	/* Devices second: a parked vCPU kicks no queue meanwhile. */
	ret = vm_devices_pause(vm->devs, e);
	if (ret) {
		if (!was)
			vcpus_release(vm);
		return ret;
	}
	if (times) {
		times->parked = tparked;
		times->stopped = now_ns();
	}
	if (!was)
		log_debug("paused in %" PRIu64 " us (devices %" PRIu64 " us)",
			  (now_ns() - t0) / 1000, (now_ns() - tparked) / 1000);
	return 0;
}

int vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_PAUSED) {
		pthread_mutex_unlock(&vm->lock);
		return vm->stop ? -ESHUTDOWN : 0;
	}
	pthread_mutex_unlock(&vm->lock);
	vm_devices_resume(vm->devs);
	vcpus_release(vm);
	return 0;
}

int vm_start_vcpus(struct vm *vm, struct err *e)
{
	struct sigaction sa = {.sa_handler = kick_handler};
	sigset_t set;

	sigemptyset(&sa.sa_mask);
	sigaction(KICK_SIGNAL, &sa, NULL);
	sigemptyset(&set);
	sigaddset(&set, KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	clock_gettime(CLOCK_MONOTONIC, &vm->start_time);
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_CREATED)
		vm->state = vm->pause_req ? VM_PAUSED : VM_RUNNING;
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		int ret = pthread_create(&vm->vcpus[i].thread, NULL,
					 vcpu_thread, &vm->vcpus[i]);

		if (ret) {
			vm_request_stop(vm, KHYVE_EXIT_ERROR);
			return err_set(e, -ret, "cannot start vCPU thread: %s",
				       strerror(ret));
		}
		vm->vcpus[i].thread_started = true;
	}
	return 0;
}

void vm_destroy(struct vm *vm)
{
	vm_request_stop(vm, vm->exit_status);
	for (unsigned i = 0; vm->vcpus && i < vm->ncpus; i++)
		if (vm->vcpus[i].thread_started)
			pthread_join(vm->vcpus[i].thread, NULL);
	vm_devices_destroy(vm->devs);
	vm->devs = NULL;
	for (unsigned i = 0; vm->vcpus && i < vm->ncpus; i++) {
		if (vm->vcpus[i].run)
			munmap(vm->vcpus[i].run, (size_t)vm->run_size);
		if (vm->vcpus[i].fd >= 0)
			close(vm->vcpus[i].fd);
	}
	free(vm->vcpus);
	vm->vcpus = NULL;
	/* Last before RAM goes: a blocked thread above was still served. */
	postcopy_in_free(vm->postcopy);
	vm->postcopy = NULL;
	if (vm->mem.base)
		munmap(vm->mem.base, vm->mem.ram_size);
	vm->mem.base = NULL;
	vm_snapshot_release(vm);	/* the RAM file it mapped, if any */
	guest_mem_dirty_free(&vm->mem); /* every writer is gone by now */
	free(vm->supported_cpuid);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->wake_fd >= 0)
		close(vm->wake_fd);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
}
