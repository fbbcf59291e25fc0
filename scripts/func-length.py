#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Fail on C functions longer than a limit (make lint).

usage: func-length.py MAX [--allow NAME]... FILE...

A function's length counts its lines from the first line of its signature
to its closing brace. The project's style (clang-format, kernel style) puts
a definition's braces alone in column 0, which is all this relies on.
--allow names a function accepted as it is (a flat table or switch, e.g.
config_parse's getopt switch), so it is listed here on purpose.
"""
import re
import sys


def functions(path):
    """(name, first line, length) of each function defined in @path."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        if lines[i] != "{":
            i += 1
            continue
        start = i
        # The signature: the lines above up to a blank line, a comment's
        # end, a preprocessor line or the previous declaration's end.
        while start > 0:
            prev = lines[start - 1].rstrip()
            if (not prev or prev.endswith((";", "*/", "}"))
                    or prev.startswith("#")):
                break
            start -= 1
        end = i + 1
        while end < len(lines) and not lines[end].startswith("}"):
            end += 1
        sig = " ".join(lines[start:i])
        m = re.search(r"(\w+)\s*\(", sig)
        yield (m.group(1) if m else "?"), start + 1, end - start + 1
        i = end + 1


def main(argv):
    limit, allow, files = int(argv[1]), set(), []
    args = iter(argv[2:])
    for a in args:
        if a == "--allow":
            allow.add(next(args))
        else:
            files.append(a)
    bad = 0
    for path in files:
        for name, line, length in functions(path):
            if length > limit and name not in allow:
                print("%s:%d: %s is %d lines (at most %d; split it)"
                      % (path, line, name, length, limit))
                bad = 1
    return bad


if __name__ == "__main__":
    sys.exit(main(sys.argv))
