//! The config loader on arbitrary text: it must answer every file with a
//! config or with errors, never a panic, and every error must point at a
//! real place in the file (lines and columns count from 1), because the
//! owner is told `file:line:col` and an editor jumps there.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The loader takes text; a file that is not UTF-8 is refused before it
    // (by `config::load`), so only UTF-8 is worth trying here.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = doorwarden::config::load_str(text, "fuzz.yaml") {
        assert!(!errors.0.is_empty(), "an Err with no error in it");
        for e in &errors.0 {
            assert!(
                e.line >= 1 && e.col >= 1,
                "error at line {} col {}: {}",
                e.line,
                e.col,
                e
            );
            assert_eq!(e.file, "fuzz.yaml", "error names another file: {e}");
        }
    }
});
