/* SPDX-License-Identifier: BSD-2-Clause */
/* Incremental snapshots of a running guest: see vm_chain.h. */
#include "vm_chain.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "log.h"
#include "progress.h"
#include "snap_ram_restore.h"
#include "vm.h"

struct vm_chain {
	bool tracking;
	uint64_t *since; /* flat RAM pages changed since the base's pause */
	uint64_t words;
	bool has_base;
	char base[4096]; /* its state file, as saved or restored */
	uint8_t base_id[SNAP_SAVE_ID_LEN];
	uint64_t base_hash;
	/* the increments a mapped restore maps, held to check their size */
	int fds[SNAP_CHAIN_MAX];
	char paths[SNAP_CHAIN_MAX][4096];
	unsigned nfds;
};

static struct vm_chain *chain_get(struct vm *vm)
{
	if (!vm->chain)
		vm->chain = calloc(1, sizeof(*vm->chain));
	return vm->chain;
}

bool vm_chain_tracking(const struct vm *vm)
{
	return vm->chain && vm->chain->tracking;
}

int vm_chain_track_started(struct vm *vm)
{
	struct vm_chain *c = chain_get(vm);

	if (!c)
		return -ENOMEM;
	if (!c->since) {
		c->words = (vm->mem.ram_size / PAGE_SIZE + 63) / 64;
		c->since = calloc(c->words, 8);
		if (!c->since)
			return -ENOMEM;
	}
	c->tracking = true;
	return 0;
}

void vm_chain_note(struct vm *vm, const uint64_t *bm)
{
	struct vm_chain *c = vm->chain;

	if (!c || !c->since)
		return;
	for (uint64_t w = 0; w < c->words; w++)
		c->since[w] |= bm[w];
}

const uint64_t *vm_chain_since(const struct vm *vm)
{
	return vm_chain_tracking(vm) ? vm->chain->since : NULL;
}

void vm_chain_set_base(struct vm *vm, const char *file, const uint8_t *id,
		       bool hash_known, uint64_t hash)
{
	struct vm_chain *c = vm->chain;
	struct err e = {0};

	if (!c || !c->tracking)
		return;
	memset(c->since, 0, c->words * 8);
	c->has_base = false;
	if (!hash_known && snap_state_hash(file, &hash, &e)) {
		log_warn("%s: %s: the next checkpoint cannot be incremental",
			 file, err_msg(&e));
		return;
	}
	snprintf(c->base, sizeof(c->base), "%s", file);
	memcpy(c->base_id, id, SNAP_SAVE_ID_LEN);
	c->base_hash = hash;
	c->has_base = true;
}

void vm_chain_free(struct vm *vm)
{
	struct vm_chain *c = vm->chain;

	if (!c)
		return;
	for (unsigned i = 0; i < c->nfds; i++)
		close(c->fds[i]);
	free(c->since);
	free(c);
	vm->chain = NULL;
}

/* ---- an incremental save ---- */

