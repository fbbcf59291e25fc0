/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * khyve: one process per guest. Parses the command line (or a snapshot's
 * embedded configuration with -r), builds the VM, starts the control
 * socket and the vCPUs, and runs the main loop (console input, signals)
 * until the guest stops. The exit status says how (see khyve(8)).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "chardev.h"
#include "config.h"
#include "confine.h"
#include "confine_seccomp.h"
#include "ctl.h"
#include "fc_api.h"
#include "log.h"
#include "migrate_incoming.h"
#include "snap_convert.h"
#include "snap_fault.h"
#include "vm.h"
#include "vm_ctl.h"
#include "vm_devices.h"
#include "vm_snapshot.h"

/* What the main loop takes by signalfd (blocked in every thread). */
static void main_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGIO); /* the mapped RAM file's lease breaks */
}

static int main_loop(struct vm *vm)
{
	sigset_t set;
	int sfd, in_fd;

	main_signals(&set);
	sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	confine_seccomp_enter(CONFINE_ROLE_MAIN); /* the vCPUs run */
	for (;;) {
		struct pollfd p[3];
		int n = 0;

		pthread_mutex_lock(&vm->lock);
		if (vm->stop) {
			pthread_mutex_unlock(&vm->lock);
			break;
		}
		pthread_mutex_unlock(&vm->lock);
		p[n++] = (struct pollfd){.fd = vm->wake_fd, .events = POLLIN};
		p[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
		in_fd = vm_devices_console_wait_fd(vm->devs);
		if (in_fd >= 0)
			p[n++] = (struct pollfd){.fd = in_fd, .events = POLLIN};
		if (poll(p, (nfds_t)n, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents) {
			uint64_t v;

			if (read(vm->wake_fd, &v, sizeof(v)) < 0) {
				/* spurious wake-up */
			}
		}
		if (p[1].revents) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) != sizeof(si)) {
				/* nothing after all */
			} else if (si.ssi_signo == SIGIO) {
				vm_snapshot_ram_file_event(vm);
			} else {
				log_warn("signal %u: powering the guest off",
					 si.ssi_signo);
				vm_request_stop(vm, KHYVE_EXIT_POWEROFF);
			}
		}
		if (n > 2 && p[2].revents)
			vm_devices_console_input(vm->devs);
	}
	if (sfd >= 0)
		close(sfd);
	return vm->exit_status;
}

/* What the command line hands over by number: --incoming fd:N, else -1. */
static int inherited_fd(const struct vm_config *c)
{
	char *end;
	long n;

	if (!c->incoming || strncmp(c->incoming, "fd:", 3))
		return -1;
	n = strtol(c->incoming + 3, &end, 10);
	return *end || n < 0 || n > 65535 ? -1 : (int)n;
}

/*
 * khyve -r FILE where FILE is a recorded stream (khyvectl --checkpoint=-
 * > FILE, or snapshot convert): read as `-r -` reads standard input, from
 * a descriptor opened here, before confine_start closes the others.
 */
