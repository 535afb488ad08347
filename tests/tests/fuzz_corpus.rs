//! Replays the committed fuzz seeds (`fuzz/seeds/<target>/`, which include
//! every input a fuzz run ever crashed on, once fixed) through the same
//! checks the libFuzzer targets run. Fast and deterministic; `cargo xtask
//! fuzz` does the open-ended search.

use std::path::Path;

#[test]
fn every_committed_seed_passes_its_fuzz_check() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    for (target, check) in wsc_tests::fuzz::TARGETS {
        let dir = seeds.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 5, "{target}: only {} seeds", files.len());
        for file in &files {
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "{target}: {} fails its check",
                file.display()
            );
        }
        println!("{target}: {} seeds pass", files.len());
    }
}
