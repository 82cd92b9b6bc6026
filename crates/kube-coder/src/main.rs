//! `kube-coder`: one binary, every entry point as a subcommand.
//!
//! This file only parses the command line and calls into the libraries;
//! exit codes: 0 success, 1 runtime failure, 2 bad usage or refused config.

mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kube-coder",
    version,
    about = "Per-user cloud development workspaces for people and coding agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the workspace server (dashboard, task API, terminal) on this machine.
    Serve(Box<serve::ServeArgs>),
    /// Copy a tmux pane's output into a task's capped log (run by tmux).
    #[command(hide = true)]
    PipeLog {
        /// Keep at most this many bytes of output.
        #[arg(long)]
        max_bytes: u64,
        /// The task directory holding `output.log`.
        dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match serve::parse_with_config_file() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::PipeLog { max_bytes, dir } => {
            match workspace::tasks::output_log::run_pipe_log(&dir, max_bytes) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kube-coder pipe-log: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
