/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Checkpoint / suspend / restore of a whole VM.
 *
 * Save: pause every vCPU, then the devices (no request in flight, disk
 * images flushed: vm_devices_pause), then capture in
 * this order: embedded config, VM-wide KVM state (clock, PIC, IOAPIC, PIT),
 * each vCPU, each device, and guest RAM into FILE.ram (its chunk hashes go
 * into the state file's "ram" section). Both files are written under
 * temporary names, carry the same random save id, and are committed
 * together by snap_ram_pair_commit() only when both are complete: a save
 * that fails at any step leaves the previous pair as it was
 * (docs/snapshot-format.md, "Integrity and atomicity"). A checkpoint of
 * a running guest is live: see "Live pre-copy" below.
 *
 * Restore: read and validate the whole state file, and find its RAM file,
 * before anything named in it is opened (vm_snapshot_preflight, called by
 * main.c before the machine and its host bindings exist; docs/security.md),
 * create the machine from the embedded config (main.c), map the RAM file
 * (MAP_PRIVATE: pages load on first touch; --eager copies), then set
 * KVM state in the order it requires: clock first (no vCPU may run before
 * it), irqchips and PIT, then every vCPU (see vcpu_state.h), then devices.
 */
#include "vm_snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "common.h"
#include "config.h"
#include "log.h"
#include "progress.h"
#include "i8042.h"
#include "pci.h"
#include "pm.h"
#include "rtc.h"
#include "snap.h"
#include "snap_fault.h"
#include "snap_ram.h"
#include "snap_ram_live.h"
#include "snap_ram_restore.h"
#include "uart8250.h"
#include "snap_chain.h"
#include "vcpu_state.h"
#include "virtio_blk.h"
#include "virtio_console.h"
#include "virtio_net.h"
#include "virtio_pci.h"
#include "virtqueue.h"
#include "vm.h"
#include "vm_chain.h"
#include "vm_devices.h"
#include "vmgenid.h"

/*
 * The RAM file a mapped restore left guest RAM on (MAP_PRIVATE): pages the
 * guest has not written yet are read from it for as long as it runs.
 */
struct vm_ram_file {
	int fd;
	bool leased; /* an F_RDLCK lease notices writers (see below) */
	bool broken; /* it was opened for writing or truncated */
	char path[4096];
};

/* VM-wide KVM state. The irqchip/PIT images are KVM's stable ABI structs. */
struct kvm_vm_state {
	uint8_t pic_master[512];
	uint8_t pic_slave[512];
	uint8_t ioapic[512];
	uint8_t pit[sizeof(struct kvm_pit_state2)];
	uint64_t clock_ns;    /* kvmclock at save */
	uint64_t realtime_ns; /* host CLOCK_REALTIME at save */
	uint32_t clock_flags;
};

#define S struct kvm_vm_state
static const struct snap_field kvm_vm_fields[] = {
	SNAP_BYTES(S, pic_master, 512, 1),
	SNAP_BYTES(S, pic_slave, 512, 1),
	SNAP_BYTES(S, ioapic, 512, 1),
	SNAP_BYTES(S, pit, sizeof(struct kvm_pit_state2), 1),
	SNAP_U64(S, clock_ns, 1),
	SNAP_U64(S, realtime_ns, 1),
	SNAP_U32(S, clock_flags, 1),
};
#undef S
const struct snap_desc kvm_vm_snap =
	SNAP_DESC("kvm-vm", 1, 1, struct kvm_vm_state, kvm_vm_fields);

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int save_kvm_vm(struct vm *vm, struct kvm_vm_state *s, struct err *err)
{
	struct kvm_clock_data clk = {0};
	uint8_t *dst[3] = {s->pic_master, s->pic_slave, s->ioapic};

	memset(s, 0, sizeof(*s));
	for (unsigned i = 0; i < 3; i++) {
		struct kvm_irqchip chip = {.chip_id = i};

		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
			return err_set(err, -errno, "KVM_GET_IRQCHIP %u: %s", i,
				       strerror(errno));
		memcpy(dst[i], &chip.chip, 512);
	}
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, (struct kvm_pit_state2 *)s->pit) < 0)
		return err_set(err, -errno, "KVM_GET_PIT2: %s",
			       strerror(errno));
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clk) < 0)
		return err_set(err, -errno, "KVM_GET_CLOCK: %s",
			       strerror(errno));
	s->clock_ns = clk.clock;
	s->clock_flags = clk.flags;
	s->realtime_ns =
		(clk.flags & KVM_CLOCK_REALTIME) ? clk.realtime : real_ns();
	return 0;
}

/*
 * The clock goes first: vCPUs must never run on a stale kvmclock. By
 * default the guest clock advances by the wall time the VM spent saved
 * (so its wall clock is right after restore); keep_clock freezes it.
 */
static int restore_kvm_vm(struct vm *vm, const struct kvm_vm_state *s,
			  bool keep_clock, struct err *err)
{
	struct kvm_clock_data clk = {.clock = s->clock_ns};
	const uint8_t *src[3] = {s->pic_master, s->pic_slave, s->ioapic};
	uint64_t now = real_ns();

	if (!keep_clock && now > s->realtime_ns)
		clk.clock += now - s->realtime_ns;
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clk) < 0)
		return err_set(err, -errno, "KVM_SET_CLOCK: %s",
			       strerror(errno));
	for (unsigned i = 0; i < 3; i++) {
		struct kvm_irqchip chip = {.chip_id = i};

		memcpy(&chip.chip, src[i], 512);
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
			return err_set(err, -errno, "KVM_SET_IRQCHIP %u: %s", i,
				       strerror(errno));
	}
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, (struct kvm_pit_state2 *)s->pit) < 0)
		return err_set(err, -errno, "KVM_SET_PIT2: %s",
			       strerror(errno));
	return 0;
}

/*
 * What the snapshot occupies: the state file plus the RAM file's allocated
 * blocks (its zero pages are holes, so its length says little).
 */
static uint64_t snapshot_disk_bytes(const char *path)
{
	char ram_path[4096];
	struct stat st;
	uint64_t n = 0;

	if (!stat(path, &st))
		n += (uint64_t)st.st_size;
	if (!snap_ram_default_path(path, ram_path, sizeof(ram_path)) &&
	    !stat(ram_path, &st))
		n += (uint64_t)st.st_blocks * 512;
	return n;
}

/* RAM is nearly all of a save: its progress goes to a client that asked. */
static void save_progress(void *opaque, uint64_t done, uint64_t total)
{
	const struct checkpoint_opts *o = opaque;

	if (o->progress)
		o->progress(done, total);
}

static void restore_progress(void *opaque, uint64_t done, uint64_t total)
{
	progress_update(opaque, done, total);
}

/* "path: why" for a failed writer call. */
static int writer_fail(struct snap_writer *w, const char *path, int ret,
		       struct err *err)
{
	return err_set(err, ret, "%s: %s", path, snap_writer_why(w, ret));
}

