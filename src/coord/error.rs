//! A failed request to the coordination server, kept whole.
//!
//! async-nats has one error type per operation (`kv::EntryError`,
//! `context::PublishError`, ...), each an `Error<Kind>` whose kind says
//! whether it timed out. [`ServerError`] keeps the client's error as its
//! source and sorts it once, by type and kind (never by its message), into
//! an [`ErrorKind`]: a caller tells "the server did not answer in time"
//! ([`ErrorKind::Timeout`]) from "it answered no" ([`ErrorKind::Server`]).

use std::error::Error as StdError;

use async_nats::jetstream::{context, kv};

use crate::sys::error::{ErrorKind, Kinded};

/// A request to the coordination server that failed; the client's error
/// is the source.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct ServerError {
    kind: ErrorKind,
    #[source]
    source: Box<dyn StdError + Send + Sync + 'static>,
}

impl ServerError {
    /// Wraps a client error, sorting it by its type and kind (and those of
    /// its sources: a KV put that timed out is a publish error inside).
    pub fn new(err: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> ServerError {
        let source = err.into();
        let kind = classify(source.as_ref());
        ServerError { kind, source }
    }

    /// A failure of bones's own making around a request: a record that
    /// would not encode, say. Kept with its source, sorted as internal.
    pub fn internal(err: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> ServerError {
        ServerError {
            kind: ErrorKind::Internal,
            source: err.into(),
        }
    }

    /// A request bounded by bones's own deadline that ran out.
    pub fn timed_out(what: impl Into<String>) -> ServerError {
        ServerError {
            kind: ErrorKind::Timeout,
            source: what.into().into(),
        }
    }
}

impl Kinded for ServerError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// Whether a client error kind is a time-out: `$kind::TimedOut` for each
/// of the async-nats error types bones meets.
macro_rules! timed_out {
    ($err:expr, $($ty:ty => $kind:path),* $(,)?) => {
        $(
            if let Some(e) = $err.downcast_ref::<async_nats::error::Error<$ty>>() {
                return e.kind() == $kind;
            }
        )*
    };
}

fn is_timeout(err: &(dyn StdError + 'static)) -> bool {
    timed_out!(err,
        kv::EntryErrorKind => kv::EntryErrorKind::TimedOut,
        kv::UpdateErrorKind => kv::UpdateErrorKind::TimedOut,
        kv::WatchErrorKind => kv::WatchErrorKind::TimedOut,
        kv::StatusErrorKind => kv::StatusErrorKind::TimedOut,
        context::PublishErrorKind => context::PublishErrorKind::TimedOut,
        context::RequestErrorKind => context::RequestErrorKind::TimedOut,
        context::ConsumerInfoErrorKind => context::ConsumerInfoErrorKind::TimedOut,
        context::CreateStreamErrorKind => context::CreateStreamErrorKind::TimedOut,
        context::CreateKeyValueErrorKind => context::CreateKeyValueErrorKind::TimedOut,
        context::AccountErrorKind => context::AccountErrorKind::TimedOut,
        async_nats::client::RequestErrorKind => async_nats::client::RequestErrorKind::TimedOut,
        async_nats::ConnectErrorKind => async_nats::ConnectErrorKind::TimedOut,
    );
    if let Some(io) = err.downcast_ref::<std::io::Error>() {
        return io.kind() == std::io::ErrorKind::TimedOut;
    }
    err.is::<tokio::time::error::Elapsed>()
}

/// The kind of a client error: a time-out anywhere in its chain of
/// sources is a time-out; anything else the server (or the connection to
/// it) refused.
fn classify(err: &(dyn StdError + 'static)) -> ErrorKind {
    let mut next = Some(err);
    while let Some(err) = next {
        if is_timeout(err) {
            return ErrorKind::Timeout;
        }
        next = err.source();
    }
    ErrorKind::Server
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_by_type_and_kind_through_sources() {
        let timeout = context::PublishError::new(context::PublishErrorKind::TimedOut);
        assert_eq!(ServerError::new(timeout).kind(), ErrorKind::Timeout);
        let refused = kv::EntryError::new(kv::EntryErrorKind::Other);
        assert_eq!(ServerError::new(refused).kind(), ErrorKind::Server);
        let inner = context::PublishError::new(context::PublishErrorKind::TimedOut);
        let put = kv::PutError::with_source(kv::PutErrorKind::Publish, inner);
        assert_eq!(ServerError::new(put).kind(), ErrorKind::Timeout);
        assert_eq!(ServerError::timed_out("x").kind(), ErrorKind::Timeout);
    }
}
