//! JetStream stream snapshots and restores over the server's own API
//! (`$JS.API.STREAM.SNAPSHOT.<name>` and `$JS.API.STREAM.RESTORE.<name>`,
//! what `nats stream backup` and `nats stream restore` use).
//!
//! A snapshot is the server's own copy of a stream's storage: its
//! configuration, every message with its headers and sequence (so KV
//! revisions, which compare-and-swap depends on, come back unchanged),
//! the gaps left by deleted messages, and its durable consumers with their
//! acknowledgement floors. async-nats has no helper for it, so the chunked
//! request/reply protocol is spoken here directly:
//!
//! * snapshot: the server sends chunks to an inbox we subscribed to first;
//!   each chunk has a reply subject we answer (flow control), and an empty
//!   message without a reply subject ends the stream;
//! * restore: the server names a subject; we send each chunk as a request
//!   and wait for its empty answer, then an empty request finishes the
//!   restore and is answered with the stream's info.

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::BackupError;
use super::manifest::StreamEntry;
use crate::coord::ServerError;

/// Bytes per chunk, both ways: well under the server's default 1 MiB
/// message limit.
const CHUNK: usize = 128 * 1024;
/// A snapshot or restore that hears nothing for this long has stalled.
const STALL: Duration = Duration::from_secs(30);
/// How long a paused consumer stays paused if this process dies before
/// resuming it; renewed before every stream's snapshot.
pub const PAUSE_WINDOW: Duration = Duration::from_secs(60);

/// A failed request to the server, doing `what`.
fn nats<E>(what: impl Into<String>) -> impl FnOnce(E) -> BackupError
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let what = what.into();
    move |err| BackupError::Nats {
        what,
        source: ServerError::new(err),
    }
}

/// The server, doing `what`, did not do what was asked; `why` says how.
fn server(what: impl Into<String>) -> impl FnOnce(String) -> BackupError {
    let what = what.into();
    move |why| BackupError::Server { what, why }
}

/// Why a JetStream API request failed.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error(transparent)]
    Request(#[from] jetstream::context::RequestError),
    /// The server answered with an error; its description.
    #[error("{0}")]
    Answered(String),
    /// The time a pause ends could not be written down.
    #[error(transparent)]
    Time(#[from] time::error::Format),
}

/// An [`ApiError`] met doing `what`.
fn api_failed(what: impl Into<String>) -> impl FnOnce(ApiError) -> BackupError {
    let what = what.into();
    move |err| match err {
        ApiError::Request(err) => nats(what)(err),
        ApiError::Answered(why) => server(what)(why),
        ApiError::Time(err) => BackupError::Nats {
            what,
            source: ServerError::internal(err),
        },
    }
}

/// Sends a JetStream API request and returns the response, or its error.
async fn api(js: &jetstream::Context, subject: &str, body: &Value) -> Result<Value, ApiError> {
    let response: Value = js.request(subject.to_string(), body).await?;
    match response.get("error") {
        Some(error) => Err(ApiError::Answered(
            error["description"]
                .as_str()
                .unwrap_or("unknown error")
                .to_string(),
        )),
        None => Ok(response),
    }
}

/// Every stream on the server, sorted by name.
pub async fn stream_names(js: &jetstream::Context) -> Result<Vec<String>, BackupError> {
    let mut names: Vec<String> = js
        .stream_names()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(nats("cannot list the streams"))?;
    names.sort();
    Ok(names)
}

/// A durable consumer paused for the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paused {
    pub stream: String,
    pub consumer: String,
}

/// Durable consumers are how the hub derives one stream from another (the
/// task projector turns `KV_bones-tasks` revisions into `tasks-events`).
/// Pausing every one of them freezes every derivation, so the snapshots
/// taken meanwhile agree with each other. What was paused is pushed onto
/// `paused` as it happens, so the caller can resume it even after an error.
pub async fn pause_durables(
    js: &jetstream::Context,
    streams: &[String],
    paused: &mut Vec<Paused>,
) -> Result<(), BackupError> {
    for name in streams {
        let stream = js
            .get_stream(name)
            .await
            .map_err(nats(format!("cannot open stream {name}")))?;
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            let info = info.map_err(nats(format!("cannot list consumers of {name}")))?;
            // ephemeral consumers belong to a client and vanish when it goes
            let durable =
                info.config.durable_name.is_some() || info.config.inactive_threshold.is_zero();
            if !durable {
                continue;
            }
            let item = Paused {
                stream: name.clone(),
                consumer: info.name.clone(),
            };
            // recorded before the request: a pause that reached the server
            // but whose answer was lost must still be undone
            paused.push(item.clone());
            extend_pause(js, &item).await?;
        }
    }
    Ok(())
}

