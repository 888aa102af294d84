//! `bones completions SHELL` and `bones man`: shell completion scripts and
//! manual pages, generated from the same clap definitions that parse the
//! command line, so they never fall behind it.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, Failure};
use crate::sys::error::ErrorKind;

#[derive(Debug, Args)]
#[command(after_help = "Install (see the README for more):\n  \
    bash   bones completions bash > ~/.local/share/bash-completion/completions/bones\n  \
    zsh    bones completions zsh > ~/.zfunc/_bones   # with fpath+=(~/.zfunc) before compinit\n  \
    fish   bones completions fish > ~/.config/fish/completions/bones.fish\n  \
    now    source <(bones completions bash)")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    bones man | man -l -                        read it now\n  \
    bones man --dir ~/.local/share/man/man1     install bones.1 and one page per subcommand")]
pub struct ManArgs {
    /// Write bones.1 and one page per subcommand (bones-hub-start.1, ...)
    /// into DIR instead of printing bones.1 on stdout.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell`.
pub fn completions(args: CompletionsArgs) -> Result<(), Failure> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "bones", &mut script);
    print(&script)
}

/// Prints the manual page of `bones`, or writes every page into a directory.
pub fn man(args: ManArgs) -> Result<(), Failure> {
    let Some(dir) = args.dir else {
        let mut page = Vec::new();
        // as `generate_to` does: `bones help` has no page of its own
        let command = Cli::command().disable_help_subcommand(true);
        clap_mangen::Man::new(command)
            .render(&mut page)
            .map_err(|err| {
                Failure::new(
                    ErrorKind::Internal,
                    format!("cannot render the manual page: {err}"),
                )
            })?;
        return print(&page);
    };
    let written =
        std::fs::create_dir_all(&dir).and_then(|()| clap_mangen::generate_to(Cli::command(), &dir));
    written.map_err(|err| {
        Failure::new(
            ErrorKind::Io,
            format!(
                "cannot write the manual pages into {}: {err}",
                crate::sys::shown::path(&dir)
            ),
        )
    })?;
    eprintln!(
        "man: wrote bones.1 and a page per subcommand into {}",
        crate::sys::shown::path(&dir)
    );
    Ok(())
}

/// Writes `bytes` on stdout; a reader that went away (`| head`) is no error.
fn print(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::new(
            ErrorKind::Io,
            format!("cannot write to stdout: {err}"),
        )),
        _ => Ok(()),
    }
}
