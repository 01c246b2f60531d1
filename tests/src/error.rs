//! The harness's one error type.

use std::fmt;
use std::io;
use std::process::ExitStatus;

/// Why the harness could not provide a TPM or run a tool against it. Each variant carries
/// what a person needs to see the cause: the command line, its stderr, the swtpm log.
#[derive(Debug)]
#[non_exhaustive]
pub enum HarnessError {
    /// A program the harness needs is not on `PATH`.
    MissingTool {
        /// The program name, e.g. `swtpm_setup`.
        tool: String,
    },
    /// A file system or process operation failed.
    Io {
        /// What the harness was doing, e.g. "write swtpm_setup.conf".
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A command ran and exited unsuccessfully.
    CommandFailed {
        /// The command line, shell-quoted for copy and paste.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error output (and standard output when that says more).
        output: String,
    },
    /// swtpm did not come up (it exited, or never accepted connections).
    StartFailed {
        /// What went wrong.
        reason: String,
        /// The tail of swtpm's log and stderr.
        log: String,
    },
}

impl HarnessError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingTool { tool } => write!(
                f,
                "`{tool}` is not on PATH (Debian: apt-get install {})",
                crate::prereq::debian_package(tool)
            ),
            Self::Io { context, source } => write!(f, "{context}: {source}"),
            Self::CommandFailed { command, status, output } => {
                write!(f, "`{command}` failed ({status})")?;
                let output = output.trim_end();
                if !output.is_empty() {
                    write!(f, ":\n{output}")?;
                }
                Ok(())
            }
            Self::StartFailed { reason, log } => {
                write!(f, "swtpm did not start: {reason}")?;
                let log = log.trim_end();
                if !log.is_empty() {
                    write!(f, "\n--- swtpm log ---\n{log}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for HarnessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Renders a command line for error messages, quoting arguments that need it.
pub(crate) fn command_line(program: &str, args: &[std::ffi::OsString]) -> String {
    let mut line = quote(program);
    for arg in args {
        line.push(' ');
        line.push_str(&quote(&arg.to_string_lossy()));
    }
    line
}

fn quote(word: &str) -> String {
    let plain =
        !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
