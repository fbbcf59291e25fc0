/* SPDX-License-Identifier: BSD-2-Clause */
/* ACPI hardware-reduced sleep registers and the 0xcf9 reset register. */
#include "pm.h"

#include <string.h>

#include "common.h"
#include "log.h"

static const struct snap_field pm_fields[] = {
	SNAP_U8_MAX(struct pm_state, sleep_ctl, PM_SLP_TYP_MASK, 1),
	SNAP_U8_MAX(struct pm_state, sleep_sts, PM_WAK_STS, 1),
	SNAP_U8_MAX(struct pm_state, rcr, PM_SYS_RST | PM_FULL_RST, 1),
};

const struct snap_desc pm_snap_desc =
	SNAP_DESC("pm", 1, 1, struct pm_state, pm_fields);

enum pm_event { PM_NONE, PM_POWEROFF, PM_RESET };

static void warn_once(struct pm *pm, const char *what, unsigned v)
{
	if (pm->warned)
		return;
	pm->warned = true;
	log_warn("pm: %s %#x ignored (further oddities not logged)", what, v);
}

/* Run the event's callback; the caller has dropped the lock. */
static void fire(struct pm *pm, enum pm_event ev)
{
	if (ev == PM_POWEROFF && pm->poweroff)
		pm->poweroff(pm->opaque);
	else if (ev == PM_RESET && pm->reset)
		pm->reset(pm->opaque);
}

static enum pm_event sleep_write(struct pm *pm, unsigned off, uint8_t v)
{
	unsigned typ = (v & PM_SLP_TYP_MASK) >> PM_SLP_TYP_SHIFT;

	if (off == 1) {
		/* Write-1-to-clear; other bits are reserved. */
		pm->st.sleep_sts &= (uint8_t) ~(v & PM_WAK_STS);
		return PM_NONE;
	}
	pm->st.sleep_ctl = v & PM_SLP_TYP_MASK;
	if (!(v & PM_SLP_EN))
		return PM_NONE;
	if (typ == PM_SLP_TYP_S5) {
		pm->poweroffs++;
		return PM_POWEROFF;
	}
	warn_once(pm, "unsupported sleep type", typ);
	return PM_NONE;
}

int pm_sleep_io(void *opaque, uint64_t offset, void *data, unsigned size,
		bool is_write)
{
	struct pm *pm = opaque;
	enum pm_event ev = PM_NONE, e;
	uint8_t *p = data;

	if (!pm || !p || !size || size > 8)
		return -EINVAL;
	pthread_mutex_lock(&pm->lock);
	for (unsigned i = 0; i < size; i++) {
		uint64_t off = offset + i;

		if (off > 1) {
			if (!is_write)
				p[i] = 0xff;
			continue;
		}
		if (!is_write) {
			p[i] = off ? pm->st.sleep_sts : pm->st.sleep_ctl;
			continue;
		}
		e = sleep_write(pm, (unsigned)off, p[i]);
		if (e != PM_NONE)
			ev = e;
	}
	pthread_mutex_unlock(&pm->lock);
	fire(pm, ev);
	return 0;
}

int pm_reset_io(void *opaque, uint64_t offset, void *data, unsigned size,
		bool is_write)
{
	struct pm *pm = opaque;
	enum pm_event ev = PM_NONE;
	uint8_t *p = data;

	if (!pm || !p || !size || size > 8)
		return -EINVAL;
	pthread_mutex_lock(&pm->lock);
	if (offset != 0)
		warn_once(pm, "reset register access at offset",
			  (unsigned)offset);
	else if (size != 1)
		warn_once(pm, "reset register access of size", size);
	if (offset != 0) {
		if (!is_write)
			memset(p, 0xff, size);
	} else if (is_write) {
		pm->st.rcr = p[0] & (PM_SYS_RST | PM_FULL_RST);
		/* RST_CPU is self-clearing: it triggers, it is not kept. */
		if (p[0] & PM_RST_CPU) {
			pm->resets++;
			ev = PM_RESET;
		}
	} else {
		p[0] = pm->st.rcr;
		memset(p + 1, 0xff, size - 1);
	}
	pthread_mutex_unlock(&pm->lock);
	fire(pm, ev);
	return 0;
}

int pm_init(struct pm *pm, pm_event_fn poweroff, pm_event_fn reset,
	    void *opaque)
{
	int ret;

	if (!pm)
		return -EINVAL;
	memset(pm, 0, sizeof(*pm));
	ret = pthread_mutex_init(&pm->lock, NULL);
	if (ret)
		return -ret;
	pm->poweroff = poweroff;
	pm->reset = reset;
	pm->opaque = opaque;
	return 0;
}

void pm_destroy(struct pm *pm)
{
	pthread_mutex_destroy(&pm->lock);
}

void pm_state_save(struct pm *pm, struct pm_state *st)
{
	pthread_mutex_lock(&pm->lock);
	*st = pm->st;
	pthread_mutex_unlock(&pm->lock);
}

int pm_state_check(const struct pm_state *st)
{
	if (st->sleep_ctl & ~PM_SLP_TYP_MASK || st->sleep_sts & ~PM_WAK_STS ||
	    st->rcr & ~(PM_SYS_RST | PM_FULL_RST))
		return -EINVAL;
	return 0;
}

int pm_state_apply(struct pm *pm, const struct pm_state *st)
{
	int ret = pm_state_check(st);

	if (ret < 0)
		return ret;
	pthread_mutex_lock(&pm->lock);
	pm->st = *st;
	pthread_mutex_unlock(&pm->lock);
	return 0;
}
