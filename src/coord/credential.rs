//! The coordination credential, and who may hear it used.
//!
//! The coordination server admits one user: the holder of an nkey (an
//! Ed25519 key pair) whose seed is kept in `nats.seed` (0600, in the 0700
//! state directory). The server names only the public key in `nats.conf`;
//! a client proves it holds the seed by signing the random challenge
//! (nonce) the server sends with every connection. Nothing a client sends
//! can be replayed: a captured signature answers one challenge only. See
//! `adr/0010-nkey-credential-and-checked-listeners.md`.
//!
//! The key replaced a shared token (`nats.token`), which every client sent
//! as is, to whatever listened on the coordination port. A workspace made
//! by an older bones is moved over at the next hub start: a new key is
//! made and `nats.token` is deleted ([`ensure`]).
//!
//! A signature is still worth something to a listener that relays it live
//! to the real server while that server waits for the answer. So every
//! client also checks, at every connect and reconnect, that nobody but this
//! user holds the port ([`Guard`]): before it opens a connection, and again
//! after the server's challenge arrived and before it answers.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::coord::CoordError;
use crate::oplog::HubLog;
use crate::state::paths::Paths;
use crate::state::ports;
use crate::sys::fsutil;

/// The workspace's coordination key: an nkey user key pair.
#[derive(Clone)]
pub struct Key {
    pair: Arc<nkeys::KeyPair>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the seed
        f.debug_struct("Key")
            .field("public", &self.public_key())
            .finish()
    }
}

impl Key {
    /// The public key (`U` and 55 base32 characters) the server config names.
    pub fn public_key(&self) -> String {
        self.pair.public_key()
    }

    /// Signs a server's challenge.
    pub fn sign(&self, nonce: &[u8]) -> Result<Vec<u8>, async_nats::AuthError> {
        self.pair
            .sign(nonce)
            .map_err(|e| async_nats::AuthError::new(format!("cannot sign the challenge: {e}")))
    }

    /// Reads a seed as `nats.seed` holds it: a user seed (`SU...`) alone.
    fn from_seed(text: &str) -> Option<Key> {
        let pair = nkeys::KeyPair::from_seed(text).ok()?;
        matches!(pair.key_pair_type(), nkeys::KeyPairType::User).then(|| Key {
            pair: Arc::new(pair),
        })
    }
}

/// What [`ensure`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `nats.seed` held a key: it is kept.
    Kept,
    /// There was none (or it was not a user seed): a new one was made.
    Made,
    /// A new one was made and the older bones' `nats.token` was deleted.
    ReplacedToken,
}

/// Returns the workspace's key, making one on first use. A seed file that
/// does not hold a user seed is replaced. A `nats.token` left by an older
/// bones is deleted: the server no longer takes it, and a secret nobody
/// uses is only something more to leak.
pub fn ensure(paths: &Paths) -> Result<(Key, Origin), CoordError> {
    let kept = match read(paths) {
        Ok(Some(key)) => Some(key),
        Ok(None) | Err(CoordError::BadKey(_)) => None,
        Err(err) => return Err(err),
    };
    let (key, mut origin) = match kept {
        Some(key) => (key, Origin::Kept),
        None => {
            let pair = nkeys::KeyPair::new_user();
            let seed = pair.seed().map_err(|e| CoordError::Write {
                path: paths.nats_seed.clone(),
                source: io::Error::other(e),
            })?;
            fsutil::write_private(&paths.nats_seed, format!("{seed}\n").as_bytes()).map_err(
                |source| CoordError::Write {
                    path: paths.nats_seed.clone(),
                    source,
                },
            )?;
            let key = Key {
                pair: Arc::new(pair),
            };
            (key, Origin::Made)
        }
    };
    match std::fs::remove_file(&paths.nats_token) {
        Ok(()) => origin = Origin::ReplacedToken,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(CoordError::Write {
                path: paths.nats_token.clone(),
                source,
            });
        }
    }
    Ok((key, origin))
}

/// The workspace's key, if `nats.seed` exists.
pub fn read(paths: &Paths) -> Result<Option<Key>, CoordError> {
    let text = match fsutil::read_trimmed(&paths.nats_seed) {
        Ok(text) => text.filter(|t| !t.is_empty()),
        Err(err) if err.kind() == io::ErrorKind::InvalidData => {
            return Err(CoordError::BadKey(paths.nats_seed.clone()));
        }
        Err(source) => {
            return Err(CoordError::Key {
                path: paths.nats_seed.clone(),
                source,
            });
        }
    };
    match text {
        None => Ok(None),
        Some(text) => Key::from_seed(&text)
            .map(Some)
            .ok_or_else(|| CoordError::BadKey(paths.nats_seed.clone())),
    }
}

/// First pause of a client that finds its port held by another user;
/// doubles up to [`MAX_FOREIGN_PAUSE`].
const FIRST_FOREIGN_PAUSE: Duration = Duration::from_millis(50);
const MAX_FOREIGN_PAUSE: Duration = Duration::from_secs(2);

/// Checks, for one client, that nobody but this user holds the
/// coordination port (see [`ports::foreign_holder`] and [`ports::foreign_peer`]). Cheap to clone; the
/// clones share what was seen.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<GuardInner>,
}

struct GuardInner {
    port: u16,
    /// The other user seen at the last check, if any.
    refused: Mutex<Option<u32>>,
    /// A warning was logged for the current episode.
    warned: AtomicBool,
    log: Option<HubLog>,
}

impl Guard {
    /// A guard for a client of `127.0.0.1:port`.
    pub fn new(port: u16) -> Guard {
        Guard::with_log(port, None)
    }

