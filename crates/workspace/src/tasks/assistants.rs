//! Coding assistants a task can run, and how each receives its prompt.
//!
//! Declared in an optional TOML file (`--assistants-config`); the built-in
//! defaults cover claude, codex, gemini, opencode and a plain shell. A
//! command template is a shell command line; `{prompt}` stands for the
//! prompt, which is never spliced into the command: it is written to a file
//! and read back by the shell (`"$(cat prompt-file)"`), so no prompt text can
//! change the command.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptDelivery {
    /// Substituted for `{prompt}` in the command.
    Argument,
    /// Fed on standard input.
    Stdin,
    /// Typed into the pane once the program has drawn its first screen.
    Typed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assistant {
    pub name: String,
    /// Command line used when a prompt is given.
    pub command: String,
    /// Command line used without a prompt (defaults to `command` with
    /// `{prompt}` removed).
    #[serde(default)]
    pub interactive_command: Option<String>,
    #[serde(default = "default_delivery")]
    pub prompt_delivery: PromptDelivery,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Completion hook for this assistant's tasks unless a task names one.
    #[serde(default, skip_serializing)]
    pub hook: Option<crate::hooks::HookSpec>,
    /// How to install the program when it is missing (shown in refusals).
    #[serde(default)]
    pub install: Option<String>,
}

/// Whether an assistant can run here, as the API and the banner say it.
#[derive(Debug, Clone, Serialize)]
pub struct Availability {
    pub name: String,
    /// The program its command runs (the command's first word).
    pub program: String,
    pub available: bool,
    /// How to install it, when it is not.
    pub install: Option<String>,
}

