# wasp.mk: builds a wasp plugin component from C sources with Debian's
# clang and wasi-libc (guest-sdk/c/install.sh installs them).
#
# In the plugin's Makefile:
#
#     PLUGIN := echo.wasm
#     SRCS   := echo.c
#     include ../../guest-sdk/c/wasp.mk
#
# then `make` builds $(PLUGIN), ready for `wasp run`, in three steps:
#   1. clang --target=wasm32-wasi compiles SRCS, wasp.c, wasp_start.c (the
#      entry point, in place of crt1-command.o) and the generated
#      bindings/plugin.c, and links them with bindings/plugin_component_type.o
#      (the world's component type) into a core module, $(PLUGIN:.wasm=.core.wasm),
#      without the debug sections of Debian's wasi-libc (add -g to CFLAGS and
#      WASP_STRIP= for debug information);
#   2. cargo builds the SDK's tool, wasp-c (guest-sdk/c/tool), once;
#   3. `wasp-c componentize` wraps the core module with the WASI command
#      adapter of wasmtime 48: `main` becomes wasi:cli/run.
#
# Variables you may set: CFLAGS, LDFLAGS, LDLIBS (added to the SDK's),
# WASP_CC (clang), WASP_C_TOOL (a built wasp-c: no cargo step),
# WASP_SYSROOT (a wasi-sysroot; Debian's clang finds wasi-libc in
# /usr/include/wasm32-wasi and /usr/lib/wasm32-wasi without one),
# WASP_BUILD (object directory, .wasp-build), WASP_CORE (the core module),
# CARGO.

ifndef PLUGIN
$(error set PLUGIN (the component to build, e.g. echo.wasm) before including wasp.mk)
endif
ifndef SRCS
$(error set SRCS (the plugin's C sources) before including wasp.mk)
endif

WASP_MK := $(abspath $(lastword $(MAKEFILE_LIST)))
WASP_C_DIR := $(patsubst %/,%,$(dir $(WASP_MK)))
WASP_ROOT := $(abspath $(WASP_C_DIR)/../..)
WASP_CC ?= clang
WASP_SYSROOT ?=
WASP_BUILD ?= .wasp-build
WASP_STRIP ?= -Wl,--strip-debug
CARGO ?= cargo
WASP_TARGET_DIR ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),$(WASP_ROOT)/target)
# A WASP_C_TOOL given by the caller is used as it is; otherwise cargo
# builds the tool into the workspace's target directory.
ifeq ($(origin WASP_C_TOOL),undefined)
WASP_C_TOOL := $(WASP_TARGET_DIR)/debug/wasp-c
WASP_BUILD_TOOL := 1
endif

WASP_TARGET_FLAGS := --target=wasm32-wasi $(if $(WASP_SYSROOT),--sysroot=$(WASP_SYSROOT))
WASP_CFLAGS := $(WASP_TARGET_FLAGS) -O2 -std=c11 -Wall -Wextra \
	-I$(WASP_C_DIR) -I$(WASP_C_DIR)/bindings
WASP_CORE := $(PLUGIN:.wasm=.core.wasm)
WASP_SDK_OBJS := $(WASP_BUILD)/wasp.o $(WASP_BUILD)/wasp_start.o $(WASP_BUILD)/plugin.o
WASP_USER_OBJS := $(patsubst %.c,$(WASP_BUILD)/%.o,$(SRCS))
WASP_HEADERS := $(WASP_C_DIR)/wasp.h $(WASP_C_DIR)/bindings/plugin.h $(WASP_MK)

.PHONY: all clean wasp-c-tool
all: $(PLUGIN)

$(PLUGIN): $(WASP_CORE) | wasp-c-tool
	$(WASP_C_TOOL) componentize $< -o $@

$(WASP_CORE): $(WASP_USER_OBJS) $(WASP_SDK_OBJS) $(WASP_C_DIR)/bindings/plugin_component_type.o
	$(WASP_CC) $(WASP_TARGET_FLAGS) -nostartfiles $(WASP_STRIP) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(WASP_BUILD)/%.o: %.c $(WASP_HEADERS)
	@mkdir -p $(dir $@)
	$(WASP_CC) $(WASP_CFLAGS) $(CFLAGS) -c -o $@ $<

$(WASP_BUILD)/wasp.o: $(WASP_C_DIR)/wasp.c $(WASP_HEADERS)
	@mkdir -p $(dir $@)
	$(WASP_CC) $(WASP_CFLAGS) -c -o $@ $<

# The entry point (see wasp_start.c: why not wasi-libc's crt1-command.o).
$(WASP_BUILD)/wasp_start.o: $(WASP_C_DIR)/wasp_start.c $(WASP_MK)
	@mkdir -p $(dir $@)
	$(WASP_CC) $(WASP_CFLAGS) -c -o $@ $<

# Generated code: its flattened variants cast small integers to pointers.
$(WASP_BUILD)/plugin.o: $(WASP_C_DIR)/bindings/plugin.c $(WASP_C_DIR)/bindings/plugin.h $(WASP_MK)
	@mkdir -p $(dir $@)
	$(WASP_CC) $(WASP_CFLAGS) -Wno-int-to-pointer-cast -Wno-unused-parameter -c -o $@ $<

# Cargo decides whether the tool is up to date (a no-op when it is).
wasp-c-tool:
ifdef WASP_BUILD_TOOL
	$(CARGO) build -q -p wasp-c-tool --manifest-path $(WASP_ROOT)/Cargo.toml
endif

clean:
	rm -rf $(WASP_BUILD) $(WASP_CORE) $(PLUGIN)
