/*
 * wasp_start.c: the entry point of a wasp C plugin, in place of wasi-libc's
 * crt1-command.o (wasp.mk links with -nostartfiles).
 *
 * Why: Debian 12's wasi-libc (2022) leaves constructors and destructors to
 * wasm-ld 14, which then wraps *every* export of the command with
 * __wasm_call_dtors, cabi_realloc of the bindings included. Each time the
 * host hands a string or a list to the guest (last-denial, a receive, a
 * queue drain), cabi_realloc would run the stdio exit code, which writes
 * out pending output: a call to the WASI adapter while the component may
 * not call out ("wasm trap: cannot leave component instance"), and, on the
 * adapter's first use, lost output. A module that calls __wasm_call_ctors
 * itself gets no such wrappers: this _start does, then runs main, then the
 * destructors (atexit, stdio flush), as the newer crt1-command does.
 */
#include <stdlib.h>

extern void __wasm_call_ctors(void);
extern void __wasm_call_dtors(void);
/* main, as clang names it (wasi-libc calls main(argc, argv) through it). */
extern int __original_main(void);

__attribute__((export_name("_start"))) void _start(void) {
    __wasm_call_ctors();
    int r = __original_main();
    __wasm_call_dtors();
    if (r != 0) {
        _Exit(r);
    }
}