/// (Re)pauses one consumer for another [`PAUSE_WINDOW`].
pub async fn extend_pause(js: &jetstream::Context, item: &Paused) -> Result<(), BackupError> {
    pause_for(js, &item.stream, &item.consumer, PAUSE_WINDOW)
        .await
        .map_err(api_failed(format!(
            "cannot pause consumer {} of stream {} (pausing needs nats-server 2.11 or newer)",
            item.consumer, item.stream
        )))
}

/// Resumes one consumer by letting a pause of [`RESUME_AFTER`] run out.
///
/// Lifting a pause by request leaves a push consumer idle until the next
/// new message (seen with nats-server 2.15): revisions written during the
/// backup would wait for the next task change to be projected. A pause
/// that expires restarts its deliveries at once.
async fn resume_one(js: &jetstream::Context, stream: &str, consumer: &str) -> Result<(), ApiError> {
    pause_for(js, stream, consumer, RESUME_AFTER).await
}

/// How long the last, self-expiring pause of a resume lasts: long enough
/// that the request reaches the server before the moment it names, on a
/// loaded machine too (a moment already past acts as lifting the pause).
const RESUME_AFTER: Duration = Duration::from_secs(1);

async fn pause_for(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
    window: Duration,
) -> Result<(), ApiError> {
    let until = (time::OffsetDateTime::now_utc() + window)
        .format(&time::format_description::well_known::Rfc3339)?;
    api(
        js,
        &format!("CONSUMER.PAUSE.{stream}.{consumer}"),
        &json!({ "pause_until": until }),
    )
    .await
    .map(drop)
}