/* The embedded machine config, as JSON. */
static int write_config(struct vm *vm, struct snap_writer *w)
{
	json_t *cj = config_to_json(vm->cfg);
	char *json = cj ? json_dumps(cj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	int ret;

	json_decref(cj);
	if (!json)
		return -ENOMEM;
	ret = snap_write_blob(w, "config", 0, 1, 0, json, strlen(json));
	free(json);
	return ret;
}

/* KVM's state of the paused VM: VM-wide, then each vCPU. */
static int write_kvm_state(struct vm *vm, struct snap_writer *w,
			   const char *path, struct err *err)
{
	struct kvm_vm_state *ks = calloc(1, sizeof(*ks));
	struct vcpu_state *vs = calloc(1, sizeof(*vs));
	struct err e = {0};
	int ret = -ENOMEM;

	if (!ks || !vs)
		goto fail;
	ret = save_kvm_vm(vm, ks, err);
	if (ret)
		goto out;
	ret = snap_write_section(w, &kvm_vm_snap, 0, ks);
	if (ret)
		goto fail;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		ret = vcpu_state_save(vm->vcpus[i].fd, &vm->msrs, vs, &e);
		if (ret) {
			err_set(err, ret, "%s", e.msg);
			goto out;
		}
		ret = snap_write_section(w, &vcpu_state_snap, i, vs);
		if (ret)
			goto fail;
	}
	goto out;
fail:
	writer_fail(w, path, ret, err);
out:
	free(ks);
	free(vs);
	return ret;
}

/* What a state file records of this host: its CPU, KVM's API, the backend. */
static void host_info_fill(const struct vm *vm, struct snap_host_info *host)
{
	char kvm_info[sizeof(host->kvm_info)];

	snprintf(kvm_info, sizeof(kvm_info), "api %d%s", KVM_API_VERSION,
		 vm->sw_backend ? ", software backend" : "");
	snap_host_info_probe(host, kvm_info);
}

/*
 * The state file, from the paused VM, written but not committed: left
 * open in *@out for the caller to commit with the RAM file once the
 * guest runs again (snap_ram_pair_commit).
 */
static int write_state(struct vm *vm, const char *path,
		       struct snap_ram_info *ram, const uint8_t *save_id,
		       struct snap_writer **out, struct err *err)
{
	struct snap_host_info host;
	struct snap_writer *w = NULL;
	struct err e = {0};
	int ret;

	host_info_fill(vm, &host);
	ret = snap_writer_open(&w, path, &host, save_id);
	if (ret)
		return err_set(err, ret, "%s: %s", path, strerror(-ret));
	ret = write_config(vm, w);
	if (!ret)
		ret = snap_ram_write_section(w, ram);
	if (ret) {
		writer_fail(w, path, ret, err);
		goto fail;
	}
	ret = write_kvm_state(vm, w, path, err);
	if (ret)
		goto fail;
	ret = snap_fault(SNAP_FAULT_DEVICE_SAVE);
	if (ret)
		err_set(err, ret,
			"%s: a device refuses to save its state (injected "
			"fault)",
			path);
	else if ((ret = vm_devices_save(vm->devs, w, &e)))
		err_set(err, ret, "%s", e.msg);
	if (ret)
		goto fail;
	*out = w;
	return 0;
fail:
	snap_writer_abort(w);
	return ret;
}

/*
 * ---- Live pre-copy ----
 *
 * A checkpoint of a running guest copies its RAM while it runs, then
 * copies again, still running, what was written meanwhile (rounds, while
 * that set shrinks), then pauses the guest and copies only what was
 * written since the last round. Two trackers, united, say which pages
 * those are, and both are read and cleared in one step, so each round
 * sees exactly the writes since the one before:
 *
 * - KVM's dirty log (KVM_MEM_LOG_DIRTY_PAGES, KVM_GET_DIRTY_LOG) sees
 *   every write by a vCPU and by KVM itself (kvmclock, steal time, ...);
 * - khyve's own bitmap (guest_mem_dirty_*, guest_mem.h) sees every write
 *   khyve's threads make into guest memory, which KVM never sees: virtio
 *   device data and used rings, marked by virtq_push() after the data is
 *   written (so requests in flight across the start, the virtio-blk
 *   workers and O_DIRECT reads are covered without quiescing anything),
 *   and guest_mem_write() (emulated instructions).
 *
 * Soft-dirty (/proc/self/clear_refs) used to be the second tracker. It
 * did not earn its place: host kernels without CONFIG_MEM_SOFT_DIRTY
 * (kvm_pvm machines) made every checkpoint stop-and-copy (2.4 s paused
 * at 800 MiB); clearing it write-protects the whole process, devices had
 * to be quiesced around that; and it cannot be cleared between rounds
 * without losing writes, so only one pre-copy round was possible.
 *
 * Without KVM's dirty log the save is stop-and-copy; the reply
 * ("not_live_reason") and the log say why.
 *
 * In the pause: drain, the last dirty set copied, the state file written
 * (not synced). Both files are complete then, so their fsync and commit
 * as a pair wait until the guest runs again: inside the pause they were
 * most of it (8.7 + 16.2 of 26 ms at 800 MiB on a kvm_pvm host).
 */
#define PRECOPY_MAX_ROUNDS 5  /* copy passes while running, the full one 1st */
#define PRECOPY_FEW_PAGES  64 /* a dirty set this small is copied paused */

struct precopy {
	struct snap_ram_live *lv;
	uint64_t *bm;	 /* collected pages not copied again yet */
	uint64_t words;	 /* of bm */
	unsigned rounds; /* copy passes made while running */
};

static int dirty_log_set(struct vm *vm, bool on)
{
	for (unsigned i = 0; i < vm->mem.nr; i++) {
		struct kvm_userspace_memory_region r = {
			.slot = i,
			.flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0,
			.guest_phys_addr = vm->mem.r[i].gpa,
			.memory_size = vm->mem.r[i].size,
			.userspace_addr = (uint64_t)(uintptr_t)vm->mem.r[i].hva,
		};

		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
			return -errno;
	}
	return 0;
}

/* OR the pages KVM logged since the last call into @bm (flat RAM pages). */
static int dirty_log_collect(struct vm *vm, uint64_t *bm)
{
	for (unsigned i = 0; i < vm->mem.nr; i++) {
		const struct guest_mem_region *r = &vm->mem.r[i];
		uint64_t words = (r->size / PAGE_SIZE + 63) / 64;
		uint64_t first = r->offset / PAGE_SIZE;
		uint64_t *log = calloc(words, 8);
		struct kvm_dirty_log dl = {.slot = i, .dirty_bitmap = log};

		if (!log)
			return -ENOMEM;
		if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &dl) < 0) {
			int rc = -errno;

			free(log);
			return rc;
		}
		for (uint64_t w = 0; w < words; w++)
			for (uint64_t b = log[w]; b; b &= b - 1) {
				uint64_t pg = first + w * 64 +
					      (uint64_t)__builtin_ctzll(b);

				bm[pg / 64] |= 1ULL << (pg % 64);
			}
		free(log);
	}
	return 0;
}

/* Both trackers: pages written since the last collect, into pc->bm. */
static int precopy_collect(struct vm *vm, struct precopy *pc, uint64_t *n)
{
	int ret = dirty_log_collect(vm, pc->bm);

	guest_mem_dirty_collect(&vm->mem, pc->bm);
	vm_chain_note(vm, pc->bm); /* changed since the last snapshot, too */
	*n = 0;
	for (uint64_t w = 0; w < pc->words; w++)
		*n += (uint64_t)__builtin_popcountll(pc->bm[w]);
	return ret;
}

