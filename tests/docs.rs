//! The operator docs show things people copy: check them.

mod support;

use std::fs;
use std::process::Command;

/// The fenced block after the line `` ```LANG `` in `text`.
fn fenced<'a>(text: &'a str, lang: &str) -> &'a str {
    let open = format!("```{lang}\n");
    let start = text.find(&open).expect("no such block") + open.len();
    let end = start + text[start..].find("```").expect("unclosed block");
    &text[start..end]
}

#[test]
fn the_systemd_unit_in_operations_md_is_valid() {
    let doc = fs::read_to_string("docs/operations.md").unwrap();
    let unit = fenced(&doc, "ini");
    // what the unit relies on: the foreground hub, stopped by SIGTERM alone
    assert!(unit.contains("ExecStart=%h/.cargo/bin/bones hub start"));
    assert!(!unit.contains("--detach"));
    assert!(unit.contains("KillMode=mixed"));
    // an absolute working directory from the instance name
    assert!(unit.contains("WorkingDirectory=%f"));
    // After= the target that wants it would be an ordering cycle
    assert!(!unit.contains("After=default.target"));
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped the systemd-analyze check: it is not installed");
        return;
    };
    assert!(version.status.success());
    let tmp = tempfile::tempdir().unwrap();
    // %h is the home directory: give it the bones binary where the unit says
    let home = tmp.path().join("home");
    fs::create_dir_all(home.join(".cargo/bin")).unwrap();
    std::os::unix::fs::symlink(support::BONES, home.join(".cargo/bin/bones")).unwrap();
    let workspace = tmp.path().join("ws");
    fs::create_dir_all(&workspace).unwrap();
    // the instance name exactly as the page says to make it
    let escaped = Command::new("systemd-escape")
        .arg("--path")
        .arg(&workspace)
        .output()
        .unwrap();
    assert!(escaped.status.success());
    let escaped = String::from_utf8(escaped.stdout).unwrap();
    let path = tmp
        .path()
        .join(format!("bones-hub@{}.service", escaped.trim()));
    let template = tmp.path().join("bones-hub@.service");
    fs::write(&template, unit).unwrap();
    fs::copy(&template, &path).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("HOME", &home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
