// SPDX-License-Identifier: GPL-2.0
/*
 * khyve_test: built-in guest workload for the khyve VMM.
 *
 * khyve's software KVM backend cannot run Linux user space, so the tests
 * that exercise the VMM's devices and its save/restore live in the kernel.
 * Everything is selected on the kernel command line:
 *
 *   khyve_test.counter=1     print "counter N" every second
 *   khyve_test.mem=MB        fill MB of vmalloc memory with a pattern and
 *                            re-verify its checksums every mem_interval s
 *   khyve_test.blk=1         check the files listed in /khyve/sums on the
 *                            root fs, then write /khyve/guest-N.bin
 *   khyve_test.rodisk=NAME   write to the read-only disk NAME (e.g. vdb)
 *                            through the block layer: the device must
 *                            refuse it and the data must not change
 *   khyve_test.runtime=S     stop counter/memcheck after S s (0: never)
 *   khyve_test.poweroff=1    kernel_power_off() once all tests finished
 *   khyve_test.hold_init=1   pid 1 sleeps in the kernel instead of
 *                            exec'ing init (see init/main.c)
 */
#define pr_fmt(fmt) "khyve_test: " fmt

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/completion.h>
#include <linux/crc32.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/hrtimer.h>
#include <linux/init.h>
#include <linux/jiffies.h>
#include <linux/kernel_read_file.h>
#include <linux/khyve_test.h>
#include <linux/kthread.h>
#include <linux/moduleparam.h>
#include <linux/namei.h>
#include <linux/path.h>
#include <linux/reboot.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/timekeeping.h>
#include <linux/vmalloc.h>
#include <linux/xxhash.h>

static bool counter;
module_param(counter, bool, 0444);
MODULE_PARM_DESC(counter, "print a counter line every second");

static unsigned int mem;
module_param(mem, uint, 0444);
MODULE_PARM_DESC(mem, "MiB of memory to fill and re-verify");

static unsigned int mem_interval = 5;
module_param(mem_interval, uint, 0444);
MODULE_PARM_DESC(mem_interval, "seconds between memory checks");

static bool blk;
module_param(blk, bool, 0444);
MODULE_PARM_DESC(blk, "verify /khyve/sums files and write a new file");

static unsigned int blk_size = 300007;
module_param(blk_size, uint, 0444);
MODULE_PARM_DESC(blk_size, "bytes in the file the blk test writes");

static char *rodisk;
module_param(rodisk, charp, 0444);
MODULE_PARM_DESC(rodisk, "read-only disk (e.g. vdb) a write to must fail");

static unsigned int runtime;
module_param(runtime, uint, 0444);
MODULE_PARM_DESC(runtime, "seconds counter/memcheck run (0: forever)");

static bool poweroff;
module_param(poweroff, bool, 0444);
MODULE_PARM_DESC(poweroff, "power off once all selected tests are done");

bool khyve_test_hold_init;
module_param_named(hold_init, khyve_test_hold_init, bool, 0444);
MODULE_PARM_DESC(hold_init, "pid 1 sleeps in the kernel instead of init");

#define MEM_CHUNK	(1UL << 20)
#define IO_BUF_SIZE	(64UL << 10)
#define SUMS_PATH	"/khyve/sums"
#define SUMS_MAX	(64UL << 10)
#define GUEST_FILE_SEED 0x6b68797665000000ULL /* "khyve" */

static atomic_t pending = ATOMIC_INIT(1); /* +1 held by the main thread */
static atomic_t failures = ATOMIC_INIT(0);
static DECLARE_COMPLETION(all_done);

static void test_done(void)
{
	if (atomic_dec_and_test(&pending))
		complete(&all_done);
}

/*
 * splitmix64: the host-side tools (make-rootfs.py, check-qemu.sh)
 * implement the same generator to predict the guest's data.
 */
