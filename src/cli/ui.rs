//! `bones ui`: the URL of the hub's live view, with a one-time login secret.

use clap::Args;
use serde_json::json;

use super::{exit, report};
use crate::hub::ui::access;
use crate::state::ports;
use crate::sys::fsutil;

#[derive(Debug, Args)]
pub struct UiArgs {
    /// Open the URL in the default browser (xdg-open, or $BROWSER).
    #[arg(long)]
    open: bool,
    /// Print one JSON object: {"url", "expires_at"}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: UiArgs) -> u8 {
    crate::sys::fsutil::restrict_umask();
    let paths = match crate::state::workspace::Workspace::from_cwd() {
        Ok(ws) => crate::state::Paths::new(&ws),
        Err(err) => {
            report(&err);
            return exit::FAILURE;
        }
    };
    if let Err(code) = super::autostart(&paths) {
        return code;
    }
    let port = fsutil::read_trimmed(&paths.repo_url_file)
        .ok()
        .flatten()
        .and_then(|url| ports::parse_loopback_url(&url, "http"));
    let Some(port) = port else {
        report(&format!(
            "the hub's HTTP address is not recorded in {}; start the hub with `bones hub start --detach`",
            paths.repo_url_file.display()
        ));
        return exit::FAILURE;
    };
    let login = match access::issue_login(&paths) {
        Ok(login) => login,
        Err(err) => {
            report(&format!(
                "cannot store a login secret in {}: {err}",
                paths.ui_login_dir.display()
            ));
            return exit::FAILURE;
        }
    };
    let url = format!("{}/ui/login?secret={}", ports::repo_url(port), login.secret);
    let expires_at = crate::oplog::format_rfc3339(login.expires_at);
    if args.json {
        println!("{}", json!({ "url": url, "expires_at": expires_at }));
    } else {
        println!("{url}");
    }
    eprintln!(
        "ui: the link works once, until {expires_at}; it sets a cookie for this browser (run `bones ui` again for another)"
    );
    if args.open {
        open_in_browser(&url);
    }
    exit::OK
}

/// Hands the URL to `$BROWSER` or `xdg-open`; a failure is reported, the
/// URL printed already.
fn open_in_browser(url: &str) {
    let opener = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "xdg-open".to_string());
    let spawned = std::process::Command::new(&opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(err) = spawned {
        report(&format!(
            "cannot open a browser with {opener} ({err}); open the URL above yourself, or set BROWSER"
        ));
    }
}