/// Waits until every paused consumer has nothing delivered but
/// unacknowledged, so what it derived is all stored. A push consumer that
/// no one is bound to cannot change and is not waited for.
pub async fn wait_drained(
    js: &jetstream::Context,
    paused: &[Paused],
    timeout: Duration,
) -> Result<(), BackupError> {
    let deadline = Instant::now() + timeout;
    for item in paused {
        let mut consumer: jetstream::consumer::Consumer<jetstream::consumer::Config> = js
            .get_consumer_from_stream(&item.consumer, &item.stream)
            .await
            .map_err(nats(format!(
                "cannot read consumer {} of {}",
                item.consumer, item.stream
            )))?;
        loop {
            let info = consumer.info().await.map_err(nats(format!(
                "cannot read consumer {} of {}",
                item.consumer, item.stream
            )))?;
            let unbound_push = info.config.deliver_subject.is_some() && !info.push_bound;
            if info.num_ack_pending == 0 || unbound_push {
                break;
            }
            if Instant::now() >= deadline {
                return Err(BackupError::NotDrained {
                    stream: item.stream.clone(),
                    consumer: item.consumer.clone(),
                    pending: info.num_ack_pending,
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(())
}

/// Resumes paused consumers; failures are returned as text, one per
/// consumer, for the caller to report (their pause expires by itself).
pub async fn resume(js: &jetstream::Context, paused: &[Paused]) -> Vec<String> {
    let mut failed = Vec::new();
    for item in paused {
        if let Err(err) = resume_one(js, &item.stream, &item.consumer).await {
            failed.push(format!(
                "consumer {} of stream {}: {err}",
                item.consumer, item.stream
            ));
        }
    }
    failed
}

/// Snapshots stream `name` (with its consumers) into `file` and returns the
/// configuration and state the server reported for it.
pub async fn snapshot(
    js: &jetstream::Context,
    name: &str,
    file: &Path,
) -> Result<(Value, Value), BackupError> {
    let what = format!("cannot snapshot stream {name}");
    let failed = || server(what.clone());
    let client = js.client();
    let inbox = client.new_inbox();
    // subscribed before asking: the server sends as soon as it sees interest
    let mut chunks = client
        .subscribe(inbox.clone())
        .await
        .map_err(nats(what.clone()))?;
    let response = api(
        js,
        &format!("STREAM.SNAPSHOT.{name}"),
        &json!({ "deliver_subject": inbox, "no_consumers": false, "chunk_size": CHUNK }),
    )
    .await
    .map_err(api_failed(what.clone()))?;
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .await
        .map_err(BackupError::io("cannot create", file))?;
    loop {
        let message = match tokio::time::timeout(STALL, chunks.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => return Err(failed()("the connection closed mid-snapshot".to_string())),
            Err(_) => {
                return Err(failed()(format!(
                    "no data for {STALL:?}; the snapshot stalled"
                )));
            }
        };
        if let Some(status) = message.status
            && status.as_u16() >= 400
        {
            let why = message.description.unwrap_or_else(|| status.to_string());
            return Err(failed()(why));
        }
        if message.payload.is_empty() && message.reply.is_none() {
            break; // end of snapshot
        }
        out.write_all(&message.payload)
            .await
            .map_err(BackupError::io("cannot write", file))?;
        if let Some(reply) = message.reply {
            client
                .publish(reply, Bytes::new())
                .await
                .map_err(nats(what.clone()))?;
        }
    }
    out.sync_all()
        .await
        .map_err(BackupError::io("cannot write", file))?;
    let config = response.get("config").cloned().unwrap_or(Value::Null);
    let state = response.get("state").cloned().unwrap_or(Value::Null);
    if config["name"] != name {
        return Err(failed()(
            "the server's answer carries no configuration".to_string(),
        ));
    }
    Ok((config, state))
}

/// Restores one stream from its snapshot onto a server that does not have
/// it, resumes the consumers the backup paused, and checks the restored
/// stream holds the messages and sequences the manifest records.
pub async fn restore(
    js: &jetstream::Context,
    entry: &StreamEntry,
    file: &Path,
) -> Result<(), BackupError> {
    let what = format!("cannot restore stream {}", entry.name);
    let failed = || server(what.clone());
    let client = js.client();
    let response = api(
        js,
        &format!("STREAM.RESTORE.{}", entry.name),
        &json!({ "config": entry.config, "state": entry.state }),
    )
    .await
    .map_err(api_failed(what.clone()))?;
    let target = response["deliver_subject"]
        .as_str()
        .ok_or_else(|| failed()("the server named no subject to send the snapshot to".into()))?
        .to_string();
    let mut input = tokio::fs::File::open(file)
        .await
        .map_err(BackupError::io("cannot read", file))?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = read_full(&mut input, &mut buf)
            .await
            .map_err(BackupError::io("cannot read", file))?;
        let last = n == 0;
        let answer = client
            .send_request(
                target.clone(),
                async_nats::Request::new()
                    .payload(Bytes::copy_from_slice(&buf[..n]))
                    .timeout(Some(STALL)),
            )
            .await
            .map_err(nats(what.clone()))?;
        if last {
            let info: Value =
                serde_json::from_slice(&answer.payload).map_err(|e| BackupError::Nats {
                    what: format!("{what}: unreadable answer"),
                    source: ServerError::new(e),
                })?;
            if let Some(error) = info.get("error") {
                let why = error["description"].as_str().unwrap_or("unknown error");
                return Err(failed()(why.to_string()));
            }
            check_state(&what, entry, &info["state"])?;
            break;
        }
        if !answer.payload.is_empty() {
            return Err(failed()(
                String::from_utf8_lossy(&answer.payload).into_owned(),
            ));
        }
    }
    for consumer in &entry.paused_consumers {
        resume_one(js, &entry.name, consumer)
            .await
            .map_err(api_failed(format!(
                "cannot resume consumer {consumer} of {}",
                entry.name
            )))?;
    }
    Ok(())
}

/// Fails doing `what` unless the restored stream's `state` holds the
/// messages and sequences the manifest records.
fn check_state(what: &str, entry: &StreamEntry, state: &Value) -> Result<(), BackupError> {
    let got = |key: &str| state[key].as_u64().unwrap_or(0);
    let (messages, first, last) = (got("messages"), got("first_seq"), got("last_seq"));
    // an empty stream's first sequence is reported as 0 or last + 1
    let same_first = messages == 0 || first == entry.first_seq;
    if messages != entry.messages || last != entry.last_seq || !same_first {
        return Err(server(what)(format!(
            "the restored stream has {messages} messages (seq {first}..{last}), \
             the backup {} (seq {}..{})",
            entry.messages, entry.first_seq, entry.last_seq
        )));
    }
    Ok(())
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
