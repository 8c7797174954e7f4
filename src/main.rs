use clap::Parser;

fn main() {
    let cli = poirot::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            // poirot's own info lines; the libraries' only from warnings up (their
            // connection-pool chatter is not for people).
            tracing_subscriber::EnvFilter::try_from_env("POIROT_LOG")
                .unwrap_or_else(|_| "warn,poirot=info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal, plain text for log files and collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = poirot::cli::run(cli) {
        // One line a person can act on; a TOML syntax error keeps TOML's own lines,
        // whose caret points at the spot.
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        let text = chain.join(": ");
        let syntax = matches!(e.downcast_ref(), Some(poirot::config::ConfigError::Syntax { .. }));
        eprintln!("poirot: error: {}", if syntax { text } else { text.replace('\n', " ") });
        std::process::exit(1);
    }
}
