//! Shell completions and manual pages come from the clap definitions: the
//! bash script loads and completes, and the man page renders and names
//! every verb.

mod support;

use std::process::Command;

use support::{BONES, stderr, stdout};

/// Runs a bash script with `bones completions bash` loaded.
fn bash_with_completions(script: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <(\"$BONES\" completions bash) || exit 9\n{script}"
        ))
        .env("BONES", BONES)
        .output()
        .unwrap();
    assert!(out.status.success(), "bash failed: {}", stderr(&out));
    stdout(&out)
}

/// What the generated completion function offers for the words typed so far.
fn complete(words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let script = format!(
        "COMP_WORDS=({line}); COMP_CWORD={cword}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}\n\
         _bones bones '{current}' '{previous}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        cword = words.len() - 1,
        current = words[words.len() - 1],
        previous = words[words.len() - 2],
    );
    bash_with_completions(&script)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The top-level verbs, as `bones --help` lists them.
fn verbs() -> Vec<String> {
    let out = Command::new(BONES).arg("--help").output().unwrap();
    let help = stdout(&out);
    let verbs: Vec<String> = help
        .lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.is_empty())
        // a verb's line is indented by two; a wrapped summary by more
        .filter_map(|line| line.strip_prefix("  "))
        .filter(|line| !line.starts_with(' '))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|verb| *verb != "help")
        .map(str::to_string)
        .collect();
    assert!(verbs.len() > 5, "no verbs in --help: {help}");
    verbs
}

#[test]
fn the_bash_completion_loads_and_completes_verbs() {
    let registered = bash_with_completions("complete -p bones");
    assert!(registered.contains("-F _bones bones"), "{registered}");
    assert_eq!(complete(&["bones", "hu"]), ["hub"]);
    let hub_verbs = complete(&["bones", "hub", "re"]);
    for verb in ["reap", "repair", "restore"] {
        assert!(hub_verbs.iter().any(|v| v == verb), "{verb}: {hub_verbs:?}");
    }
    let options = complete(&["bones", "hub", "status", "--a"]);
    assert_eq!(options, ["--all"]);
}

#[test]
fn zsh_and_fish_scripts_are_generated() {
    for (shell, marker) in [("zsh", "#compdef bones"), ("fish", "complete -c bones")] {
        let out = Command::new(BONES)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains(marker), "{shell}: no {marker:?}");
    }
    let out = Command::new(BONES)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn the_man_page_renders_and_names_every_verb() {
    let page = Command::new(BONES).arg("man").output().unwrap();
    assert!(page.status.success(), "{}", stderr(&page));
    // groff is installed by scripts/setup.sh; -ww reports every warning
    let mut groff = Command::new("groff")
        .args(["-man", "-Tutf8", "-P-cbou", "-ww"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("groff runs (scripts/setup.sh installs groff-base)");
    use std::io::Write;
    groff.stdin.take().unwrap().write_all(&page.stdout).unwrap();
    let rendered = groff.wait_with_output().unwrap();
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    assert_eq!(stderr(&rendered), "", "groff warned");
    let text = stdout(&rendered);
    assert!(text.contains("NAME") && text.contains("SYNOPSIS"), "{text}");
    for verb in verbs() {
        assert!(
            text.contains(&format!("bones-{verb}(1)")),
            "the man page does not name {verb}:\n{text}"
        );
    }
}

#[test]
fn man_dir_writes_a_page_per_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    let out = Command::new(BONES)
        .args(["man", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "pages go to files, not stdout");
    for page in [
        "bones.1",
        "bones-hub.1",
        "bones-hub-reap.1",
        "bones-tasks-claim.1",
    ] {
        assert!(dir.join(page).is_file(), "no {page}");
    }
    for verb in verbs() {
        assert!(
            dir.join(format!("bones-{verb}.1")).is_file(),
            "no page for {verb}"
        );
    }
}
