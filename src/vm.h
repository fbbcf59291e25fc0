/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * One KVM virtual machine: its memory, vCPU threads, buses, devices and
 * life cycle (run, pause, resume, stop). main.c builds one from a
 * vm_config; the control server drives it through the ctl_ops in
 * vm_ctl.c. The devices (vm_devices.h) are owned and driven from here;
 * they reach the VM only through the callbacks vm.c gives them.
 */
#ifndef KHYVE_VM_H
#define KHYVE_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "bus.h"
#include "config.h"
#include "cpuid.h"
#include "emulate.h"
#include "err.h"
#include "guest_mem.h"
#include "vcpu_state.h"

struct ctl_server;
struct vm_devices;
struct vm_ram_file;
struct vm_chain;
struct postcopy_in;

#define VM_EXIT_REASONS 64 /* KVM_EXIT_* counted per vCPU */

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
	/* Statistics, written by the vCPU thread only. */
	uint64_t exits[VM_EXIT_REASONS];
	uint64_t emulated[EMUL_NR_KINDS];
};

enum vm_state { VM_CREATED, VM_RUNNING, VM_PAUSED, VM_STOPPING };

struct vm {
	struct vm_config *cfg;
	int kvm_fd, vm_fd;
	int run_size;
	bool sw_backend;
	enum cpu_policy policy;
	struct cpuid_hidden hidden;
	char cmdline_appended[128]; /* policy words added to Linux's cmdline */
	struct kvm_cpuid2 *supported_cpuid;
	struct vcpu_msr_list msrs;
	struct guest_mem mem;
	struct bus pio, mmio;
	unsigned ncpus;
	struct vcpu *vcpus;
	struct vm_devices *devs;
	struct ctl_server *ctl;
	struct vm_ram_file *ram_file; /* mapped restore's RAM file, or NULL */
	struct vm_chain *chain;	      /* incremental snapshots (vm_chain.h) */
	/* a post-copy destination's page server (migrate_postcopy.h) */
	struct postcopy_in *postcopy;
	/* a post-copy source after a failure past GO: never resumed here */
	bool postcopy_split;

	/* Life cycle, under @lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum vm_state state;
	bool pause_req;	 /* vCPUs must park */
	unsigned parked; /* vCPUs parked */
	bool stop;	 /* set once; the VM is going away */
	int exit_status; /* enum khyve_exit */
	int wake_fd;	 /* eventfd: wakes the main loop */
	struct timespec start_time;
	uint64_t paused_ns_total;
};

/*
 * The one KVM probe (khyve --probe-kvm, the tests, the Makefile): open
 * /dev/kvm, check the API version and the capabilities khyve needs. 0 and
 * whether it is a software backend, or -errno with the reason in @e.
 */
int kvm_probe(bool *software, struct err *e);
/* Open /dev/kvm, create the VM, memory, vCPUs and devices. */
int vm_create(struct vm *vm, struct vm_config *cfg, struct err *e);
/* Load the kernel and firmware tables; set the boot vCPU's registers. */
int vm_boot(struct vm *vm, struct err *e);
/* Start the vCPU threads (paused ones park at once). */
int vm_start_vcpus(struct vm *vm, struct err *e);
/* (Re)register guest RAM slots with KVM. */
int vm_register_memory(struct vm *vm, struct err *e);
void vm_destroy(struct vm *vm);

/* When a pause reached each step (CLOCK_MONOTONIC ns). */
struct vm_pause_times {
	uint64_t parked;  /* every vCPU outside KVM_RUN */
	uint64_t stopped; /* device I/O stopped and flushed too */
};

/*
 * Park every vCPU outside KVM_RUN, then pause the devices (the pause
 * contract, vm_devices.h). Idempotent. @times may be NULL. On failure
 * the VM runs as before and @e says why.
 */
int vm_pause(struct vm *vm, struct vm_pause_times *times, struct err *e);
int vm_resume(struct vm *vm);
/*
 * Only the vCPUs parked (devices go on), for a migration's throttling:
 * 0, or -EALREADY if they were parked anyway (not held then), or
 * -ESHUTDOWN. _release lets held vCPUs run again.
 */
int vm_vcpus_hold(struct vm *vm);
void vm_vcpus_release(struct vm *vm);
/* Ask the VM to stop with @status (first caller wins). */
void vm_request_stop(struct vm *vm, int status);

/* Guest-physical -> host pointer helpers for vCPU code. */
int vm_translate(struct vcpu *v, uint64_t gva, uint64_t *gpa);

#endif
