//! The instructions block bones keeps in `CLAUDE.md`, `AGENTS.md` or
//! `GEMINI.md`: the loop an agent follows, between two marker comments so
//! that a later run replaces only this block and never the user's text.

use std::path::Path;

use super::files::IntegrateError;

/// The first line of bones' block.
pub const BEGIN: &str = "<!-- bones:begin -->";
/// The last line of bones' block.
pub const END: &str = "<!-- bones:end -->";

/// The block's text, markers included, ending in a newline.
pub fn block() -> String {
    format!(
        "{BEGIN}
<!-- Written by `bones integrate`; a later run replaces everything up to bones:end. -->
## Working with other agents: bones

Several agents share this repository through bones. Each works in its own
**slot** (an isolated checkout) and lands commits on one shared trunk.
When the session starts, bones takes a slot for it and says which (the
`bones` MCP server's tools do the same as the commands below).

1. `bones tasks claim --next` takes the next ready task and prints its id
   (exit 7: nothing is ready).
2. Work in the slot's checkout only (`bones swarm cwd` prints its path).
3. `bones swarm commit -m \"What changed\"` lands your work on trunk. Exit 5:
   it conflicts with trunk; run `bones swarm sync`, fix the conflict
   markers, commit again (exit 8 while markers remain).
4. `bones tasks close ID --reason done` when the task is done.
5. `bones share --type learning \"...\"` tells the other agents what you
   learned or decided; `bones feed --prime` shows what they shared.

Never edit the main checkout while you hold a slot. The slot is closed
when the session ends; uncommitted work is saved, never lost.
{END}
"
    )
}

/// `text` (a missing file: empty) with bones' block put in: in place of
/// the one already there, else appended after a blank line.
pub fn merge(text: Option<&str>, path: &Path) -> Result<String, IntegrateError> {
    let text = text.unwrap_or_default();
    let block = block();
    let Some(start) = find_line(text, BEGIN, 0) else {
        if text.is_empty() {
            return Ok(block);
        }
        let mut out = text.to_string();
        if !out.ends_with('\n') {
            out.push('\n');
        }
        if !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(&block);
        return Ok(out);
    };
    let Some(end) = find_line(text, END, start) else {
        return Err(IntegrateError::Markers {
            path: path.to_path_buf(),
            begin: BEGIN,
            end: END,
        });
    };
    let after_end = text[end..].find('\n').map_or(text.len(), |n| end + n + 1);
    Ok(format!("{}{block}{}", &text[..start], &text[after_end..]))
}

/// The byte offset of the first line at or after `from` that is `marker`
/// (surrounding blanks allowed).
fn find_line(text: &str, marker: &str, from: usize) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if offset >= from && line.trim() == marker {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_is_appended_once_and_replaced_in_place() {
        let path = Path::new("CLAUDE.md");
        let user = "# My project\n\nRun `make test`.";
        let once = merge(Some(user), path).unwrap();
        assert!(once.starts_with("# My project\n\nRun `make test`.\n\n<!-- bones:begin -->"));
        assert_eq!(merge(Some(&once), path).unwrap(), once);
        let edited = once.replace("Several agents", "SEVERAL agents") + "\n## Mine, after\n";
        let again = merge(Some(&edited), path).unwrap();
        assert_eq!(again, format!("{once}\n## Mine, after\n"));
        assert_eq!(merge(None, path).unwrap(), block());
    }

    #[test]
    fn a_block_without_its_end_is_refused() {
        let text = format!("intro\n{BEGIN}\nhalf a block\n");
        assert!(matches!(
            merge(Some(&text), Path::new("AGENTS.md")),
            Err(IntegrateError::Markers { .. })
        ));
    }
}
