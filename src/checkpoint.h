/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What a checkpoint, suspend, restore or migration is asked to do, and
 * what a save or a migration reports: plain typed data, parsed at the edge (the
 * control protocol in ctl.c, the command line in main.c) and consumed by
 * vm_snapshot.c, which never sees a request. The control layer (vm_ctl.c) turns
 * a checkpoint_result into the reply (docs/control-protocol.md, "khyve's
 * checkpoint and suspend reply").
 */
#ifndef KHYVE_CHECKPOINT_H
#define KHYVE_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

/* A checkpoint or suspend request, every argument checked. */
struct checkpoint_opts {
	const char *file; /* the state file; its RAM file is FILE.ram */
	/* NULL, or the RAM file's path: in the state file's directory, since
	 * the state file records it by bare name (the Firecracker API's
	 * mem_file_path) */
	const char *ram_file;
	bool suspend; /* power the VM off once saved */
	bool live;    /* pre-copy while the guest runs ("live", default) */
	bool fsync;   /* sync both files and the directory (default) */
	/* only the pages changed since this guest's previous snapshot,
	 * which becomes the parent (vm_chain.h) */
	bool incremental;
	/* "progress": bytes of guest RAM saved so far; NULL: not asked */
	void (*progress)(uint64_t done, uint64_t total);
};

#define CHECKPOINT_SAVE_ID_STR 33 /* 32 hex digits */
#define CHECKPOINT_REASON_MAX  160

/* Where a successful save's time went, in ms from the vCPUs' stop on. */
struct checkpoint_phases {
	double drain;	   /* devices stopped: nothing in flight, flushed */
	double dirty_scan; /* the last dirty set collected */
	double ram_copy;   /* ... and copied */
	double ram_commit; /* stop-and-copy: the whole RAM written */
	double state;	   /* the state file (and a stop-and-copy commit) */
	double resume;	   /* the vCPUs started again */
};

/* What a successful save reports (the reply's fields, typed). */
struct checkpoint_result {
	uint64_t bytes;	    /* the state file + the RAM file's allocation */
	uint64_t ram_bytes; /* guest RAM saved */
	double total_ms;    /* from the request to the commit */
	double paused_ms;   /* the guest stopped (0 if it was paused) */
	double commit_ms;   /* live: the commit, after the guest runs again */
	bool suspended;
	bool live;
	unsigned precopy_rounds;	 /* copy passes made while running */
	uint64_t final_copy_bytes;	 /* written in the pause */
	uint64_t final_hash_bytes;	 /* hashed in the pause */
	struct checkpoint_phases phases; /* "phases_ms" */
	char not_live_reason[CHECKPOINT_REASON_MAX]; /* "" when live */
	char save_id[CHECKPOINT_SAVE_ID_STR];
	bool incremental;
	uint64_t changed_bytes; /* incremental: the pages it holds, in bytes */
	unsigned chain_depth;	/* incremental: links below it */
};

/* What `khyve -r FILE` and its options ask of a restore. */
struct restore_opts {
	const char *file; /* the state file */
	bool eager;	  /* --eager: copy the RAM file in, don't map it */
	bool keep_clock;  /* --keep-clock: the guest clock does not jump */
	bool progress;	  /* an eager copy draws its progress on stderr */
};

/* A live migration (migrate.h), typed likewise. */
/* Defaults of the request's knobs. */
#define MIGRATE_MAX_DOWNTIME_MS 300.0
#define MIGRATE_DEADLINE_S	60.0

/* A migrate request, every argument checked (src/ctl.c). */
struct migrate_opts {
	const char *to;		/* the destination's address */
	double max_downtime_ms; /* finish once the rest fits in this pause */
	double deadline_s;	/* pre-copy that has not converged by then: */
	bool throttle;		/* slow the vCPUs down (else give up) */
	uint64_t bandwidth;	/* bytes per second, 0: unlimited */
	bool compress;		/* zstd RAM records that shrink */
	/* post-copy: after this many rounds the guest runs at the
	 * destination, which pulls the rest (migrate_postcopy.h) */
	bool postcopy;
	unsigned postcopy_after;
	/* a recorded stream (a snapshot as a stream): no answers, and the
	 * guest runs on here */
	bool record;
	/* bytes of guest RAM sent in this round so far; NULL: not asked */
	void (*progress)(uint64_t done, uint64_t total);
};

/* Where a migration's downtime went, in ms (the reply's "phases_ms"). */
struct migrate_phases {
	double pause;	  /* devices stopped, after the vCPUs */
	double pages;	  /* the last dirty set collected and sent */
	double state;	  /* the state file built and sent, with END */
	double dest_load; /* until the destination said "ready" */
};

/* The final report (the reply's fields, typed). */
struct migrate_result {
	unsigned rounds;       /* RAM passes while the guest ran */
	uint64_t bytes;	       /* everything sent over the stream */
	uint64_t raw_bytes;    /* page data before compression */
	uint64_t ram_pages;    /* pages sent, rewrites counted again */
	uint64_t zero_pages;   /* of them sent as zero, without data */
	uint64_t final_pages;  /* sent with the guest paused */
	uint64_t state_bytes;  /* the state file record */
	double total_ms;       /* request to switch-over (post-copy: to the
				  last page) */
	double downtime_ms;    /* guest paused here to the destination's GO */
	double precopy_ms;     /* the rounds */
	double mbps;	       /* MiB/s carried during the rounds */
	unsigned throttle_pct; /* vCPUs held this share of the time, at most */
	bool live;	       /* false: the VM was paused, or no dirty log */
	struct migrate_phases phases;
	/* post-copy: pages that came after GO, of them asked for on a fault,
	 * and GO to the destination's "complete" */
	bool postcopy;
	uint64_t postcopy_pages, on_demand_pages;
	double postcopy_ms;
};

#endif
