//! The `rollcall` binary: parses the command line, sets up logging, serves until SIGTERM/SIGINT.
//! Also `rollcall migrate` (database migrations, then exit) and `rollcall token` (print a token).

use anyhow::Context;
use clap::Parser;
use rollcall::config::{Cli, Command, LogFormat, MigrateArgs, ServeArgs, TokenArgs};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => *args,
        Some(Command::Migrate(args)) => {
            init_logging(cli.serve.log_format);
            return migrate(&args);
        }
        Some(Command::Token(args)) => return token(&args),
        None => cli.serve,
    };
    init_logging(args.log_format);
    actix_web::rt::System::new().block_on(serve(args))
}

fn migrate(args: &MigrateArgs) -> anyhow::Result<()> {
    let (backend, applied) =
        rollcall::persistence::migrate(&args.database_url).context("migrating the database")?;
    if applied.is_empty() {
        println!("{backend}: the database is up to date");
    } else {
        for version in applied {
            println!("{backend}: applied {version}");
        }
    }
    Ok(())
}

fn token(args: &TokenArgs) -> anyhow::Result<()> {
    let auth = rollcall::auth::Authenticator::new(Some(&args.jwt_secret), true);
    let token = auth
        .issue(
            &args.user,
            args.name.as_deref(),
            args.sessions.clone(),
            args.ttl,
        )
        .context("signing the token")?;
    println!("{token}");
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let server = rollcall::server::start(&args)
        .await
        .context("starting rollcall")?;
    tracing::info!(
        addr = %server.addr,
        "rollcall is serving; Ctrl-C or SIGTERM stops it gracefully",
    );
    wait_for_signal().await?;
    tracing::info!("stop signal received; shutting down gracefully");
    server.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
