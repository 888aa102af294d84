//! `bones top`: the live picture of the swarm in a terminal, for people on
//! SSH. The same slots, task board, landings and hub.log lines as the
//! hub's web page, from the same view model ([`crate::view`]), followed in
//! this process with the workspace credential.
//!
//! Nothing here looks again on a timer: the frame is drawn again when the
//! view model sends a change (at most once per [`FRAME`], so a burst of
//! landings costs one frame), on a key, on a resize, and once a second
//! while there are slots, for their lease ages only.

mod app;
mod render;
mod screen;

use std::io;
use std::time::Duration;

use crossterm::event::{Event, EventStream};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use time::OffsetDateTime;
use tokio::time::{Instant, MissedTickBehavior};

pub use app::{App, Flow, Pane};
use screen::Screen;

use crate::sys::signals::StopSignals;
use crate::view::View;

/// The shortest time between two frames: changes that arrive closer
/// together are drawn together.
pub const FRAME: Duration = Duration::from_millis(50);

/// How often the lease ages count up.
const AGE_TICK: Duration = Duration::from_secs(1);

/// What can end the view with an error.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error("cannot take over the terminal: {0}")]
    Terminal(#[source] io::Error),
    #[error("cannot catch the stop signals: {0}")]
    Signals(#[source] io::Error),
    #[error("cannot read keys from the terminal: {0}")]
    Keys(#[source] io::Error),
    #[error("cannot draw on the terminal: {0}")]
    Draw(#[source] io::Error),
    #[error("the picture was not complete within {}s; {why}", .waited.as_secs())]
    Incomplete { waited: Duration, why: String },
}

impl crate::sys::error::Kinded for TopError {
    fn kind(&self) -> crate::sys::error::ErrorKind {
        use crate::sys::error::ErrorKind;
        match self {
            TopError::Incomplete { .. } => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        }
    }
}

/// Runs the view on this process's terminal until `q`, Ctrl-C or a stop
/// signal (SIGINT, SIGTERM, SIGHUP); the terminal is restored on every
/// way out.
pub async fn run(view: &View) -> Result<(), TopError> {
    let mut signals = StopSignals::install().map_err(TopError::Signals)?;
    let mut subscription = view.subscribe();
    let mut screen = Screen::enter().map_err(TopError::Terminal)?;
    let mut keys = EventStream::new();
    let mut app = App::default();
    let mut ages = tokio::time::interval(AGE_TICK);
    ages.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut dirty = true;
    let mut drawn = Instant::now() - FRAME;
    loop {
        tokio::select! {
            // first, so a steady stream of changes cannot hold frames back
            biased;
            _ = tokio::time::sleep_until(drawn + FRAME), if dirty => {
                screen.draw(&app).map_err(TopError::Draw)?;
                drawn = Instant::now();
                dirty = false;
            }
            _ = signals.recv() => break,
            event = keys.next() => match event {
                Some(Ok(Event::Key(key))) => {
                    if app.key(key) == Flow::Quit {
                        break;
                    }
                    dirty = true;
                }
                Some(Ok(Event::Resize(..))) => dirty = true,
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(TopError::Keys(err)),
                // the terminal is gone
                None => break,
            },
            update = subscription.next() => {
                app.update(update);
                dirty = true;
            }
            _ = ages.tick() => dirty |= !app.picture().slots.is_empty(),
        }
    }
    drop(screen);
    Ok(())
}

/// One frame as plain text (no colours, trailing blanks cut), `width` by
/// `height`, once every part of the picture was read; at most `wait`.
pub async fn once(
    view: &View,
    width: u16,
    height: u16,
    wait: Duration,
) -> Result<String, TopError> {
    let mut subscription = view.subscribe();
    let mut app = App::default();
    let loaded = async {
        loop {
            app.update(subscription.next().await);
            if app.picture().is_loaded() {
                break;
            }
        }
    };
    if tokio::time::timeout(wait, loaded).await.is_err() {
        let picture = subscription.snapshot();
        let down: Vec<String> = picture
            .sources
            .iter()
            .filter(|(_, h)| !h.ok)
            .map(|(name, h)| format!("{name}: {}", h.detail))
            .collect();
        let why = match down.is_empty() {
            true => "no part failed; try again".to_string(),
            false => down.join("; "),
        };
        return Err(TopError::Incomplete { waited: wait, why });
    }
    Ok(plain_frame(&app, width, height, OffsetDateTime::now_utc()))
}

/// Draws `app` into a buffer and returns its rows as text.
pub fn plain_frame(app: &App, width: u16, height: u16, now: OffsetDateTime) -> String {
    let mut terminal = match Terminal::new(TestBackend::new(width, height)) {
        Ok(terminal) => terminal,
        Err(never) => match never {},
    };
    if let Err(never) = terminal.draw(|frame| render::draw(frame, app, now)) {
        match never {}
    }
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        let row: String = (0..buffer.area.width)
            .filter_map(|x| buffer.cell((x, y)))
            .map(|cell| cell.symbol())
            .collect();
        text.push_str(row.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use time::format_description::well_known::Rfc3339;

    use super::*;
    use crate::oplog::{LogEntry, LogLevel};
    use crate::view::model::{LeaseView, SlotView};
    use crate::view::{Delta, Landing, Update};

    fn delta(seq: u64, delta: Delta) -> Update {
        Update::Delta {
            seq,
            delta: Arc::new(delta),
        }
    }

    #[test]
    fn a_frame_shows_each_part_and_escapes_what_records_carry() {
        let mut app = App::default();
        let lease = LeaseView {
            agent: "agent-7".into(),
            task: None,
            host: "h".into(),
            started_at: "2026-12-01T10:00:00Z".into(),
            last_renewed: "2026-12-01T10:00:00Z".into(),
            ttl_s: 60,
            pid: None,
        };
        app.update(delta(
            1,
            Delta::Slot {
                slot: "s-seven".into(),
                state: Some(SlotView {
                    slot: "s-seven".into(),
                    lease: Some(lease),
                }),
            },
        ));
        app.update(delta(
            2,
            Delta::Landing(Landing {
                ts: "2026-12-01T10:00:05Z".into(),
                slot: Some("s-seven".into()),
                agent: Some("agent-7".into()),
                task: None,
                commit: "0123456789abcdef".into(),
                subject: "Fix the parser".into(),
            }),
        ));
        let entry = LogEntry::lifecycle(LogLevel::Warn, "odd \x1b[2J title");
        app.update(delta(3, Delta::Log(Box::new(entry))));

        let now = OffsetDateTime::parse("2026-12-01T10:00:10Z", &Rfc3339).unwrap();
        let frame = plain_frame(&app, 120, 30, now);
        assert_eq!(frame.lines().count(), 30);
        for seen in [
            "s-seven",
            "agent-7",
            "10s",
            "Fix the parser",
            "0123456789",
            "WARN",
        ] {
            assert!(frame.contains(seen), "no {seen:?} in\n{frame}");
        }
        assert!(!frame.contains('\x1b'), "an escape reached the frame");
        assert!(frame.contains("odd \\u{1b}[2J title"), "{frame}");
    }

    #[test]
    fn only_rows_in_view_are_drawn_and_the_selection_stays_in_view() {
        use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
        let mut app = App::default();
        for i in 0..300 {
            let entry = LogEntry::lifecycle(LogLevel::Info, format!("line-{i:03}"));
            app.update(delta(i + 1, Delta::Log(Box::new(entry))));
        }
        let now = OffsetDateTime::now_utc();
        let frame = plain_frame(&app, 100, 40, now);
        assert!(
            frame.contains("line-299"),
            "the log's tail is in view:\n{frame}"
        );
        assert!(!frame.contains("line-000"), "{frame}");

        let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
        app.key(key(KeyCode::BackTab));
        app.key(key(KeyCode::Home));
        let frame = plain_frame(&app, 100, 40, now);
        assert!(
            frame.contains("line-000"),
            "the first row, selected:\n{frame}"
        );
        assert!(!frame.contains("line-299"), "{frame}");
        for _ in 0..150 {
            app.key(key(KeyCode::Down));
        }
        let frame = plain_frame(&app, 100, 40, now);
        assert!(
            frame.contains("line-150"),
            "the selected row is in view:\n{frame}"
        );
    }
}
