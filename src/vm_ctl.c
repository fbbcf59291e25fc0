/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The VMM side of the control socket: ctl_ops implemented on struct vm.
 * Callbacks run on the control server's thread; an error becomes a reply.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common.h"
#include "ctl.h"
#include "log.h"
#include "migrate.h"
#include "migrate_postcopy.h"
#include "vm.h"
#include "vm_ctl.h"
#include "vm_devices.h"
#include "vm_snapshot.h"

static const char *state_name(enum vm_state s)
{
	switch (s) {
	case VM_CREATED:
		return "created";
	case VM_RUNNING:
		return "running";
	case VM_PAUSED:
		return "paused";
	case VM_STOPPING:
		return "stopping";
	}
	return "unknown";
}

static uint64_t rss_bytes(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = 0;
	fclose(f);
	return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The CPU features the policy hid from this guest, by name. */
static json_t *hidden_json(const struct vm *vm)
{
	json_t *a = json_array();

	if (vm->hidden.xsave)
		json_array_append_new(a, json_string("xsave"));
	if (vm->hidden.popcnt)
		json_array_append_new(a, json_string("popcnt"));
	if (vm->hidden.cx16)
		json_array_append_new(a, json_string("cx16"));
	if (vm->hidden.smap)
		json_array_append_new(a, json_string("smap"));
	if (vm->hidden.fsgsbase)
		json_array_append_new(a, json_string("fsgsbase"));
	for (unsigned b = 0; b < 32; b++) {
		const char *n = cpuid_kvm_pv_name(1u << b);

		if (n && (vm->hidden.kvm_pv & (1u << b)))
			json_array_append_new(a, json_string(n));
	}
	return a;
}

static int op_status(void *o, json_t **reply, struct err *e)
{
	struct vm *vm = o;
	struct timespec now;
	json_t *devs = json_array();
	double uptime;
	enum vm_state st;

	clock_gettime(CLOCK_MONOTONIC, &now);
	uptime = (double)(now.tv_sec - vm->start_time.tv_sec) +
		 (double)(now.tv_nsec - vm->start_time.tv_nsec) / 1e9;
	for (unsigned i = 0; i < vm->cfg->ndevs; i++)
		json_array_append_new(
			devs, json_pack("{s:i, s:i, s:s, s:s}", "slot",
					(int)vm->cfg->devs[i].slot, "func",
					(int)vm->cfg->devs[i].func, "emulation",
					vm->cfg->devs[i].emul, "conf",
					vm->cfg->devs[i].conf));
	pthread_mutex_lock(&vm->lock);
	st = vm->state;
	pthread_mutex_unlock(&vm->lock);
	*reply = json_pack("{s:s, s:s, s:f, s:i, s:I, s:i, s:s, s:s, s:o, "
			   "s:s, s:o}",
			   "name", vm->cfg->name, "state", state_name(st),
			   "uptime", uptime, "vcpus", (int)vm->ncpus, "memory",
			   (json_int_t)vm->cfg->mem_size, "pid", (int)getpid(),
			   "backend", vm->sw_backend ? "kvm (software)" : "kvm",
			   "cpu_policy",
			   vm->policy == CPU_POLICY_SAFE ? "safe" : "host",
			   "cpu_hidden", hidden_json(vm), "cmdline_appended",
			   vm->cmdline_appended, "devices", devs);
	return *reply ? 0 : -ENOMEM;
}

static int op_pause(void *o, struct err *e)
{
	int ret = vm_pause(o, NULL, e);

	if (ret)
		err_prefix(e, "cannot pause: ");
	return ret;
}

static int op_resume(void *o, struct err *e)
{
	struct vm *vm = o;
	bool split;
	int ret;

	pthread_mutex_lock(&vm->lock);
	split = vm->postcopy_split;
	pthread_mutex_unlock(&vm->lock);
	if (split)
		return err_set(e, -EPERM,
			       "cannot resume: a post-copy migration failed "
			       "after the switch-over, and the guest ran at "
			       "the destination since; this copy is as it was "
			       "at the switch-over (a checkpoint can keep it)");
	ret = vm_resume(vm);

	if (ret)
		err_set(e, ret, "cannot resume: %s", strerror(-ret));
	return ret;
}

static int op_poweroff(void *o, bool force, struct err *e)
{
	/*
	 * A polite request needs a guest-visible mechanism (an ACPI power
	 * button through a GED); the machine has none yet, so the request
	 * falls back to a forced power-off, as the protocol specifies.
	 */
	if (!force)
		log_info("poweroff: no guest shutdown request available; "
			 "forcing");
	vm_request_stop(o, KHYVE_EXIT_POWEROFF);
	return 0;
}

static int op_reset(void *o, struct err *e)
{
	vm_request_stop(o, KHYVE_EXIT_REBOOT);
	return 0;
}

static json_t *seg_json(const struct kvm_segment *s)
{
	return json_pack("{s:I, s:I, s:I, s:i, s:i, s:i, s:i, s:i, s:i}",
			 "selector", (json_int_t)s->selector, "base",
			 (json_int_t)s->base, "limit", (json_int_t)s->limit,
			 "type", s->type, "dpl", s->dpl, "present", s->present,
			 "l", s->l, "db", s->db, "g", s->g);
}

/* The general registers, RIP and RFLAGS as the "regs" reply's base. */
static json_t *regs_json(int idx, const struct kvm_regs *r)
{
	return json_pack(
		"{s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
		"s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
		"vcpu", idx, "rax", (json_int_t)r->rax, "rbx",
		(json_int_t)r->rbx, "rcx", (json_int_t)r->rcx, "rdx",
		(json_int_t)r->rdx, "rsi", (json_int_t)r->rsi, "rdi",
		(json_int_t)r->rdi, "rsp", (json_int_t)r->rsp, "rbp",
		(json_int_t)r->rbp, "r8", (json_int_t)r->r8, "r9",
		(json_int_t)r->r9, "r10", (json_int_t)r->r10, "r11",
		(json_int_t)r->r11, "r12", (json_int_t)r->r12, "r13",
		(json_int_t)r->r13, "r14", (json_int_t)r->r14, "r15",
		(json_int_t)r->r15, "rip", (json_int_t)r->rip, "rflags",
		(json_int_t)r->rflags);
}

/* Control registers, segments and descriptor tables, added to @j. */
static void sregs_add(json_t *j, const struct kvm_sregs *sr)
{
	json_object_set_new(j, "cr0", json_integer((json_int_t)sr->cr0));
	json_object_set_new(j, "cr2", json_integer((json_int_t)sr->cr2));
	json_object_set_new(j, "cr3", json_integer((json_int_t)sr->cr3));
	json_object_set_new(j, "cr4", json_integer((json_int_t)sr->cr4));
	json_object_set_new(j, "cr8", json_integer((json_int_t)sr->cr8));
	json_object_set_new(j, "efer", json_integer((json_int_t)sr->efer));
	json_object_set_new(j, "apic_base",
			    json_integer((json_int_t)sr->apic_base));
	json_object_set_new(j, "cs", seg_json(&sr->cs));
	json_object_set_new(j, "ds", seg_json(&sr->ds));
	json_object_set_new(j, "es", seg_json(&sr->es));
	json_object_set_new(j, "fs", seg_json(&sr->fs));
	json_object_set_new(j, "gs", seg_json(&sr->gs));
	json_object_set_new(j, "ss", seg_json(&sr->ss));
	json_object_set_new(j, "tr", seg_json(&sr->tr));
	json_object_set_new(j, "gdt",
			    json_pack("{s:I, s:I}", "base",
				      (json_int_t)sr->gdt.base, "limit",
				      (json_int_t)sr->gdt.limit));
	json_object_set_new(j, "idt",
			    json_pack("{s:I, s:I}", "base",
				      (json_int_t)sr->idt.base, "limit",
				      (json_int_t)sr->idt.limit));
}

/* The saved MSRs as {"0xINDEX": value}. */
static json_t *msrs_json(const struct vcpu_state *s)
{
	json_t *m = json_object();
	char key[16];

	for (uint32_t i = 0; i < s->nmsrs; i++) {
		snprintf(key, sizeof(key), "0x%x", s->msr_index[i]);
		json_object_set_new(m, key,
				    json_integer((json_int_t)s->msr_data[i]));
	}
	return m;
}

static int op_regs(void *o, int idx, bool msrs, json_t **reply, struct err *e)
{
	struct vm *vm = o;
	struct vcpu_state *s;
	struct kvm_regs r;
	struct kvm_sregs sr;
	json_t *j;
	int ret;

	if (idx < 0 || (unsigned)idx >= vm->ncpus)
		return err_set(e, -EINVAL, "no vCPU %d (the VM has %u)", idx,
			       vm->ncpus);
	pthread_mutex_lock(&vm->lock);
	ret = vm->state == VM_PAUSED ? 0 : -EBUSY;
	pthread_mutex_unlock(&vm->lock);
	if (ret)
		return err_set(e, ret, "the VM is running: pause first");
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	ret = vcpu_state_save(vm->vcpus[idx].fd, &vm->msrs, s, e);
	if (ret)
		goto out;
	vcpu_state_to_kvm(s, &r, &sr);
	j = regs_json(idx, &r);
	sregs_add(j, &sr);
	json_object_set_new(j, "mp_state", json_integer(s->mp_state));
	if (msrs)
		json_object_set_new(j, "msrs", msrs_json(s));
	*reply = j;
out:
	free(s);
	return ret;
}

static int op_stats(void *o, json_t **reply, struct err *e)
{
	struct vm *vm = o;
	json_t *vcpus = json_array();

	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		json_t *ex = json_object(), *em = json_object();
		static const char *const names[VM_EXIT_REASONS] = {
			[KVM_EXIT_IO] = "io",
			[KVM_EXIT_MMIO] = "mmio",
			[KVM_EXIT_HLT] = "hlt",
			[KVM_EXIT_INTR] = "intr",
			[KVM_EXIT_SHUTDOWN] = "shutdown",
			[KVM_EXIT_INTERNAL_ERROR] = "internal_error",
			[KVM_EXIT_SYSTEM_EVENT] = "system_event",
			[KVM_EXIT_FAIL_ENTRY] = "fail_entry",
		};
		uint64_t total = 0;

		for (unsigned r = 0; r < VM_EXIT_REASONS; r++) {
			uint64_t n =
				__atomic_load_n(&v->exits[r], __ATOMIC_RELAXED);
			char key[24];

			if (!n)
				continue;
			total += n;
			if (names[r])
				json_object_set_new(
					ex, names[r],
					json_integer((json_int_t)n));
			else {
				snprintf(key, sizeof(key), "reason_%u", r);
				json_object_set_new(
					ex, key, json_integer((json_int_t)n));
			}
		}
		for (unsigned k = 0; k < EMUL_NR_KINDS; k++)
			json_object_set_new(
				em, emul_kind_names[k],
				json_integer((json_int_t)v->emulated[k]));
		json_array_append_new(
			vcpus, json_pack("{s:i, s:I, s:o, s:o}", "vcpu", (int)i,
					 "exits_total", (json_int_t)total,
					 "exits", ex, "emulated", em));
	}
	*reply = json_pack("{s:o, s:I, s:I, s:o, s:{s:b, s:b, s:b, s:b, s:b}, "
			   "s:o}",
			   "vcpus", vcpus, "rss", (json_int_t)rss_bytes(),
			   "guest_memory", (json_int_t)vm->cfg->mem_size,
			   "devices", vm_devices_stats(vm->devs), "cpu_hidden",
			   "xsave", vm->hidden.xsave, "popcnt",
			   vm->hidden.popcnt, "cx16", vm->hidden.cx16, "smap",
			   vm->hidden.smap, "fsgsbase", vm->hidden.fsgsbase,
			   "cpu_hidden_list", hidden_json(vm));
	return *reply ? 0 : -ENOMEM;
}

