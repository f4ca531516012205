//! Slash-commands in issue comments (`/decide accept sprint=2026-W48`), read generically.
//!
//! This module knows no command names: the caller passes the names the policy file declares, so
//! a new playbook command never needs a Rust change. It only turns text into name + args +
//! options, and reports the lines it could not use (typo, broken quote) so the bot can answer
//! them instead of silently doing nothing.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

/// At most this many commands are read from one body: a pasted log or a spam comment must not
/// turn into hundreds of actions. The same bound caps `unknown` and `errors`.
pub const MAX_COMMANDS: usize = 50;
/// Longer command lines are refused, not read: no real command needs this much, and the text
/// is echoed back in replies (so it is also clipped to this length there).
pub const MAX_LINE_CHARS: usize = 1000;

/// One command line, e.g. `/decide accept sprint=2026-W48 dev-release=2026-11-25`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Command {
    /// Lowercased, without the slash: `/Decide` and `/decide` are the same command.
    pub name: String,
    /// Positional words, case kept; a quoted string is one word, without its quotes.
    pub args: Vec<String>,
    /// `key=value` pairs; keys lowercased, values keep their case; the last repeat wins.
    pub options: BTreeMap<String, String>,
    /// 1-based line in the body, and the command line as written, trimmed: for replies.
    pub line: usize,
    pub text: String,
}

/// A line that looks like a command but is not one of `known`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unknown {
    pub name: String,
    pub line: usize,
    pub text: String,
    /// The closest known name when this is plausibly a typo, so the reply can say "did you mean".
    pub suggestion: Option<String>,
}

/// A known command whose line cannot be read; it is reported, never half-run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineError {
    pub line: usize,
    pub text: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Parsed {
    pub commands: Vec<Command>,
    pub unknown: Vec<Unknown>,
    pub errors: Vec<LineError>,
}

/// Reads every command in a comment body. `known` is the policy's list of command names
/// (compared case-insensitively).
///
/// Only text a reader sees as the author's own words counts, as Markdown renders the body:
/// lines in fenced or indented code, in `>` quotes (with the lazy lines that continue a quoted
/// paragraph), in HTML blocks (`<pre>`, `<details>`, a comment) and in tables are examples,
/// history or layout, not orders; `<!-- ... -->` inside a line is dropped from it. A command
/// starts its line with `/` and a letter, and its name ends at whitespace, so `/usr/bin`,
/// `/ 3` and `see /docs/x` are prose. One command per line; the rest of the line (including
/// any `|`) is its arguments.
pub fn parse(body: &str, known: &[&str]) -> Parsed {
    let mut parsed = Parsed::default();
    let prose = Prose::of(body);
    let mut start = 0;
    for (index, raw) in body.split_inclusive('\n').enumerate() {
        let at = start;
        start += raw.len();
        if parsed.commands.len() >= MAX_COMMANDS {
            break;
        }
        let line = index + 1;
        let raw = raw.strip_suffix('\n').unwrap_or(raw);
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let Some(visible) = prose.line(at, raw) else { continue };
        let text = visible.trim();
        let Some((name, rest)) = command_name(text) else { continue };
        let name = name.to_ascii_lowercase();
        if !known.iter().any(|k| k.eq_ignore_ascii_case(&name)) {
            if parsed.unknown.len() < MAX_COMMANDS {
                let suggestion = suggest(&name, known);
                parsed.unknown.push(Unknown { name, line, text: clip(text), suggestion });
            }
            continue;
        }
        let too_long = text.char_indices().nth(MAX_LINE_CHARS).is_some();
        let read = if too_long { Err("line too long") } else { tokenize(rest) };
        match read {
            Ok((args, options)) => parsed.commands.push(Command { name, args, options, line, text: text.into() }),
            Err(message) if parsed.errors.len() < MAX_COMMANDS => {
                parsed.errors.push(LineError { line, text: clip(text), message: message.into() })
            }
            Err(_) => {}
        }
    }
    parsed
}

/// Where a body's prose is, as byte ranges of the source: what Markdown (GitHub's flavour:
/// tables, task lists, strikethrough) renders as paragraph, list-item or heading text outside
/// quotes, code, HTML blocks and tables, and the inline `<!-- ... -->` comments to leave out.
/// Both lists are in source order and do not overlap within themselves.
struct Prose {
    text: Vec<Range<usize>>,
    hidden: Vec<Range<usize>>,
}

