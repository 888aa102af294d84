//! `scripts/bench.sh feed`: entries per second shared and received through
//! the bones knowledge feed against a bare async-nats JetStream publish and
//! consume loop on the same server.
//!
//! Each bones round shares ENTRIES entries with the library (`share_all`,
//! as `bones share --stdin` does) on one connection while a follower (the
//! code behind `bones feed --follow`, cursor included) receives them on
//! another; it ends when the follower has seen the last one. The anchor
//! rounds do the same job with bare async-nats: encode the same entries and
//! publish them with the same pipelining while an ordered consumer receives
//! and decodes them. `ratio` is against a plain loop (one subject, no
//! headers); `protocol_ratio` against a bare loop speaking the feed's wire
//! protocol (a subject per entry and the two de-duplication headers), which
//! separates what the library costs from what storing each id once costs
//! the server; `ids_ratio` is a plain loop that only adds each id as its
//! `Nats-Msg-Id` (the "the entry id is the message id") against the
//! plain loop: what the message id alone costs.
//!
//! Usage: bench_feed WORKSPACE [ENTRIES] [ROUNDS] (a hub must be running for
//! WORKSPACE). Prints one line: `bench feed ratio=<r> protocol_ratio=<p> ...`.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, consumer, stream};
use bones::feed::cursor::Cursor;
use bones::feed::store;
use bones::feed::{Entry, Feed, FollowOptions, Kind, NewEntry, Retention, Sink, Start, Stored};
use bones::state::Paths;
use bones::state::workspace::Workspace;
use futures::StreamExt;

#[path = "common/mod.rs"]
mod common;
use common::{Cpu, Error, connect, median};

/// Publishes in flight at once in the anchor, as in `Feed::share_all`.
const PIPELINE: usize = bones::feed::store::PIPELINE;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        eprintln!("usage: bench_feed WORKSPACE [ENTRIES] [ROUNDS]");
        std::process::exit(2);
    }
    let workspace = PathBuf::from(&args[1]);
    let entries: usize = args.get(2).map_or(Ok(20_000), |s| s.parse())?;
    let rounds: usize = args.get(3).map_or(Ok(3), |s| s.parse())?;
    let paths = Paths::new(&Workspace::discover(&workspace)?);

    let mut bones_rates = Vec::new();
    let mut plain_rates = Vec::new();
    let mut ids_rates = Vec::new();
    let mut protocol_rates = Vec::new();
    for round in 0..rounds {
        // rotate which goes first so warm-up favours none
        for turn in 0..4 {
            match (round + turn) % 4 {
                0 => bones_rates.push(bones_round(&paths, round, entries).await?),
                1 => plain_rates.push(anchor_round(&paths, round, entries, Anchor::Plain).await?),
                2 => ids_rates.push(anchor_round(&paths, round, entries, Anchor::Ids).await?),
                _ => protocol_rates
                    .push(anchor_round(&paths, round, entries, Anchor::Protocol).await?),
            }
        }
        eprintln!(
            "bench feed: round {round}: bones {:.0}/s, plain JetStream {:.0}/s, with message ids {:.0}/s, feed protocol on bare JetStream {:.0}/s",
            bones_rates[round], plain_rates[round], ids_rates[round], protocol_rates[round]
        );
    }
    let bones = median(&mut bones_rates);
    let plain = median(&mut plain_rates);
    let ids = median(&mut ids_rates);
    let protocol = median(&mut protocol_rates);
    println!(
        "bench feed ratio={:.2} protocol_ratio={:.2} ids_ratio={:.2} bones_per_s={bones:.0} anchor_per_s={plain:.0} ids_per_s={ids:.0} protocol_per_s={protocol:.0} entries={entries} rounds={rounds}",
        bones / plain,
        bones / protocol,
        ids / plain
    );
    Ok(())
}

fn text(round: usize, i: usize) -> String {
    format!("round {round} entry {i}: the parser tests need LANG=C and a nats-server on PATH")
}