    /// A guard that also writes a WARN to `log` when another user is first
    /// found on the port (once until the port is this user's again): the
    /// hub's own client, whose operator should hear of it.
    pub fn logging(port: u16, log: HubLog) -> Guard {
        Guard::with_log(port, Some(log))
    }

    fn with_log(port: u16, log: Option<HubLog>) -> Guard {
        Guard {
            inner: Arc::new(GuardInner {
                port,
                refused: Mutex::new(None),
                warned: AtomicBool::new(false),
                log,
            }),
        }
    }

    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// The other user the last check found, if it found one.
    pub fn refused(&self) -> Option<u32> {
        *self.inner.refused.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks the port now, before connecting: `Err(uid)` when another
    /// user listens there.
    pub fn check(&self) -> Result<(), u32> {
        self.record(ports::foreign_holder(self.inner.port))
    }

    /// Checks the port with the connection open: `Err(uid)` when another
    /// user holds its far end (or listens there).
    pub fn check_connected(&self) -> Result<(), u32> {
        self.record(ports::foreign_peer(self.inner.port))
    }

    /// Remembers what a check found, and warns once per episode.
    fn record(&self, holder: Option<u32>) -> Result<(), u32> {
        let inner = &self.inner;
        *inner.refused.lock().unwrap_or_else(|p| p.into_inner()) = holder;
        match holder {
            None => {
                inner.warned.store(false, Ordering::SeqCst);
                Ok(())
            }
            Some(uid) => {
                if let Some(log) = &inner.log
                    && !inner.warned.swap(true, Ordering::SeqCst)
                {
                    log.warn(format!(
                        "hub: 127.0.0.1:{} is held by another user (uid {uid}) while the coordination server is away; not connecting until it is this user's again",
                        inner.port
                    ));
                }
                Err(uid)
            }
        }
    }

    /// Returns once nobody but this user holds the port, checking with a
    /// growing pause in between.
    pub async fn wait_while_foreign(&self) {
        let mut pause = FIRST_FOREIGN_PAUSE;
        while self.check().is_err() {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_FOREIGN_PAUSE);
        }
    }

    /// The answer to a server's challenge, once the port was checked again
    /// with this connection open: its far end must be this user's socket.
    pub fn answer(
        &self,
        key: &Key,
        nonce: &[u8],
    ) -> Result<async_nats::Auth, async_nats::AuthError> {
        if let Err(uid) = self.check_connected() {
            return Err(async_nats::AuthError::new(format!(
                "127.0.0.1:{} is held by another user (uid {uid}); not answering its challenge",
                self.port()
            )));
        }
        // every bones server sends a challenge; a listener that sends none
        // is not one (and would learn nothing from an answer anyway)
        if nonce.is_empty() {
            return Err(async_nats::AuthError::new(
                "the server sent no challenge; it is not this workspace's coordination server",
            ));
        }
        let mut auth = async_nats::Auth::new();
        auth.nkey = Some(key.public_key());
        auth.signature = Some(key.sign(nonce)?);
        Ok(auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_is_made_once_owner_only_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(tmp.path());
        let (made, origin) = ensure(&paths).unwrap();
        assert_eq!(origin, Origin::Made);
        let mode = std::fs::metadata(&paths.nats_seed)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let seed = std::fs::read_to_string(&paths.nats_seed).unwrap();
        assert!(seed.starts_with("SU"), "a user seed");
        let (kept, origin) = ensure(&paths).unwrap();
        assert_eq!(origin, Origin::Kept);
        assert_eq!(kept.public_key(), made.public_key());
        assert!(kept.public_key().starts_with('U'));
        assert!(!format!("{kept:?}").contains(seed.trim()));
    }

    #[test]
    fn a_token_workspace_gets_a_key_and_loses_its_token() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(tmp.path());
        std::fs::write(&paths.nats_token, "0123456789abcdef0123456789abcdef\n").unwrap();
        let (_, origin) = ensure(&paths).unwrap();
        assert_eq!(origin, Origin::ReplacedToken);
        assert!(!paths.nats_token.exists());
        assert!(read(&paths).unwrap().is_some());
    }

    #[test]
    fn a_seed_file_without_a_user_seed_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(tmp.path());
        let account = nkeys::KeyPair::new_account().seed().unwrap();
        for bad in ["not a seed", account.as_str(), "SU\n}\nlisten: 0.0.0.0:1"] {
            std::fs::write(&paths.nats_seed, bad).unwrap();
            assert!(matches!(read(&paths), Err(CoordError::BadKey(_))), "{bad}");
            let (key, origin) = ensure(&paths).unwrap();
            assert_eq!(origin, Origin::Made);
            assert_eq!(
                read(&paths).unwrap().unwrap().public_key(),
                key.public_key()
            );
        }
    }

    #[test]
    fn an_answer_verifies_against_the_public_key_for_that_challenge_only() {
        let tmp = tempfile::tempdir().unwrap();
        let (key, _) = ensure(&Paths::in_dir(tmp.path())).unwrap();
        // a port nobody holds
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let guard = Guard::new(port);
        let auth = guard.answer(&key, b"challenge-1").unwrap();
        assert_eq!(auth.nkey.as_deref(), Some(key.public_key().as_str()));
        assert!(auth.token.is_none() && auth.password.is_none());
        let public = nkeys::KeyPair::from_public_key(&key.public_key()).unwrap();
        let signature = auth.signature.unwrap();
        assert!(public.verify(b"challenge-1", &signature).is_ok());
        assert!(public.verify(b"challenge-2", &signature).is_err());
        assert!(guard.answer(&key, b"").is_err(), "no challenge, no answer");
    }
}
