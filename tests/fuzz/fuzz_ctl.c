/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer harness for the control socket's request layer: the bytes a
 * client sends, split into lines (process_input) and each line parsed,
 * validated and dispatched (handle_line), with replies queued for the
 * client. Both are static in src/ctl.c, so it is compiled in here (the
 * Makefile links fuzz_ctl without ctl.o); no socket, thread or VM: the
 * ctl_ops callbacks are stubs whose outcome the input picks, including
 * the awkward ones (non-object result, unencodable result, positive rc,
 * progress lines, no callback at all).
 *
 * Input: [0] mode (bits 0-2 callback outcome, 3 progress from
 *        checkpoint, 4 EOF at the end), [1] max_line / 4 (0: default),
 *        [2] max_output / 64 (0: default), [3] bytes per read (0: all),
 *        [4..] what the client sends.
 * Every queued output line must be one JSON object shaped as
 * docs/control-protocol.md says (reply, error with a known code, or
 * progress), and no request state may outlive the request.
 */
#include "ctl.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned outcome; /* mode bits 0-2 */
static bool progress;	 /* mode bit 3 */

static int stub_rc(json_t **reply, struct err *e)
{
	switch (outcome) {
	case 0:
		if (reply)
			*reply = json_pack("{s:s, s:i}", "state", "running",
					   "n", 1);
		return 0;
	case 1:
		return 0; /* NULL reply: an empty result */
	case 2:
		if (reply)
			*reply = json_pack("[i]", 1); /* not an object */
		return 0;
	case 3:
		return err_set(e, -EBUSY, "pause first");
	case 4:
		return -EINVAL; /* no message: strerror's */
	case 5:
		return 7; /* positive: the server must not trust it */
	default:
		/* Invalid UTF-8: json_dumps() fails on the reply. */
		if (reply)
			*reply = json_pack("{s:o}", "s",
					   json_stringn_nocheck("\xff\xfe", 2));
		return 0;
	}
}

static int st_status(void *o, json_t **reply, struct err *e)
{
	return stub_rc(reply, e);
}

static int st_plain(void *o, struct err *e)
{
	return stub_rc(NULL, e);
}

static int st_poweroff(void *o, bool force, struct err *e)
{
	return stub_rc(NULL, e);
}

static int st_regs(void *o, int vcpu, bool msrs, json_t **reply, struct err *e)
{
	return stub_rc(reply, e);
}

static int st_checkpoint(void *op, const struct checkpoint_opts *o,
			 json_t **reply, struct err *e)
{
	if (!o->file || !*o->file)
		abort(); /* the server promised a checked "file" */
	if (progress)
		for (uint64_t i = 0; i <= 4; i++)
			ctl_progress(i, 4);
	return stub_rc(reply, e);
}

static int st_migrate(void *opaque, const struct migrate_opts *o,
		      json_t **reply, struct err *e)
{
	if (!o->to || !*o->to)
		abort(); /* the server promised a checked "to" */
	return stub_rc(reply, e);
}

static const struct ctl_ops stub_ops = {
	.status = st_status,
	.pause = st_plain,
	.resume = st_plain,
	.poweroff = st_poweroff,
	.reset = st_plain,
	.regs = st_regs,
	.stats = st_status,
	.checkpoint = st_checkpoint,
	.migrate = st_migrate,
};
static const struct ctl_ops no_ops; /* every command: not_implemented */

static bool known_code(const char *code)
{
	static const char *const codes[] = {
		"parse_error",	   "bad_request",      "unknown_command",
		"too_large",	   "invalid_state",    "failed",
		"not_implemented", "permission_denied"};

	for (size_t i = 0; i < ARRAY_SIZE(codes); i++)
		if (!strcmp(code, codes[i]))
			return true;
	return false;
}

/* One queued line against docs/control-protocol.md. */
static void check_line(const char *line, size_t len)
{
	json_t *j = json_loadb(line, len, 0, NULL), *e, *v;

	if (!json_is_object(j) || !json_object_get(j, "id"))
		abort();
	if ((e = json_object_get(j, "error"))) {
		const char *code =
			json_string_value(json_object_get(e, "code"));

		if (!code || !known_code(code) ||
		    !json_is_string(json_object_get(e, "message")))
			abort();
		/* Errors the server cannot tie to a request carry id null. */
		if ((!strcmp(code, "parse_error") ||
		     !strcmp(code, "too_large")) &&
		    !json_is_null(json_object_get(j, "id")))
			abort();
	} else if ((v = json_object_get(j, "progress"))) {
		if (!json_is_integer(json_object_get(v, "done")) ||
		    !json_is_integer(json_object_get(v, "total")))
			abort();
	} else if (!json_is_true(json_object_get(j, "ok")) ||
		   !json_is_object(json_object_get(j, "result"))) {
		abort(); /* result is always an object */
	}
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctl_server s = {.name = "fuzz"};
	struct ctl_client c = {.fd = -1};
	size_t chunk, off = 4;
	bool alive = true;

	if (size < 4)
		return 0;
	outcome = data[0] & 7;
	progress = data[0] & 8;
	s.ops = outcome == 7 ? &no_ops : &stub_ops;
	s.max_line = data[1] ? (size_t)data[1] * 4 : CTL_MAX_LINE;
	s.max_output = data[2] ? (size_t)data[2] * 64 : CTL_MAX_OUTPUT;
	chunk = data[3] ? data[3] : size;
	/* As client_read() does: append what arrived, answer each line. */
	while (alive && off < size && !c.closing) {
		size_t n = MIN(chunk, size - off);
		char *p = realloc(c.in, c.in_len + n);

		if (!p)
			break;
		c.in = p;
		memcpy(c.in + c.in_len, data + off, n);
		c.in_len += n;
		c.in_cap = c.in_len;
		off += n;
		alive = process_input(&s, &c, false);
	}
	if (alive && !c.closing && (data[0] & 16))
		process_input(&s, &c, true);
	if (cur_req.s || cur_req.c || cur_req.id)
		abort(); /* request state outlived its request */
	for (size_t i = c.out_off; i < c.out_len;) {
		char *nl = memchr(c.out + i, '\n', c.out_len - i);

		if (!nl)
			abort(); /* every queued reply is a whole line */
		check_line(c.out + i, (size_t)(nl - (c.out + i)));
		i = (size_t)(nl - c.out) + 1;
	}
	client_free(&c);
	return 0;
}
