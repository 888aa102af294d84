//! The version of bones's JSON vocabulary (`docs/json.md`).
//!
//! Every JSON document bones prints carries it as `"schema"`, so a reader
//! can tell which field names to expect. It goes up when a field is
//! renamed or removed or its meaning changes, never when one is added.

/// The current version of the JSON vocabulary.
pub const JSON_SCHEMA: u32 = 1;
