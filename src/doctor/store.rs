//! The records the hub keeps its state in: the trunk ref of `hub.git` and
//! the damage the hub found in the coordination server's store. Judged as
//! the hub judges them (`repo::require_trunk`, the hub's damage record),
//! and read without a hub and without connecting to one.

use super::{Context, Finding, Report, shell_quote};
use crate::hub::damage::{self, Damage};
use crate::trunk::repo;
use crate::trunk::repo::RepoError;

pub(super) fn check(ctx: &Context, report: &mut Report) {
    trunk(ctx, report);
    store(ctx, report);
}

/// A hub repository without its trunk ref cannot start (nor land).
fn trunk(ctx: &Context, report: &mut Report) {
    let hub_repo = &ctx.paths.hub_repo;
    if !hub_repo.join("HEAD").is_file() {
        report.record("trunk", "not seeded yet", Vec::new());
        return;
    }
    match repo::require_trunk(hub_repo).and_then(|()| repo::trunk_tip(hub_repo)) {
        Ok(tip) => report.record(
            "trunk",
            format!("at {}", &tip[..tip.len().min(12)]),
            Vec::new(),
        ),
        Err(RepoError::TrunkMissing { last_tip, .. }) => {
            let (problem, fix) = match last_tip {
                Some(tip) => (
                    format!(
                        "the trunk ref of {} is missing; its reflog last recorded {tip}",
                        hub_repo.display()
                    ),
                    format!("bones hub repair trunk  # puts trunk back at {tip}"),
                ),
                None => (
                    format!(
                        "the trunk ref of {} is missing and no reflog records its tip",
                        hub_repo.display()
                    ),
                    "bones hub restore /path/to/latest/backup --force  # hub.git is kept in .bones/pre-restore-*".to_string(),
                ),
            };
            report.record(
                "trunk",
                "missing",
                vec![Finding::error("trunk-missing", problem, fix)],
            );
        }
        Err(err) => {
            let finding = Finding::error(
                "hub-repo-unreadable",
                err.to_string(),
                format!("git --git-dir {} fsck", shell_quote(hub_repo)),
            );
            report.record("trunk", "unreadable", vec![finding]);
        }
    }
}

/// Damage the hub found in the store and nobody has repaired yet.
fn store(ctx: &Context, report: &mut Report) {
    let found = match damage::read_record(&ctx.paths.coord_dir) {
        Ok(found) => found,
        Err(err) => {
            let finding = Finding::warning(
                "store-record-unreadable",
                err.to_string(),
                format!(
                    "rm {}  # the hub records damage again at its next look",
                    shell_quote(&damage::record_path(&ctx.paths.coord_dir))
                ),
            );
            report.record("store", "unreadable damage record", vec![finding]);
            return;
        }
    };
    if found.is_empty() {
        report.record("store", "no damage recorded", Vec::new());
        return;
    }
    let problem = format!(
        "store damage found by the hub: {}",
        found
            .iter()
            .map(Damage::describe)
            .collect::<Vec<_>>()
            .join("; ")
    );
    let repair = "bones hub repair store  # writes lost task records back from tasks-events";
    let fix = if ctx.hub_pid().is_some() {
        repair.to_string()
    } else {
        format!("bones hub start --detach && {repair}")
    };
    report.record(
        "store",
        format!("{} damage record(s)", found.len()),
        vec![Finding::error("store-damage", problem, fix)],
    );
}
