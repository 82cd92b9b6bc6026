//! Quoting for the two languages a task's text passes through: tmux's
//! command language (the lines the control client writes) and POSIX `sh`
//! (the command lines tmux hands to `sh -c`).

/// One tmux command as a line of tmux's command language, every argument
/// quoted ([`tmux_word`]), so data arrives exactly as sent whatever it
/// holds: quotes, `;`, `#{…}`, `$VAR`, `~`, newlines, control bytes.
pub fn tmux_command(args: &[&str]) -> String {
    let mut line = String::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        if i == 0 {
            // The command's own name, always one of ours.
            line.push_str(arg);
        } else {
            line.push_str(&tmux_word(arg));
        }
    }
    line.push('\n');
    line
}

/// A double-quoted tmux word. Inside double quotes tmux still expands
/// `$NAME` and a leading `~` and reads `\` escapes, so those three and the
/// quote are escaped; control bytes (a newline would end the command line)
/// are written as three-digit octal escapes.
pub fn tmux_word(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' | '"' | '$' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\{:03o}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Quote a string for POSIX `sh` inside single quotes.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_quote_survives_hostile_text() {
        for s in ["plain", "it's", "$(rm -rf /)", "a'b'c", "", "`x` \\ \n"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", sh_quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn a_command_is_one_line() {
        let line = tmux_command(&["send-keys", "-l", "--", "a\nb\r\u{1b}[31m"]);
        assert_eq!(line, "send-keys \"-l\" \"--\" \"a\\012b\\015\\033[31m\"\n");
        assert_eq!(line.matches('\n').count(), 1);
    }
}
