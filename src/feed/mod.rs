//! The knowledge feed: a shared, append-only log of what agents decided and
//! learned, so parallel agents stop rediscovering the same facts.
//!
//! Entries ([`entry`]) live in the JetStream stream `bones-feed`
//! ([`store`]), one subject per entry id, so the server itself stores an id
//! once; the stream sequence is the feed's one total order. Followers
//! ([`follow`]) survive hub restarts and resume after the last sequence
//! they showed, kept per reader in a [`cursor`]. [`prime`] condenses the
//! feed for an agent's context; [`retention`] bounds it by age and count.
//! The schema is documented in `docs/feed.md` so any NATS client can use it;
//! the design choices are in ADR 0005.

pub mod cursor;
pub mod entry;
pub mod follow;
pub mod prime;
pub mod retention;
pub mod store;

pub use entry::{Entry, InputError, Kind, NewEntry};
pub use follow::{Ended, FollowOptions, Sink, follow};
pub use retention::Retention;
pub use store::{Feed, FeedError, Published, Start, Stored};
