//! `weft`: the command line of the weft overlay network.

mod cli;
mod commands;
mod lab;

use clap::error::ErrorKind;
use clap::Parser;

fn main() {
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
        let msg = format!("{e:#}").replace('\n', " ");
        eprintln!("weft: {msg}");
        std::process::exit(1);
    }
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