static u64 splitmix64(u64 x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* True once the root fs is mounted and pid 1 is about to run init. */
static void wait_system_running(void)
{
	while (READ_ONCE(system_state) < SYSTEM_RUNNING)
		msleep(50);
}

static bool runtime_over(u64 start_ns)
{
	return runtime && ktime_get_ns() - start_ns >= runtime * NSEC_PER_SEC;
}

static int counter_fn(void *arg)
{
	u64 start = ktime_get_ns();
	ktime_t next = ns_to_ktime(start);
	unsigned long n = 0;

	for (;;) {
		struct timespec64 real;
		u64 now = ktime_get_ns();

		ktime_get_real_ts64(&real);
		pr_info("counter %lu jiffies %lu mono_ms %llu real "
			"%lld.%09ld\n",
			n, jiffies, div_u64(now, NSEC_PER_MSEC),
			(long long)real.tv_sec, real.tv_nsec);
		n++;
		if (runtime_over(start))
			break;
		/*
		 * Absolute deadlines keep the period exact; after a long
		 * stall (e.g. a paused VM) skip ahead instead of bursting.
		 */
		next = ktime_add_ns(next, NSEC_PER_SEC);
		if (ktime_before(next, ns_to_ktime(ktime_get_ns())))
			next = ktime_add_ns(ktime_get(), NSEC_PER_SEC);
		set_current_state(TASK_IDLE);
		schedule_hrtimeout(&next, HRTIMER_MODE_ABS);
	}
	test_done();
	return 0;
}

static u64 mem_word(size_t i)
{
	return splitmix64(i);
}

/* Locates the first corrupted word of a chunk, for the BAD report. */
static void mem_report_bad(const u64 *buf, size_t chunk)
{
	size_t words = MEM_CHUNK / sizeof(u64), i;
	size_t base = chunk * words;

	for (i = 0; i < words; i++) {
		if (buf[base + i] != mem_word(base + i)) {
			pr_err("memcheck chunk %zu word %zu: %016llx != "
			       "%016llx\n",
			       chunk, base + i, buf[base + i],
			       mem_word(base + i));
			return;
		}
	}
	pr_err("memcheck chunk %zu: checksum differs, data matches\n", chunk);
}

static int mem_fn(void *arg)
{
	size_t words = (size_t)mem * (MEM_CHUNK / sizeof(u64));
	u64 start = ktime_get_ns(), total = 0;
	unsigned long round = 0;
	u64 *buf, *sums;
	size_t i, c;

	buf = vmalloc(array_size(words, sizeof(u64)));
	sums = kcalloc(mem, sizeof(*sums), GFP_KERNEL);
	if (!buf || !sums) {
		pr_err("memcheck: cannot allocate %u MiB\n", mem);
		atomic_inc(&failures);
		goto out;
	}
	for (i = 0; i < words; i++) {
		buf[i] = mem_word(i);
		if ((i & 0xffff) == 0)
			cond_resched();
	}
	for (c = 0; c < mem; c++) {
		sums[c] = xxh64((u8 *)buf + c * MEM_CHUNK, MEM_CHUNK, c);
		total ^= sums[c];
		cond_resched();
	}
	pr_info("memcheck filled %u MiB, checksum %016llx\n", mem, total);

	do {
		unsigned int bad = 0;

		msleep_interruptible(mem_interval * 1000);
		for (c = 0; c < mem; c++) {
			u64 s = xxh64((u8 *)buf + c * MEM_CHUNK, MEM_CHUNK, c);

			if (s != sums[c]) {
				if (!bad)
					mem_report_bad(buf, c);
				bad++;
			}
			cond_resched();
		}
		if (bad) {
			pr_err("memcheck BAD %lu (%u of %u MiB differ)\n",
			       round, bad, mem);
			atomic_inc(&failures);
		} else {
			pr_info("memcheck ok %lu\n", round);
		}
		round++;
	} while (!runtime_over(start));
out:
	vfree(buf);
	kfree(sums);
	test_done();
	return 0;
}

/* Standard CRC-32 (as zlib/Python), streamed over the whole file. */
static int file_crc32(const char *path, u8 *iobuf, u32 *crc, u64 *size)
{
	struct file *f;
	loff_t pos = 0;
	u32 c = ~0U;
	ssize_t n;
	int ret = 0;

	f = filp_open(path, O_RDONLY, 0);
	if (IS_ERR(f))
		return PTR_ERR(f);
	for (;;) {
		n = kernel_read(f, iobuf, IO_BUF_SIZE, &pos);
		if (n < 0) {
			ret = n;
			break;
		}
		if (n == 0)
			break;
		c = crc32_le(c, iobuf, n);
	}
	filp_close(f, NULL);
	*crc = ~c;
	*size = pos;
	return ret;
}

/* Parses "NAME SIZE CRC32HEX" lines and checks each file. */
static void blk_check_sums(char *sums, u8 *iobuf, char *path)
{
	unsigned int ok = 0, badcnt = 0;
	char *line;

	while ((line = strsep(&sums, "\n")) != NULL) {
		char name[128];
		u64 want_size, size;
		u32 want_crc, crc;
		int ret;

		if (!*line || *line == '#')
			continue;
		if (sscanf(line, "%127s %llu %x", name, &want_size,
			   &want_crc) != 3 ||
		    strstr(name, "..")) {
			pr_err("blk: bad line in %s: %.60s\n", SUMS_PATH, line);
			badcnt++;
			continue;
		}
		snprintf(path, PATH_MAX, "/khyve/%s", name);
		ret = file_crc32(path, iobuf, &crc, &size);
		if (ret == 0 && size == want_size && crc == want_crc) {
			pr_info("file %s ok\n", name);
			ok++;
		} else {
			pr_err("file %s BAD (err %d size %llu/%llu crc "
			       "%08x/%08x)\n",
			       name, ret, size, want_size, crc, want_crc);
			badcnt++;
		}
	}
	pr_info("blk: %u files ok, %u bad\n", ok, badcnt);
	if (badcnt || !ok)
		atomic_add(badcnt ? badcnt : 1, &failures);
}

/* Fills buf with the bytes at offset pos of guest file number n. */
static void guest_file_bytes(unsigned int n, u64 pos, u8 *buf, size_t len)
{
	size_t i;

	/* pos is always 8-byte aligned: callers write whole buffers. */
	for (i = 0; i < len; i += 8) {
		__le64 w = cpu_to_le64(
			splitmix64(GUEST_FILE_SEED + n + ((pos + i) << 16)));

		memcpy(buf + i, &w, min_t(size_t, 8, len - i));
	}
}

/*
 * Freezing checkpoints the root fs journal: the data fsync put in the
 * journal lands in place, so the host can read the image with debugfs
 * and e2fsck -n without replaying the journal.
 */
static int root_fs_freeze(bool thaw)
{
	struct path root;
	int ret;

	ret = kern_path("/", 0, &root);
	if (ret)
		return ret;
	ret = freeze_super(root.mnt->mnt_sb);
	if (!ret && thaw)
		ret = thaw_super(root.mnt->mnt_sb);
	path_put(&root);
	return ret;
}

static int blk_write_file(u8 *iobuf, char *path)
{
	struct file *f = NULL;
	unsigned int n;
	loff_t pos = 0;
	u32 crc = ~0U;
	int ret;

	/* A new name every boot, so a restored guest never overwrites. */
	for (n = 0; n < 1000; n++) {
		snprintf(path, PATH_MAX, "/khyve/guest-%u.bin", n);
		f = filp_open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (!IS_ERR(f) || PTR_ERR(f) != -EEXIST)
			break;
	}
	if (IS_ERR(f)) {
		ret = PTR_ERR(f);
		goto fail;
	}
	while (pos < blk_size) {
		size_t len = min_t(u64, IO_BUF_SIZE, blk_size - pos);
		ssize_t w;

		guest_file_bytes(n, pos, iobuf, len);
		crc = crc32_le(crc, iobuf, len);
		w = kernel_write(f, iobuf, len, &pos);
		if (w != len) {
			ret = w < 0 ? w : -EIO;
			goto close;
		}
	}
	ret = vfs_fsync(f, 0);
close:
	filp_close(f, NULL);
	if (!ret)
		ret = root_fs_freeze(true);
	if (ret)
		goto fail;
	pr_info("wrote /khyve/guest-%u.bin size %u crc32 %08x\n", n, blk_size,
		~crc);
	return 0;
fail:
	pr_err("blk: writing %s failed: %d\n", path, ret);
	atomic_inc(&failures);
	return ret;
}

static int blk_fn(void *arg)
{
	u8 *iobuf = kmalloc(IO_BUF_SIZE, GFP_KERNEL);
	char *path = kmalloc(PATH_MAX, GFP_KERNEL);
	void *data = NULL;
	char *sums = NULL;
	ssize_t len;

	if (!iobuf || !path) {
		atomic_inc(&failures);
		goto out;
	}
	wait_system_running();
	/* kthreads share init's fs_struct, so "/" is the real root now. */
	len = kernel_read_file_from_path(SUMS_PATH, 0, &data, SUMS_MAX, NULL,
					 READING_UNKNOWN);
	if (len < 0) {
		pr_err("blk: cannot read %s: %zd\n", SUMS_PATH, len);
		atomic_inc(&failures);
		goto out;
	}
	sums = kmemdup_nul(data, len, GFP_KERNEL);
	if (!sums) {
		atomic_inc(&failures);
		goto out;
	}
	blk_check_sums(sums, iobuf, path);
	blk_write_file(iobuf, path);
out:
	kfree(sums);
	vfree(data);
	kfree(path);
	kfree(iobuf);
	test_done();
	return 0;
}

/* One 4 KiB bio at sector 0 of @bdev; returns submit_bio_wait()'s status. */
static int rodisk_io(struct block_device *bdev, struct page *page,
		     blk_opf_t op)
{
	struct bio *bio = bio_alloc(bdev, 1, op | REQ_SYNC, GFP_KERNEL);
	int ret;

	bio->bi_iter.bi_sector = 0;
	__bio_add_page(bio, page, PAGE_SIZE, 0);
	ret = submit_bio_wait(bio);
	bio_put(bio);
	return ret;
}

/*
 * The block layer only warns about a write to a read-only disk and sends
 * it on (bio_check_ro), so this checks the VMM's device: the write must
 * come back as an error and the disk must keep its data.
 */
static int rodisk_fn(void *arg)
{
	struct page *page = alloc_page(GFP_KERNEL);
	struct block_device *bdev = NULL;
	struct device *dev = NULL;
	u32 crc_before, crc_after;
	int wret, ret = -ENODEV;
	u8 *p;

	if (!page) {
		ret = -ENOMEM;
		goto fail;
	}
	wait_system_running();
	dev = class_find_device_by_name(&block_class, rodisk);
	if (!dev)
		goto fail;
	bdev = blkdev_get_by_dev(dev->devt, FMODE_READ | FMODE_WRITE, NULL);
	if (IS_ERR(bdev)) {
		ret = PTR_ERR(bdev);
		bdev = NULL;
		goto fail;
	}
	p = page_address(page);
	ret = rodisk_io(bdev, page, REQ_OP_READ);
	if (ret)
		goto fail;
	crc_before = ~crc32_le(~0U, p, PAGE_SIZE);
	memset(p, 0xa5, PAGE_SIZE);
	wret = rodisk_io(bdev, page, REQ_OP_WRITE);
	memset(p, 0, PAGE_SIZE);
	ret = rodisk_io(bdev, page, REQ_OP_READ);
	if (ret)
		goto fail;
	crc_after = ~crc32_le(~0U, p, PAGE_SIZE);
	if (wret && crc_after == crc_before) {
		pr_info("rodisk %s ro=%d write refused (%d), data unchanged "
			"crc32 %08x\n", rodisk, bdev_read_only(bdev), wret,
			crc_after);
	} else {
		pr_err("rodisk %s BAD: write status %d, crc32 %08x -> %08x\n",
		       rodisk, wret, crc_before, crc_after);
		atomic_inc(&failures);
	}
	ret = 0;
	goto out;
fail:
	pr_err("rodisk %s BAD: %d\n", rodisk, ret);
	atomic_inc(&failures);
out:
	if (bdev)
		blkdev_put(bdev, FMODE_READ | FMODE_WRITE);
	if (dev)
		put_device(dev);
	if (page)
		__free_page(page);
	test_done();
	return 0;
}

static void start_test(int (*fn)(void *), const char *name)
{
	struct task_struct *t;

	atomic_inc(&pending);
	t = kthread_run(fn, NULL, "khyve_%s", name);
	if (IS_ERR(t)) {
		pr_err("cannot start %s: %ld\n", name, PTR_ERR(t));
		atomic_inc(&failures);
		test_done();
	}
}

static int main_fn(void *arg)
{
	if (counter)
		start_test(counter_fn, "counter");
	if (mem)
		start_test(mem_fn, "mem");
	if (blk)
		start_test(blk_fn, "blk");
	if (rodisk && *rodisk)
		start_test(rodisk_fn, "rodisk");
	test_done();
	wait_for_completion(&all_done);
	wait_system_running();
	pr_info("all tests done, %d failures\n", atomic_read(&failures));
	if (poweroff) {
		/* Stays frozen: the image is left as after a clean unmount. */
		if (blk && root_fs_freeze(false))
			pr_warn("cannot freeze the root fs\n");
		pr_info("powering off\n");
		kernel_power_off();
	}
	return 0;
}

static int __init khyve_test_init(void)
{
	struct task_struct *t;

	if (!counter && !mem && !blk && !rodisk && !poweroff)
		return 0;
	if (mem_interval == 0)
		mem_interval = 1;
	t = kthread_run(main_fn, NULL, "khyve_test");
	return PTR_ERR_OR_ZERO(t);
}
late_initcall(khyve_test_init);
