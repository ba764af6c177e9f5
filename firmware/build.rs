//! The worker's key seed, in flash, from a file: `P2PA_FIRMWARE_SEED` names
//! it, else `seed.bin` beside this file, made once from the build host's
//! random source if missing (and ignored by git). Never a constant in the
//! source: every image built from a fresh checkout has its own key.

use std::io::Read;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-env-changed=P2PA_FIRMWARE_SEED");
    let path = std::env::var_os("P2PA_FIRMWARE_SEED")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("seed.bin"));
    if !path.exists() {
        let mut seed = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut seed))
            .unwrap_or_else(|e| panic!("no random source for a new seed: {e}"));
        std::fs::write(&path, seed)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    println!("cargo:rerun-if-changed={}", path.display());
    let seed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let seed: [u8; 32] = seed
        .as_slice()
        .try_into()
        .unwrap_or_else(|_| panic!("{}: a seed is 32 bytes, not {}", path.display(), seed.len()));
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    std::fs::write(
        out.join("seed.rs"),
        format!("const SEED: [u8; 32] = {seed:?};\n"),
    )
    .unwrap_or_else(|e| panic!("cannot write seed.rs: {e}"));
    // cortex-m-rt's link.x includes memory.x from the linker's search path.
    std::fs::copy(dir.join("memory.x"), out.join("memory.x")).ok();
    println!("cargo:rustc-link-search={}", out.display());
}
