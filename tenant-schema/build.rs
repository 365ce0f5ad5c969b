//! Rebuild when migration folders change.
fn main() {
    // Embedded files trigger rebuilds themselves; new folders need these.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=seeds");
}
