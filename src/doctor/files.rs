//! State files: owner-only modes (decision 11) and locks nobody will
//! release: git ref locks a killed hub left in `hub.git`, a `hub.lock` held
//! by a process stuck outside any start, half-made seeds.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{Context, Finding, Report, kill_fix, shell_quote, short_cmdline};
use crate::hub;
use crate::oplog::read;
use crate::state::lock;
use crate::state::lock::Holder;
use crate::sys::fsutil;
use crate::sys::fsutil::{PRIVATE_DIR_MODE, PRIVATE_FILE_MODE};
use crate::sys::process;

/// Git holds a ref lock for milliseconds; one this old was left by a crash.
const STALE_GIT_LOCK: Duration = Duration::from_secs(60);
/// A start holds `hub.lock` at most for its ready timeout plus a margin.
const LOCK_HOLD_LIMIT: Duration = Duration::from_secs(60);

pub(super) fn check(ctx: &Context, report: &mut Report) {
    permissions(ctx, report);
    locks(ctx, report);
}

/// How much a loose mode on one path matters.
struct Expect {
    path: PathBuf,
    dir: bool,
    /// Holds a secret (the key's seed): readable by others is an error.
    secret: bool,
}

fn permissions(ctx: &Context, report: &mut Report) {
    let paths = &ctx.paths;
    let mut expected = vec![
        Expect {
            path: paths.state_dir.clone(),
            dir: true,
            secret: true,
        },
        Expect {
            path: paths.coord_dir.clone(),
            dir: true,
            secret: false,
        },
    ];
    // nats.token: an older bones' secret, until its hub restarts
    for secret in [&paths.nats_seed, &paths.nats_token, &paths.nats_conf] {
        expected.push(Expect {
            path: secret.clone(),
            dir: false,
            secret: true,
        });
    }
    let plain = [
        paths.state_dir.join(crate::state::workspace::MARKER),
        paths.state_dir.join("root"),
        paths.hub_pid.clone(),
        paths.hub_json.clone(),
        paths.repo_url_file.clone(),
        paths.nats_url_file.clone(),
        paths.nats_pid.clone(),
        paths.nats_log.clone(),
        paths.lock.clone(),
        paths.run_lock.clone(),
    ];
    let logs = read::files_oldest_first(&paths.hub_log);
    for path in plain.into_iter().chain(logs) {
        expected.push(Expect {
            path,
            dir: false,
            secret: false,
        });
    }
    let uid = nix::unistd::geteuid().as_raw();
    let mut findings = Vec::new();
    let mut seen = 0;
    for expect in &expected {
        let Ok(meta) = fs::metadata(&expect.path) else {
            continue;
        };
        seen += 1;
        let path = shell_quote(&expect.path);
        // the rule `bones up` and `hub start` refuse by (fsutil::check_private)
        if let Some(owner) = fsutil::foreign_owner(&meta) {
            findings.push(Finding::error(
                "state-owner",
                format!(
                    "{} is owned by uid {owner}, not by you (uid {uid}); another user can change what the hub runs",
                    expect.path.display(),
                ),
                format!("chown {uid} {path}"),
            ));
        }
        let Some(mode) = fsutil::loose_mode(&meta) else {
            continue;
        };
        let want = if expect.dir {
            PRIVATE_DIR_MODE
        } else {
            PRIVATE_FILE_MODE
        };
        let problem = format!(
            "{} has mode {mode:03o}; other users can {} it (want {want:03o})",
            expect.path.display(),
            if mode & 0o022 != 0 { "change" } else { "read" }
        );
        let fix = format!("chmod {want:o} {path}");
        findings.push(if expect.secret {
            Finding::error(
                if expect.dir {
                    "state-dir-permissions"
                } else {
                    "secret-permissions"
                },
                problem,
                fix,
            )
        } else {
            Finding::warning("state-file-permissions", problem, fix)
        });
    }
    let detail = format!("{seen} state paths, owner-only expected");
    report.record("permissions", detail, findings);
}

fn locks(ctx: &Context, report: &mut Report) {
    let mut findings = Vec::new();
    let now = SystemTime::now();
    let mut git_locks = Vec::new();
    lock_files(&ctx.paths.hub_repo, &mut git_locks);
    for lock in git_locks {
        let age = fs::metadata(&lock)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| now.duration_since(at).ok())
            .unwrap_or_default();
        if age >= STALE_GIT_LOCK {
            findings.push(Finding::warning(
                "stale-git-lock",
                format!(
                    "{} is {}s old; git refuses to update that ref while it exists",
                    lock.display(),
                    age.as_secs()
                ),
                format!("rm {}", shell_quote(&lock)),
            ));
        }
    }
    for dir in hub::seeding_leftovers(&ctx.paths) {
        let seeder = dir
            .extension()
            .and_then(|pid| pid.to_str()?.parse::<u32>().ok());
        if seeder.is_some_and(process::is_alive) {
            continue;
        }
        findings.push(Finding::warning(
            "seeding-leftover",
            format!(
                "{} is a half-made hub repository from a start that crashed",
                dir.display()
            ),
            format!("rm -rf {}", shell_quote(&dir)),
        ));
    }
    if let Holder::Pid(holder) = lock::holder(&ctx.paths.lock)
        && Some(holder) != ctx.hub_pid()
        && let Some(row) = ctx.process(holder)
    {
        let held_for = ctx.now.unix_timestamp() - i64::try_from(row.info.start_time).unwrap_or(0);
        if held_for >= LOCK_HOLD_LIMIT.as_secs() as i64 {
            findings.push(Finding::warning(
                "hub-lock-held",
                format!(
                    "{} is held by pid {} ({}), which is not the hub; every `bones hub start` waits for it and times out",
                    ctx.paths.lock.display(),
                    row.pid,
                    short_cmdline(&row.info.cmdline)
                ),
                kill_fix(row, "holder of hub.lock"),
            ));
        }
    }
    let detail = match findings.len() {
        0 => "no stale locks".to_string(),
        n => format!("{n} stale lock(s)"),
    };
    report.record("locks", detail, findings);
}

/// Every `*.lock` file in a bare repository, objects aside.
fn lock_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if entry.file_name() != "objects" {
                lock_files(&path, found);
            }
        } else if path.extension().is_some_and(|e| e == "lock") {
            found.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_files_skip_objects() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path();
        fs::create_dir_all(repo.join("refs/heads/slot")).unwrap();
        fs::create_dir_all(repo.join("objects/ab")).unwrap();
        for file in [
            "refs/heads/trunk.lock",
            "refs/heads/slot/a.lock",
            "packed-refs.lock",
            "objects/ab/x.lock",
            "HEAD",
        ] {
            fs::write(repo.join(file), "").unwrap();
        }
        let mut found = Vec::new();
        lock_files(repo, &mut found);
        found.sort();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.strip_prefix(repo).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            names,
            [
                PathBuf::from("packed-refs.lock"),
                PathBuf::from("refs/heads/slot/a.lock"),
                PathBuf::from("refs/heads/trunk.lock"),
            ]
        );
    }
}
