//! What the terminal view holds between frames: its own copy of the
//! picture, kept current by the view model's updates, and where the person
//! is in it (the pane in focus, the row selected in each, a detail open).
//! Plain data, so keys and updates are tested without a terminal.

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::view::model::TaskView;
use crate::view::{Column, Snapshot, Update};

/// The four panes, in the order Tab visits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Slots,
    Tasks,
    Landings,
    Log,
}

impl Pane {
    pub const ALL: [Pane; 4] = [Pane::Slots, Pane::Tasks, Pane::Landings, Pane::Log];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Slots => "Slots",
            Pane::Tasks => "Tasks",
            Pane::Landings => "Landings",
            Pane::Log => "hub.log",
        }
    }

    fn index(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    fn step(self, by: isize) -> Pane {
        let n = Pane::ALL.len() as isize;
        Pane::ALL[(self.index() as isize + by).rem_euclid(n) as usize]
    }
}

/// What a key asks of the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

/// Rows a page key moves by.
const PAGE: usize = 10;

/// The view's state.
#[derive(Debug, Default)]
pub struct App {
    picture: Snapshot,
    focus: Option<Pane>,
    /// The selected row of each pane, by [`Pane::ALL`]'s order; `None`
    /// follows the newest (the log's tail, the latest landing).
    selected: [Option<usize>; 4],
    detail: bool,
}

impl App {
    pub fn picture(&self) -> &Snapshot {
        &self.picture
    }

    pub fn focus(&self) -> Pane {
        self.focus.unwrap_or(Pane::Slots)
    }

    pub fn selected(&self, pane: Pane) -> Option<usize> {
        let rows = self.rows(pane);
        self.selected[pane.index()].map(|i| i.min(rows.saturating_sub(1)))
    }

    /// Whether the selected row's detail is shown.
    pub fn detail(&self) -> bool {
        self.detail && self.selected(self.focus()).is_some()
    }

    /// Takes in one update from the view model.
    pub fn update(&mut self, update: Update) {
        match update {
            Update::Snapshot(picture) => self.picture = Arc::unwrap_or_clone(picture),
            Update::Delta { seq, delta } => self.picture.apply(seq, &delta),
        }
    }

    /// How many rows a pane has.
    pub fn rows(&self, pane: Pane) -> usize {
        let p = &self.picture;
        match pane {
            Pane::Slots => p.slots.len(),
            Pane::Tasks => p.tasks.len(),
            Pane::Landings => p.landings.len(),
            Pane::Log => p.log.len(),
        }
    }

    /// The task board in the order it is shown: by column (ready, claimed,
    /// blocked, closed), then highest priority, then id.
    pub fn board(&self) -> Vec<(Column, &TaskView)> {
        let p = &self.picture;
        let mut board: Vec<(Column, &TaskView)> =
            p.tasks.values().map(|t| (p.column(t), t)).collect();
        board.sort_by_key(|(column, task)| {
            let rank = Column::ALL.iter().position(|c| c == column);
            (rank, -task.priority, task.id.as_str())
        });
        board
    }

    /// How many tasks sit in each column, in [`Column::ALL`]'s order.
    pub fn column_counts(&self) -> [usize; 4] {
        let mut counts = [0; 4];
        for task in self.picture.tasks.values() {
            let column = self.picture.column(task);
            if let Some(i) = Column::ALL.iter().position(|c| *c == column) {
                counts[i] += 1;
            }
        }
        counts
    }

