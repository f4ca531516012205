//! Slash-commands in comment bodies, with the command names the shipped pack declares
//! (`[commands]` in policies/playbook.toml).
//!
//! Properties, beyond "no panic":
//! - the caps hold: at most MAX_COMMANDS commands, unknown lines and line errors each;
//! - a command is one of the known names, on a line of the body, in body order, and its line
//!   is at most MAX_LINE_CHARS characters; echoed text is clipped to MAX_LINE_CHARS + "…";
//! - `added` of a body against itself is empty, against an empty body is every command (an
//!   edit that changes nothing runs nothing; a new comment runs all it holds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollgate::policy::commands::{added, parse, Parsed, MAX_COMMANDS, MAX_LINE_CHARS};
use std::sync::OnceLock;

fn known() -> &'static [&'static str] {
    static KNOWN: OnceLock<Vec<&'static str>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let table: toml::Table = toml::from_str(include_str!("../../policies/playbook.toml")).expect("playbook.toml parses");
        let commands = table["commands"].as_table().expect("[commands] is a table");
        let names: Vec<&'static str> = commands.keys().map(|k| &*k.clone().leak()).collect();
        assert!(names.contains(&"decide"), "{names:?}");
        names
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else { return };
    let p = parse(body, known());
    assert!(p.commands.len() <= MAX_COMMANDS && p.unknown.len() <= MAX_COMMANDS && p.errors.len() <= MAX_COMMANDS);
    let lines = body.lines().count();
    let mut last = 0;
    for c in &p.commands {
        assert!(known().contains(&c.name.as_str()), "{:?} is not a known command", c.name);
        assert!(c.line > last && c.line <= lines, "line {} after {last} of {lines}", c.line);
        last = c.line;
        assert!(c.text.chars().count() <= MAX_LINE_CHARS);
        assert!(c.text.starts_with('/'));
    }
    for u in &p.unknown {
        assert!(u.line >= 1 && u.line <= lines);
        assert!(u.text.chars().count() <= MAX_LINE_CHARS + 1);
        if let Some(s) = &u.suggestion {
            assert!(known().contains(&s.as_str()) && s != &u.name);
        }
    }
    for e in &p.errors {
        assert!(e.line >= 1 && e.line <= lines);
        assert!(e.text.chars().count() <= MAX_LINE_CHARS + 1);
    }
    assert!(added(&p, &p).is_empty(), "an unchanged body added commands");
    assert_eq!(added(&Parsed::default(), &p), p.commands);
});
