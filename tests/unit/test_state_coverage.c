/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Every saved state struct is covered exactly by its description: each
 * byte of a member is saved by one field, or the member is listed here as
 * deliberately not saved with the reason; padding (found by the compiler,
 * see check_desc_exact in unit_snap.h) is covered by nothing. And every
 * description in src/ (each SNAP_DESC) is in the table below, so a new
 * section cannot skip this check.
 *
 * The VM-wide state struct is private to src/vm_snapshot.c: that file is
 * compiled into this test (as tests/fuzz/fuzz_ctl.c does with ctl.c) so
 * the check sees the real struct, not a copy of it.
 */
#include <dirent.h>
#include <limits.h>

#include "../../src/vm_snapshot.c"

#include "i8042.h"
#include "pci.h"
#include "pm.h"
#include "rtc.h"
#include "uart8250.h"
#include "vcpu_state.h"
#include "virtio_blk.h"
#include "virtio_console.h"
#include "virtio_net.h"
#include "virtio_pci.h"
#include "virtqueue.h"

#include "unit.h"
#include "unit_snap.h"

/* The sections checked here, by the name each description gives. */
static const char *const checked[] = {
	"x86-vcpu",   "kvm-vm",	    "uart8250",	  "rtc",
	"i8042",      "pm",	    "pci_dev",	  "virtio_pci",
	"virtq",      "virtio_blk", "virtio_net", "virtio_console",
	"pci_bus",    "vmgenid",
};

static void test_cpu_and_vm(void)
{
	check_desc_exact(&vcpu_state_snap, struct vcpu_state, NULL, 0);
	check_desc_exact(&kvm_vm_snap, struct kvm_vm_state, NULL, 0);
}

static void test_legacy_devices(void)
{
	check_desc_exact(&uart8250_snap_desc, struct uart8250_state, NULL, 0);
	check_desc_exact(&rtc_snap_desc, struct rtc_state, NULL, 0);
	check_desc_exact(&i8042_snap_desc, struct i8042_state, NULL, 0);
	check_desc_exact(&pm_snap_desc, struct pm_state, NULL, 0);
	check_desc_exact(&pci_bus_snap, struct pci_bus_state, NULL, 0);
}

static void test_pci_and_virtio(void)
{
	check_desc_exact(&pci_dev_snap, struct pci_dev_state, NULL, 0);
	check_desc_exact(&virtio_pci_snap, struct virtio_pci_state, NULL, 0);
	check_desc_exact(&virtq_snap, struct virtq_state, NULL, 0);
	check_desc_exact(&virtio_blk_snap, struct virtio_blk_state, NULL, 0);
	check_desc_exact(&virtio_net_snap, struct virtio_net_state, NULL, 0);
	check_desc_exact(&virtio_console_snap, struct virtio_console_state,
			 NULL, 0);
	check_desc_exact(&vmgenid_snap, struct vmgenid_state, NULL, 0);
}

/* The repository's src/ from BUILD/tests/unit/<this test>. */
static bool find_src(char *dir, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *p;

	if (n <= 0)
		return false;
	self[n] = '\0';
	p = strstr(self, "/tests/unit/");
	if (!p)
		return false;
	*p = '\0';
	p = strrchr(self, '/'); /* BUILD */
	if (!p)
		return false;
	*p = '\0';
	return snprintf(dir, len, "%s/src", self) < (int)len &&
	       access(dir, R_OK | X_OK) == 0;
}

static unsigned found_unchecked;
static bool found[ARRAY_SIZE(checked)];

/* Each SNAP_DESC("name" in @path must be one of checked[]. */
static void scan_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *text = NULL;
	size_t cap = 0, len = 0, n;

	if (!f)
		return;
	do {
		if (len + 4096 + 1 > cap) {
			cap = 2 * cap + 8192;
			text = realloc(text, cap);
			if (!text) {
				fclose(f);
				return;
			}
		}
		n = fread(text + len, 1, 4096, f);
		len += n;
	} while (n > 0);
	fclose(f);
	text[len] = '\0';
	for (char *p = strstr(text, "SNAP_DESC("); p;
	     p = strstr(p + 1, "SNAP_DESC(")) {
		char *q = p + strlen("SNAP_DESC("), *e;
		bool ok = false;

		while (*q == ' ' || *q == '\t' || *q == '\n')
			q++;
		if (*q != '"')
			continue; /* the macro's own definition */
		e = strchr(q + 1, '"');
		if (!e)
			continue;
		for (unsigned i = 0; i < ARRAY_SIZE(checked); i++) {
			if (strlen(checked[i]) != (size_t)(e - q - 1) ||
			    strncmp(checked[i], q + 1, (size_t)(e - q - 1)))
				continue;
			found[i] = ok = true;
		}
		if (!ok) {
			found_unchecked++;
			fprintf(stderr, "%s: section %.*s has no exact coverage "
					"check in test_state_coverage.c\n",
				path, (int)(e - q + 1), q);
		}
	}
	free(text);
}

static void scan_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[PATH_MAX];

	if (!d)
		return;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);

		if (de->d_name[0] == '.')
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >=
		    (int)sizeof(path))
			continue;
		if (de->d_type == DT_DIR)
			scan_dir(path);
		else if (l > 2 && (!strcmp(de->d_name + l - 2, ".c") ||
				   !strcmp(de->d_name + l - 2, ".h")))
			scan_file(path);
	}
	closedir(d);
}

static void test_every_section_checked(void)
{
	char src[PATH_MAX];

	if (!find_src(src, sizeof(src))) {
		SKIP("no source tree beside the build directory");
		return;
	}
	scan_dir(src);
	CHECK_EQ(found_unchecked, 0);
	/* The scan found every one of them (a broken scan must not pass). */
	for (unsigned i = 0; i < ARRAY_SIZE(checked); i++) {
		if (!found[i])
			fprintf(stderr, "section \"%s\" not found in %s\n",
				checked[i], src);
		CHECK(found[i]);
	}
}

int main(void)
{
	RUN(test_cpu_and_vm);
	RUN(test_legacy_devices);
	RUN(test_pci_and_virtio);
	RUN(test_every_section_checked);
	return unit_done();
}