impl Prose {
    fn of(body: &str) -> Prose {
        let options = Options::ENABLE_TABLES | Options::ENABLE_TASKLISTS | Options::ENABLE_STRIKETHROUGH;
        let (mut text, mut hidden) = (Vec::new(), Vec::new());
        // Open containers whose content is never a command (quotes, code, HTML blocks, tables).
        let mut shut = 0usize;
        for (event, range) in Parser::new_ext(body, options).into_offset_iter() {
            match event {
                Event::Start(tag) if excludes(&tag) => shut += 1,
                Event::End(end) if excludes_end(&end) => shut = shut.saturating_sub(1),
                Event::Text(_) if shut == 0 => text.push(range),
                Event::InlineHtml(html) if html.starts_with("<!--") => hidden.push(range),
                _ => {}
            }
        }
        Prose { text, hidden }
    }

    /// The line (starting at byte `at` of the body) without its hidden parts, when its first
    /// visible character is prose; None when the line is not prose.
    fn line(&self, at: usize, raw: &str) -> Option<String> {
        let mut hidden = self.hidden[self.hidden.partition_point(|r| r.end <= at)..].iter().peekable();
        let mut visible = String::with_capacity(raw.len());
        let mut first = None;
        for (i, c) in raw.char_indices() {
            let pos = at + i;
            while hidden.next_if(|r| r.end <= pos).is_some() {}
            if hidden.peek().is_some_and(|r| r.start <= pos) {
                continue;
            }
            if first.is_none() && !c.is_whitespace() {
                first = Some(pos);
            }
            visible.push(c);
        }
        let first = first?;
        let text = &self.text[self.text.partition_point(|r| r.end <= first)..];
        text.first().is_some_and(|r| r.contains(&first)).then_some(visible)
    }
}

fn excludes(tag: &Tag<'_>) -> bool {
    matches!(tag, Tag::BlockQuote(_) | Tag::CodeBlock(_) | Tag::HtmlBlock | Tag::Table(_))
}

fn excludes_end(tag: &TagEnd) -> bool {
    matches!(tag, TagEnd::BlockQuote(_) | TagEnd::CodeBlock | TagEnd::HtmlBlock | TagEnd::Table)
}

/// Commands in `new` that were not already in `old`, in `new`'s order. A webhook for an edited
/// comment carries the whole body again; only what the edit added may run, so fixing a typo in
/// the prose runs nothing. Commands are compared by name, args and options (not line or
/// spelling of quotes) as a multiset: writing `/promote` a second time adds one.
pub fn added(old: &Parsed, new: &Parsed) -> Vec<Command> {
    fn key(c: &Command) -> (&str, &[String], &BTreeMap<String, String>) {
        (&c.name, &c.args, &c.options)
    }
    let mut before: HashMap<_, usize> = HashMap::new();
    for c in &old.commands {
        *before.entry(key(c)).or_default() += 1;
    }
    // A command is new unless an unused copy of it is left in `old`; using one takes it away.
    new.commands
        .iter()
        .filter(|c| before.get_mut(&key(c)).filter(|n| **n > 0).map(|n| *n -= 1).is_none())
        .cloned()
        .collect()
}

/// Command names and option keys: `[A-Za-z][A-Za-z0-9_-]*`.
fn is_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic()) && s.chars().all(is_name_char)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// `/name rest` -> (name, rest), or None when the line is not a command.
fn command_name(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix('/')?;
    let end = rest.find(|c| !is_name_char(c)).unwrap_or(rest.len());
    let (name, after) = rest.split_at(end);
    let ends_at_space = after.is_empty() || after.starts_with(char::is_whitespace);
    (is_name(name) && ends_at_space).then_some((name, after))
}

/// Smart quotes count as plain ones: people paste commands from docs and chat apps.
fn is_quote(c: char) -> bool {
    matches!(c, '"' | '\u{201C}' | '\u{201D}')
}