static int restore_stream_file(struct vm_config *c, struct err *e)
{
	enum snap_form form;
	struct err ignored = {0};
	char addr[32];
	int fd;

	/* Not a stream (or not readable): the restore says what it is. */
	if (!c->restore || snap_form_of(c->restore, &form, &ignored) ||
	    form != SNAP_FORM_STREAM)
		return 0;
	if (c->keep_clock)
		return err_set(e, -EINVAL,
			       "--keep-clock: %s is a snapshot stream, whose "
			       "restore sets the clock as a migration's does",
			       c->restore);
	fd = open(c->restore, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_sys(e, "%s", c->restore);
	snprintf(addr, sizeof(addr), "fd:%d", fd);
	free(c->incoming);
	c->incoming = strdup(addr);
	c->incoming_label = c->restore;
	c->restore = NULL;
	c->restore_eager = false; /* a stream is always copied */
	if (!c->incoming) {
		close(fd);
		return err_set(e, -ENOMEM, "out of memory");
	}
	return 0;
}

/*
 * The command line into @cmd, and the process confined (@conf): -1 to go
 * on, else the exit status now (--help, --version, --probe-kvm, -s help,
 * or an error).
 */
static int parse_command_line(int argc, char **argv, struct vm_config *cmd,
			      struct confine *conf)
{
	const char *fi;
	struct err e = {0};
	bool sw = false;

	switch (config_parse(cmd, argc, argv, &e)) {
	case CONFIG_OK:
		break;
	case CONFIG_HELP:
		fputs(config_usage, stdout);
		config_free(cmd);
		return 0;
	case CONFIG_VERSION:
		printf("khyve %s\n", KHYVE_VERSION);
		config_free(cmd);
		return 0;
	case CONFIG_PROBE_KVM:
		config_free(cmd);
		if (kvm_probe(&sw, &e)) {
			fprintf(stderr, "khyve: %s\n", err_msg(&e));
			return KHYVE_EXIT_ERROR;
		}
		printf("kvm: usable, %s backend\n",
		       sw ? "software (kvm_pvm)" : "hardware");
		return 0;
	case CONFIG_LIST_DEVS:
		vm_devices_list(stdout);
		config_free(cmd);
		return 0;
	default:
		fprintf(stderr, "khyve: %s\n", err_msg(&e));
		config_free(cmd);
		return KHYVE_EXIT_ERROR;
	}
	log_set_level(cmd->verbose >= 2	  ? LOG_DEBUG
		      : cmd->verbose == 1 ? LOG_INFO
					  : LOG_WARN);
	/* Tests only (khyve(8), ENVIRONMENT): make a save fail at a step. */
	fi = getenv("KHYVE_FAULT_INJECT");
	if (fi && *fi) {
		if (snap_fault_arm_spec(fi, &e)) {
			fprintf(stderr, "khyve: KHYVE_FAULT_INJECT=%s\n",
				err_msg(&e));
			config_free(cmd);
			return KHYVE_EXIT_ERROR;
		}
		log_warn("KHYVE_FAULT_INJECT=%s: a save will fail on purpose "
			 "(testing only)",
			 fi);
	}
	if (restore_stream_file(cmd, &e)) {
		fprintf(stderr, "khyve: %s\n", err_msg(&e));
		config_free(cmd);
		return KHYVE_EXIT_ERROR;
	}
	/* Before anything is opened (src/confine.h). */
	if (confine_start(&cmd->confine, inherited_fd(cmd), conf, &e)) {
		fprintf(stderr, "khyve: %s\n", err_msg(&e));
		config_free(cmd);
		return KHYVE_EXIT_ERROR;
	}
	return -1;
}

/* Kernel and initrd readable: a typo should not wait for KVM set-up. */
static int check_input_files(const struct vm_config *cfg, struct err *e)
{
	const char *files[] = {cfg->kernel, cfg->initrd};
	const char *what[] = {"kernel", "initrd"};

	for (unsigned i = 0; i < 2 && !cfg->restore; i++) {
		FILE *f = files[i] ? fopen(files[i], "rb") : NULL;

		if (files[i] && !f)
			return err_sys(e, "%s %s", what[i], files[i]);
		if (f)
			fclose(f);
	}
	return 0;
}

/*
 * -r: the snapshot's embedded configuration, rebound by the command line
 * (@cmd, freed here), into @cfg, checked; -errno and why in @e.
 */
static int restore_config(struct vm_config *cmd, struct vm_config *cfg,
			  struct err *e)
{
	int ret;

	ret = vm_snapshot_read_config(cmd->restore, cfg, e);
	if (!ret) {
		ret = config_merge_restore(cfg, cmd, e);
		/* Read, so ours to free (LeakSanitizer saw it leak). */
		if (ret)
			config_free(cfg);
	}
	if (ret) {
		config_free(cmd);
		return ret;
	}
	cfg->restore = strdup(cmd->restore);
	config_free(cmd);
	/*
	 * The whole snapshot and its RAM file checked before anything it
	 * names on the host is opened (docs/security.md).
	 */
	ret = cfg->restore ? vm_snapshot_preflight(cfg->restore, cfg, e)
			   : err_set(e, -ENOMEM, "out of memory");
	if (!ret)
		ret = config_check_strict_bindings(cfg, e);
	if (ret)
		config_free(cfg);
	return ret;
}

/* khyve -r FILE: what the command line asks of the restore, typed. */
static int restore(struct vm *vm, const struct vm_config *cfg, struct err *e)
{
	const struct restore_opts o = {
		.file = cfg->restore,
		.eager = cfg->restore_eager,
		.keep_clock = cfg->keep_clock,
		.progress = true, /* drawn only when stderr is a terminal */
	};

	return vm_snapshot_restore(vm, &o, e);
}

/*
 * --incoming: wait for a source; the machine is its config rebound by
 * the command line (@cmd, freed here), into @cfg; -1 after saying why.
 */
static int incoming_config(struct vm_config *cmd, struct vm_config *cfg,
			   struct migrate_in **mi)
{
	struct err e = {0};
	int ret = migrate_in_open(mi, cmd, cfg, &e);

	config_free(cmd);
	if (ret) {
		fprintf(stderr, "khyve: %s\n", err_msg(&e));
		return -1;
	}
	return 0;
}

/*
 * --incoming, the VM created (@ret): the guest's RAM and state. On
 * failure the source has been told and *@mi is closed.
 */
static int incoming(struct migrate_in **mi, struct vm *vm, int ret,
		    struct err *e)
{
	struct err why = *e;

	ret = migrate_in_accept(*mi, ret, &why, e);
	if (!ret)
		ret = migrate_in_receive(*mi, vm, e);
	if (ret) {
		migrate_in_close(*mi);
		*mi = NULL;
	}
	return ret;
}

/* --incoming, the rest started (@ret): "ready" (or why not), then GO. */
static int incoming_switch(struct migrate_in *mi, int ret, struct err *e)
{
	struct err why = *e;

	ret = migrate_in_switch(mi, ret, &why, e);
	migrate_in_close(mi);
	return ret;
}

/* Start the vCPUs; @paused: parked, devices paused too (vm_pause). */
static int start_vcpus(struct vm *vm, bool paused, struct err *e)
{
	int ret;

	pthread_mutex_lock(&vm->lock);
	vm->pause_req = paused;
	pthread_mutex_unlock(&vm->lock);
	ret = vm_start_vcpus(vm, e);
	if (!ret && paused)
		ret = vm_pause(vm, NULL, e);
	return ret;
}

/* How run_vm is asked to run: from the command line or the API. */
struct run_how {
	struct migrate_in *mi; /* --incoming: the source, or NULL */
	struct fc_api *api;    /* --api-sock: told how the start went */
	struct confine *conf;  /* the privileges to drop once all is open */
	bool paused;	       /* the API's snapshot/load without resume_vm */
};

/* Create, then boot, restore or receive; then the control socket. */
static int build_vm(struct vm *vm, struct vm_config *cfg, struct run_how *h,
		    struct err *e)
{
	int ret = check_input_files(cfg, e);

	if (!ret)
		ret = vm_create(vm, cfg, e);
	if (h->mi)
		ret = incoming(&h->mi, vm, ret, e);
	else if (!ret)
		ret = cfg->restore ? restore(vm, cfg, e) : vm_boot(vm, e);
	if (!ret)
		ret = ctl_server_start(
			&vm->ctl,
			&(struct ctl_params){.rundir = cfg->rundir,
					     .vmname = cfg->name},
			&vm_ctl_ops, vm, e);
	if (!ret) /* everything open, no guest code run yet */
		ret = confine_drop(h->conf, e);
	/* The source resumes its guest unless all is ready here. */
	if (h->mi)
		ret = incoming_switch(h->mi, ret, e);
	return ret;
}

/*
 * The one VM path, for the command line and the Firecracker API: build,
 * serve until the guest stops. The exit status, or -1 when the API's VM
 * could not start (h->api has the reason). @cfg is freed.
 */
static int run_vm(struct vm_config *cfg, struct run_how *h)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct err e = {0};
	int ret, status = KHYVE_EXIT_ERROR;

	ret = vm ? build_vm(vm, cfg, h, &e)
		 : err_set(&e, -ENOMEM, "out of memory");
	if (!ret)
		ret = start_vcpus(vm, h->paused, &e);
	if (h->api)
		fc_api_booted(h->api, vm, ret, &e);
	if (ret) {
		if (!e.msg[0])
			e.code = ret; /* no message: strerror's */
		if (!h->api)
			fprintf(stderr, "khyve: %s\n", err_msg(&e));
		status = h->api ? -1 : KHYVE_EXIT_ERROR;
		if (vm)
			vm->exit_status = status;
	} else {
		status = main_loop(vm);
	}
	if (status == KHYVE_EXIT_POSTCOPY_LOST) {
		/* vCPUs and devices may wait for pages that never come (the
		 * thread said why): nothing to join, the process ends. */
		if (vm->ctl)
			ctl_server_stop(vm->ctl);
		chardev_restore_all();
		_exit(status);
	}
	if (h->api && !ret)
		fc_api_detach(h->api); /* a failed start left it pre-boot */
	if (vm && vm->ctl)
		ctl_server_stop(vm->ctl);
	if (vm)
		vm_destroy(vm);
	free(vm);
	chardev_restore_all();
	config_free(cfg);
	return status;
}

