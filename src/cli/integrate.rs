//! `bones integrate claude-code | codex | gemini`: write a harness's project
//! configuration (MCP server, session hooks, instructions block), merged
//! into the user's files.

use std::path::PathBuf;

use clap::Args;
use clap::builder::PossibleValuesParser;
use serde_json::json;

use super::Failure;
use crate::harness::Harness;
use crate::state::workspace::Workspace;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    bones integrate claude-code --dry-run   # the diff of what it would write\n  \
    bones integrate claude-code             # .mcp.json, .claude/settings.json, CLAUDE.md\n  \
    bones integrate codex                   # .codex/config.toml, .codex/hooks.json, AGENTS.md\n  \
    bones integrate gemini                  # .gemini/settings.json, GEMINI.md\n\n\
    Your own entries stay as they are; running it again changes nothing.")]
pub struct IntegrateArgs {
    /// The agent harness to set up.
    #[arg(value_parser = PossibleValuesParser::new(["claude-code", "codex", "gemini"]))]
    harness: String,
    /// Print what would change as a unified diff on stdout; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// The project directory (default: the workspace root, else the
    /// current directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print one JSON object: the files, whether each changed, and the diff.
    #[arg(long)]
    json: bool,
}

pub fn run(args: IntegrateArgs) -> Result<(), Failure> {
    let Some(harness) = Harness::parse(&args.harness) else {
        return Err(Failure::usage(format!(
            "unknown harness {}",
            crate::sys::shown::plain(&args.harness)
        )));
    };
    let workspace = Workspace::from_cwd().ok();
    let root = match args
        .dir
        .clone()
        .or_else(|| workspace.as_ref().map(|w| w.root.clone()))
    {
        Some(dir) => dir,
        None => super::current_dir()?,
    };
    let changes = harness.plan(&root)?;
    let changed: Vec<_> = changes.iter().filter(|c| c.changed()).collect();
    if !args.dry_run {
        for change in &changed {
            change.write()?;
        }
    }
    let diff: String = changed.iter().map(|c| c.diff()).collect();
    if args.json {
        let files: Vec<_> = changes
            .iter()
            .map(|c| json!({"path": c.shown, "changed": c.changed()}))
            .collect();
        super::json::print(json!({
            "harness": harness.name(),
            "root": root,
            "dry_run": args.dry_run,
            "files": files,
            "diff": diff,
        }));
    } else if args.dry_run {
        print!("{diff}");
    }
    let verb = if args.dry_run { "would write" } else { "wrote" };
    for change in &changes {
        if change.changed() {
            eprintln!("integrate: {verb} {}", change.shown);
        }
    }
    if changed.is_empty() {
        eprintln!(
            "integrate: nothing to change: {} already hold bones' entries",
            changes
                .iter()
                .map(|c| c.shown.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else if !args.dry_run {
        for step in harness.next_steps() {
            eprintln!("integrate: next: {step}");
        }
    }
    if workspace.is_none() {
        eprintln!(
            "integrate: {} is not a bones workspace yet; run `bones up` there, or the hooks will only warn",
            root.display()
        );
    }
    if !on_path("bones") {
        eprintln!(
            "integrate: `bones` is not on PATH; the harness runs `bones mcp` and `bones hook`, so install it \
             (`cargo install --path .`) or put it on PATH"
        );
    }
    Ok(())
}

/// True when `program` is an executable in a `PATH` directory.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|dir| crate::sys::fsutil::is_executable(&dir.join(program)))
    })
}
