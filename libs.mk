# The libraries khyve links, for the main Makefile and tests/fuzz/Makefile
# alike (every fuzz harness links khyve's objects, so a library added here
# is linked there too). Each comes from a Debian package in README's
# install list (scripts/install-deps.sh).
KHYVE_LDLIBS := -ljansson -lseccomp -luring -lmicrohttpd -lxxhash -lzstd -llzma -lz \
	-llz4 -lbz2 -lpthread -lm
