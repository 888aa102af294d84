//! `bones hub backup DIR` and `bones hub restore DIR`.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::super::Failure;
use crate::hub::backup::{self, RestoreOptions};
use crate::sys::shown;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    bones hub backup ~/backups/bones-$(date +%F)\n  \
    bones hub backup /tmp/b --json | jq .trunk")]
pub struct BackupArgs {
    /// Where to write the backup: a new directory (its parent must exist),
    /// or an empty one.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Print a JSON summary (trunk, refs, streams) on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    bones hub stop && bones hub restore ~/backups/bones-2026-11-20 --force\n  \
    bones up && bones hub restore /tmp/b && bones hub start --detach   # into a new workspace")]
pub struct RestoreArgs {
    /// A directory written by `bones hub backup`.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Restore over an existing trunk, coordination store or slot
    /// checkouts; they are moved to .bones/pre-restore-<unix>/, not deleted.
    #[arg(long)]
    force: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
}

fn progress(line: &str) {
    eprintln!("{line}");
}

pub fn backup(cwd: &Path, args: BackupArgs) -> Result<(), Failure> {
    let manifest = backup::backup(cwd, &args.dir, &progress)?;
    {
        {
            // now that it exists, the canonical path
            let dir = backup::absolute(&args.dir);
            if args.json {
                super::super::json::print(manifest.summary(&dir));
            } else {
                let messages: u64 = manifest.streams.iter().map(|s| s.messages).sum();
                println!(
                    "backup written to {}: trunk {}, {} ref(s), {} stream(s) with {messages} message(s), {} bytes",
                    shown::path(&dir),
                    short(&manifest.trunk),
                    manifest.refs.len(),
                    manifest.streams.len(),
                    manifest.bytes()
                );
            }
        }
    }
    Ok(())
}

pub fn restore(cwd: &Path, args: RestoreArgs) -> Result<(), Failure> {
    let opts = RestoreOptions { force: args.force };
    let restored = backup::restore(cwd, &args.dir, &opts, &progress)?;
    {
        {
            let manifest = &restored.manifest;
            if args.json {
                let mut value = manifest.summary(&restored.dir);
                value["source_workspace_id"] = json!(manifest.workspace_id);
                value["previous_state"] = json!(restored.previous);
                super::super::json::print(&value);
            } else {
                println!(
                    "restored the backup of {} from {}: trunk {}, {} ref(s), {} stream(s)",
                    manifest.created_at,
                    shown::path(&restored.dir),
                    short(&manifest.trunk),
                    manifest.refs.len(),
                    manifest.streams.len()
                );
                if let Some(previous) = &restored.previous {
                    println!("the previous state is kept in {}", shown::path(previous));
                }
            }
            eprintln!(
                "restore: slot checkouts are not part of a backup; agents get theirs back with `bones swarm join --slot NAME`"
            );
            eprintln!("restore: start the hub with `bones hub start --detach`");
        }
    }
    Ok(())
}

fn short(oid: &str) -> &str {
    &oid[..oid.len().min(12)]
}