/// Splits the text after the name into positional args and `key=value` options. Quotes group
/// words (`\"` and `\\` escape inside them); a token is an option only when its unquoted start
/// is `key=`, so `"a=b"` stays a positional word.
fn tokenize(rest: &str) -> Result<(Vec<String>, BTreeMap<String, String>), &'static str> {
    let (mut args, mut options) = (Vec::new(), BTreeMap::new());
    let mut chars = rest.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok((args, options));
        }
        // `eq`: where an unquoted `=` ends a possible key; `quoted`: a quote was seen in this word.
        let (mut word, mut eq, mut quoted) = (String::new(), None::<usize>, false);
        while let Some(c) = chars.next() {
            if c.is_whitespace() {
                break;
            }
            if !is_quote(c) {
                if c == '=' && eq.is_none() && !quoted {
                    eq = Some(word.len());
                }
                word.push(c);
                continue;
            }
            quoted = true;
            loop {
                match chars.next() {
                    None => return Err("unterminated quote"),
                    Some('\\') => word.push(chars.next_if(|&n| is_quote(n) || n == '\\').unwrap_or('\\')),
                    Some(q) if is_quote(q) => break,
                    Some(other) => word.push(other),
                }
            }
        }
        match eq.filter(|&at| is_name(&word[..at])) {
            Some(at) => {
                options.insert(word[..at].to_ascii_lowercase(), word[at + 1..].to_string());
            }
            None => args.push(word),
        }
    }
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_LINE_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// The closest known name within edit distance 2 (and shorter than the name itself, so `/x`
/// does not "mean" `/lane`); ties go to the first in `known`.
fn suggest(name: &str, known: &[&str]) -> Option<String> {
    let len = name.chars().count();
    // The length filter first: it is cheap, and keeps a huge pasted name out of `distance`.
    let near = known.iter().map(|k| k.to_ascii_lowercase()).filter(|k| k.chars().count().abs_diff(len) <= 2);
    let scored = near.map(|k| (distance(name, &k), k)).filter(|&(d, _)| d <= 2 && d < len);
    scored.min_by_key(|&(d, _)| d).map(|(_, k)| k)
}

