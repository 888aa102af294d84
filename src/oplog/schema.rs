//! The fields of a hub.log entry, listed once.
//!
//! Three things must agree on them: the writer's [`LogEntry`], the reader's
//! [`EntryView`] and the fast parser's key table in [`crate::oplog::read`].
//! Each was once written by hand, and they drifted: the writer gained
//! `revision` and `commit`, which the view and the parser never learned, so
//! `bones logs` dropped them. Now [`entry_fields!`] lists the optional
//! fields, and each of the three is generated from that list; the three
//! required fields (`ts`, `level`, `event`) are typed differently by the
//! writer and the view and are written out beside each of them.
//!
//! [`LogEntry`]: crate::oplog::LogEntry
//! [`EntryView`]: crate::oplog::read::EntryView

/// Calls the macro `$make` with the optional fields of an entry, split by
/// their JSON type: `text` fields are strings, `number` fields unsigned
/// integers. Doc comments on a field go to the writer's and the view's
/// field alike. A field added here is written, read and shown by
/// `bones logs` with no other change.
macro_rules! entry_fields {
    ($make:ident) => {
        $make! {
            text {
                msg,
                rpc,
                agent,
                task,
                slot,
                session,
                hook,
                err,
                /// On a `swarm.commit` entry, the trunk commit the landing made.
                commit,
                /// On a `hook` entry, how the hook ended: `ok`, `skipped`
                /// (nothing to do), `failed` or `timeout`.
                result,
                /// On a task entry, who acted: the board's identity (the slot
                /// an agent acts in, else its agent id); `agent` always holds
                /// an agent id (docs/json.md).
                by,
            }
            number {
                took_ms,
                result_count,
                /// On a task event's `rpc` entry, the record's revision in
                /// `bones-tasks`: a restarted hub reads it back to know which
                /// events it has already logged.
                revision,
            }
        }
    };
}

pub(crate) use entry_fields;
