//! Running child processes: the `cargo` that invoked us, the workspace root,
//! and one printed line per step.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use anyhow::{Context, Result};

/// The cargo that runs xtask (cargo sets `CARGO`), so a toolchain chosen by
/// rustup or the user is used for every step.
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(program);
    command.current_dir(workspace_root());
    command
}

/// The repository root: `cargo xtask` works from any directory inside it.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("xtask lives two levels below the workspace root")
}

/// Prints the command, runs it with inherited stdio and returns its status.
/// Failing to start at all is an error; a non-zero exit is the caller's call.
pub fn run_step(command: &mut Command) -> Result<ExitStatus> {
    println!("xtask: running {}", describe(command));
    command.status().with_context(|| format!("could not start {}", describe(command)))
}

/// `program arg arg`, with env overrides shown in front, for log lines.
pub fn describe(command: &Command) -> String {
    let mut parts: Vec<String> = command
        .get_envs()
        .filter_map(|(key, value)| value.map(|v| format!("{}={}", key.to_string_lossy(), v.to_string_lossy())))
        .collect();
    parts.push(command.get_program().to_string_lossy().into_owned());
    parts.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Looks `name` up on PATH, as a shell would.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}
