# emerge: plain GNU make. `make help` lists the targets.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
DATADIR    ?= $(PREFIX)/share/emerge
UNITDIR    ?= $(shell $(PKG_CONFIG) --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
PKG_CONFIG ?= pkg-config
PYTHON     ?= /usr/bin/python3
CC         ?= cc
CFLAGS     ?= -O2 -g

# Debian packages the build, the tests and the demo need (`make deps` installs them); torch
# trains a real PyTorch job for the tests (with a threaded BLAS, or it trains ~50x slower).
DEB_PKGS := build-essential pkg-config libuv1-dev libzmq3-dev libsqlite3-dev libcjson-dev \
            libminizip-dev libmicrohttpd-dev check python3-numpy python3-zmq time systemd util-linux \
            python3-torch libopenblas0-pthread chromium prometheus
# The dashboard's browser test drives chromium with playwright-core (tests/web, npm ci):
# Node.js and npm from Debian unless the machine already has a node.
NODE_PKGS := nodejs npm
# `make validate` also draws its plot.
VALIDATE_PKGS := python3-matplotlib
PC_DEPS  := libcjson libuv libzmq sqlite3 minizip libmicrohttpd
PC_TEST  := check

PC_OK := $(shell $(PKG_CONFIG) --exists $(PC_DEPS) 2>/dev/null && echo yes)
ifneq ($(PC_OK),yes)
ifeq ($(filter deps help clean check demo bench validate,$(MAKECMDGOALS)),)
$(error missing libraries ($(PC_DEPS) via pkg-config): run `make deps` first)
endif
endif

SAN       = $(if $(SANITIZE),-fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer)
EM_CFLAGS = -std=c11 -D_GNU_SOURCE -pthread -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror \
            $(shell $(PKG_CONFIG) --cflags $(PC_DEPS) 2>/dev/null) $(SAN)
# The layering of docs/DESIGN.md as include paths: each layer sees only itself and the
# layers below it, so a file that reaches up or sideways does not compile.
INC_lib    := -Iinclude -Ilib
INC_proto  := $(INC_lib) -Iproto
INC_store  := $(INC_proto) -Istore
INC_daemon := $(INC_store) -Idaemon
INC_client := $(INC_store) -Iclient
INC_tests  := $(INC_daemon) -Iclient -Itests
layer_inc   = $(INC_$(firstword $(subst /, ,$(1))))
EM_LIBS   = $(SAN) $(shell $(PKG_CONFIG) --libs $(PC_DEPS) 2>/dev/null) -lm -pthread
CHECK_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PC_TEST) 2>/dev/null)
CHECK_LIBS   = $(shell $(PKG_CONFIG) --libs $(PC_TEST) 2>/dev/null)

# Sanitizer builds go to their own tree so they never mix objects with the plain build.
comma := ,
BUILD := build$(if $(SANITIZE),-$(subst $(comma),-,$(SANITIZE)))

Q = $(if $(V),,@)
Q_CC = $(if $(V),,@printf '  CC      %s\n' $@;)
Q_LD = $(if $(V),,@printf '  LD      %s\n' $@;)