/// Counts what the follower shows and says when the last one arrived.
struct Counter {
    seen: Arc<AtomicU64>,
    target: u64,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Sink for Counter {
    fn entry(&mut self, _stored: &Stored) -> io::Result<()> {
        if self.seen.fetch_add(1, Ordering::Relaxed) + 1 == self.target
            && let Some(done) = self.done.take()
        {
            let _ = done.send(());
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Entries per second shared and followed through bones.
async fn bones_round(paths: &Paths, round: usize, entries: usize) -> Result<f64, Error> {
    // ids new to this run: the server remembers ids for its duplicate
    // window even after a purge
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut feed = Feed::open(&connect(paths).await?).await?;
    let after = feed.refresh().await?.state.last_sequence;
    let batch: Vec<NewEntry> = (0..entries)
        .map(|i| {
            let mut entry = NewEntry::new(Kind::Learning, text(round, i));
            entry.id = Some(format!("bench-{run}-{round}-{i}"));
            entry
        })
        .collect();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let seen = Arc::new(AtomicU64::new(0));
    let cpu = Cpu::now(paths);
    let started = Instant::now();
    let follower = {
        let paths = paths.clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut sink = Counter {
                seen,
                target: entries as u64,
                done: Some(done_tx),
            };
            let options = FollowOptions {
                start: Some(Start::After(after)),
                cursor: Some(Cursor::of(&paths, "bench", None)),
            };
            bones::feed::follow(&paths, options, &mut sink, async {
                let _ = done_rx.await;
            })
            .await
        })
    };
    let published = feed.share_all(batch, "bench", |_| {}).await?;
    let stored = published.iter().filter(|p| !p.duplicate).count();
    assert_eq!(stored, entries, "bones stored {stored} of {entries}");
    follower.await??;
    let elapsed = started.elapsed();
    report_cpu("bones", paths, cpu, entries);
    assert_eq!(seen.load(Ordering::Relaxed), entries as u64);
    // every round starts from an empty stream, as the anchor's does
    feed.stream().purge().await?;
    Ok(entries as f64 / elapsed.as_secs_f64())
}

/// Which bare loop a round runs.
#[derive(Clone, Copy)]
enum Anchor {
    /// What one writes without bones: one subject, no headers.
    Plain,
    /// The plain loop plus what the issue asks for: each entry's id as its
    /// `Nats-Msg-Id`, on one subject. What a message id alone costs.
    Ids,
    /// The feed's wire protocol without bones: one subject per entry with
    /// `Nats-Msg-Id` and `Nats-Expected-Last-Subject-Sequence: 0` (the
    /// server-side cost of storing an id once, without the library).
    Protocol,
}

/// The anchor: the same bytes published to a stream with the same
/// pipelining, and received by an ordered consumer.
async fn anchor_round(
    paths: &Paths,
    round: usize,
    entries: usize,
    anchor: Anchor,
) -> Result<f64, Error> {
    let js = connect(paths).await?;
    let tag = match anchor {
        Anchor::Plain => "plain",
        Anchor::Ids => "ids",
        Anchor::Protocol => "protocol",
    };
    let name = format!("bench-feed-{tag}-{round}");
    let prefix = format!("bench.feed.{tag}.{round}");
    let _ = js.delete_stream(&name).await;
    let config = match anchor {
        Anchor::Plain | Anchor::Ids => stream::Config {
            name: name.clone(),
            subjects: vec![prefix.clone()],
            ..Default::default()
        },
        Anchor::Protocol => stream::Config {
            name: name.clone(),
            subjects: vec![format!("{prefix}.>")],
            ..store::stream_config(&Retention::default())
        },
    };
    js.create_stream(config).await?;
    // the input, as the bones round's: entries not yet encoded
    let batch: Vec<Entry> = (0..entries)
        .map(|i| {
            let mut entry = NewEntry::new(Kind::Learning, text(round, i))
                .into_entry("bench", "2026-11-23T09:00:00.000000Z");
            entry.id = format!("anchor-{i}");
            entry
        })
        .collect();
    let cpu = Cpu::now(paths);
    let started = Instant::now();
    let receiver = {
        let paths = paths.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let js = connect(&paths).await?;
            let stream = js.get_stream(&name).await?;
            let consumer = stream
                .create_consumer(consumer::push::OrderedConfig {
                    deliver_subject: js.client().new_inbox(),
                    ..Default::default()
                })
                .await?;
            let mut messages = consumer.messages().await?;
            let mut received = 0usize;
            while received < entries {
                match messages.next().await {
                    Some(message) => {
                        // received means read: the entry, as a follower has it
                        let entry: Entry = serde_json::from_slice(&message?.payload)?;
                        std::hint::black_box(entry);
                        received += 1;
                    }
                    None => break,
                }
            }
            Ok::<usize, Error>(received)
        })
    };
    let mut in_flight = VecDeque::with_capacity(PIPELINE);
    for entry in &batch {
        let message = PublishMessage::build().payload(serde_json::to_vec(entry)?.into());
        let (subject, message) = match anchor {
            Anchor::Plain => (prefix.clone(), message),
            Anchor::Ids => (prefix.clone(), message.message_id(&entry.id)),
            Anchor::Protocol => (
                format!("{prefix}.{}", entry.id),
                message
                    .message_id(&entry.id)
                    .expected_last_subject_sequence(0),
            ),
        };
        if in_flight.len() >= PIPELINE
            && let Some(ack) = in_flight.pop_front()
        {
            ack_of(ack).await?;
        }
        in_flight.push_back(js.send_publish(subject, message).await?);
    }
    while let Some(ack) = in_flight.pop_front() {
        ack_of(ack).await?;
    }
    let received = receiver.await??;
    let elapsed = started.elapsed();
    report_cpu(tag, paths, cpu, entries);
    assert_eq!(
        received, entries,
        "{tag} anchor received {received} of {entries}"
    );
    js.delete_stream(&name).await?;
    Ok(entries as f64 / elapsed.as_secs_f64())
}

async fn ack_of(
    ack: jetstream::context::PublishAckFuture,
) -> Result<jetstream::publish::PublishAck, Error> {
    Ok(ack.await?)
}

/// CPU per entry of the coordination server and of this process (sharer
/// and follower), on stderr: on a loaded machine it says more than rates.
fn report_cpu(side: &str, paths: &Paths, before: Cpu, entries: usize) {
    let (server, _, this) = Cpu::now(paths).per_op_us(before, entries);
    eprintln!("bench feed: {side}: CPU per entry: server {server:.1} us, clients {this:.1} us");
}
