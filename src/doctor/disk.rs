//! Free space where the state lives: JetStream stops accepting writes on a
//! full disk, and a hub that cannot append to hub.log loses its record.

use crate::hub::storage::{free_bytes, show_bytes as show};

use super::{Context, Finding, Report, Severity, shell_quote};

const MIB: u64 = 1024 * 1024;
/// Below this the hub is about to fail: an error.
pub const ERROR_BELOW: u64 = 100 * MIB;
/// Below this it will soon: a warning.
pub const WARN_BELOW: u64 = 1024 * MIB;

pub(super) fn check(ctx: &Context, report: &mut Report) {
    let dir = &ctx.paths.state_dir;
    let free = match free_bytes(dir) {
        Ok(free) => free,
        Err(err) => {
            let finding = Finding::warning(
                "disk-space-unknown",
                format!("cannot read the free space of {}: {err}", dir.display()),
                format!("df -h {}", shell_quote(dir)),
            );
            report.record("disk-space", "unknown", vec![finding]);
            return;
        }
    };
    let detail = format!("{} free", show(free));
    let findings = match severity(free) {
        None => Vec::new(),
        Some(severity) => {
            let problem = format!(
                "only {} free on the filesystem of {}; below {} writes fail (the hub resumes them once {} are free)",
                show(free),
                dir.display(),
                show(crate::hub::storage::FULL_BELOW),
                show(crate::hub::storage::RESUME_AT)
            );
            let fix = format!(
                "du -sh {}/* | sort -h  # then delete what you do not need, until {} are free",
                shell_quote(dir),
                show(WARN_BELOW)
            );
            let finding = match severity {
                Severity::Error => Finding::error("low-disk-space", problem, fix),
                _ => Finding::warning("low-disk-space", problem, fix),
            };
            vec![finding]
        }
    };
    report.record("disk-space", detail, findings);
}

/// How much `free` bytes worry doctor.
fn severity(free: u64) -> Option<Severity> {
    if free < ERROR_BELOW {
        Some(Severity::Error)
    } else if free < WARN_BELOW {
        Some(Severity::Warning)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(severity(0), Some(Severity::Error));
        assert_eq!(severity(ERROR_BELOW - 1), Some(Severity::Error));
        assert_eq!(severity(ERROR_BELOW), Some(Severity::Warning));
        assert_eq!(severity(WARN_BELOW - 1), Some(Severity::Warning));
        assert_eq!(severity(WARN_BELOW), None);
        assert_eq!(show(100 * MIB), "100.0 MiB");
        assert_eq!(show(3 * 1024 * MIB / 2), "1.5 GiB");
    }
}