static void precopy_stop_tracking(struct vm *vm)
{
	int ret;

	if (vm_chain_tracking(vm))
		return; /* kept on for the next incremental save */
	ret = dirty_log_set(vm, false);
	if (ret)
		log_warn("snapshot: cannot stop KVM dirty logging: %s",
			 strerror(-ret));
	guest_mem_dirty_stop(&vm->mem);
}

static void precopy_abort(struct vm *vm, struct precopy *pc)
{
	precopy_stop_tracking(vm);
	snap_ram_live_abort(pc->lv);
	free(pc->bm);
	memset(pc, 0, sizeof(*pc));
}

/*
 * With the guest paused: keep tracking its writes from here on, for an
 * incremental save after this snapshot (vm_chain.h). Without KVM's dirty
 * log the next checkpoint cannot be incremental; the log says why.
 */
static void track_start(struct vm *vm)
{
	int ret;

	if (vm_chain_tracking(vm))
		return;
	ret = guest_mem_dirty_start(&vm->mem);
	if (!ret && (ret = dirty_log_set(vm, true)))
		guest_mem_dirty_stop(&vm->mem);
	if (!ret)
		ret = vm_chain_track_started(vm);
	if (ret)
		log_info("snapshot: guest writes not tracked (%s): the next "
			 "checkpoint cannot be incremental",
			 strerror(-ret));
}

/* Paused: the trackers' pages since the last collect, noted. */
static int track_collect(struct vm *vm)
{
	struct precopy pc = {.words = (vm->mem.ram_size / PAGE_SIZE + 63) / 64};
	uint64_t n;
	int ret;

	pc.bm = calloc(pc.words, 8);
	if (!pc.bm)
		return -ENOMEM;
	ret = precopy_collect(vm, &pc, &n);
	free(pc.bm);
	return ret;
}

/*
 * Start tracking, copy all RAM while the guest runs, then the pages it
 * wrote meanwhile for as long as that set shrinks. -EOPNOTSUPP (nothing
 * left behind, @why says why) when writes cannot be tracked here.
 */
static int precopy_start(struct vm *vm, const char *ram_path,
			 const uint8_t *save_id,
			 const struct checkpoint_opts *o, struct precopy *pc,
			 char *why, size_t whylen, struct err *err)
{
	const struct snap_ram_progress pg = {save_progress, (void *)o};
	bool do_fsync = o->fsync;
	uint64_t n, prev = UINT64_MAX, written;
	int ret;

	memset(pc, 0, sizeof(*pc));
	pc->words = (vm->mem.ram_size / PAGE_SIZE + 63) / 64;
	pc->bm = calloc(pc->words, 8);
	if (!pc->bm)
		return err_set(err, -ENOMEM, "no memory for a dirty bitmap");
	ret = snap_ram_live_open(&vm->mem, ram_path, save_id, &pc->lv);
	if (ret) {
		free(pc->bm);
		return err_set(err, ret, "saving guest RAM to %s: %s", ram_path,
			       strerror(-ret));
	}
	/*
	 * Tracked since the last snapshot already (vm_chain.h): what was
	 * logged so far goes to that record, not into this save's rounds.
	 */
	if (vm_chain_tracking(vm)) {
		ret = precopy_collect(vm, pc, &n);
		memset(pc->bm, 0, pc->words * 8);
		goto copy;
	}
	/* Own tracking first: it misses nothing once this returns. */
	ret = guest_mem_dirty_start(&vm->mem);
	if (ret) {
		precopy_abort(vm, pc);
		return err_set(err, ret, "no memory for a dirty bitmap");
	}
	ret = dirty_log_set(vm, true);
	if (!ret && vm_chain_track_started(vm))
		log_warn("snapshot: no memory to track pages for incremental "
			 "snapshots");
	if (ret) {
		precopy_abort(vm, pc);
		snprintf(why, whylen, "KVM dirty log unavailable: %s",
			 strerror(-ret));
		log_warn("snapshot: not live (%s): the guest stays paused for "
			 "the whole save",
			 why);
		return -EOPNOTSUPP;
	}
copy:
	/* An increment: only what changed since the last snapshot. */
	if (!ret)
		ret = snap_ram_live_copy(
			pc->lv, o->incremental ? vm_chain_since(vm) : NULL,
			&pg);
	/* Written back now, the commit's fsync (guest paused) is short. */
	if (!ret && do_fsync)
		ret = snap_ram_live_flush(pc->lv);
	pc->rounds = 1;
	written = snap_ram_live_written(pc->lv);
	while (!ret && pc->rounds < PRECOPY_MAX_ROUNDS) {
		ret = precopy_collect(vm, pc, &n);
		/* Few, or not shrinking: the final copy takes them. */
		if (ret || n <= PRECOPY_FEW_PAGES || n >= prev)
			break;
		ret = snap_ram_live_copy(pc->lv, pc->bm, NULL);
		memset(pc->bm, 0, pc->words * 8);
		prev = n;
		pc->rounds++;
	}
	if (!ret && do_fsync && snap_ram_live_written(pc->lv) != written)
		ret = snap_ram_live_flush(pc->lv);
	if (ret) {
		precopy_abort(vm, pc);
		return err_set(err, ret, "saving guest RAM to %s: %s", ram_path,
			       strerror(-ret));
	}
	return 0;
}

/*
 * Guest paused and devices drained: copy what was written since the last
 * round, stop tracking, and say what the RAM file will hold (@ram). The
 * file is committed with the state file (snap_ram_pair_commit) once the
 * guest runs again: its content is final, only the fsync and renames are
 * left, and they need not stand in the pause. On error @pc is consumed.
 */
static int precopy_finish(struct vm *vm, struct precopy *pc,
			  struct snap_ram_info *ram, uint64_t *final_bytes,
			  uint64_t *final_hashed, uint64_t *t_scanned,
			  uint64_t *t_copied, struct err *err)
{
	struct snap_ram_live *lv = pc->lv;
	uint64_t before = snap_ram_live_written(lv);
	uint64_t hashed0 = snap_ram_live_hashed(lv);
	uint64_t n;
	int ret;

	ret = precopy_collect(vm, pc, &n);
	precopy_stop_tracking(vm);
	*t_scanned = mono_ns();
	if (!ret)
		ret = snap_ram_live_copy(lv, pc->bm, NULL);
	free(pc->bm);
	pc->bm = NULL;
	*t_copied = mono_ns();
	if (!ret)
		ret = snap_ram_live_info(lv, ram);
	if (ret) {
		snap_ram_live_abort(lv);
		pc->lv = NULL;
		return err_set(err, ret, "saving guest RAM: %s",
			       strerror(-ret));
	}
	*final_bytes = snap_ram_live_written(lv) - before;
	*final_hashed = snap_ram_live_hashed(lv) - hashed0;
	return 0;
}

/*
 * What a save replaces must be a regular file, or nothing: a symlink
 * would be replaced by the rename (not followed), and a FIFO or device
 * would hang the open that holds the old RAM file (see below).
 */