/* The checkpoint/suspend reply (docs/control-protocol.md). */
static json_t *checkpoint_reply(const struct checkpoint_opts *o,
				const struct checkpoint_result *r)
{
	const struct checkpoint_phases *p = &r->phases;
	json_t *j = json_pack(
		"{s:s, s:I, s:I, s:f, s:f, s:b, s:b, s:i, s:I, s:I, s:f, "
		"s:{s:f, s:f, s:f, s:f, s:f, s:f}}",
		"file", o->file, "bytes", (json_int_t)r->bytes, "ram_bytes",
		(json_int_t)r->ram_bytes, "total_ms", r->total_ms, "paused_ms",
		r->paused_ms, "suspended", r->suspended, "live", r->live,
		"precopy_rounds", (int)r->precopy_rounds, "final_copy_bytes",
		(json_int_t)r->final_copy_bytes, "final_hash_bytes",
		(json_int_t)r->final_hash_bytes, "commit_ms", r->commit_ms,
		"phases_ms", "drain", p->drain, "dirty_scan", p->dirty_scan,
		"ram_copy", p->ram_copy, "ram_commit", p->ram_commit, "state",
		p->state, "resume", p->resume);

	if (j && !r->live)
		json_object_set_new(j, "not_live_reason",
				    json_string(r->not_live_reason));
	if (j)
		json_object_set_new(j, "save_id", json_string(r->save_id));
	if (j)
		json_object_set_new(j, "incremental",
				    json_boolean(r->incremental));
	if (j && r->incremental) {
		json_object_set_new(j, "changed_bytes",
				    json_integer((json_int_t)r->changed_bytes));
		json_object_set_new(j, "chain_depth",
				    json_integer((json_int_t)r->chain_depth));
	}
	return j;
}

