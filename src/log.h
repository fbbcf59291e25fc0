/* SPDX-License-Identifier: BSD-2-Clause */
/* Logging to stderr: one line per message, prefixed with the program name. */
#ifndef KHYVE_LOG_H
#define KHYVE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level lvl);
void log_set_prog(const char *prog);
/* Log to @path (appended, created 0600) instead of stderr; -errno. */
int log_set_file(const char *path);
void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * For messages a guest can cause at will: at most one a second per
 * limiter. log_rl_allow() says whether to log now and, if so, how many
 * were dropped since the last one (for the message to say).
 */
struct log_rl {
	uint64_t last_ns;
	unsigned suppressed;
};
bool log_rl_allow(struct log_rl *rl, unsigned *suppressed);

#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
