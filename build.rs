//! `sqlx::migrate!` embeds the migrations at compile time, but cargo does not know the crate
//! reads them: without this, a changed or added migration is not in the next build.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
