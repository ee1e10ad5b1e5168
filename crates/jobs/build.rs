//! Rebuilds when a migration is added: `sqlx::migrate!` embeds the `migrations/` and
//! `migrations-postgres/` folders at compile time, and cargo does not otherwise watch them.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=migrations-postgres");
}
