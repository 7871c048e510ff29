//! A guest that writes to its stdout forever. When nobody reads that
//! stdout, only this guest may stall (DESIGN §4): its neighbours carry on.

fn main() {
    let line = "x".repeat(1023);
    loop {
        println!("{line}");
    }
}
