//! `bones top`: the terminal view, or with `--once` one frame of it as
//! plain text.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use clap::Args;

use super::Failure;
use crate::sys::error::ErrorKind;
use crate::view::{ClientConnector, View};

/// How long `--once` waits for every part of the picture.
const ONCE_WAIT: Duration = Duration::from_secs(15);

/// The `--once` frame's size when stdout is no terminal.
const ONCE_SIZE: (u16, u16) = (160, 50);

#[derive(Debug, Args)]
#[command(after_help = "Keys:\n  \
    tab, shift-tab, ←, →   move between the panes (slots, tasks, landings, hub.log)\n  \
    ↑, ↓, pgup, pgdn       move between rows (home/end: first/last)\n  \
    enter                  show the selected row's fields; esc closes them\n  \
    q, ctrl-c              quit (SIGTERM and SIGHUP too); the terminal is restored\n\n\
    Examples:\n  \
    bones top                       watch the swarm over SSH\n  \
    bones top --once                one plain text frame on stdout, for scripts\n  \
    bones top --once --size 200x60\n\n\
    A lease age is green while renewed within half its time to live, yellow until it runs \
    out, red after. Times are UTC.")]
pub struct TopArgs {
    /// Print one plain text frame on stdout once every part of the picture
    /// was read, and exit (1 when no hub runs).
    #[arg(long)]
    once: bool,
    /// The --once frame's size (default: the terminal's, else 160x50).
    #[arg(long, value_name = "COLSxROWS", requires = "once", value_parser = parse_size)]
    size: Option<(u16, u16)>,
}

fn parse_size(text: &str) -> Result<(u16, u16), String> {
    let parsed = text
        .split_once('x')
        .and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)));
    match parsed {
        Some((w, h)) if (40..=1000).contains(&w) && (10..=1000).contains(&h) => Ok((w, h)),
        _ => Err("expected COLSxROWS, 40 to 1000 columns and 10 to 1000 rows, e.g. 160x50".into()),
    }
}

pub fn run(args: TopArgs) -> Result<(), Failure> {
    let (paths, runtime) = super::workspace_and_runtime()?;
    let running = crate::hub::is_running(&paths.root);
    let view = View::new(paths.clone(), ClientConnector(paths));
    if args.once {
        if !running {
            return Err(Failure::new(
                ErrorKind::NoHub,
                "no hub is running in this workspace; start one with `bones hub start --detach`",
            ));
        }
        let (width, height) = args.size.unwrap_or_else(terminal_size);
        let frame = runtime.block_on(crate::top::once(&view, width, height, ONCE_WAIT))?;
        return match io::stdout().lock().write_all(frame.as_bytes()) {
            // a closed pipe: the reader has what it wanted
            Err(err) if err.kind() != io::ErrorKind::BrokenPipe => Err(Failure::new(
                ErrorKind::Io,
                format!("cannot write the frame: {err}"),
            )),
            _ => Ok(()),
        };
    }
    if !(io::stdin().is_terminal() && io::stdout().is_terminal()) {
        return Err(Failure::usage(
            "bones top needs a terminal on stdin and stdout; for scripts, `bones top --once` prints one frame",
        ));
    }
    Ok(runtime.block_on(crate::top::run(&view))?)
}

fn terminal_size() -> (u16, u16) {
    if io::stdout().is_terminal()
        && let Ok(size) = crossterm::terminal::size()
    {
        return size;
    }
    ONCE_SIZE
}
