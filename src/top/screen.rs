//! The terminal while the view owns it: raw mode and the alternate screen
//! from [`Screen::enter`] until the screen is dropped, whichever way the
//! view ends (`q`, a stop signal, an error); a panic restores it too,
//! through the hook [`ratatui::try_init`] installs.

use std::io;

use ratatui::DefaultTerminal;
use time::OffsetDateTime;

use super::app::App;
use super::render;

/// The terminal in raw mode on the alternate screen.
pub struct Screen {
    terminal: DefaultTerminal,
}

impl Screen {
    /// Takes over the terminal.
    pub fn enter() -> io::Result<Screen> {
        match ratatui::try_init() {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(err) => {
                // raw mode may be on although the alternate screen failed
                ratatui::restore();
                Err(err)
            }
        }
    }

    /// Draws one frame of `app`.
    pub fn draw(&mut self, app: &App) -> io::Result<()> {
        let now = OffsetDateTime::now_utc();
        self.terminal
            .draw(|frame| render::draw(frame, app, now))
            .map(drop)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        // the terminal itself shows the cursor again when dropped after this
        ratatui::restore();
    }
}
