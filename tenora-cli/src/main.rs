//! The `tenora` command line tool.
//!
//! For now it has one command, `tenora generate-key`, which prints a new random key for
//! `TENORA_KEY`. Migration, seeding and tenant administration commands are being built (see
//! the project's CLI issue); until then, use the library API (`Tenora::migrate_base`,
//! `migrate_all_tenants`, `create_tenant`, ...).

use std::process::ExitCode;

const USAGE: &str = "usage: tenora generate-key

commands:
  generate-key   print a new random 32-byte key (base64) for TENORA_KEY";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["generate-key"] => {
            println!("{}", tenora::EncryptionKey::generate().to_base64().expose());
            ExitCode::SUCCESS
        }
        [] | ["help"] | ["--help"] | ["-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("tenora: unknown command `{}`\n\n{USAGE}", other.join(" "));
            ExitCode::from(2)
        }
    }
}
