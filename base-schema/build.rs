//! Rebuild when migration folders change.
fn main() {
    // Embedded files trigger rebuilds themselves; a new migration folder needs this.
    println!("cargo:rerun-if-changed=migrations");
}