static int check_dest(const char *path, struct err *err)
{
	struct stat st;

	if (lstat(path, &st)) {
		if (errno == ENOENT)
			return 0;
		return err_set(err, -errno, "%s: %s", path, strerror(errno));
	}
	if (S_ISLNK(st.st_mode))
		return err_set(
			err, -ELOOP,
			"%s: is a symbolic link: a snapshot is saved only "
			"over a regular file (not following or replacing it)",
			path);
	if (!S_ISREG(st.st_mode))
		return err_set(
			err, -EEXIST,
			"%s: %s is there, not a regular file: not replacing "
			"it",
			path, snap_file_type(st.st_mode));
	return 0;
}

/*
 * A mapped restore reads the pages the guest has not written yet from its
 * RAM file: if that file shrank, they are gone, and reading one (the save
 * reads them all) would kill khyve with SIGBUS.
 */
static int check_ram_file(struct vm *vm, struct err *err)
{
	struct vm_ram_file *rf = vm->ram_file;
	struct stat st;

	if (!rf)
		return 0;
	if (fstat(rf->fd, &st))
		return err_set(err, -errno, "%s: %s", rf->path,
			       strerror(errno));
	if ((uint64_t)st.st_size < vm->mem.ram_size)
		return err_set(
			err, -EIO,
			"%s, the RAM file this guest was restored from and "
			"still maps, shrank to %lld bytes (guest RAM is "
			"%" PRIu64 "): pages the guest has not written since "
			"are gone; not saving",
			rf->path, (long long)st.st_size, vm->mem.ram_size);
	return 0;
}

/* One save, from step to step (vm_snapshot_save). */
struct save {
	struct vm *vm;
	const struct checkpoint_opts *o;
	struct precopy pc;	  /* live: the pre-copy while running */
	struct snap_ram_live *lv; /* the RAM file, content final */
	struct snap_writer *w;	  /* the state file, every section written */
	uint8_t save_id[SNAP_SAVE_ID_LEN];
	char ram_path[4096];
	char why[CHECKPOINT_REASON_MAX]; /* not live: why */
	bool was_paused;		 /* by a client, before the save */
	bool paused;			 /* by this save */
	bool live;
	struct vm_chain_save cs; /* an incremental save's parent */
	int old_ram;		 /* the RAM file being replaced, held open */
	uint64_t ram_bytes, final_bytes, final_hashed;
	/* CLOCK_MONOTONIC ns: request, vCPUs stopped, devices stopped, last
	 * dirty set collected and copied, RAM done, state file done, vCPUs
	 * running again, committed */
	uint64_t t0, tp, tdrain, tscan, tcopy, tram, tsave, tresume, tdone;
};

/* The directory part of @path ("." for a bare name), resolved. */
static int dir_of(const char *path, char *out)
{
	const char *slash = strrchr(path, '/');
	char d[4096];

	if (!slash)
		snprintf(d, sizeof(d), ".");
	else
		snprintf(d, sizeof(d), "%.*s",
			 (int)(slash - path) + !(slash - path), path);
	return realpath(d, out) ? 0 : -errno;
}

/*
 * o->file's RAM file: FILE.ram, or o->ram_file if it is beside the state
 * file (which records it by bare name, so a restore finds it there).
 */
static int ram_path_for(const struct checkpoint_opts *o, char *out, size_t len,
			struct err *err)
{
	char d1[PATH_MAX], d2[PATH_MAX];
	int ret;

	if (!o->ram_file) {
		if (snap_ram_default_path(o->file, out, len))
			return err_set(err, -ENAMETOOLONG,
				       "%s: file name too long", o->file);
		return 0;
	}
	ret = dir_of(o->file, d1);
	if (!ret)
		ret = dir_of(o->ram_file, d2);
	if (ret)
		return err_set(err, ret, "%s: %s", o->file, strerror(-ret));
	if (strcmp(d1, d2))
		return err_set(err, -EINVAL,
			       "memory file %s: not in the state file's "
			       "directory %s (khyve records it by bare name)",
			       o->ram_file, d1);
	if (snprintf(out, len, "%s", o->ram_file) >= (int)len ||
	    !strcmp(o->ram_file, o->file))
		return err_set(err, -EINVAL, "memory file %s: bad name",
			       o->ram_file);
	return 0;
}

/*
 * Everything before the pause: the destination checked, a save id, the
 * old RAM file held, and, for a live checkpoint, the pre-copy.
 */
