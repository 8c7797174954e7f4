use clap::Parser;

fn main() {
    let cli = poirot::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("POIROT_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal, plain text for log files and collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = poirot::cli::run(cli) {
        // One line a person can act on.
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        eprintln!("poirot: error: {}", chain.join(": ").replace('\n', " "));
        std::process::exit(1);
    }
}
