//! `bones up`: make a directory a workspace.

use clap::Args;

use super::Failure;
use crate::state::workspace::Workspace;
use crate::sys::shown;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Print the workspace as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: UpArgs) -> Result<(), Failure> {
    let cwd = super::current_dir()?;
    match Workspace::init(&cwd) {
        Ok((ws, created)) => {
            if args.json {
                super::json::print(serde_json::json!({
                    "root": ws.root.to_string_lossy(),
                    "state_dir": ws.state_dir.to_string_lossy(),
                    "created": created,
                }));
            }
            let verb = if created { "created" } else { "already set up" };
            eprintln!(
                "bones: workspace {verb} at {} (state in {}); next: bones hub start --detach",
                shown::path(&ws.root),
                shown::path(&ws.state_dir)
            );
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}
