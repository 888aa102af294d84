//! Who may see the live view: whoever holds a session cookie the hub
//! signed, got by redeeming a one-time login secret that `bones ui` made.
//!
//! The page shows task titles, commit subjects and feed text, so unlike
//! `/.status` it is not for every local user (ADR 0016). A secret is 32
//! random bytes, good once and for [`LOGIN_TTL`]: `bones ui` stores it
//! under the state directory (0700, one 0600 file named by the secret's
//! SHA-256, so the name alone does not redeem it), and the hub redeems it
//! by renaming that file away, which succeeds for exactly one request. The
//! cookie is `v1.<expiry>.<HMAC-SHA256 of the expiry>` under a key kept in
//! the state directory, so a session outlives a hub restart and the hub
//! keeps no session table.

use std::io;
use std::path::Path;
use std::time::Duration;

use ring::{digest, hmac, rand::SecureRandom};
use time::OffsetDateTime;

use crate::state::paths::Paths;
use crate::sys::fsutil;

/// How long a login secret can be redeemed.
pub const LOGIN_TTL: Duration = Duration::from_secs(5 * 60);
/// How long a session cookie is good for.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The session cookie's name.
pub const COOKIE: &str = "bones_ui";

const SECRET_BYTES: usize = 32;

fn random_hex(bytes: usize) -> io::Result<String> {
    let mut buf = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| io::Error::other("the system's random source failed"))?;
    Ok(hex(&buf))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The file a secret is kept in: named by its digest.
fn login_file(paths: &Paths, secret: &str) -> std::path::PathBuf {
    let digest = digest::digest(&digest::SHA256, secret.as_bytes());
    paths.ui_login_dir.join(hex(digest.as_ref()))
}

/// A login secret and when it stops being good.
#[derive(Debug, Clone)]
pub struct Login {
    pub secret: String,
    pub expires_at: OffsetDateTime,
}

/// Makes a one-time login secret; removes the expired ones left over.
pub fn issue_login(paths: &Paths) -> io::Result<Login> {
    fsutil::ensure_private_dir(&paths.ui_login_dir)?;
    let now = OffsetDateTime::now_utc();
    remove_expired(&paths.ui_login_dir, now);
    let secret = random_hex(SECRET_BYTES)?;
    let expires_at = now + LOGIN_TTL;
    fsutil::write_private(
        &login_file(paths, &secret),
        expires_at.unix_timestamp().to_string().as_bytes(),
    )?;
    Ok(Login { secret, expires_at })
}

fn expiry_in(path: &Path) -> Option<i64> {
    fsutil::read_trimmed(path).ok().flatten()?.parse().ok()
}

fn remove_expired(dir: &Path, now: OffsetDateTime) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if expiry_in(&path).is_none_or(|at| at <= now.unix_timestamp()) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Redeems a login secret: true exactly once for a secret `issue_login`
/// made, within [`LOGIN_TTL`].
pub fn redeem_login(paths: &Paths, secret: &str) -> bool {
    if !is_hex(secret, SECRET_BYTES * 2) {
        return false;
    }
    let file = login_file(paths, secret);
    let Ok(suffix) = random_hex(8) else {
        return false;
    };
    // the rename succeeds for one request only, however many race
    let taken = file.with_extension(format!("redeemed-{suffix}"));
    if std::fs::rename(&file, &taken).is_err() {
        return false;
    }
    let expiry = expiry_in(&taken);
    let _ = std::fs::remove_file(&taken);
    expiry.is_some_and(|at| OffsetDateTime::now_utc().unix_timestamp() < at)
}

/// Signs and checks session cookies.
pub struct Sessions {
    key: hmac::Key,
}

impl Sessions {
    /// The hub's session key, made (0600) on first use.
    pub fn load_or_create(paths: &Paths) -> io::Result<Sessions> {
        let stored = fsutil::read_trimmed(&paths.ui_key)?.filter(|k| is_hex(k, 64));
        let key = match stored {
            Some(key) => key,
            None => {
                let key = random_hex(32)?;
                fsutil::write_private(&paths.ui_key, key.as_bytes())?;
                key
            }
        };
        Ok(Sessions {
            key: hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes()),
        })
    }

    /// A new session's cookie value.
    pub fn issue(&self) -> String {
        let expiry = (OffsetDateTime::now_utc() + SESSION_TTL).unix_timestamp();
        let tag = hmac::sign(&self.key, expiry.to_string().as_bytes());
        format!("v1.{expiry}.{}", hex(tag.as_ref()))
    }

    /// Whether a cookie value is one this hub signed and has not expired
    /// (compared in constant time).
    pub fn verify(&self, value: &str) -> bool {
        let mut parts = value.splitn(3, '.');
        let (Some("v1"), Some(expiry), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(at) = expiry.parse::<i64>() else {
            return false;
        };
        let Some(tag) = unhex(tag) else {
            return false;
        };
        hmac::verify(&self.key, expiry.as_bytes(), &tag).is_ok()
            && OffsetDateTime::now_utc().unix_timestamp() < at
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !is_hex(text, 64) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// The session cookie's value in a `Cookie` header, if any.
pub fn cookie_in(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(dir.path());
        (dir, paths)
    }

    #[test]
    fn a_login_secret_is_good_once() {
        let (_dir, paths) = paths();
        let login = issue_login(&paths).unwrap();
        assert!(!redeem_login(&paths, &"0".repeat(64)));
        assert!(redeem_login(&paths, &login.secret));
        assert!(!redeem_login(&paths, &login.secret), "second use");
        assert!(!redeem_login(&paths, "../ui.key"));
    }

    #[test]
    fn a_session_cookie_is_checked_against_the_key() {
        let (_dir, paths) = paths();
        let sessions = Sessions::load_or_create(&paths).unwrap();
        let cookie = sessions.issue();
        assert!(sessions.verify(&cookie));
        // the same key after a restart
        assert!(Sessions::load_or_create(&paths).unwrap().verify(&cookie));
        let forged = format!("v1.{}.{}", i64::MAX, &cookie[cookie.len() - 64..]);
        assert!(!sessions.verify(&forged));
        assert!(!sessions.verify("v1.1.zz"));
        assert_eq!(
            cookie_in(&format!("a=b; {COOKIE}={cookie}")),
            Some(cookie.as_str())
        );
    }
}
