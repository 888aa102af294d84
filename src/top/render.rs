//! One frame of the terminal view, drawn from [`App`]: a header with the
//! health of each part, the slots and the task board side by side, trunk's
//! landings and hub.log below them, a key line, and the selected row's
//! detail over them when asked for.
//!
//! Everything a record carries (titles, subjects, log messages) is written
//! by whoever holds the workspace credential, so it reaches the screen with
//! its control characters escaped.

use std::borrow::Cow;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::app::{App, Pane};
use crate::oplog::{LogEntry, LogLevel};
use crate::view::model::{SOURCES, SlotView};
use crate::view::{Column, Landing};

/// Draws the whole view. `now` dates the lease ages.
pub fn draw(frame: &mut Frame, app: &App, now: OffsetDateTime) {
    // landings and log lines are long: each gets the full width
    let [header, top, landings, log, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Percentage(40),
        Constraint::Percentage(25),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [slots, tasks] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Fill(1)]).areas(top);

    frame.render_widget(health_line(app), header);
    draw_slots(frame, app, slots, now);
    draw_tasks(frame, app, tasks);
    draw_landings(frame, app, landings);
    draw_log(frame, app, log);
    frame.render_widget(
        Line::from(" tab/←→ pane  ↑↓ row  enter detail  esc close  q quit").style(dim()),
        keys,
    );
    if app.detail() {
        draw_detail(frame, app);
    }
}

fn dim() -> Style {
    Style::new().add_modifier(Modifier::DIM)
}

/// Record text as it is safe to put in a cell: controls escaped, tabs
/// as spaces.
fn clean(text: &str) -> String {
    crate::sys::shown::plain(text).replace('\t', " ")
}

fn health_line(app: &App) -> Line<'static> {
    let mut spans = vec![Span::styled(
        " bones top ",
        Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
    )];
    for name in SOURCES {
        let (mark, style) = match app.picture().sources.get(name) {
            Some(h) if h.ok => ("ok", Style::new().fg(Color::Green)),
            Some(_) => ("down", Style::new().fg(Color::Red)),
            None => ("…", dim()),
        };
        spans.push(Span::raw(format!("  {name} ")));
        spans.push(Span::styled(mark, style));
    }
    // the first part that is down says why, so the person knows what to do
    if let Some((name, h)) = app.picture().sources.iter().find(|(_, h)| !h.ok) {
        spans.push(Span::styled(
            format!("  {name}: {}", clean(&h.detail)),
            Style::new().fg(Color::Red),
        ));
    }
    Line::from(spans)
}

fn pane_block(app: &App, pane: Pane, counts: String) -> Block<'static> {
    let focused = app.focus() == pane;
    let style = if focused {
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    let marker = if focused { "▶ " } else { "" };
    Block::bordered()
        .border_style(style)
        .title(Line::from(format!(" {marker}{} {counts} ", pane.title())).style(style))
}

