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
    default: String,
}

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
            default: "claude".into(),
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
            out.default = d;
        }
        Ok(out)
    }

    pub fn get(&self, name: &str) -> Option<&Assistant> {
        self.list.iter().find(|a| a.name == name)
    }

    pub fn default_name(&self) -> &str {
        &self.default
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

impl Assistant {
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
