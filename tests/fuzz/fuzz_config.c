/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer harness for config_from_json(): the machine configuration a
 * snapshot embeds, i.e. bytes from a file khyve -r is handed. The input is
 * the "config" section's JSON text, loaded with the flags the restore uses.
 *
 * Beyond "no crash, no leak": a refusal comes with a message; an accepted
 * config is within every bound khyve relies on; it survives
 * to_json -> from_json unchanged; and merging an identical command line
 * into it (what `khyve -r` does) succeeds and changes nothing.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_bounds(const struct vm_config *c)
{
	if (!config_name_valid(c->name) || c->ncpus < 1 ||
	    c->ncpus > CONFIG_MAX_CPUS || c->mem_size < CONFIG_MIN_MEM ||
	    c->mem_size % (2 * MiB) || c->ndevs > CONFIG_MAX_DEVS)
		abort();
	for (unsigned i = 0; i < c->ndevs; i++) {
		const struct dev_config *d = &c->devs[i];

		if (d->slot > 31 || d->func > 7 ||
		    !memchr(d->emul, 0, sizeof(d->emul)) ||
		    !memchr(d->conf, 0, sizeof(d->conf)))
			abort();
	}
}

/* Equal as far as the snapshot is concerned: their JSON is equal. */
static void check_same(const struct vm_config *a, const struct vm_config *b)
{
	json_t *ja = config_to_json(a), *jb = config_to_json(b);

	if (!ja || !jb || !json_equal(ja, jb))
		abort();
	json_decref(ja);
	json_decref(jb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm_config c, c2, cmd;
	struct err err = {0};
	json_t *j, *j2;

	/* As vm_snapshot_read_config() loads the section. */
	j = json_loadb((const char *)data, size, 0, NULL);
	if (!j)
		return 0;
	if (config_from_json(&c, j, &err)) {
		json_decref(j);
		if (!err.msg[0])
			abort(); /* every refusal must say why */
		return 0;
	}
	json_decref(j);
	check_bounds(&c);

	/* What a checkpoint of this VM would embed must load back as is. */
	j2 = config_to_json(&c);
	if (!j2)
		abort();
	err_clear(&err);
	if (config_from_json(&c2, j2, &err))
		abort();
	json_decref(j2);
	check_same(&c, &c2);

	/*
	 * A restore whose command line repeats every guest-visible setting
	 * must be accepted and leave the snapshot's config as it was.
	 */
	if (config_from_json(&cmd, j2 = config_to_json(&c2), &err))
		abort();
	json_decref(j2);
	cmd.set_ncpus = cmd.set_mem = true;
	cmd.set_console = cmd.console != NULL;
	if (config_merge_restore(&c2, &cmd, &err))
		abort();
	check_same(&c, &c2);

	config_free(&cmd);
	config_free(&c2);
	config_free(&c);
	return 0;
}
