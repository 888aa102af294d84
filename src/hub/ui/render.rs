//! The picture as HTML, rendered on the server: what a browser without
//! JavaScript shows, and what the script replaces as events arrive. The
//! script (`assets/app.js`) builds the same elements from the same JSON.

use std::fmt::Write;

use crate::view::{Column, Snapshot};

/// How many tasks a column lists; the rest are counted.
pub const COLUMN_ROWS: usize = 200;
/// How many hub.log lines the page lists, newest first.
pub const LOG_ROWS: usize = 200;

/// Text made safe to place in HTML (element content or a quoted attribute).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn or_dash(text: Option<&str>) -> String {
    escape(text.unwrap_or("–"))
}

/// Every section of the page.
pub fn page(s: &Snapshot) -> String {
    let mut out = String::new();
    health(s, &mut out);
    slots(s, &mut out);
    board(s, &mut out);
    landings(s, &mut out);
    feed(s, &mut out);
    log(s, &mut out);
    out
}

fn health(s: &Snapshot, out: &mut String) {
    out.push_str("<section id=\"health\"><h2>Health</h2><ul>");
    for (name, part) in &s.sources {
        let _ = write!(
            out,
            "<li class=\"{}\">{} {}</li>",
            if part.ok { "ok" } else { "failed" },
            escape(name),
            escape(if part.ok { "ok" } else { &part.detail })
        );
    }
    out.push_str("</ul></section>");
}

fn slots(s: &Snapshot, out: &mut String) {
    let _ = write!(
        out,
        "<section id=\"slots\"><h2>Slots ({})</h2><table><thead><tr><th>slot</th><th>agent</th><th>tasks held</th><th>renewed</th><th>changes</th><th>ahead / behind</th><th>last landing</th></tr></thead><tbody>",
        s.slots.len()
    );
    for slot in s.slots.values() {
        let held: Vec<String> = s.held_by(slot).map(|t| escape(&t.id)).collect();
        let landing = s
            .last_landing(&slot.slot)
            .map(|l| format!("{} {}", escape(&l.ts), escape(&l.subject)));
        let (agent, renewed) = match &slot.lease {
            Some(lease) => (escape(&lease.agent), escape(&lease.last_renewed)),
            None => ("(unreadable lease)".to_string(), "–".to_string()),
        };
        let git = s.slot_git.get(&slot.slot).cloned().unwrap_or_default();
        let count = |n: Option<usize>| n.map_or("–".to_string(), |n| n.to_string());
        let held = if held.is_empty() {
            "–".to_string()
        } else {
            held.join(", ")
        };
        let landing = landing.unwrap_or_else(|| "–".to_string());
        // cells cut to their column's width keep the whole text as a title
        let _ = write!(
            out,
            "<tr data-slot=\"{0}\"><td title=\"{0}\">{0}</td><td title=\"{1}\">{1}</td><td title=\"{2}\">{2}</td><td>{3}</td><td class=\"changes\">{4}</td><td class=\"ahead-behind\">{5} / {6}</td><td class=\"last-landing\" title=\"{7}\">{7}</td></tr>",
            escape(&slot.slot),
            agent,
            held,
            renewed,
            count(git.changes),
            count(git.ahead),
            count(git.behind),
            landing,
        );
    }
    out.push_str("</tbody></table></section>");
}

fn board(s: &Snapshot, out: &mut String) {
    out.push_str("<section id=\"board\"><h2>Tasks</h2><div class=\"columns\">");
    for column in Column::ALL {
        let tasks: Vec<_> = s.tasks.values().filter(|t| s.column(t) == column).collect();
        let _ = write!(
            out,
            "<div class=\"column\" data-column=\"{0}\"><h3>{0} ({1})</h3><ul>",
            column.as_str(),
            tasks.len()
        );
        for task in tasks.iter().take(COLUMN_ROWS) {
            let mut extra = String::new();
            if let Some(holder) = &task.claimed_by {
                let _ = write!(extra, " <span class=\"holder\">{}</span>", escape(holder));
            }
            if !task.blocked_by.is_empty() {
                let _ = write!(
                    extra,
                    " <span class=\"blockers\">blocked by {}</span>",
                    escape(&task.blocked_by.join(", "))
                );
            }
            let _ = write!(
                out,
                "<li data-task=\"{0}\"><code>{0}</code> {1}{2}</li>",
                escape(&task.id),
                escape(&task.title),
                extra
            );
        }
        if tasks.len() > COLUMN_ROWS {
            let _ = write!(out, "<li>… {} more</li>", tasks.len() - COLUMN_ROWS);
        }
        out.push_str("</ul></div>");
    }
    out.push_str("</div></section>");
}

fn landings(s: &Snapshot, out: &mut String) {
    out.push_str("<section id=\"landings\"><h2>Trunk</h2><table><thead><tr><th>time</th><th>subject</th><th>slot</th><th>agent</th><th>task</th><th>commit</th></tr></thead><tbody>");
    for landing in s.landings.iter().rev() {
        let _ = write!(
            out,
            "<tr data-commit=\"{5}\"><td>{0}</td><td title=\"{1}\">{1}</td><td title=\"{2}\">{2}</td><td title=\"{3}\">{3}</td><td title=\"{4}\">{4}</td><td><a href=\"/ui/diff/{5}\"><code>{6}</code></a></td></tr>",
            escape(&landing.ts),
            escape(&landing.subject),
            or_dash(landing.slot.as_deref()),
            or_dash(landing.agent.as_deref()),
            or_dash(landing.task.as_deref()),
            escape(&landing.commit),
            escape(&landing.commit.chars().take(12).collect::<String>()),
        );
    }
    out.push_str("</tbody></table></section>");
}

fn feed(s: &Snapshot, out: &mut String) {
    out.push_str("<section id=\"feed\"><h2>Feed</h2><ul>");
    for entry in s.feed.iter().rev() {
        let _ = write!(
            out,
            "<li><span class=\"kind\">{}</span> {} <span class=\"origin\">{} {}</span></li>",
            escape(entry.entry.kind.as_str()),
            escape(&entry.entry.text),
            escape(&entry.entry.origin),
            escape(&entry.entry.created_at)
        );
    }
    out.push_str("</ul></section>");
}

fn log(s: &Snapshot, out: &mut String) {
    out.push_str("<section id=\"log\"><h2>hub.log</h2><ul>");
    for entry in s.log.iter().rev().take(LOG_ROWS) {
        let level = entry.level.as_str();
        let _ = write!(
            out,
            "<li class=\"level-{}\"><span class=\"ts\">{}</span> <b>{}</b> {}{}</li>",
            level.to_ascii_lowercase(),
            escape(&entry.ts),
            level,
            or_dash(entry.msg.as_deref()),
            entry
                .err
                .as_deref()
                .map(|e| format!(" <span class=\"err\">{}</span>", escape(e)))
                .unwrap_or_default()
        );
    }
    out.push_str("</ul></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_swarm_cannot_become_markup() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }
}
