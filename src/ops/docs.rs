//! Man pages and shell completions generated from the CLI definition (the hidden
//! `hotbackup generate-docs DIR`, run by `scripts/package.sh`), so that they can never drift
//! from `--help`: one page per command (`hotbackup.1`, `hotbackup-setup.1`,
//! `hotbackup-journal-dump.1`, …) with clap_mangen, and bash, zsh and fish completions with
//! clap_complete. This module only writes files under the directory it is given.

use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::Shell;

/// Why the docs could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct DocsError {
    path: PathBuf,
    source: std::io::Error,
}

fn write(path: PathBuf, bytes: &[u8]) -> Result<(), DocsError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| DocsError {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(&path, bytes).map_err(|source| DocsError { path, source })
}

/// Writes `DIR/man1/*.1` and `DIR/completions/*`; returns how many files.
pub fn write_docs(cmd: Command, dir: &Path) -> Result<usize, DocsError> {
    let mut cmd = cmd;
    cmd.build();
    let mut n = 0;
    n += write_man(&cmd, &dir.join("man1"))?;
    for (shell, file) in [
        (Shell::Bash, "hotbackup.bash"),
        (Shell::Zsh, "_hotbackup"),
        (Shell::Fish, "hotbackup.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "hotbackup", &mut out);
        write(dir.join("completions").join(file), &out)?;
        n += 1;
    }
    Ok(n)
}

/// One page for `cmd`, then one for each visible subcommand, recursively. A built command's
/// subcommands have display names like `hotbackup-journal-dump`: that names the page.
fn write_man(cmd: &Command, dir: &Path) -> Result<usize, DocsError> {
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned();
    let path = dir.join(format!("{name}.1"));
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .map_err(|source| DocsError {
            path: path.clone(),
            source,
        })?;
    write(path, &out)?;
    let mut n = 1;
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        n += write_man(sub, dir)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_page_per_command_and_three_completions() {
        let cmd = Command::new("hotbackup")
            .about("test")
            .subcommand(Command::new("serve").about("run"))
            .subcommand(
                Command::new("journal")
                    .subcommand(Command::new("dump"))
                    .subcommand(Command::new("check")),
            )
            .subcommand(Command::new("secret").hide(true));
        let dir = tempfile::tempdir().unwrap();
        let n = write_docs(cmd, dir.path()).unwrap();
        assert_eq!(n, 5 + 3);
        for f in [
            "man1/hotbackup.1",
            "man1/hotbackup-serve.1",
            "man1/hotbackup-journal-dump.1",
            "completions/hotbackup.bash",
            "completions/_hotbackup",
            "completions/hotbackup.fish",
        ] {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
        assert!(!dir.path().join("man1/hotbackup-secret.1").exists());
        let page = std::fs::read_to_string(dir.path().join("man1/hotbackup-serve.1")).unwrap();
        assert!(page.contains(".TH hotbackup-serve"), "{page}");
    }
}
