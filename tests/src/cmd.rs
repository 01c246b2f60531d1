//! Running a host program to completion with a time limit, keeping its output for errors.

use std::ffi::OsString;
use std::io::{Read, Seek};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{command_line, HarnessError};

/// How long any one tool invocation may take before the harness kills it. Generous: RSA key
/// generation inside swtpm is the slowest thing the tools do, and takes well under a second.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// One program invocation: `program args...` with extra environment variables and a working
/// directory.
#[derive(Debug)]
pub(crate) struct Invocation<'a> {
    pub(crate) program: &'a str,
    pub(crate) args: Vec<OsString>,
    pub(crate) envs: Vec<(&'static str, String)>,
    pub(crate) cwd: Option<&'a Path>,
}

impl Invocation<'_> {
    /// The command line as a person would type it, environment first.
    pub(crate) fn display(&self) -> String {
        let mut line = String::new();
        for (key, value) in &self.envs {
            line.push_str(&format!("{key}={value} "));
        }
        line.push_str(&command_line(self.program, &self.args));
        line
    }

    /// Runs the program with stdin closed. Returns its stdout when it exits with status 0;
    /// otherwise an error carrying the command line and its stderr (and stdout).
    pub(crate) fn run(&self) -> Result<Vec<u8>, HarnessError> {
        let capture = |what: &str| {
            tempfile::tempfile().map_err(|e| HarnessError::io(format!("create {what} capture file"), e))
        };
        let mut stdout = capture("stdout")?;
        let mut stderr = capture("stderr")?;
        let clone = |file: &std::fs::File| {
            file.try_clone().map_err(|e| HarnessError::io("duplicate capture file", e))
        };

        let mut command = Command::new(self.program);
        command.args(&self.args).stdin(Stdio::null()).stdout(clone(&stdout)?).stderr(clone(&stderr)?);
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        if let Some(dir) = self.cwd {
            command.current_dir(dir);
        }
        let mut child =
            command.spawn().map_err(|e| HarnessError::io(format!("start `{}`", self.display()), e))?;

        let started = Instant::now();
        let mut pause = Duration::from_micros(500);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() > COMMAND_TIMEOUT => {
                    // Best effort: the error below is what matters.
                    let _ = child.kill();
                    let status = child
                        .wait()
                        .map_err(|e| HarnessError::io(format!("wait for `{}`", self.display()), e))?;
                    return Err(HarnessError::CommandFailed {
                        command: self.display(),
                        status,
                        output: format!("killed after {COMMAND_TIMEOUT:?}"),
                    });
                }
                Ok(None) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(HarnessError::io(format!("wait for `{}`", self.display()), e));
                }
            }
        };

        let read_all = |file: &mut std::fs::File| -> Result<Vec<u8>, HarnessError> {
            let mut bytes = Vec::new();
            file.rewind()
                .and_then(|()| file.read_to_end(&mut bytes))
                .map_err(|e| HarnessError::io("read captured output", e))?;
            Ok(bytes)
        };
        let out = read_all(&mut stdout)?;
        if status.success() {
            return Ok(out);
        }
        let err = read_all(&mut stderr)?;
        let mut output = String::from_utf8_lossy(&err).into_owned();
        if !out.is_empty() {
            output.push_str("\n(stdout)\n");
            output.push_str(&String::from_utf8_lossy(&out));
        }
        Err(HarnessError::CommandFailed { command: self.display(), status, output })
    }
}