/// A pane's table: each column's heading and width, what its title says
/// after the pane's name, and its items with how each becomes a row.
///
/// Only the rows in view are made (a board of 5,000 tasks shows a few
/// dozen): the selected one, at the bottom when it is below the first
/// screenful; the log's last rows when none is selected there.
fn draw_table<'a, T>(
    frame: &mut Frame,
    app: &App,
    (pane, area): (Pane, Rect),
    columns: &[(&'static str, Constraint)],
    counts: String,
    items: impl ExactSizeIterator<Item = T>,
    to_row: impl FnMut(T) -> Row<'a>,
) {
    // two borders and the header row
    let visible = (area.height.saturating_sub(3) as usize).max(1);
    let selected = app.selected(pane);
    let first = match selected {
        Some(row) => (row + 1).saturating_sub(visible),
        None if pane == Pane::Log => items.len().saturating_sub(visible),
        None => 0,
    };
    let rows: Vec<Row> = items.skip(first).take(visible).map(to_row).collect();
    let mut state = TableState::default().with_selected(selected.map(|row| row - first));
    let highlight = if app.focus() == pane {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new().add_modifier(Modifier::UNDERLINED)
    };
    let table = Table::new(rows, columns.iter().map(|(_, width)| *width))
        .header(
            Row::new(columns.iter().map(|(name, _)| *name))
                .style(Style::new().add_modifier(Modifier::BOLD)),
        )
        .block(pane_block(app, pane, counts))
        .row_highlight_style(highlight);
    frame.render_stateful_widget(table, area, &mut state);
}

/// Seconds since an RFC 3339 time, when it parses.
fn age(since: &str, now: OffsetDateTime) -> Option<i64> {
    let at = OffsetDateTime::parse(since, &Rfc3339).ok()?;
    Some((now - at).whole_seconds().max(0))
}

/// `42s`, `5m`, `3h`, `2d`: short enough for a column.
fn short_age(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// A lease's age coloured by freshness: green while renewed within half
/// its time to live, yellow until it runs out, red after (the lease
/// watcher is about to take the slot back).
fn lease_age(slot: &SlotView, now: OffsetDateTime) -> Cell<'static> {
    let Some(lease) = &slot.lease else {
        return Cell::from("?").style(Style::new().fg(Color::Red));
    };
    let Some(secs) = age(&lease.last_renewed, now) else {
        return Cell::from("?");
    };
    let ttl = lease.ttl_s as i64;
    let color = if secs * 2 <= ttl {
        Color::Green
    } else if secs <= ttl {
        Color::Yellow
    } else {
        Color::Red
    };
    Cell::from(short_age(secs)).style(Style::new().fg(color))
}

fn draw_slots(frame: &mut Frame, app: &App, area: Rect, now: OffsetDateTime) {
    let picture = app.picture();
    let columns = [
        ("SLOT", Constraint::Max(16)),
        ("AGENT", Constraint::Max(14)),
        ("TASKS", Constraint::Max(14)),
        ("LEASE", Constraint::Length(5)),
        ("LAST LANDING", Constraint::Fill(1)),
    ];
    let counts = format!("({})", picture.slots.len());
    let items = picture.slots.values();
    draw_table(
        frame,
        app,
        (Pane::Slots, area),
        &columns,
        counts,
        items,
        |slot| {
            let agent = slot.lease.as_ref().map_or("(unreadable)", |l| &l.agent);
            let held: Vec<&str> = picture.held_by(slot).map(|t| t.id.as_str()).collect();
            let last = picture
                .last_landing(&slot.slot)
                .map(|l| l.subject.as_str())
                .unwrap_or("");
            Row::new(vec![
                Cell::from(clean(&slot.slot)),
                Cell::from(clean(agent)),
                Cell::from(clean(&held.join(","))),
                lease_age(slot, now),
                Cell::from(clean(last)),
            ])
        },
    );
}

fn column_style(column: Column) -> Style {
    match column {
        Column::Ready => Style::new().fg(Color::Green),
        Column::Claimed => Style::new().fg(Color::Yellow),
        Column::Blocked => Style::new().fg(Color::Red),
        Column::Closed => dim(),
    }
}

fn draw_tasks(frame: &mut Frame, app: &App, area: Rect) {
    let counts = app.column_counts();
    let summary = Column::ALL
        .iter()
        .zip(counts)
        .map(|(c, n)| format!("{} {n}", c.as_str()))
        .collect::<Vec<_>>()
        .join(" · ");
    let columns = [
        ("STATE", Constraint::Length(7)),
        ("ID", Constraint::Max(14)),
        ("HOLDER", Constraint::Max(16)),
        ("TITLE", Constraint::Fill(1)),
    ];
    let counts = format!("({summary})");
    let items = app.board().into_iter();
    draw_table(
        frame,
        app,
        (Pane::Tasks, area),
        &columns,
        counts,
        items,
        |(column, task)| {
            // who holds it, or what it waits for
            let who = match column {
                Column::Claimed => task.claimed_by.clone().unwrap_or_default(),
                Column::Blocked if !task.blocked_by.is_empty() => {
                    format!("after {}", task.blocked_by.join(","))
                }
                Column::Blocked => "parent closed".to_string(),
                Column::Closed => task.closed_reason.clone().unwrap_or_default(),
                Column::Ready => String::new(),
            };
            Row::new(vec![
                Cell::from(column.as_str()).style(column_style(column)),
                Cell::from(clean(&task.id)),
                Cell::from(clean(&who)),
                Cell::from(clean(&task.title)),
            ])
        },
    );
}

/// `HH:MM:SS` of an RFC 3339 UTC time, else the text as written.
fn clock(ts: &str) -> String {
    clean(ts.get(11..19).unwrap_or(ts))
}

fn short_commit(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

fn landing_by(landing: &Landing) -> String {
    landing
        .slot
        .as_deref()
        .or(landing.agent.as_deref())
        .map_or_else(|| "(land)".to_string(), clean)
}

fn draw_landings(frame: &mut Frame, app: &App, area: Rect) {
    let columns = [
        ("TIME", Constraint::Length(8)),
        ("BY", Constraint::Max(14)),
        ("TASK", Constraint::Max(12)),
        ("COMMIT", Constraint::Length(10)),
        ("SUBJECT", Constraint::Fill(1)),
    ];
    let counts = format!("(latest {})", app.picture().landings.len());
    let items = newest_first(app);
    draw_table(
        frame,
        app,
        (Pane::Landings, area),
        &columns,
        counts,
        items,
        |landing| {
            Row::new(vec![
                Cell::from(clock(&landing.ts)),
                Cell::from(landing_by(landing)),
                Cell::from(clean(landing.task.as_deref().unwrap_or(""))),
                Cell::from(clean(short_commit(&landing.commit))),
                Cell::from(clean(&landing.subject)),
            ])
        },
    );
}

/// Landings newest first, as the pane lists them.
fn newest_first(app: &App) -> impl ExactSizeIterator<Item = &Landing> {
    app.picture().landings.iter().rev()
}

fn level_style(level: LogLevel) -> Style {
    match level {
        LogLevel::Error => Style::new().fg(Color::Red),
        LogLevel::Warn => Style::new().fg(Color::Yellow),
        LogLevel::Debug => dim(),
        LogLevel::Info => Style::new(),
    }
}

/// A log entry's message and the fields a person reads it by, on one line.
fn log_text(entry: &LogEntry) -> String {
    let mut text = entry.msg.as_deref().map(clean).unwrap_or_default();
    for (key, value) in [
        ("slot", &entry.slot),
        ("task", &entry.task),
        ("err", &entry.err),
    ] {
        if let Some(value) = value {
            text.push_str(&format!("  {key}={}", clean(value)));
        }
    }
    text
}

fn draw_log(frame: &mut Frame, app: &App, area: Rect) {
    let columns = [
        ("TIME", Constraint::Length(8)),
        ("LEVEL", Constraint::Length(5)),
        ("MESSAGE", Constraint::Fill(1)),
    ];
    let log = &app.picture().log;
    let counts = format!("(last {})", log.len());
    draw_table(
        frame,
        app,
        (Pane::Log, area),
        &columns,
        counts,
        log.iter(),
        |entry| {
            Row::new(vec![
                Cell::from(clock(&entry.ts)),
                Cell::from(entry.level.as_str()).style(level_style(entry.level)),
                Cell::from(log_text(entry)),
            ])
        },
    );
}

/// The selected row's fields, one `name: value` line each.
fn detail_lines(app: &App) -> Vec<(Cow<'static, str>, String)> {
    let picture = app.picture();
    let pane = app.focus();
    let Some(row) = app.selected(pane) else {
        return Vec::new();
    };
    let opt = |v: &Option<String>| v.as_deref().map(clean).unwrap_or_default();
    match pane {
        Pane::Slots => {
            let Some(slot) = picture.slots.values().nth(row) else {
                return Vec::new();
            };
            let mut lines = vec![("slot".into(), clean(&slot.slot))];
            if let Some(l) = &slot.lease {
                lines.extend([
                    ("agent".into(), clean(&l.agent)),
                    ("joined for".into(), opt(&l.task)),
                    ("host".into(), clean(&l.host)),
                    (
                        "pid".into(),
                        l.pid.map(|p| p.to_string()).unwrap_or_default(),
                    ),
                    ("started".into(), clean(&l.started_at)),
                    ("renewed".into(), clean(&l.last_renewed)),
                    ("ttl".into(), format!("{}s", l.ttl_s)),
                ]);
            }
            let held: Vec<String> = picture
                .held_by(slot)
                .map(|t| format!("{} {}", clean(&t.id), clean(&t.title)))
                .collect();
            lines.push(("holds".into(), held.join("; ")));
            if let Some(l) = picture.last_landing(&slot.slot) {
                lines.push((
                    "last landing".into(),
                    format!("{} {}", short_commit(&l.commit), clean(&l.subject)),
                ));
            }
            lines
        }
        Pane::Tasks => {
            let board = app.board();
            let Some((column, t)) = board.get(row) else {
                return Vec::new();
            };
            vec![
                ("id".into(), clean(&t.id)),
                ("title".into(), clean(&t.title)),
                ("column".into(), column.as_str().to_string()),
                ("claimed by".into(), opt(&t.claimed_by)),
                ("blocked by".into(), clean(&t.blocked_by.join(", "))),
                ("parent".into(), opt(&t.parent)),
                ("labels".into(), clean(&t.labels.join(", "))),
                ("priority".into(), t.priority.to_string()),
                ("updated".into(), clean(&t.updated_at)),
                ("closed because".into(), opt(&t.closed_reason)),
            ]
        }
        Pane::Landings => {
            let Some(l) = newest_first(app).nth(row) else {
                return Vec::new();
            };
            vec![
                ("time".into(), clean(&l.ts)),
                ("slot".into(), opt(&l.slot)),
                ("agent".into(), opt(&l.agent)),
                ("task".into(), opt(&l.task)),
                ("commit".into(), clean(&l.commit)),
                ("subject".into(), clean(&l.subject)),
            ]
        }
        Pane::Log => {
            let Some(entry) = picture.log.get(row) else {
                return Vec::new();
            };
            // every field the entry has, as hub.log holds it
            let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(entry) else {
                return Vec::new();
            };
            fields
                .into_iter()
                .map(|(key, value)| {
                    let value = match value {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (Cow::Owned(key), clean(&value))
                })
                .collect()
        }
    }
}

fn draw_detail(frame: &mut Frame, app: &App) {
    let lines: Vec<Line> = detail_lines(app)
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| {
            Line::from(vec![
                Span::styled(
                    format!("{name:>15}: "),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(value),
            ])
        })
        .collect();
    let area = frame.area();
    let height = (lines.len() as u16 + 2).min(area.height);
    let width = area.width.saturating_sub(8).max(20).min(area.width);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::bordered()
                .title(format!(" {} detail (esc closes) ", app.focus().title()))
                .border_style(Style::new().fg(Color::Cyan)),
        ),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short() {
        assert_eq!(short_age(5), "5s");
        assert_eq!(short_age(125), "2m");
        assert_eq!(short_age(7300), "2h");
        assert_eq!(short_age(200_000), "2d");
    }

    #[test]
    fn controls_in_a_record_never_reach_the_terminal() {
        let shown = clean("fix\x1b[2J\tparser");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains("parser"));
    }
}
