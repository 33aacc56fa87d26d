//! `qrlogin` — run the service, or hash a password for a users file.

use clap::Parser;
use qrlogin_server::config::{Cli, Command, LogFormat};
use std::io::Read as _;
use tracing_subscriber::EnvFilter;

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_env("QRLOGIN_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Some(Command::Serve(cfg)) => cfg.worker_threads,
        _ => cli.serve.worker_threads,
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        rt.worker_threads(threads);
    }
    rt.enable_all().build()?.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::HashPassword) => {
            let mut pw = String::new();
            std::io::stdin().read_to_string(&mut pw)?;
            println!(
                "{}",
                qrlogin_server::identity::hash_password(pw.trim_end_matches(['\n', '\r']))?
            );
            Ok(())
        }
        Some(Command::Serve(cfg)) => {
            init_tracing(cfg.log_format);
            qrlogin_server::serve(*cfg).await
        }
        None => {
            init_tracing(cli.serve.log_format);
            qrlogin_server::serve(cli.serve).await
        }
    }
}
