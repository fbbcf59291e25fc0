/* SPDX-License-Identifier: BSD-2-Clause */
/* Logging to stderr: one line per message, prefixed with the program name. */
#ifndef KHYVE_LOG_H
#define KHYVE_LOG_H

#include <stddef.h>

enum log_level { LOG_ERR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level lvl);
void log_set_prog(const char *prog);
/* Log to @path (appended, created 0600) instead of stderr; -errno. */
int log_set_file(const char *path);
void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
