//! `pbx-host`: the reference PBX host. The commands live in `pbx_host::cli`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    pbx_host::cli::main().await
}
