//! `kubectl-release`: kubectl finds this binary on PATH and runs it as `kubectl release`.

use std::io::Write;
use std::process::ExitCode as ProcessExit;

use clap::Parser;
use kubectl_release::cli::exit::ExitCode;
use kubectl_release::cli::{Cli, signals};
use kubectl_release::domain::error_text::error_text;
use kubectl_release::domain::outcome_of;

fn main() -> ProcessExit {
    let cli = Cli::parse();
    init_tracing(cli.global.verbose);
    // The registry client is built without a TLS provider of its own; ring is the one kube uses.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ProcessExit::from(ExitCode::Unexpected.code() as u8);
        }
    };
    let outcome = match runtime.block_on(kubectl_release::cmd::run(cli)) {
        Ok(outcome) => outcome,
        Err(err) => {
            report(&err);
            outcome_of(&err)
        }
    };
    ProcessExit::from(ExitCode::of(outcome, signals::received()).code() as u8)
}

/// Prints the error and its causes to stderr; a closed pipe is not worth a second error.
fn report(err: &anyhow::Error) {
    let _ = writeln!(std::io::stderr().lock(), "{}", error_text(err));
}

/// Logs go to stderr so stdout stays the result; `-v` raises the level, `RUST_LOG` overrides.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    // kube warns on every client built for a kubeconfig with insecure-skip-tls-verify; the user
    // chose that in their kubeconfig, so it is not ours to repeat unless asked with -v.
    let level = match verbose {
        0 => "warn,kube_client=error",
        1 => "info,kube=warn",
        2 => "debug,kube=info,hyper=info,h2=info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("kubectl_release={level},{level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::env::var_os("NO_COLOR").is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )
        .with_target(false)
        .try_init();
}