    /// Handles one key press.
    pub fn key(&mut self, key: KeyEvent) -> Flow {
        if key.kind == KeyEventKind::Release {
            return Flow::Continue;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('q') => return Flow::Quit,
            // raw mode turns Ctrl-C into a key, not a SIGINT
            KeyCode::Char('c') if ctrl => return Flow::Quit,
            KeyCode::Esc => self.detail = false,
            KeyCode::Enter => self.detail = !self.detail,
            KeyCode::Tab | KeyCode::Right | KeyCode::Char('l') => self.switch(1),
            KeyCode::BackTab | KeyCode::Left | KeyCode::Char('h') => self.switch(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::PageDown => self.move_by(PAGE as isize),
            KeyCode::PageUp => self.move_by(-(PAGE as isize)),
            KeyCode::Home | KeyCode::Char('g') => self.move_to(Some(0)),
            KeyCode::End | KeyCode::Char('G') => {
                let last = self.rows(self.focus()).checked_sub(1);
                self.move_to(last)
            }
            _ => {}
        }
        Flow::Continue
    }

    fn switch(&mut self, by: isize) {
        self.focus = Some(self.focus().step(by));
        self.detail = false;
    }

    fn move_by(&mut self, by: isize) {
        let pane = self.focus();
        let rows = self.rows(pane);
        if rows == 0 {
            return;
        }
        let from = match (self.selected(pane), pane) {
            (Some(i), _) => i as isize,
            // nothing selected in the log: its tail is in view
            (None, Pane::Log) => rows as isize,
            (None, _) => -1,
        };
        let to = (from + by).clamp(0, rows as isize - 1) as usize;
        self.move_to(Some(to));
    }

    fn move_to(&mut self, row: Option<usize>) {
        let pane = self.focus();
        self.selected[pane.index()] = row;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::Delta;
    use crate::view::model::{LeaseView, SlotView};

    fn press(app: &mut App, code: KeyCode) -> Flow {
        app.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn slot(name: &str) -> Update {
        Update::Delta {
            seq: 1,
            delta: Arc::new(Delta::Slot {
                slot: name.into(),
                state: Some(SlotView {
                    slot: name.into(),
                    lease: Some(LeaseView {
                        agent: "a".into(),
                        task: None,
                        host: "h".into(),
                        started_at: String::new(),
                        last_renewed: String::new(),
                        ttl_s: 30,
                        pid: None,
                    }),
                }),
            }),
        }
    }

    #[test]
    fn tab_cycles_the_panes_both_ways() {
        let mut app = App::default();
        assert_eq!(app.focus(), Pane::Slots);
        press(&mut app, KeyCode::Tab);
        assert_eq!(app.focus(), Pane::Tasks);
        press(&mut app, KeyCode::BackTab);
        press(&mut app, KeyCode::BackTab);
        assert_eq!(app.focus(), Pane::Log);
        press(&mut app, KeyCode::Right);
        assert_eq!(app.focus(), Pane::Slots);
    }

    #[test]
    fn arrows_move_within_the_rows_there_are() {
        let mut app = App::default();
        press(&mut app, KeyCode::Down);
        assert_eq!(
            app.selected(Pane::Slots),
            None,
            "no rows, nothing to select"
        );
        app.update(slot("s1"));
        app.update(slot("s2"));
        press(&mut app, KeyCode::Down);
        assert_eq!(app.selected(Pane::Slots), Some(0));
        for _ in 0..5 {
            press(&mut app, KeyCode::Down);
        }
        assert_eq!(app.selected(Pane::Slots), Some(1));
        press(&mut app, KeyCode::Home);
        assert_eq!(app.selected(Pane::Slots), Some(0));
        assert_eq!(
            app.selected(Pane::Tasks),
            None,
            "each pane keeps its own row"
        );
    }

    #[test]
    fn a_removed_row_keeps_the_selection_in_range() {
        let mut app = App::default();
        app.update(slot("s1"));
        app.update(slot("s2"));
        press(&mut app, KeyCode::End);
        assert_eq!(app.selected(Pane::Slots), Some(1));
        app.update(Update::Delta {
            seq: 3,
            delta: Arc::new(Delta::Slot {
                slot: "s2".into(),
                state: None,
            }),
        });
        assert_eq!(app.selected(Pane::Slots), Some(0));
        assert_eq!(app.picture().seq, 3);
    }

    #[test]
    fn enter_opens_a_detail_escape_closes_it_q_quits() {
        let mut app = App::default();
        app.update(slot("s1"));
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Enter);
        assert!(app.detail());
        assert_eq!(press(&mut app, KeyCode::Esc), Flow::Continue);
        assert!(!app.detail());
        assert_eq!(press(&mut app, KeyCode::Char('q')), Flow::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.key(ctrl_c), Flow::Quit);
    }
}
