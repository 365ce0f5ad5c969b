//! Rebuild when migration or seed folders change (a new folder is not noticed otherwise).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=seeds");
}
