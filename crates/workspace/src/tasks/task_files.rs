//! A task's files and the checks before it starts: the workdir (inside
//! the home), the environment (no reserved names), `prompt.txt` and
//! `run.sh` in its directory, and the command tmux pipes output into.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::tmux::sh_quote;
use super::watch::EXIT_FILE;
use super::TaskManager;
use crate::error::{ApiError, ApiResult};

const MAX_ENV: usize = 64;

/// Environment names a task may not override: they would redirect tmux or
/// the server's own bookkeeping.
const RESERVED_ENV: &[&str] = &["TMUX", "TMUX_PANE", "KUBE_CODER_TASK_ID"];

pub fn valid_env_name(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && k.len() <= 128
}

impl TaskManager {
    pub(super) fn resolve_workdir(&self, asked: Option<&str>) -> ApiResult<PathBuf> {
        let Some(asked) = asked.filter(|w| !w.is_empty()) else {
            return Ok(self.home.clone());
        };
        if asked.contains('\0') {
            return Err(ApiError::bad_request(
                "invalid_workdir",
                "workdir contains a NUL byte",
            ));
        }
        let candidate = self.home.join(asked);
        // Canonicalising resolves `..` and every symlink, so the prefix test
        // below compares real locations, not spellings.
        let real = candidate.canonicalize().map_err(|_| {
            ApiError::bad_request(
                "workdir_not_found",
                format!("workdir `{asked}` does not exist"),
            )
        })?;
        if !real.starts_with(&self.home) {
            return Err(ApiError::bad_request(
                "workdir_outside_home",
                format!("workdir `{asked}` is outside the workspace home"),
            ));
        }
        if !real.is_dir() {
            return Err(ApiError::bad_request(
                "workdir_not_a_directory",
                format!("workdir `{asked}` is not a directory"),
            ));
        }
        Ok(real)
    }

    pub(super) fn task_env(
        &self,
        assistant_env: &std::collections::BTreeMap<String, String>,
        asked: HashMap<String, String>,
    ) -> ApiResult<Vec<(String, String)>> {
        if asked.len() > MAX_ENV {
            return Err(ApiError::bad_request(
                "invalid_env",
                format!("at most {MAX_ENV} environment variables"),
            ));
        }
        let mut env: std::collections::BTreeMap<String, String> = assistant_env.clone();
        for (k, v) in asked {
            if !valid_env_name(&k) || RESERVED_ENV.contains(&k.as_str()) {
                return Err(ApiError::bad_request(
                    "invalid_env",
                    format!("`{k}` is not an environment variable name a task may set"),
                ));
            }
            if v.contains('\0') {
                return Err(ApiError::bad_request(
                    "invalid_env",
                    format!("the value of `{k}` contains a NUL byte"),
                ));
            }
            env.insert(k, v);
        }
        Ok(env.into_iter().collect())
    }

    pub(super) fn write_task_files(
        &self,
        dir: &Path,
        prompt: Option<&str>,
        command: &str,
        started_channel: &str,
    ) -> std::io::Result<()> {
        std::fs::DirBuilder::new().mode(0o700).create(dir)?;
        if let Some(p) = prompt {
            write_private(&dir.join("prompt.txt"), p.as_bytes())?;
        }
        let exit_tmp = sh_quote(&dir.join("exit_code.tmp").to_string_lossy());
        let exit_file = sh_quote(&dir.join(EXIT_FILE).to_string_lossy());
        let started = sh_quote(started_channel);
        let script = format!(
            "# kube-coder task: runs the assistant, then records its exit status.\n\
             # Wait until the server has attached the output pipe ($TMUX names\n\
             # this workspace's tmux server).\n\
             tmux wait-for {started} 2>/dev/null\n\
             # A trap (not an ignore, which children would inherit) keeps this\n\
             # script alive through Ctrl-C so the interrupted exit is recorded.\n\
             trap : INT QUIT\n\
             {command}\n\
             code=$?\n\
             printf '%s\\n' \"$code\" > {exit_tmp} && mv -f {exit_tmp} {exit_file}\n\
             exit \"$code\"\n"
        );
        write_private(&dir.join("run.sh"), script.as_bytes())
    }

    pub(super) fn pipe_command(&self, dir: &Path) -> String {
        let mut parts: Vec<String> = self.pipe_log_command.iter().map(|s| sh_quote(s)).collect();
        parts.push("--max-bytes".into());
        parts.push(self.limits.output_log_bytes.to_string());
        parts.push(sh_quote(&dir.to_string_lossy()));
        format!("exec {}", parts.join(" "))
    }
}

/// Not synced to disk: the files are read only by the session started
/// right after (through the page cache); a machine crash ends that session
/// too, and the task is then recorded as lost. The prompt itself is kept in
/// the store.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}