/*
 * khyve --api-sock: serve the Firecracker API until InstanceStart or
 * snapshot/load brings up a VM (a failed one leaves the API pre-boot),
 * then run it. A signal before that exits with KHYVE_EXIT_POWEROFF.
 */
static int api_main(struct vm_config *cmd, const sigset_t *sigs,
		    struct confine *conf)
{
	struct fc_api *api;
	struct err e = {0};
	int status = -1;

	if (fc_api_start(&api, cmd, &e)) {
		fprintf(stderr, "khyve: %s\n", err_msg(&e));
		config_free(cmd);
		return KHYVE_EXIT_ERROR;
	}
	config_free(cmd);
	while (status < 0) {
		struct vm_config req, cfg;
		struct run_how h = {.api = api, .conf = conf};
		int ret = fc_api_wait_boot(api, sigs, &req, &h.paused);

		if (ret) {
			status = KHYVE_EXIT_POWEROFF;
			break;
		}
		if (!req.restore) {
			cfg = req;
		} else if ((ret = restore_config(&req, &cfg, &e))) {
			fc_api_booted(api, NULL, ret, &e);
			continue;
		}
		status = run_vm(&cfg, &h);
	}
	fc_api_stop(api);
	return status;
}

int main(int argc, char **argv)
{
	struct vm_config cmd, cfg;
	struct confine conf;
	struct run_how h = {.conf = &conf};
	struct err e = {0};
	int ret;
	sigset_t set;

	log_set_prog("khyve");
	ret = parse_command_line(argc, argv, &cmd, &conf);
	if (ret >= 0)
		return ret;
	/* A source that goes away must not kill us with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	/* Signals go to the main loop's signalfd, not to vCPU threads. */
	main_signals(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	chardev_install_fatal_handlers();

	if (cmd.api_sock)
		return api_main(&cmd, &set, &conf);
	if (cmd.restore) {
		if (restore_config(&cmd, &cfg, &e)) {
			fprintf(stderr, "khyve: %s\n", err_msg(&e));
			return KHYVE_EXIT_ERROR;
		}
	} else if (cmd.incoming) {
		if (incoming_config(&cmd, &cfg, &h.mi))
			return KHYVE_EXIT_ERROR;
	} else {
		cfg = cmd;
	}
	return run_vm(&cfg, &h);
}
