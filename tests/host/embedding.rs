//! What an embedder can and cannot do with `add_to_linker` (issue 13
//! point 7): the wasp imports are async host functions, and a synchronous
//! instantiation is refused with an error, never a panic or a hang.

use wasmtime::Store;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasp_host::{Policy, WaspCtx, WaspCtxView, WaspView};

use crate::common::guest;

struct Embedder {
    wasi: WasiCtx,
    table: ResourceTable,
    wasp: WaspCtx,
}

impl WasiView for Embedder {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WaspView for Embedder {
    fn wasp(&mut self) -> WaspCtxView<'_> {
        WaspCtxView {
            ctx: &mut self.wasp,
            table: &mut self.table,
        }
    }
}

#[test]
fn a_synchronous_instantiation_with_the_wasp_imports_is_an_error() {
    // A default engine, as an embedder new to wasmtime would make.
    let engine = &wasmtime::Engine::default();
    let mut linker: Linker<Embedder> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    wasp_host::add_to_linker(&mut linker).unwrap();
    let state = Embedder {
        wasi: WasiCtxBuilder::new().build(),
        table: ResourceTable::new(),
        wasp: WaspCtx::new(Policy::deny_all().into(), "sync"),
    };
    let mut store = Store::new(engine, state);
    let plugin =
        wasmtime::component::Component::new(engine, std::fs::read(guest("probe")).unwrap())
            .unwrap();
    let result = Command::instantiate(&mut store, &plugin, &linker);
    let err = result
        .err()
        .expect("a synchronous instantiation is refused");
    assert!(
        format!("{err:#}").contains("`*_async` functions are used instead"),
        "{err:#}"
    );
}
