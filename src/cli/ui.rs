//! `bones ui`: the URL of the hub's live view, with a one-time login secret.

use clap::Args;
use serde_json::json;

use super::Failure;
use crate::hub::ui::access;
use crate::state::ports;
use crate::sys::error::ErrorKind;
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

pub fn run(args: UiArgs) -> Result<(), Failure> {
    crate::sys::fsutil::restrict_umask();
    let paths = crate::state::Paths::new(&crate::state::workspace::Workspace::from_cwd()?);
    super::autostart(&paths)?;
    let port = fsutil::read_trimmed(&paths.repo_url_file)
        .ok()
        .flatten()
        .and_then(|url| ports::parse_loopback_url(&url, "http"));
    let Some(port) = port else {
        return Err(Failure::new(
            ErrorKind::NoHub,
            format!(
                "the hub's HTTP address is not recorded in {}; start the hub with `bones hub start --detach`",
                crate::sys::shown::path(&paths.repo_url_file)
            ),
        ));
    };
    let login = access::issue_login(&paths).map_err(|err| {
        Failure::new(
            ErrorKind::Io,
            format!(
                "cannot store a login secret in {}: {err}",
                crate::sys::shown::path(&paths.ui_login_dir)
            ),
        )
    })?;
    let url = format!("{}/ui/login?secret={}", ports::repo_url(port), login.secret);
    let expires_at = crate::sys::clock::format_rfc3339(login.expires_at);
    if args.json {
        super::json::print(json!({ "url": url, "expires_at": expires_at }));
    } else {
        println!("{url}");
    }
    eprintln!(
        "ui: the link works once, until {expires_at}; it sets a cookie for this browser (run `bones ui` again for another)"
    );
    if args.open {
        open_in_browser(&url);
    }
    Ok(())
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
        eprintln!(
            "bones: cannot open a browser with {} ({err}); open the URL above yourself, or set BROWSER",
            crate::sys::shown::plain(&opener)
        );
    }
}
