//! `weft`: the command line of the weft overlay network.

mod cli;
mod cni_plugin;
mod commands;
mod lab;

use clap::error::ErrorKind;
use clap::Parser;

fn main() {
    // A runtime runs weft as a CNI plugin: it speaks CNI, not the command line.
    if std::env::var_os("CNI_COMMAND").is_some() {
        std::process::exit(cni_plugin::main());
    }
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            eprintln!("weft: {}", usage_error_line(&e));
            std::process::exit(2);
        }
    };
    if let Err(e) = commands::dispatch(cli.command) {
        // One line: what failed, why, what to do.
        let msg = one_line(&e);
        eprintln!("weft: {msg}");
        std::process::exit(1);
    }
}

/// An error and its causes on one line, each cause once: a cause whose text the line
/// already holds (an error that prints its source too) is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace('\n', " ")
}

/// Clap's first error line plus where to find help, instead of its multi-line usage dump.
fn usage_error_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string();
    let command: Vec<String> = std::env::args()
        .skip(1)
        .take_while(|a| !a.starts_with('-'))
        .take(2)
        .collect();
    let help = if command.is_empty() || e.kind() == ErrorKind::InvalidSubcommand {
        "weft --help".to_string()
    } else {
        format!("weft {} --help", command.join(" "))
    };
    format!("{first}; see `{help}`")
}

#[cfg(test)]
mod tests {
    use super::one_line;

    /// Like `weft_api::ApiError::Transport`: prints its cause and gives it as source.
    #[derive(Debug)]
    struct Transport {
        source: std::io::Error,
    }

    impl std::fmt::Display for Transport {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "talking to the router on /run/weft/weft.sock: {}",
                self.source
            )
        }
    }

    impl std::error::Error for Transport {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_is_printed_once() {
        let io = std::io::Error::other("connection closed before message completed");
        let e = anyhow::Error::new(Transport { source: io }).context("attach failed");
        assert_eq!(
            one_line(&e),
            "attach failed: talking to the router on /run/weft/weft.sock: connection closed before message completed"
        );
    }
}
