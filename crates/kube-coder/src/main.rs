//! `kube-coder`: one binary, every entry point as a subcommand.
//!
//! This file only parses the command line and calls into the libraries;
//! exit codes: 0 success, 1 runtime failure, 2 bad usage or refused config.

mod admin;
mod attach;
mod build_cmd;
mod cluster;
mod egress_gateway_cmd;
mod git_credential;
mod operator_cmd;
mod serve;
mod stop_signal;

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
    /// Run the operator: turn Workspace resources into running workspaces.
    Operator(Box<operator_cmd::OperatorArgs>),
    /// Run a workspace's egress gateway: a proxy to the host names on its allow list.
    EgressGateway(Box<egress_gateway_cmd::EgressGatewayArgs>),
    /// Create, list, show, stop, start and delete workspaces.
    #[command(subcommand)]
    User(admin::user::UserCommand),
    /// Print a workspace's API token (or its dashboard login).
    Token(admin::token::TokenArgs),
    /// Reach a workspace without an ingress, through the API server's port-forward.
    Connect(admin::connect::ConnectArgs),
    /// SSH's ProxyCommand for a workspace: stdin and stdout through the API
    /// server's port-forward to its SSH port (see `ssh-config`).
    Ssh(admin::ssh::SshArgs),
    /// Print ~/.ssh/config Host blocks (`ssh kc-NAME`) for workspaces with SSH.
    SshConfig(admin::ssh::SshConfigArgs),
    /// Print the manifests of one workspace, for GitOps without the operator.
    Render(Box<admin::render::RenderArgs>),
    /// Check that a cluster is ready for workspaces.
    Doctor(admin::doctor::DoctorArgs),
    /// Print the Workspace CRD (YAML).
    Crd,
    /// Attach this terminal to a running task's tmux session (on this machine).
    Attach(attach::AttachArgs),
    /// Build an image from a directory and push it, through the operator
    /// (inside a workspace with spec.build.registries; see docs/operator.md
    /// "Builds").
    Build(build_cmd::BuildArgs),
    /// git's credential helper in a workspace with spec.github: tokens from
    /// the operator's broker (git runs it; see docs/operator.md "GitHub").
    GitCredential(git_credential::GitCredentialArgs),
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
    serve::apply_env_aliases();
    let cli = match serve::parse_with_config_file() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Operator(args) => operator_cmd::run(*args),
        Command::EgressGateway(args) => egress_gateway_cmd::run(*args),
        Command::User(cmd) => cluster::block_on(admin::user::run(cmd)),
        // The local token needs no cluster (nor its async client).
        Command::Token(args) if args.local() => match admin::token::run_local(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("kube-coder: {msg}");
                ExitCode::FAILURE
            }
        },
        Command::Token(args) => cluster::block_on(admin::token::run(args)),
        Command::Connect(args) => cluster::block_on(admin::connect::run(args)),
        Command::Ssh(args) => cluster::block_on(admin::ssh::proxy(args)),
        Command::SshConfig(args) => cluster::block_on(admin::ssh::config(args)),
        Command::Render(args) => match admin::render::run(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("kube-coder: {msg}");
                ExitCode::from(2)
            }
        },
        Command::Doctor(args) => cluster::block_on(admin::doctor::run(args)),
        Command::Attach(args) => attach::run(args),
        Command::GitCredential(args) => git_credential::run(args),
        Command::Build(args) => build_cmd::run(args),
        Command::Crd => {
            print!("{}", operator::crd_yaml());
            ExitCode::SUCCESS
        }
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