static int save_prepare(struct save *s, struct err *err)
{
	const struct checkpoint_opts *o = s->o;
	struct vm *vm = s->vm;
	int ret;

	if (!o->file || !*o->file)
		return err_set(err, -EINVAL, "missing snapshot file name");
	ret = ram_path_for(o, s->ram_path, sizeof(s->ram_path), err);
	if (!ret)
		ret = check_dest(o->file, err);
	if (!ret)
		ret = check_dest(s->ram_path, err);
	if (!ret)
		ret = check_ram_file(vm, err);
	if (!ret)
		ret = vm_chain_check_files(vm, err);
	if (!ret && o->incremental)
		ret = vm_chain_save_prepare(vm, o->file, s->ram_path, &s->cs,
					    err);
	if (ret)
		return ret;
	ret = snap_save_id_new(s->save_id);
	if (ret)
		return err_set(err, ret, "no random save id: %s",
			       strerror(-ret));
	/*
	 * Hold the RAM file being replaced open until the guest runs again:
	 * the rename that replaces it would otherwise drop its last link and
	 * free all its pages inside the pause (measured: 820 ms for 800 MiB
	 * on tmpfs, most of a live pause). Never following a link nor
	 * waiting on a FIFO planted there since check_dest.
	 */
	s->old_ram = open(s->ram_path,
			  O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	pthread_mutex_lock(&vm->lock);
	s->was_paused = vm->state == VM_PAUSED;
	pthread_mutex_unlock(&vm->lock);
	/*
	 * Live by default for a checkpoint of a running guest ("live": false
	 * turns it off); a suspend ends the guest anyway.
	 */
	s->live = !o->suspend && !s->was_paused && o->live;
	if (!s->live) {
		snprintf(s->why, sizeof(s->why), "%s",
			 o->suspend	 ? "a suspend stops the guest anyway"
			 : s->was_paused ? "the VM was paused"
					 : "'live': false was asked");
		return 0;
	}
	ret = precopy_start(vm, s->ram_path, s->save_id, o, &s->pc, s->why,
			    sizeof(s->why), err);
	if (ret == -EOPNOTSUPP)
		s->live = false;
	return ret == -EOPNOTSUPP ? 0 : ret;
}

/*
 * Stop the vCPUs, then the devices. s->paused says whether the guest was
 * stopped, for the caller to start it again after a later error.
 */
static int save_pause(struct save *s, struct err *err)
{
	struct vm_pause_times pt;
	struct err e = {0};
	int ret;

	/* No block request may be in flight: it would be lost or repeated. */
	ret = vm_pause(s->vm, &pt, &e);
	if (ret) {
		if (s->pc.lv)
			precopy_abort(s->vm, &s->pc);
		return err_set(err, ret, "cannot pause the VM: %s",
			       err_msg(&e));
	}
	s->paused = true;
	s->tp = pt.parked;
	s->tdrain = pt.stopped; /* "drain": devices finished and flushed */
	return 0;
}

/* Paused: the RAM file's content made final (s->lv), described in @ram. */
static int save_ram(struct save *s, struct snap_ram_info *ram, struct err *err)
{
	const struct snap_ram_progress pg = {save_progress, (void *)s->o};
	struct vm *vm = s->vm;
	int ret;

	if (s->pc.lv) {
		ret = precopy_finish(vm, &s->pc, ram, &s->final_bytes,
				     &s->final_hashed, &s->tscan, &s->tcopy,
				     err);
		s->lv = s->pc.lv;
		s->pc.lv = NULL;
		return ret;
	}
	/*
	 * Stop-and-copy: the whole RAM (or what changed) to a file now. What
	 * the trackers hold up to this pause is in this snapshot: collected,
	 * so the next increment holds only what comes after it.
	 */
	ret = vm_chain_tracking(vm) ? track_collect(vm) : 0;
	if (!ret)
		ret = snap_ram_live_open(&vm->mem, s->ram_path, s->save_id,
					 &s->lv);
	if (!ret)
		ret = snap_ram_live_copy(
			s->lv, s->o->incremental ? vm_chain_since(vm) : NULL,
			&pg);
	if (!ret)
		ret = snap_ram_live_info(s->lv, ram);
	if (ret) {
		snap_ram_live_abort(s->lv);
		s->lv = NULL;
		err_set(err, ret, "saving guest RAM beside %s: %s", s->o->file,
			strerror(-ret));
	}
	return ret;
}

/* Commit the RAM file and the state file as one pair (consumes both). */
static int save_commit(struct save *s, struct err *err)
{
	struct err se = {0};
	int ret = snap_ram_pair_commit(s->lv, s->w,
				       s->o->fsync ? SNAP_RAM_FSYNC : 0, &se);

	s->lv = NULL;
	s->w = NULL;
	if (ret)
		err_set(err, ret, "%s", se.msg);
	return ret;
}

/* Paused: the RAM file, the state file, and a stop-and-copy's commit. */
static int save_capture(struct save *s, struct err *err)
{
	struct snap_ram_info ram = {0};
	int ret = save_ram(s, &ram, err);

	s->tram = mono_ns();
	/* Paused: tracking from this point on (a no-op when it is on). */
	if (!ret)
		track_start(s->vm);
	if (!ret && s->o->incremental &&
	    (ret = vm_chain_save_finish(s->vm, &s->cs, &ram))) {
		err_set(err, ret, "%s: %s", s->o->file, strerror(-ret));
		snap_ram_live_abort(s->lv);
		s->lv = NULL;
	}
	if (!ret) {
		s->ram_bytes = s->vm->mem.ram_size;
		/* Written now, committed with the RAM file as one pair. */
		ret = write_state(s->vm, s->o->file, &ram, s->save_id, &s->w,
				  err);
		if (!ret && s->o->incremental &&
		    (ret = snap_chain_write_section(s->w, &s->cs.par))) {
			writer_fail(s->w, s->o->file, ret, err);
			snap_writer_abort(s->w);
			s->w = NULL;
		}
		if (ret) {
			snap_ram_live_abort(s->lv);
			s->lv = NULL;
		}
	}
	snap_ram_info_free(&ram);
	/* Stop-and-copy commits in the pause (a suspend must not lose it). */
	if (!ret && !s->live)
		ret = save_commit(s, err);
	return ret;
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

/* Where the pause went: each phase from the vCPUs' stop on. */
static void save_result(const struct save *s, struct checkpoint_result *res)
{
	uint64_t tscan = s->tscan ? s->tscan : s->tdrain;
	/* stop-and-copy: the commit is part of the state */
	uint64_t tcopy = s->tcopy ? s->tcopy : s->tram;

	memset(res, 0, sizeof(*res));
	res->bytes = snapshot_disk_bytes(s->o->file);
	res->ram_bytes = s->ram_bytes;
	res->total_ms = ms(s->tdone - s->t0);
	res->paused_ms = s->was_paused ? 0.0 : ms(s->tresume - s->tp);
	res->commit_ms = s->live ? ms(s->tdone - s->tresume) : 0.0;
	res->suspended = s->o->suspend;
	res->live = s->live;
	res->precopy_rounds = s->pc.rounds;
	res->final_copy_bytes = s->final_bytes;
	res->final_hash_bytes = s->final_hashed;
	res->phases = (struct checkpoint_phases){
		.drain = ms(s->tdrain - s->tp),
		.dirty_scan = ms(tscan - s->tdrain),
		.ram_copy = ms(tcopy - tscan),
		.ram_commit = ms(s->tram - tcopy),
		.state = ms(s->tsave - s->tram),
		.resume = ms(s->tresume - s->tsave),
	};
	/* Why not live, when it is not: in the reply, not only the log. */
	if (!s->live)
		snprintf(res->not_live_reason, sizeof(res->not_live_reason),
			 "%s", s->why);
	snap_save_id_str(s->save_id, res->save_id);
	res->incremental = s->o->incremental;
	res->changed_bytes = s->cs.par.held * PAGE_SIZE;
	res->chain_depth = s->cs.par.depth;
}

static int save_locked(struct vm *vm, const struct checkpoint_opts *o,
		       struct checkpoint_result *res, struct err *err);

/*
 * One save or migration at a time: the control socket's thread and the
 * Firecracker API's (fc_api.h) may both ask, and each owns the dirty log
 * and the pause for its whole run. @busy_what says which runs.
 */
enum busy_kind { BUSY_NONE, BUSY_SAVE, BUSY_MIGRATION };
static pthread_mutex_t busy_lock = PTHREAD_MUTEX_INITIALIZER;
static enum busy_kind busy_what;

static int busy_begin(enum busy_kind want, struct err *err)
{
	enum busy_kind now;

	pthread_mutex_lock(&busy_lock);
	now = busy_what;
	if (now == BUSY_NONE)
		busy_what = want;
	pthread_mutex_unlock(&busy_lock);
	if (now == BUSY_SAVE)
		return err_set(
			err, -EBUSY,
			want == BUSY_SAVE
				? "another snapshot of this VM is being "
				  "saved"
				: "a snapshot of this VM is being saved: "
				  "no migration until it ends");
	if (now == BUSY_MIGRATION)
		return err_set(
			err, -EBUSY,
			want == BUSY_SAVE
				? "a migration of this VM is running: no "
				  "snapshot until it ends"
				: "another migration of this VM is "
				  "running");
	return 0;
}

static void busy_end(void)
{
	pthread_mutex_lock(&busy_lock);
	busy_what = BUSY_NONE;
	pthread_mutex_unlock(&busy_lock);
}

int vm_snapshot_save(struct vm *vm, const struct checkpoint_opts *o,
		     struct checkpoint_result *res, struct err *err)
{
	int ret = busy_begin(BUSY_SAVE, err);

	if (ret)
		return ret;
	ret = save_locked(vm, o, res, err);
	busy_end();
	return ret;
}

int vm_snapshot_migration_begin(struct vm *vm, struct err *err)
{
	(void)vm;
	return busy_begin(BUSY_MIGRATION, err);
}

void vm_snapshot_migration_end(struct vm *vm)
{
	(void)vm;
	busy_end();
}

static int save_locked(struct vm *vm, const struct checkpoint_opts *o,
		       struct checkpoint_result *res, struct err *err)
{
	struct save s = {.vm = vm, .o = o, .old_ram = -1, .t0 = mono_ns()};
	int ret;

	snap_fault_begin_save();
	ret = save_prepare(&s, err);
	if (ret)
		goto out;
	ret = save_pause(&s, err);
	if (!ret)
		ret = save_capture(&s, err);
	s.tsave = mono_ns();
	if (ret) {
		/* The guest keeps running; a failed suspend does not exit. */
		if (s.paused && !s.was_paused)
			vm_resume(vm);
		goto out;
	}
	if (o->suspend)
		vm_request_stop(vm, KHYVE_EXIT_SUSPENDED);
	else if (!s.was_paused)
		vm_resume(vm);
	s.tresume = mono_ns();
	/*
	 * Live: both files are complete and the guest runs again; syncing
	 * and renaming them took most of the pause when done inside it. The
	 * reply still waits for them.
	 */
	if (s.lv) {
		ret = save_commit(&s, err);
		if (ret)
			goto out;
	}
	s.tdone = mono_ns();
	/* This snapshot is the base of the next increment. */
	if (!o->suspend)
		vm_chain_set_base(vm, o->file, s.save_id, false, 0);
	save_result(&s, res);
	if (s.live)
		log_info("snapshot %s written in %.1f ms (paused %.1f ms, "
			 "live pre-copy in %u rounds)",
			 o->file, res->total_ms, ms(s.tresume - s.tp),
			 s.pc.rounds);
	else
		log_info("snapshot %s written in %.1f ms (paused %.1f ms, not "
			 "live: %s)",
			 o->file, res->total_ms, res->paused_ms, s.why);
out:
	if (s.old_ram >= 0)
		close(s.old_ram); /* the old file's pages go now, guest running
				   */
	vm_chain_save_free(&s.cs);
	return ret;
}

/*
 * A guest cannot move between CPU vendors: its kernel picked vendor
 * specific code paths (SYSCALL/SYSENTER, MSRs, errata) at boot, and KVM
 * loads the saved vendor MSRs only on the same vendor. Refuse that before
 * anything is built. Family/model/feature differences are left to the
 * per-MSR and CPUID checks of the vCPU restore.
 */
static int check_host(struct snap_reader *r, const char *path, struct err *err)
{
	const struct snap_header_info *h = snap_reader_header(r);
	struct snap_host_info here;

	snap_host_info_probe(&here, NULL);
	if (h->host.cpu_vendor[0] && here.cpu_vendor[0] &&
	    strcmp(h->host.cpu_vendor, here.cpu_vendor))
		return err_set(
			err, -EINVAL,
			"%s: header: field 'cpu_vendor': the snapshot was "
			"taken on a %s CPU, this host has a %s CPU (a guest "
			"cannot move between CPU vendors)",
			path, h->host.cpu_vendor, here.cpu_vendor);
	return 0;
}

/*
 * After an eager copy the RAM is in memory anyway, so checking it against
 * the state file's chunk hashes costs one pass of XXH3 (several GB/s) and
 * catches a RAM file that was modified or belongs to another state file.
 * (The mapped restore does not: it would read the whole file up front and
 * lose its point; `khyvectl snapshot verify` covers that case offline.)
 */
static int check_ram_hashes(const struct guest_mem *m,
			    const struct snap_ram_info *ram,
			    const char *ram_path, struct err *err)
{
	for (uint32_t c = 0; c < ram->nchunks; c++) {
		uint64_t off = (uint64_t)c * ram->chunk_size;
		uint64_t n = MIN(ram->chunk_size, m->ram_size - off);

		if (XXH3_64bits(m->base + off, n) != ram->hashes[c])
			return err_set(
				err, -EBADMSG,
				"%s: chunk %u (offset 0x%" PRIx64
				") does not match its hash in the state file",
				ram_path, c, off);
	}
	return 0;
}

int vm_snapshot_read_config(const char *path, struct vm_config *cfg,
			    struct err *err)
{
	struct snap_reader *r = NULL;
	struct err se = {0};
	const void *data;
	size_t len;
	uint16_t ver;
	json_t *j;
	json_error_t je;
	int ret;

	ret = snap_reader_open(&r, path, &se);
	if (ret)
		return err_set(err, ret, "%s", se.msg);
	ret = check_host(r, path, err);
	if (ret)
		goto out;
	ret = snap_read_blob(r, "config", 0, &data, &len, &ver, &se);
	if (ret) {
		err_set(err, ret, "%s", se.msg);
		goto out;
	}
	j = json_loadb(data, len, 0, &je);
	if (!j) {
		ret = err_set(err, -EINVAL, "%s: section 'config': %s", path,
			      je.text);
		goto out;
	}
	ret = config_from_json(cfg, j, &se);
	if (ret)
		err_set(err, ret, "%s", err_msg(&se));
	json_decref(j);
out:
	snap_reader_close(r);
	return ret;
}

/*
 * ---- The RAM file under a mapped restore ----
 *
 * Guest RAM maps the RAM file MAP_PRIVATE: every page the guest has not
 * written yet is read from the file, for as long as the guest runs. Saves
 * never write it in place (they write a new file and rename it over the
 * name), but another process can: rewritten pages change under the guest
 * (and under every clone of the snapshot), and a truncation takes them
 * away - a read of one is a SIGBUS that kills khyve. khyve keeps the file
 * open: a save first checks that it did not shrink (check_ram_file), and a
 * read lease (F_RDLCK; the file's owner or CAP_LEASE) makes the kernel
 * tell us (SIGIO, read by the main loop) when someone opens it for
 * writing or truncates it. khyve then gives the lease up at once, so the
 * writer is not held up, and logs a warning naming the file: the guest
 * goes on with whatever the writer leaves there. docs/security.md.
 */
static void ram_file_watch(struct vm *vm, int fd, const char *path)
{
	struct vm_ram_file *rf = calloc(1, sizeof(*rf));

	if (!rf) {
		close(fd);
		return;
	}
	rf->fd = fd;
	snprintf(rf->path, sizeof(rf->path), "%s", path);
	if (!fcntl(fd, F_SETLEASE, F_RDLCK))
		rf->leased = true;
	else
		log_info("%s: no read lease (%s): a process rewriting this "
			 "RAM file in place would go unnoticed",
			 path, strerror(errno));
	vm->ram_file = rf;
}

void vm_snapshot_ram_file_event(struct vm *vm)
{
	struct vm_ram_file *rf = vm->ram_file;

	/* F_GETLEASE says F_UNLCK once a break is under way. */
	if (!rf || !rf->leased || fcntl(rf->fd, F_GETLEASE) == F_RDLCK)
		return;
	if (fcntl(rf->fd, F_SETLEASE, F_UNLCK))
		log_debug("%s: F_SETLEASE F_UNLCK: %s", rf->path,
			  strerror(errno));
	rf->leased = false;
	rf->broken = true;
	log_warn("%s: another process opens this RAM file for writing or "
		 "truncates it, and guest RAM still maps it: pages the guest "
		 "has not written yet take whatever is written there, and if "
		 "it shrinks, reading one kills khyve (SIGBUS). Restore with "
		 "--eager to be independent of the file.",
		 rf->path);
}

void vm_snapshot_release(struct vm *vm)
{
	struct vm_ram_file *rf = vm->ram_file;

	if (!rf) {
		vm_chain_free(vm);
		return;
	}
	close(rf->fd); /* the lease goes with it */
	free(rf);
	vm->ram_file = NULL;
	vm_chain_free(vm);
}

/* Every described section a restore loads, by name. */
static const struct snap_desc *const restore_descs[] = {
	&kvm_vm_snap,	      &vcpu_state_snap, &uart8250_snap_desc,
	&rtc_snap_desc,	      &i8042_snap_desc, &pm_snap_desc,
	&pci_dev_snap,	      &pci_bus_snap,	&virtio_pci_snap,
	&virtq_snap,	      &virtio_blk_snap, &virtio_net_snap,
	&virtio_console_snap, &vmgenid_snap,
};

/* The RAM file a state file at @path names: a bare name beside it. */
static int ram_path_of(const char *path, const struct snap_ram_info *ram,
		       char *buf, size_t len, struct err *err)
{
	int ret = snap_ram_resolve(path, ram->file, buf, len);

	if (ret)
		err_set(err, ret, "%s: section 'ram': bad RAM file name", path);
	return ret;
}

/*
 * An increment: every link of its chain checked (state files, ids and
 * hashes, RAM files) before anything is built; its section is consumed.
 */
static int preflight_chain(const char *path, struct snap_reader *r,
			   struct err *se)
{
	struct snap_chain_parent par;
	struct snap_chain ch;
	int ret = snap_chain_read_section(r, &par, se);

	snap_chain_parent_free(&par);
	if (!ret)
		ret = snap_chain_open(path, &ch, se);
	if (!ret)
		snap_chain_close(&ch);
	return ret;
}

int vm_snapshot_preflight(const char *path, const struct vm_config *cfg,
			  struct err *err)
{
	struct snap_reader *r = NULL;
	struct err se = {0};
	struct snap_ram_info ram = {0};
	char ram_path[4096];
	const void *data;
	size_t len;
	uint16_t ver;
	int ret;

	ret = snap_reader_open(&r, path, &se);
	if (ret)
		goto fail_se;
	ret = check_host(r, path, err);
	if (ret)
		goto out;
	ret = snap_read_blob(r, "config", 0, &data, &len, &ver, &se);
	if (!ret)
		ret = snap_ram_read_section(r, &ram, &se);
	if (!ret && snap_has_section(r, SNAP_CHAIN_SECTION, 0))
		ret = preflight_chain(path, r, &se);
	if (ret)
		goto fail_se;
	if (ram.ram_size != cfg->mem_size) {
		ret = err_set(err, -EINVAL,
			      "%s: section 'ram': field 'ram_size': %" PRIu64
			      " does not match the configured memory %" PRIu64,
			      path, ram.ram_size, cfg->mem_size);
		goto out;
	}
	/* Every described section through this khyve's own description. */
	for (unsigned i = 0; i < snap_reader_nsections(r); i++) {
		struct snap_section_info si;
		const struct snap_desc *d = NULL;
		void *scratch;

		snap_reader_section(r, i, &si);
		if (si.kind != SNAP_KIND_DESC)
			continue;
		for (unsigned k = 0; k < ARRAY_SIZE(restore_descs); k++)
			if (!strcmp(restore_descs[k]->name, si.name))
				d = restore_descs[k];
		if (!d)
			continue; /* left to snap_reader_check_consumed */
		scratch = calloc(1, d->state_size ? d->state_size : 1);
		if (!scratch) {
			ret = -ENOMEM;
			goto out;
		}
		ret = snap_read_section(r, d, si.instance, scratch, &se);
		free(scratch);
		if (ret)
			goto fail_se;
	}
	ret = snap_reader_check_consumed(r, &se);
	if (ret)
		goto fail_se;
	/* The RAM file: beside it, a regular file of this pair. */
	ret = ram_path_of(path, &ram, ram_path, sizeof(ram_path), err);
	if (ret)
		goto out;
	ret = snap_ram_check_file(ram_path, &ram, &se);
	if (ret)
		goto fail_se;
	goto out;
fail_se:
	err_set(err, ret, "%s", se.msg);
out:
	snap_ram_info_free(&ram);
	snap_reader_close(r);
	return ret;
}

/* The snapshot engine's message as the caller's; returns @ret. */
static int se_fail(const struct err *se, int ret, struct err *err)
{
	return err_set(err, ret, "%s", se->msg);
}

/*
 * Read and check what a restore loads before KVM sees any of it: the
 * state file, its config (main.c built the machine from it; marked used),
 * the RAM section, the VM-wide and the vCPU states.
 */
static int restore_read(struct vm *vm, const char *path, struct snap_reader **r,
			struct snap_ram_info *ram, struct kvm_vm_state *ks,
			struct vcpu_state *vs, struct err *se, struct err *err)
{
	const void *cdata;
	size_t clen;
	uint16_t cver;
	int ret;

	ret = snap_reader_open(r, path, se);
	if (!ret)
		ret = snap_read_blob(*r, "config", 0, &cdata, &clen, &cver, se);
	if (!ret)
		ret = snap_ram_read_section(*r, ram, se);
	if (ret)
		return se_fail(se, ret, err);
	if (ram->ram_size != vm->mem.ram_size)
		return err_set(err, -EINVAL,
			       "%s: section 'ram': field 'ram_size': %" PRIu64
			       " does not match the configured memory %" PRIu64,
			       path, ram->ram_size, vm->mem.ram_size);
	ret = snap_read_section(*r, &kvm_vm_snap, 0, ks, se);
	for (unsigned i = 0; !ret && i < vm->ncpus; i++)
		ret = snap_read_section(*r, &vcpu_state_snap, i, &vs[i], se);
	if (ret)
		err_set(err, ret, "%s", se->msg);
	return ret;
}

/* Guest RAM from the RAM file: mapped (and watched), or copied and
 * checked against its hashes. */
static int restore_ram(struct vm *vm, const struct restore_opts *o,
		       const struct snap_ram_info *ram, const char *ram_path,
		       struct err *err)
{
	struct err se = {0};
	int ret, fd;

	if (!o->eager) {
		ret = snap_ram_map(&vm->mem, ram_path, ram, &fd, &se);
		if (ret)
			return se_fail(&se, ret, err);
		ram_file_watch(vm, fd, ram_path);
		return 0;
	}
	{
		/* A copy of many GiB takes a while: say so on a terminal. */
		struct progress pl;
		const struct snap_ram_progress pg = {restore_progress, &pl};

		if (o->progress)
			progress_start(&pl, STDERR_FILENO,
				       "khyve: restoring guest RAM");
		ret = snap_ram_load_eager(&vm->mem, ram_path, ram,
					  o->progress ? &pg : NULL, &se);
		if (o->progress)
			progress_end(&pl);
	}
	if (ret)
		return se_fail(&se, ret, err);
	return check_ram_hashes(&vm->mem, ram, ram_path, err);
}

/* Guest RAM from an incremental snapshot's chain (vm_chain.h). */
static int restore_chain(struct vm *vm, const struct restore_opts *o,
			 struct snap_reader *r, struct err *err)
{
	char base_ram[4096];
	int fd, ret;

	ret = vm_chain_restore_ram(vm, o, r, &fd, base_ram, sizeof(base_ram),
				   err);
	if (!ret && fd >= 0)
		ram_file_watch(vm, fd, base_ram);
	return ret;
}

int vm_snapshot_restore(struct vm *vm, const struct restore_opts *o,
			struct err *err)
{
	struct snap_reader *r = NULL;
	struct err se = {0};
	struct snap_ram_info ram = {0};
	struct kvm_vm_state *ks = calloc(1, sizeof(*ks));
	struct vcpu_state *vs = calloc(vm->ncpus, sizeof(*vs));
	char ram_path[4096];
	int ret = -ENOMEM;

	if (!ks || !vs)
		goto out;
	ret = restore_read(vm, o->file, &r, &ram, ks, vs, &se, err);
	if (!ret && snap_has_section(r, SNAP_CHAIN_SECTION, 0))
		ret = restore_chain(vm, o, r, err);
	else if (!ret && !(ret = ram_path_of(o->file, &ram, ram_path,
					     sizeof(ram_path), err)))
		ret = restore_ram(vm, o, &ram, ram_path, err);
	/* Guest RAM is the snapshot's: its writes are tracked from here. */
	if (!ret && snap_reader_header(r)->has_save_id) {
		track_start(vm);
		vm_chain_set_base(vm, o->file, snap_reader_header(r)->save_id,
				  true, snap_reader_hash(r));
	}
	if (!ret && (ret = vm_devices_load(vm->devs, r, &se)))
		err_set(err, ret, "%s", se.msg);
	if (ret)
		goto out;
	ret = snap_reader_check_consumed(r, &se);
	if (ret) {
		err_set(err, ret, "%s", se.msg);
		goto out;
	}
	ret = restore_kvm_vm(vm, ks, o->keep_clock, err);
	for (unsigned i = 0; !ret && i < vm->ncpus; i++) {
		ret = vcpu_state_restore(vm->vcpus[i].fd, &vs[i], &se);
		if (ret) {
			err_prefix(&se, "%s: vCPU %u: ", o->file, i);
			err_set(err, ret, "%s", se.msg);
		}
	}
	if (ret)
		goto out;
	vm_devices_rtc_resync(vm->devs, o->keep_clock);
	/* Only now may devices complete requests and raise interrupts. */
	vm_devices_resume(vm->devs);
out:
	snap_ram_info_free(&ram);
	snap_reader_close(r);
	free(ks);
	free(vs);
	return ret;
}

/*
 * ---- Migration (src/migrate.c, src/migrate_incoming.c) ----
 *
 * A migration stream carries the same state file as a snapshot, built in
 * memory and without the "ram" section (RAM travels as page records),
 * and uses the pre-copy's dirty tracking above round by round.
 */
int vm_snapshot_dirty_start(struct vm *vm, struct err *err)
{
	int ret;

	/*
	 * Tracked since the last snapshot already (vm_chain.h): what was
	 * logged so far goes to that record, the migration counts from here.
	 */
	if (vm_chain_tracking(vm)) {
		uint64_t n, words = (vm->mem.ram_size / PAGE_SIZE + 63) / 64;
		struct precopy pc = {.bm = calloc(words, 8), .words = words};

		ret = pc.bm ? precopy_collect(vm, &pc, &n) : -ENOMEM;
		free(pc.bm);
		return ret ? err_set(err, ret, "collecting the dirty log: %s",
				     strerror(-ret))
			   : 0;
	}
	ret = guest_mem_dirty_start(&vm->mem);
	if (ret)
		return err_set(err, ret, "no memory for a dirty bitmap");
	ret = dirty_log_set(vm, true);
	if (ret) {
		guest_mem_dirty_stop(&vm->mem);
		return err_set(err, ret, "KVM dirty log unavailable: %s",
			       strerror(-ret));
	}
	return 0;
}

int vm_snapshot_dirty_collect(struct vm *vm, uint64_t *bm, uint64_t words,
			      uint64_t *n)
{
	struct precopy pc = {.bm = bm, .words = words};

	return precopy_collect(vm, &pc, n);
}

void vm_snapshot_dirty_stop(struct vm *vm)
{
	precopy_stop_tracking(vm);
}

int vm_snapshot_state_mem(struct vm *vm, uint8_t **data, size_t *len,
			  struct err *err)
{
	static const char name[] = "migration state";
	struct snap_host_info host;
	struct snap_writer *w = NULL;
	struct err e = {0};
	int ret;

	host_info_fill(vm, &host);
	ret = snap_writer_open_mem(&w, name, &host, NULL);
	if (ret)
		return err_set(err, ret, "%s: %s", name, strerror(-ret));
	ret = write_config(vm, w);
	if (ret) {
		writer_fail(w, name, ret, err);
		goto out;
	}
	ret = write_kvm_state(vm, w, name, err);
	if (!ret && (ret = vm_devices_save(vm->devs, w, &e)))
		err_set(err, ret, "%s", e.msg);
	if (!ret && (ret = snap_writer_take_mem(w, data, len)))
		writer_fail(w, name, ret, err);
out:
	snap_writer_abort(w);
	return ret;
}

int vm_snapshot_load_state(struct vm *vm, const char *name, const void *data,
			   size_t len, struct err *err)
{
	struct snap_reader *r = NULL;
	struct err se = {0};
	struct kvm_vm_state *ks = calloc(1, sizeof(*ks));
	struct vcpu_state *vs = calloc(vm->ncpus, sizeof(*vs));
	const void *cdata;
	size_t clen;
	uint16_t cver;
	int ret = -ENOMEM;

	if (!ks || !vs) {
		err_set(err, ret, "out of memory");
		goto out;
	}
	ret = snap_reader_open_mem(&r, name, data, len, &se);
	if (!ret)
		ret = check_host(r, name, &se);
	/* The config was the HELLO's; the state file's copy is checked. */
	if (!ret)
		ret = snap_read_blob(r, "config", 0, &cdata, &clen, &cver, &se);
	if (!ret)
		ret = snap_read_section(r, &kvm_vm_snap, 0, ks, &se);
	for (unsigned i = 0; !ret && i < vm->ncpus; i++)
		ret = snap_read_section(r, &vcpu_state_snap, i, &vs[i], &se);
	if (!ret)
		ret = vm_devices_load(vm->devs, r, &se);
	if (!ret)
		ret = snap_reader_check_consumed(r, &se);
	if (ret) {
		err_set(err, ret, "%s", se.msg);
		goto out;
	}
	ret = restore_kvm_vm(vm, ks, false, err);
	for (unsigned i = 0; !ret && i < vm->ncpus; i++) {
		ret = vcpu_state_restore(vm->vcpus[i].fd, &vs[i], &se);
		if (ret) {
			err_prefix(&se, "%s: vCPU %u: ", name, i);
			err_set(err, ret, "%s", se.msg);
		}
	}
	if (ret)
		goto out;
	vm_devices_rtc_resync(vm->devs, false);
	vm_devices_resume(vm->devs);
out:
	snap_reader_close(r);
	free(ks);
	free(vs);
	return ret;
}
