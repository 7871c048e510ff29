//! The drift test: the checked-in C bindings (`guest-sdk/c/bindings/`)
//! are exactly what `wasp-c bindgen` generates from today's `wit/`.

use std::path::Path;

#[test]
fn checked_in_bindings_match_the_wit() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasp-c-drift");
    let _ = std::fs::remove_dir_all(&tmp);
    let written = wasp_c_tool::write_bindings(&wasp_c_tool::default_wit_dir(), &tmp)
        .expect("generating the C bindings");
    let checked_in = wasp_c_tool::checked_in_bindings_dir();
    let how = "the C bindings drifted from wit/; regenerate them with\n    \
               cargo run -p wasp-c-tool -- bindgen guest-sdk/c/bindings\n\
               and check the result in";
    for path in &written {
        let name = path.file_name().expect("a file name");
        let fresh = std::fs::read(path).expect("reading a generated file");
        let old = std::fs::read(checked_in.join(name)).unwrap_or_else(|e| {
            panic!(
                "guest-sdk/c/bindings/{} missing ({e}): {how}",
                name.display()
            )
        });
        assert!(
            fresh == old,
            "guest-sdk/c/bindings/{} differs from the generated one: {how}",
            name.display()
        );
    }
    let mut expected: Vec<_> = written.iter().filter_map(|p| p.file_name()).collect();
    expected.sort();
    let mut present: Vec<_> = std::fs::read_dir(&checked_in)
        .expect("reading guest-sdk/c/bindings")
        .map(|e| e.expect("a directory entry").file_name())
        .collect();
    present.sort();
    assert_eq!(
        present, expected,
        "guest-sdk/c/bindings/ holds other files than the generated ones: {how}"
    );
}