/// Damerau-Levenshtein distance (optimal string alignment): a swapped pair of letters, the most
/// common typo (`decied`), costs 1 instead of 2.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            if i == 0 || j == 0 {
                d[i][j] = i + j; // distance from or to the empty prefix
                continue;
            }
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &[
        "rollout", "lane", "promote", "decide", "artifact", "pilot", "wave", "pause", "resume", "rollback",
        "escalation", "explain",
    ];

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn strs(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    /// Parses a body that must hold exactly one valid command.
    fn one(body: &str) -> Command {
        let p = parse(body, KNOWN);
        assert!(p.unknown.is_empty() && p.errors.is_empty() && p.commands.len() == 1, "{body}: {p:?}");
        p.commands.into_iter().next().unwrap()
    }

    fn check(line: &str, name: &str, args: &[&str], options: &[(&str, &str)]) {
        let (name, args, options, text) = (name.into(), strs(args), opts(options), line.into());
        assert_eq!(one(line), Command { name, args, options, line: 1, text }, "{line}");
    }

    #[test]
    fn playbook_commands_parse_to_name_args_and_options() {
        check("/rollout 3", "rollout", &["3"], &[]);
        check("/lane A", "lane", &["A"], &[]);
        check("/promote", "promote", &[], &[]);
        let accept = [("sprint", "2026-W48"), ("dev-release", "2026-11-25")];
        check("/decide accept sprint=2026-W48 dev-release=2026-11-25", "decide", &["accept"], &accept);
        check("/decide decline reason=\"duplicate of #12\"", "decide", &["decline"], &[("reason", "duplicate of #12")]);
        let park = [("revisit", "2026-12-15"), ("trigger", "after migration X")];
        check("/decide park revisit=2026-12-15 trigger=\"after migration X\"", "decide", &["park"], &park);
        check("/artifact done release-note", "artifact", &["done", "release-note"], &[]);
        check("/artifact undo release-note", "artifact", &["undo", "release-note"], &[]);
        check("/pilot client \"Adani Karaikal\"", "pilot", &["client", "Adani Karaikal"], &[]);
        check("/pilot retro go", "pilot", &["retro", "go"], &[]);
        check("/wave start 2", "wave", &["start", "2"], &[]);
        check("/pause trigger=\"error rate above 2%\"", "pause", &[], &[("trigger", "error rate above 2%")]);
        check("/resume", "resume", &[], &[]);
        check("/rollback reason=\"GPS drift at Karaikal\"", "rollback", &[], &[("reason", "GPS drift at Karaikal")]);
        check("/escalation note=\"client called CS\"", "escalation", &[], &[("note", "client called CS")]);
        check("/explain", "explain", &[], &[]);
    }

    #[test]
    fn multi_line_comment_with_prose_around_commands() {
        let body = "Thanks for the triage, looks good to me.\r\n\
                    \r\n  /decide accept sprint=2026-W48 dev-release=2026-11-25  \r\n\
                    We ship it with the next train; see /docs/rollout.md for the steps.\r\n\
                    /artifact done release-note\r\n\r\nCheers";
        let p = parse(body, KNOWN);
        assert!(p.unknown.is_empty() && p.errors.is_empty(), "{p:?}");
        let got: Vec<_> = p.commands.iter().map(|c| (c.line, c.name.as_str(), c.text.as_str())).collect();
        let decide = "/decide accept sprint=2026-W48 dev-release=2026-11-25";
        assert_eq!(got, [(3, "decide", decide), (5, "artifact", "/artifact done release-note")]);
    }

    #[test]
    fn commands_in_code_quotes_and_html_comments_are_ignored() {
        let body = "Last time someone wrote:\n> /rollback reason=\"old\"\n\
                    ```text\n/pause trigger=\"in a fence\"\n``\n/resume\n```\n\
                    ~~~\n/promote\n~~~\n    /explain\n\t/explain\n\
                    ```/rollout 3``` is inline code, not a fence\n\
                    <!-- /wave start 2 -->\n<!--\n/pilot retro go\n-->\n/lane A <!-- for now -->";
        let p = parse(body, KNOWN);
        assert!(p.unknown.is_empty() && p.errors.is_empty() && p.commands.len() == 1, "{p:?}");
        assert_eq!((p.commands[0].line, p.commands[0].args.clone()), (18, strs(&["A"])));
    }

    /// The lines of `body` that hold commands, with their names.
    fn lines_of(body: &str) -> Vec<(usize, String)> {
        let p = parse(body, KNOWN);
        assert!(p.unknown.is_empty() && p.errors.is_empty(), "{body:?}: {p:?}");
        p.commands.into_iter().map(|c| (c.line, c.name)).collect()
    }

    fn at(pairs: &[(usize, &str)]) -> Vec<(usize, String)> {
        pairs.iter().map(|(l, n)| (*l, n.to_string())).collect()
    }

    #[test]
    fn a_lazy_line_after_a_quote_belongs_to_the_quote() {
        // Markdown continues a quoted paragraph on the next line without `>`: it is quoted.
        let body = "> Last week someone wrote\n/rollback reason=\"old\"\n\n/promote";
        assert_eq!(lines_of(body), at(&[(4, "promote")]));
        let nested = "> > deep\n/rollout 4\n> /lane A\n\nok\n/explain";
        assert_eq!(lines_of(nested), at(&[(6, "explain")]));
        // A blank line ends the quote; the line after it is the author's again.
        assert_eq!(lines_of("> quoted\n\n/resume"), at(&[(3, "resume")]));
    }

    #[test]
    fn html_blocks_hide_their_lines_even_across_blank_lines_of_a_pre() {
        let pre = "<pre>\n/promote\n\n/rollout 4\n</pre>\n/explain";
        assert_eq!(lines_of(pre), at(&[(6, "explain")]));
        let details = "<details>\n/promote\n</details>\n\n/resume";
        assert_eq!(lines_of(details), at(&[(5, "resume")]), "a <details> block runs to its blank line");
        // Inside <details>, Markdown separated by blank lines is rendered text, so it counts.
        let open = "<details><summary>log</summary>\n\n/explain\n\n</details>";
        assert_eq!(lines_of(open), at(&[(3, "explain")]));
        let comment = "Thanks <!--\n/pilot retro go\n--> /resume\n/lane A <!-- for now -->";
        assert_eq!(lines_of(comment), at(&[(3, "resume"), (4, "lane")]));
    }

    #[test]
    fn code_tables_and_list_items_follow_markdown() {
        // An unclosed fence runs to the end of the body, as GitHub renders it.
        assert_eq!(lines_of("/explain\n```\n/promote\n"), at(&[(1, "explain")]));
        assert_eq!(lines_of("~~~~\n/promote\n~~~\n/resume\n~~~~\n/explain"), at(&[(6, "explain")]));
        // Four spaces after a blank line is code; inside a paragraph it is a wrapped line.
        assert_eq!(lines_of("\n    /promote\nok\n    /explain"), at(&[(4, "explain")]));
        // A line after a table is one of its rows.
        assert_eq!(lines_of("| a |\n|---|\n/promote\n\n/explain"), at(&[(5, "explain")]));
        // A list item's own line starts with its marker; its continuation line is text.
        assert_eq!(lines_of("- /promote\n- item\n  /explain"), at(&[(3, "explain")]));
    }

    #[test]
    fn line_numbers_count_every_line_of_the_body() {
        let body = "a\r\n\r\n```\r\n/promote\r\n```\r\n> q\r\n/rollout 4\r\n\r\n/explain\r\n";
        assert_eq!(lines_of(body), at(&[(9, "explain")]));
        let p = parse("> /frobnicate\n/decied x\n\n/frobnicate\n/pause trigger=\"x", KNOWN);
        let unknown: Vec<_> = p.unknown.iter().map(|u| u.line).collect();
        assert_eq!((unknown, p.errors[0].line), (vec![4], 5));
    }

    #[test]
    fn slash_without_a_name_is_prose() {
        let p = parse("/ 3\n//\n/usr/bin/env bash\nsee /docs/x\n/3 things\n/explain?", KNOWN);
        assert_eq!(p, Parsed::default());
    }

    #[test]
    fn typo_is_unknown_with_suggestion() {
        let p = parse("ok\n/decied accept", KNOWN);
        assert!(p.commands.is_empty() && p.errors.is_empty());
        let text = "/decied accept".into();
        assert_eq!(p.unknown, [Unknown { name: "decied".into(), line: 2, text, suggestion: Some("decide".into()) }]);
        assert_eq!(parse("/PAUS", KNOWN).unknown[0].suggestion.as_deref(), Some("pause"));
    }

    #[test]
    fn unrelated_name_is_unknown_without_suggestion() {
        let p = parse("/frobnicate", KNOWN);
        let text = "/frobnicate".into();
        assert_eq!(p.unknown, [Unknown { name: "frobnicate".into(), line: 1, text, suggestion: None }]);
        assert_eq!(parse("/x", KNOWN).unknown[0].suggestion, None);
    }

    #[test]
    fn unterminated_quote_is_a_line_error() {
        let p = parse("/pause trigger=\"error rate above 2%\n/resume", KNOWN);
        let text = "/pause trigger=\"error rate above 2%".into();
        assert_eq!(p.errors, [LineError { line: 1, text, message: "unterminated quote".into() }]);
        assert_eq!(p.commands.len(), 1, "the next line is still read");
    }

    #[test]
    fn quotes_escapes_case_and_repeated_keys() {
        let c = one("/PILOT client \u{201C}Adani Karaikal\u{201D}");
        assert_eq!((c.name.as_str(), c.args), ("pilot", strs(&["client", "Adani Karaikal"])));
        let c = one(r#"/escalation Note="she said \"now\"" Note=later "a=b" """#);
        assert_eq!((c.args, c.options), (strs(&["a=b", ""]), opts(&[("note", "later")])));
        let c = one(r#"/escalation note="she said \"now\" \\o/""#);
        assert_eq!(c.options["note"], r#"she said "now" \o/"#);
    }

    #[test]
    fn pipe_is_not_a_separator() {
        let c = one("/wave start 2 | /pause trigger=x");
        assert_eq!((c.name.as_str(), c.args), ("wave", strs(&["start", "2", "|", "/pause"])));
        assert_eq!(c.options, opts(&[("trigger", "x")]));
    }

    #[test]
    fn body_and_line_limits() {
        let p = parse(&"/promote\n".repeat(MAX_COMMANDS + 10), KNOWN);
        assert_eq!(p.commands.len(), MAX_COMMANDS);
        let p = parse(&format!("/pause trigger={}", "x".repeat(MAX_LINE_CHARS)), KNOWN);
        assert!(p.commands.is_empty());
        assert_eq!(p.errors[0].message, "line too long");
        assert_eq!(p.errors[0].text.chars().count(), MAX_LINE_CHARS + 1, "clipped, with an ellipsis");
    }

    #[test]
    fn added_returns_only_the_new_command_of_an_edit() {
        let old = parse("LGTM\n/decide accept sprint=2026-W48", KNOWN);
        let new = parse("LGTM\n/decide accept sprint=2026-W48\n/artifact done release-note", KNOWN);
        let got: Vec<_> = added(&old, &new).into_iter().map(|c| (c.line, c.name, c.args)).collect();
        assert_eq!(got, [(3, "artifact".to_string(), strs(&["done", "release-note"]))]);
        // A repeat counts: writing `/promote` again in an edit asks for a second one.
        let got = added(&parse("/promote", KNOWN), &parse("/promote\n/promote", KNOWN));
        assert_eq!(got.iter().map(|c| c.line).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn added_is_empty_when_an_edit_only_fixes_prose() {
        let old = parse("Lgtm, shiping it.\n/pause trigger=\"error rate above 2%\"", KNOWN);
        // Lines move and the quotes become smart quotes: still the same command.
        let new = parse("LGTM, shipping it.\n\n/pause trigger=\u{201C}error rate above 2%\u{201D}\nThanks!", KNOWN);
        assert_eq!(added(&old, &new), []);
    }
}