/* A post-copy destination has not all of its RAM yet: -EBUSY. */
static int postcopy_busy(struct vm *vm, const char *what, struct err *e)
{
	uint64_t left, total;

	if (!postcopy_in_busy(vm->postcopy, &left, &total))
		return 0;
	return err_set(e, -EBUSY,
		       "cannot %s: a post-copy migration is still bringing "
		       "this guest's memory (%" PRIu64 " of %" PRIu64
		       " pages to come); try again once it completes",
		       what, left, total);
}

static int op_checkpoint(void *opaque, const struct checkpoint_opts *o,
			 json_t **reply, struct err *e)
{
	struct checkpoint_result res;
	int ret = postcopy_busy(opaque, "checkpoint", e);

	if (ret)
		return ret;
	ret = vm_snapshot_save(opaque, o, &res, e);

	if (!ret)
		*reply = checkpoint_reply(o, &res);
	return ret;
}

/* The migrate reply: the final report (docs/control-protocol.md). */
static int op_migrate(void *opaque, const struct migrate_opts *o,
		      json_t **reply, struct err *e)
{
	struct migrate_result r;
	int ret = postcopy_busy(opaque, "migrate", e);

	if (ret)
		return ret;
	ret = migrate_run(opaque, o, &r, e);

	if (!ret)
		*reply = json_pack(
			"{s:s, s:b, s:i, s:I, s:I, s:I, s:I, s:I, s:f, s:f, "
			"s:f, s:f, s:i, s:{s:f, s:f, s:f, s:f}, s:I}",
			"to", o->to, "live", r.live, "rounds", (int)r.rounds,
			"bytes", (json_int_t)r.bytes, "ram_pages",
			(json_int_t)r.ram_pages, "zero_pages",
			(json_int_t)r.zero_pages, "final_pages",
			(json_int_t)r.final_pages, "state_bytes",
			(json_int_t)r.state_bytes, "total_ms", r.total_ms,
			"downtime_ms", r.downtime_ms, "precopy_ms",
			r.precopy_ms, "precopy_mib_s", r.mbps, "throttle_pct",
			(int)r.throttle_pct, "phases_ms", "pause",
			r.phases.pause, "pages", r.phases.pages, "state",
			r.phases.state, "dest_load", r.phases.dest_load,
			"page_data_bytes", (json_int_t)r.raw_bytes);
	if (!ret && *reply && r.postcopy) {
		json_object_set_new(*reply, "postcopy", json_true());
		json_object_set_new(*reply, "postcopy_pages",
				    json_integer((json_int_t)r.postcopy_pages));
		json_object_set_new(
			*reply, "on_demand_pages",
			json_integer((json_int_t)r.on_demand_pages));
		json_object_set_new(*reply, "postcopy_ms",
				    json_real(r.postcopy_ms));
	}
	return ret;
}

const struct ctl_ops vm_ctl_ops = {
	.status = op_status,
	.pause = op_pause,
	.resume = op_resume,
	.poweroff = op_poweroff,
	.reset = op_reset,
	.regs = op_regs,
	.stats = op_stats,
	.checkpoint = op_checkpoint,
	.migrate = op_migrate,
};