LIB_SRC   := $(wildcard lib/*.c)
PROTO_SRC := $(wildcard proto/*.c)
STORE_SRC := $(wildcard store/*.c)
CLIENT_SRC:= $(filter-out client/emergectl.c,$(wildcard client/*.c))
DAEMON_SRC:= $(filter-out daemon/main.c,$(wildcard daemon/*.c))
WEB_FILES := $(sort $(wildcard daemon/web/*.html daemon/web/*.js daemon/web/*.css))
TEST_SRC  := $(wildcard tests/check_*.c) tests/run_tests.c $(wildcard tests/helpers/*.c)

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))
LIB_OBJ    := $(call obj,$(LIB_SRC))
PROTO_OBJ  := $(call obj,$(PROTO_SRC))
STORE_OBJ  := $(call obj,$(STORE_SRC))
CLIENT_OBJ := $(call obj,$(CLIENT_SRC))
DAEMON_OBJ := $(call obj,$(DAEMON_SRC)) $(BUILD)/daemon/web/assets.o
TEST_OBJ   := $(call obj,$(TEST_SRC))

BIN_DIR := $(if $(SANITIZE),$(BUILD)/bin,bin)
EMERGECTL := $(BIN_DIR)/emergectl
EMERGED := $(BIN_DIR)/emerged

.SECONDARY:
.PHONY: all check unit e2e fuzz-replay fuzz bench demo validate install uninstall clean deps help
all: $(EMERGECTL) $(EMERGED)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(Q_CC)$(CC) $(EM_CFLAGS) $(call layer_inc,$<) $(if $(findstring tests/,$<),$(CHECK_CFLAGS)) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

# The dashboard's files become one C table (daemon/em_web.h): emerged serves exactly these.
$(BUILD)/daemon/web/assets.c: $(WEB_FILES) Makefile
	@mkdir -p $(dir $@)
	$(Q){ echo '#include "em_web.h"'; i=0; for f in $(WEB_FILES); do \
	    echo "static const unsigned char f$$i[] = {"; od -An -v -tu1 $$f | sed 's/[0-9][0-9]*/&,/g'; echo "};"; \
	    i=$$((i+1)); done; \
	  echo 'const em_asset_t em_web_assets[] = {'; i=0; for f in $(WEB_FILES); do \
	    echo "  {\"/$$(basename $$f)\", f$$i, sizeof(f$$i)},"; i=$$((i+1)); done; \
	  echo '  {NULL, NULL, 0}};'; } > $@
$(BUILD)/daemon/web/assets.o: $(BUILD)/daemon/web/assets.c
	$(Q_CC)$(CC) $(EM_CFLAGS) $(INC_daemon) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/libemerge.a: $(LIB_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^
$(BUILD)/libemproto.a: $(PROTO_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^
$(BUILD)/libemstore.a: $(STORE_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/libemerged.a: $(DAEMON_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

LOWER_LIBS := $(BUILD)/libemstore.a $(BUILD)/libemproto.a $(BUILD)/libemerge.a
$(EMERGED): $(call obj,daemon/main.c) $(BUILD)/libemerged.a $(LOWER_LIBS)
	@mkdir -p $(dir $@)
	$(Q_LD)$(CC) $(LDFLAGS) -o $@ $^ $(EM_LIBS)

$(EMERGECTL): $(call obj,client/emergectl.c) $(CLIENT_OBJ) $(LOWER_LIBS)
	@mkdir -p $(dir $@)
	$(Q_LD)$(CC) $(LDFLAGS) -o $@ $^ $(EM_LIBS)

$(BUILD)/tests/run_tests: $(TEST_OBJ) $(CLIENT_OBJ) $(BUILD)/libemerged.a $(LOWER_LIBS)
	$(Q_LD)$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(EM_LIBS)

FUZZ_TARGETS := safetensors sidefiles api rules replies pickle torch
$(BUILD)/tests/fuzz/replay_%: $(BUILD)/tests/fuzz/replay.o $(BUILD)/tests/fuzz/fuzz_%.o $(LOWER_LIBS)
	$(Q_LD)$(CC) $(LDFLAGS) -o $@ $^ $(EM_LIBS)

# The test command of the README: installs missing packages, then unit suites, corpus replay,
# and end-to-end tests of the CLI.
check: deps
	$(Q)$(MAKE) --no-print-directory unit fuzz-replay e2e
unit: $(BUILD)/tests/run_tests
	$(SAN_ENV) $(BUILD)/tests/run_tests
fuzz-replay: $(FUZZ_TARGETS:%=$(BUILD)/tests/fuzz/replay_%)
	$(Q)for t in $(FUZZ_TARGETS); do $(BUILD)/tests/fuzz/replay_$$t tests/fuzz/corpus/$$t || exit 1; done
# Sanitizer reports exit 99, never a code a test expects from emergectl or emerged.
SAN_ENV := ASAN_OPTIONS=exitcode=99:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:exitcode=99 \
  TSAN_OPTIONS=halt_on_error=1:exitcode=99:suppressions=$(CURDIR)/tests/tsan.supp
e2e: $(EMERGECTL) $(EMERGED)
	$(SAN_ENV) SANITIZE=$(SANITIZE) EMERGECTL=$(EMERGECTL) EMERGED=$(EMERGED) $(PYTHON) tests/py/run.py

# libFuzzer runs of every parser (needs clang): make fuzz FUZZ_SECONDS=60. New inputs that
# add coverage are merged back into tests/fuzz/corpus/<target>, which make check replays.
FUZZ_SECONDS ?= 60
fuzz:
	@mkdir -p build/fuzz
	$(Q)for t in $(FUZZ_TARGETS); do \
	  clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined $(INC_store) \
	    $(shell $(PKG_CONFIG) --cflags $(PC_DEPS)) tests/fuzz/fuzz_$$t.c $(LIB_SRC) $(PROTO_SRC) $(STORE_SRC) \
	    $(shell $(PKG_CONFIG) --libs $(PC_DEPS)) -lm -o build/fuzz/fuzz_$$t || exit 1; \
	  mkdir -p build/fuzz/new_$$t; \
	  build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
	    build/fuzz/new_$$t tests/fuzz/corpus/$$t || exit 1; \
	  build/fuzz/fuzz_$$t -merge=1 tests/fuzz/corpus/$$t build/fuzz/new_$$t 2>&1 | tail -1; \
	done

bench: deps
	$(Q)$(MAKE) --no-print-directory $(EMERGECTL) $(EMERGED)
	EMERGECTL=$(EMERGECTL) $(PYTHON) bench/bench_analyze.py
	EMERGED=$(EMERGED) $(PYTHON) bench/bench_daemon.py

demo: deps
	$(Q)$(MAKE) --no-print-directory $(EMERGECTL) $(EMERGED)
	$(PYTHON) examples/demo.py

# Does E track capability? Trains real models (about 8 minutes on 2 cores) and records the
# figures in docs/VALIDATION.md and docs/validation.png. Not part of make check.
validate: deps
	$(Q)$(MAKE) --no-print-directory deps DEB_PKGS="$(VALIDATE_PKGS)"
	$(Q)$(MAKE) --no-print-directory $(EMERGECTL) $(EMERGED)
	$(PYTHON) validate/run.py $(VALIDATE_ARGS)

# The training-side helpers (plain loop, Hugging Face, Lightning), for PYTHONPATH.
PY_STOP := examples/emerge_stop.py examples/emerge_hf.py examples/emerge_lightning.py

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DATADIR)
	install -m 0755 $(EMERGECTL) $(EMERGED) $(DESTDIR)$(BINDIR)/
	sed 's|@BINDIR@|$(BINDIR)|g' systemd/emerged.service.in > $(BUILD)/emerged.service
	install -m 0644 $(BUILD)/emerged.service $(DESTDIR)$(UNITDIR)/emerged.service
	install -m 0644 systemd/emerged.json.example $(DESTDIR)$(DATADIR)/emerged.json.example
	install -d $(DESTDIR)$(DATADIR)/python
	install -m 0644 $(PY_STOP) $(DESTDIR)$(DATADIR)/python/
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/emergectl $(DESTDIR)$(BINDIR)/emerged $(DESTDIR)$(UNITDIR)/emerged.service \
	  $(DESTDIR)$(DATADIR)/emerged.json.example $(addprefix $(DESTDIR)$(DATADIR)/python/,$(notdir $(PY_STOP)))
	-rmdir $(DESTDIR)$(DATADIR)/python $(DESTDIR)$(DATADIR) 2>/dev/null

clean:
	rm -rf build build-* bin

# Installs the Debian packages above, with sudo when not root. Says what it installs first.
deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v node >/dev/null && command -v npm >/dev/null || missing="$$missing $(NODE_PKGS)"; \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; exit 0; fi; \
	echo "deps: installing Debian packages:$$missing"; \
	sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing

help:
	@echo "make [all]        build bin/emergectl and bin/emerged"
	@echo "make check        unit suites, fuzz corpus replay, end-to-end tests"
	@echo "make SANITIZE=address,undefined check"
	@echo "make bench        analysis benchmark (results in bench/RESULTS.md)"
	@echo "make validate     train real models, record E against accuracy (docs/VALIDATION.md)"
	@echo "make fuzz         libFuzzer runs on every parser (clang), FUZZ_SECONDS each"
	@echo "make deps         install the Debian packages (apt-get, sudo when not root)"
	@echo "make install      PREFIX=/usr/local DESTDIR="

-include $(shell find build* -name '*.d' 2>/dev/null)