fn default_delivery() -> PromptDelivery {
    PromptDelivery::Argument
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssistantsFile {
    #[serde(default)]
    assistant: Vec<Assistant>,
    /// The assistant used when a task names none.
    #[serde(default)]
    default: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AssistantsError {
    #[error("cannot read assistants config {path}: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("assistants config {path} is invalid: {err}")]
    Parse { path: String, err: String },
    #[error("assistants config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone)]
pub struct Assistants {
    list: Vec<Assistant>,
    /// The configured default; without one, the first installed assistant.
    default: Option<String>,
}

/// The assistant tasks get when they name none and nothing is installed.
const SHELL: &str = "shell";

impl Assistants {
    /// The built-in assistants. A prompt that starts with `-` must reach
    /// each CLI as a prompt, not as an option: `--` ends the options where
    /// the prompt is an operand, `--opt=value` where it is an option's
    /// value.
    pub fn builtin() -> Self {
        let a = |name: &str, command: &str, interactive: &str, delivery, desc: &str| Assistant {
            name: name.into(),
            command: command.into(),
            interactive_command: Some(interactive.into()),
            prompt_delivery: delivery,
            env: BTreeMap::new(),
            description: Some(desc.into()),
            hook: None,
            install: install_hint(name).map(str::to_string),
        };
        Self {
            list: vec![
                a(
                    "claude",
                    "claude -- {prompt}",
                    "claude",
                    PromptDelivery::Argument,
                    "Claude Code",
                ),
                a(
                    "codex",
                    "codex -- {prompt}",
                    "codex",
                    PromptDelivery::Argument,
                    "OpenAI Codex CLI",
                ),
                a(
                    "gemini",
                    "gemini --prompt-interactive={prompt}",
                    "gemini",
                    PromptDelivery::Argument,
                    "Gemini CLI",
                ),
                a(
                    "opencode",
                    "opencode --prompt={prompt}",
                    "opencode",
                    PromptDelivery::Argument,
                    "OpenCode",
                ),
                a(
                    "shell",
                    "bash -lc -- {prompt}",
                    "bash -l",
                    PromptDelivery::Argument,
                    "A shell: the prompt is run as a command; without one, an interactive shell",
                ),
            ],
            default: None,
        }
    }

    /// The built-ins, overridden and extended by the file when given.
    pub fn load(path: Option<&Path>) -> Result<Self, AssistantsError> {
        let mut out = Self::builtin();
        let Some(path) = path else {
            return Ok(out);
        };
        let text = std::fs::read_to_string(path).map_err(|err| AssistantsError::Read {
            path: path.display().to_string(),
            err,
        })?;
        let file: AssistantsFile = toml::from_str(&text).map_err(|err| AssistantsError::Parse {
            path: path.display().to_string(),
            err: err.to_string(),
        })?;
        for a in file.assistant {
            validate(&a)?;
            match out.list.iter_mut().find(|x| x.name == a.name) {
                Some(slot) => *slot = a,
                None => out.list.push(a),
            }
        }
        if let Some(d) = file.default {
            if out.get(&d).is_none() {
                return Err(AssistantsError::Invalid(format!(
                    "default assistant `{d}` is not declared"
                )));
            }
            out.default = Some(d);
        }
        Ok(out)
    }

    pub fn get(&self, name: &str) -> Option<&Assistant> {
        self.list.iter().find(|a| a.name == name)
    }

    /// The assistant of a task that names none: the configured default,
    /// else the first whose program is installed, the shell last (it is
    /// always there).
    pub fn default_name(&self) -> String {
        if let Some(d) = &self.default {
            return d.clone();
        }
        self.list
            .iter()
            .filter(|a| a.name != SHELL)
            .find(|a| a.is_installed())
            .map(|a| a.name.clone())
            .unwrap_or_else(|| SHELL.to_string())
    }

    /// Every assistant with whether it can run here.
    pub fn availability(&self) -> Vec<Availability> {
        self.list.iter().map(Assistant::availability).collect()
    }

    pub fn all(&self) -> &[Assistant] {
        &self.list
    }
}

fn validate(a: &Assistant) -> Result<(), AssistantsError> {
    let ok_name = !a.name.is_empty()
        && a.name.len() <= 64
        && a.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok_name {
        return Err(AssistantsError::Invalid(format!(
            "assistant name `{}` must be 1-64 letters, digits, - or _",
            a.name
        )));
    }
    if a.command.trim().is_empty() {
        return Err(AssistantsError::Invalid(format!(
            "assistant `{}` has an empty command",
            a.name
        )));
    }
    for k in a.env.keys() {
        if !crate::tasks::valid_env_name(k) {
            return Err(AssistantsError::Invalid(format!(
                "assistant `{}`: `{k}` is not a valid environment variable name",
                a.name
            )));
        }
    }
    Ok(())
}

/// How to install the built-in assistants' programs.
fn install_hint(name: &str) -> Option<&'static str> {
    match name {
        "claude" => Some("npm install -g @anthropic-ai/claude-code"),
        "codex" => Some("npm install -g @openai/codex"),
        "gemini" => Some("npm install -g @google/gemini-cli"),
        "opencode" => Some("npm install -g opencode-ai"),
        _ => None,
    }
}

/// Is `program` an executable file, by its path or on `path` (a `PATH`)?
fn on_path(program: &str, path: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return runnable(Path::new(program));
    }
    !program.is_empty() && std::env::split_paths(path).any(|dir| runnable(&dir.join(program)))
}

impl Assistant {
    /// The program the command runs: its first word.
    pub fn program(&self) -> &str {
        self.command.split_whitespace().next().unwrap_or_default()
    }

    /// Installed where the task will look: on the `PATH` the task gets (its
    /// own `env`, else the server's, which tmux hands on).
    pub fn is_installed(&self) -> bool {
        let path = self
            .env
            .get("PATH")
            .cloned()
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_default();
        on_path(self.program(), &path)
    }

    pub fn availability(&self) -> Availability {
        Availability {
            name: self.name.clone(),
            program: self.program().to_string(),
            available: self.is_installed(),
            install: self.install.clone(),
        }
    }

    /// The refusal for a task of this assistant when its program is missing.
    pub fn unavailable_message(&self) -> String {
        let how = match &self.install {
            Some(cmd) => format!("install it with `{cmd}`"),
            None => "install it, or fix the assistant's command in --assistants-config".into(),
        };
        format!(
            "assistant `{}` runs `{}`, which is not installed here (not on the PATH tasks get); {how}",
            self.name,
            self.program()
        )
    }

    /// The shell command line for this task. `prompt_file` holds the prompt.
    pub fn command_line(&self, prompt: Option<&str>, prompt_file: &Path) -> String {
        let file = super::tmux::sh_quote(&prompt_file.to_string_lossy());
        match (prompt, self.prompt_delivery) {
            (None, _) => self
                .interactive_command
                .clone()
                .unwrap_or_else(|| self.command.replace("{prompt}", "")),
            (Some(_), PromptDelivery::Argument) => self
                .command
                .replace("{prompt}", &format!("\"$(cat {file})\"")),
            (Some(_), PromptDelivery::Stdin) => {
                format!("{} < {file}", self.command.replace("{prompt}", ""))
            }
            (Some(_), PromptDelivery::Typed) => self
                .interactive_command
                .clone()
                .unwrap_or_else(|| self.command.replace("{prompt}", "")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_cover_the_usual_agents() {
        let a = Assistants::builtin();
        for n in ["claude", "codex", "gemini", "opencode", "shell"] {
            assert!(a.get(n).is_some(), "{n}");
        }
    }

    #[test]
    fn built_in_prompts_are_never_parsed_as_options() {
        for a in &Assistants::builtin().list {
            assert!(
                a.command.contains("-- {prompt}") || a.command.contains("={prompt}"),
                "{}: {}",
                a.name,
                a.command
            );
        }
    }

    #[test]
    fn prompt_never_enters_the_command_line() {
        let a = Assistants::builtin();
        let line = a
            .get("shell")
            .unwrap()
            .command_line(Some("$(touch /tmp/pwned)"), Path::new("/d/prompt.txt"));
        assert_eq!(line, "bash -lc -- \"$(cat '/d/prompt.txt')\"");
    }

    #[test]
    fn file_overrides_and_validates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(
            &p,
            r#"
default = "fake"
[[assistant]]
name = "fake"
command = "fake-agent {prompt}"
prompt_delivery = "stdin"
env = { FAKE_MODE = "1" }
"#,
        )
        .unwrap();
        let a = Assistants::load(Some(&p)).unwrap();
        assert_eq!(a.default_name(), "fake");
        assert_eq!(
            a.get("fake")
                .unwrap()
                .command_line(Some("x"), Path::new("/p")),
            "fake-agent  < '/p'"
        );
        std::fs::write(&p, "[[assistant]]\nname = \"bad name\"\ncommand = \"x\"\n").unwrap();
        assert!(Assistants::load(Some(&p)).is_err());
        std::fs::write(
            &p,
            "[[assistant]]\nname = \"x\"\ncommand = \"x\"\nbogus = 1\n",
        )
        .unwrap();
        assert!(Assistants::load(Some(&p)).is_err());
    }
}