static const char *last_component(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

/* The directory of @path ("." for a bare name), for a stat. */
static void dir_of(const char *path, char *out, size_t len)
{
	const char *s = strrchr(path, '/');

	if (!s)
		snprintf(out, len, ".");
	else if (s == path)
		snprintf(out, len, "/");
	else
		snprintf(out, len, "%.*s", (int)(s - path), path);
}

static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;

	return !stat(a, &sa) && !stat(b, &sb) && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

/* @file beside @base, and no link of @ch (which it would replace). */
static int check_place(const char *file, const char *ram,
		       const struct vm_chain *c, const struct snap_chain *ch,
		       struct err *err)
{
	char d1[4096], d2[4096];

	dir_of(file, d1, sizeof(d1));
	dir_of(c->base, d2, sizeof(d2));
	if (!same_file(d1, d2))
		return err_set(err, -EXDEV,
			       "%s: an increment goes in the directory of its "
			       "parent %s (a snapshot names its parent by a "
			       "bare file name)",
			       file, c->base);
	for (unsigned k = 0; k < ch->n; k++)
		if (!strcmp(last_component(file),
			    last_component(ch->l[k].path)) ||
		    same_file(file, ch->l[k].path) ||
		    same_file(ram, ch->l[k].ram_path))
			return err_set(
				err, -EEXIST,
				"%s: is %s of this guest's snapshot "
				"chain: an increment cannot replace a "
				"snapshot it builds on",
				file, k + 1 == ch->n ? "the parent" : "a link");
	return 0;
}

int vm_chain_save_prepare(struct vm *vm, const char *file, const char *ram,
			  struct vm_chain_save *cs, struct err *err)
{
	struct vm_chain *c = vm->chain;
	struct snap_chain ch = {0};
	struct snap_chain_link *t;
	const char *name;
	int ret;

	memset(cs, 0, sizeof(*cs));
	if (!c || !c->tracking)
		return err_set(err, -ENOENT,
			       "%s: not incremental: this guest has no "
			       "previous snapshot it was saved to or restored "
			       "from (or its writes cannot be tracked here): "
			       "take a full checkpoint first",
			       file);
	if (!c->has_base)
		return err_set(err, -ENOENT,
			       "%s: not incremental: this guest's previous "
			       "snapshot is unknown (its last save failed or "
			       "could not be read back): take a full "
			       "checkpoint first",
			       file);
	ret = snap_chain_open(c->base, &ch, err);
	if (ret) {
		err_prefix(err, "%s: not incremental: ", file);
		return ret;
	}
	t = &ch.l[ch.n - 1];
	if (memcmp(t->hdr.save_id, c->base_id, SNAP_SAVE_ID_LEN) ||
	    t->state_hash != c->base_hash) {
		ret = err_set(err, -ESTALE,
			      "%s: not incremental: %s is no longer the "
			      "snapshot this guest was saved to or restored "
			      "from (replaced or changed): take a full "
			      "checkpoint",
			      file, c->base);
		goto out;
	}
	if (t->par.depth + 1 >= SNAP_CHAIN_MAX) {
		ret = err_set(err, -EMLINK,
			      "%s: not incremental: the chain has %u links "
			      "already (at most %u): merge it (khyvectl "
			      "snapshot merge) or take a full checkpoint",
			      file, ch.n, SNAP_CHAIN_MAX);
		goto out;
	}
	ret = check_place(file, ram, c, &ch, err);
	if (ret)
		goto out;
	memcpy(cs->par.id, c->base_id, SNAP_SAVE_ID_LEN);
	cs->par.state_hash = c->base_hash;
	cs->par.depth = t->par.depth + 1;
	name = last_component(c->base);
	if (strlen(name) > SNAP_RAM_MAX_NAME) {
		ret = err_set(err, -ENAMETOOLONG, "%s: name too long", c->base);
		goto out;
	}
	memcpy(cs->par.file, name, strlen(name) + 1);
	cs->par.npages = vm->mem.ram_size / PAGE_SIZE;
	cs->nchunks = t->ram.nchunks;
	cs->hashes = t->ram.hashes; /* taken over */
	t->ram.hashes = NULL;
out:
	snap_chain_close(&ch);
	return ret;
}

int vm_chain_save_finish(struct vm *vm, struct vm_chain_save *cs,
			 struct snap_ram_info *ram)
{
	struct vm_chain *c = vm->chain;

	if (ram->nchunks != cs->nchunks || !c || !c->since)
		return -EINVAL;
	cs->par.pages = malloc(c->words * 8);
	if (!cs->par.pages)
		return -ENOMEM;
	memcpy(cs->par.pages, c->since, c->words * 8);
	cs->par.held = 0;
	for (uint64_t w = 0; w < c->words; w++)
		cs->par.held += (uint64_t)__builtin_popcountll(c->since[w]);
	snap_chain_keep_hashes(ram, cs->hashes, cs->par.pages);
	return 0;
}

void vm_chain_save_free(struct vm_chain_save *cs)
{
	snap_chain_parent_free(&cs->par);
	free(cs->hashes);
	cs->hashes = NULL;
}

/* ---- restore ---- */

static void restore_progress(void *opaque, uint64_t done, uint64_t total)
{
	progress_update(opaque, done, total);
}

static int chain_eager(struct vm *vm, const struct restore_opts *o,
		       const struct snap_chain *ch, struct err *err)
{
	struct progress pl;
	const struct snap_ram_progress pg = {restore_progress, &pl};
	int ret;

	if (o->progress)
		progress_start(&pl, STDERR_FILENO,
			       "khyve: restoring guest RAM");
	ret = snap_chain_load_eager(&vm->mem, ch, o->progress ? &pg : NULL,
				    err);
	if (o->progress)
		progress_end(&pl);
	return ret ? ret : snap_chain_check_hashes(&vm->mem, ch, err);
}

/* Hold the increments' RAM files, to notice one shrinking under us. */
static void hold_increments(struct vm_chain *c, const struct snap_chain *ch)
{
	for (unsigned k = 1; k < ch->n && c->nfds < SNAP_CHAIN_MAX; k++) {
		int fd = snap_ram_open(ch->l[k].ram_path, ch->l[k].ram.ram_size,
				       &ch->l[k].ram, NULL);

		if (fd < 0)
			continue;
		snprintf(c->paths[c->nfds], sizeof(c->paths[0]), "%s",
			 ch->l[k].ram_path);
		c->fds[c->nfds++] = fd;
	}
}

int vm_chain_restore_ram(struct vm *vm, const struct restore_opts *o,
			 struct snap_reader *r, int *base_fd, char *base_ram,
			 size_t base_ram_len, struct err *err)
{
	struct snap_chain_parent par;
	struct snap_chain ch = {0};
	struct vm_chain *c = chain_get(vm);
	uint64_t runs = 0;
	int ret;

	*base_fd = -1;
	if (!c)
		return err_set(err, -ENOMEM, "out of memory");
	/* Read (and so consumed) here; the chain reads it again. */
	ret = snap_chain_read_section(r, &par, err);
	snap_chain_parent_free(&par);
	if (ret)
		return ret;
	ret = snap_chain_open(o->file, &ch, err);
	if (ret)
		return ret;
	if (ch.l[ch.n - 1].state_hash != snap_reader_hash(r)) {
		ret = err_set(err, -ESTALE, "%s: changed during the restore",
			      o->file);
		goto out;
	}
	snprintf(base_ram, base_ram_len, "%s", ch.l[0].ram_path);
	if (!o->eager) {
		struct err me = {0};

		ret = snap_chain_map(&vm->mem, &ch, base_fd, &runs, &me);
		if (ret != -E2BIG) {
			if (ret)
				err_set(err, ret, "%s", me.msg);
			else
				hold_increments(c, &ch);
			goto out;
		}
		log_warn("%s: restoring eagerly instead", me.msg);
	}
	ret = chain_eager(vm, o, &ch, err);
out:
	if (!ret)
		log_info("%s: guest RAM from a chain of %u snapshots (%s, "
			 "%" PRIu64 " overlay mappings)",
			 o->file, ch.n, *base_fd >= 0 ? "mapped" : "eager",
			 *base_fd >= 0 ? runs : 0);
	snap_chain_close(&ch);
	return ret;
}

int vm_chain_check_files(struct vm *vm, struct err *err)
{
	struct vm_chain *c = vm->chain;
	struct stat st;

	for (unsigned i = 0; c && i < c->nfds; i++) {
		if (fstat(c->fds[i], &st))
			return err_sys(err, "%s", c->paths[i]);
		if ((uint64_t)st.st_size < vm->mem.ram_size)
			return err_set(
				err, -EIO,
				"%s, a RAM file of the snapshot chain this "
				"guest was restored from and still maps, "
				"shrank to %lld bytes: pages the guest has not "
				"written since are gone; not saving",
				c->paths[i], (long long)st.st_size);
	}
	return 0;
}
