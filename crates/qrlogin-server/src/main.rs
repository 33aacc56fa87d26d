//! `qrlogin` — run the service, check its configuration, or hash a
//! password for a users file.

use qrlogin_server::config::{Command, LoadError, Loaded, LogFormat};
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

fn main() -> std::process::ExitCode {
    let loaded = match qrlogin_server::config::load(std::env::args_os()) {
        Ok(l) => l,
        Err(LoadError::Clap(e)) => e.exit(),
        Err(LoadError::File(msg)) => {
            eprintln!("error: {msg}");
            return std::process::ExitCode::from(2);
        }
    };
    let threads = match &loaded.cli.command {
        Some(Command::Serve(cfg)) => cfg.worker_threads,
        _ => loaded.cli.serve.worker_threads,
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        rt.worker_threads(threads);
    }
    let result = rt
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(loaded)));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(loaded: Loaded) -> anyhow::Result<std::process::ExitCode> {
    let ok = std::process::ExitCode::SUCCESS;
    match &loaded.cli.command {
        Some(Command::HashPassword) => {
            let mut pw = String::new();
            std::io::stdin().read_to_string(&mut pw)?;
            println!(
                "{}",
                qrlogin_server::identity::hash_password(pw.trim_end_matches(['\n', '\r']))?
            );
            Ok(ok)
        }
        Some(Command::CheckConfig(cfg)) => {
            init_tracing(cfg.log_format);
            match qrlogin_server::builder::check(cfg) {
                Ok(()) => {
                    if let Some(f) = &loaded.file {
                        println!("# config file: {}", f.display());
                    }
                    print!("{}", loaded.describe());
                    println!("# configuration OK");
                    Ok(ok)
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    Ok(std::process::ExitCode::FAILURE)
                }
            }
        }
        Some(Command::Serve(cfg)) => {
            init_tracing(cfg.log_format);
            qrlogin_server::serve((**cfg).clone()).await?;
            Ok(ok)
        }
        None => {
            init_tracing(loaded.cli.serve.log_format);
            qrlogin_server::serve(loaded.cli.serve.clone()).await?;
            Ok(ok)
        }
    }
}
