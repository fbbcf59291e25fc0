/* SPDX-License-Identifier: BSD-2-Clause */
#ifndef KHYVE_VM_CTL_H
#define KHYVE_VM_CTL_H

#include "ctl.h"

extern const struct ctl_ops vm_ctl_ops;

#endif
