//! Text people wrote (titles, client names, command arguments, issue-form answers), made safe
//! to put into a bot comment. The bot's comment is Markdown that rollgate reads back (its
//! hidden marker, its `<!-- box:ID -->` task boxes) and that the tracker renders under the
//! bot's account, so a person's text must not be able to:
//! - start a line: a newline in a title would become a new line of the comment, e.g. a second
//!   `- [x] … <!-- box:release-note -->` line that hides the PM's tick on the real box;
//! - open or close structure: `</details>`, `<!--`, a code span, a link, a table cell;
//! - ping anyone: `@org/team` written by a person must not notify the team from the bot's
//!   account (the rule's own mentions, such as the configured PMs, are written by the rule).
//!
//! Mentions are defused with a zero-width joiner after the `@` (`@\u{200D}org/team`) rather
//! than a code span: it works in every context the text lands in (prose, headings, table
//! cells, and the fenced email templates, where a code span would print its backticks into
//! the email), it leaves the name readable, and GitHub's mention syntax needs a letter or digit
//! right after the `@`, so the name is no longer a mention. Jira's mentions are `[~name]` in
//! wiki markup, whose `[` is escaped here and again by the Jira renderer.
//!
//! Three shapes, for three places in a comment:
//! - [`inline`]: Markdown prose (a sentence, a heading, a table cell, a list item);
//! - [`code_span`]: the text shown exactly, as inline code (a command line echoed in a reply);
//! - [`one_line`]: inside a fenced code block, where Markdown is not read and escapes would
//!   show; only the line structure needs keeping there.

/// The text on one line: line breaks (CR, LF, NEL, the Unicode line and paragraph separators,
/// vertical tab, form feed) and other control characters become a space, and a run of line
/// breaks one space. Nothing else changes, so `" "` stays a space (a task box is `[ ]`).
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_break = false;
    for c in text.chars() {
        let breaks = matches!(c, '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}');
        if breaks {
            if !in_break {
                out.push(' ');
            }
            in_break = true;
            continue;
        }
        in_break = false;
        out.push(if c.is_control() && c != '\t' { ' ' } else { c });
    }
    out
}

/// A person's text as Markdown prose that renders as the same characters: on one line, with
/// every character that could start inline structure escaped (`\*`, `\[`, `\|`, a `_` that is
/// not inside a word, …), `<`, `>`
/// and `&` as entities (so no `<!--`, `-->` or tag appears in the source at all, not even an
/// escaped one that a line-based reader would still find), a line-start marker (`#`, `-`, `+`,
/// `=`, `1.`) escaped in case a template puts the text first on a line, and mentions defused.
pub fn inline(text: &str) -> String {
    let text = one_line(text);
    let mut out = String::with_capacity(text.len() + 8);
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            // Inside a word (`snake_case`, a URL's path) `_` cannot start or end emphasis:
            // left bare, so names read as written and autolinks stay whole.
            '_' if prev.is_some_and(char::is_alphanumeric) && text[i + 1..].starts_with(char::is_alphanumeric) => out.push('_'),
            '\\' | '`' | '*' | '_' | '~' | '[' | ']' | '|' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '@' => {
                out.push('@');
                // GitHub reads a mention only after a non-word character: `a@b.com` is not one.
                if !prev.is_some_and(|p| p.is_alphanumeric() || p == '_') {
                    out.push('\u{200D}');
                }
            }
            '#' | '-' | '+' | '=' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            '.' | ')' if ordered_marker(&text, i) => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
        prev = Some(c);
    }
    out
}

/// `1.` or `3)` at the start, followed by a space or the end: an ordered-list marker.
fn ordered_marker(text: &str, at: usize) -> bool {
    let digits = &text[..at];
    let after = text[at + 1..].chars().next();
    !digits.is_empty() && digits.len() <= 9 && digits.bytes().all(|b| b.is_ascii_digit()) && after.is_none_or(|c| c == ' ' || c == '\t')
}

/// A person's text as inline code, shown exactly as written (on one line): the backtick run
/// around it is longer than any run inside, and a space pads it when it starts or ends with a
/// backtick, so the text cannot close the span. Inside code, Markdown, HTML and mentions are
/// not read.
pub fn code_span(text: &str) -> String {
    let text = one_line(text);
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    if text.is_empty() {
        return "` `".into(); // `` would be a lone backtick pair, not a span
    }
    // CommonMark strips one space from each end when both are spaces (unless the text is all
    // spaces): pad in that case too, so the text keeps its own spaces.
    let all_spaces = text.bytes().all(|b| b == b' ');
    let both_spaces = text.starts_with(' ') && text.ends_with(' ') && !all_spaces;
    let pad = if text.starts_with('`') || text.ends_with('`') || both_spaces { " " } else { "" };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// Makes every `{{ value }}` of a policy template safe for people's text: auto-escaping with
/// [`inline`], and three filters for the other places a value can go:
/// - `|fenced`: inside a fenced code block, [`one_line`] only (escapes would show there);
/// - `|code`: as inline code, [`code_span`];
/// - `|safe` (MiniJinja's own): Markdown the rules built themselves, such as a rendered
///   template or a step with code spans, and the template's own fallback literals.
///
/// Escaping every value by default, rather than marking the people's ones, means a new
/// template or a new variable is safe without anyone remembering to be careful; forgetting a
/// `|safe` shows stray backslashes, forgetting an escape would have let a title write Markdown.
pub fn escape_people_text_in(env: &mut minijinja::Environment<'_>) {
    use minijinja::{AutoEscape, Value};
    env.set_auto_escape_callback(|_| AutoEscape::Custom(MARKDOWN));
    env.set_formatter(|out, state, value| {
        let markdown = state.auto_escape() == AutoEscape::Custom(MARKDOWN);
        let text = value.to_string(); // as MiniJinja prints it: undefined is blank
        let shown = if markdown && !value.is_safe() { inline(&text) } else { text };
        out.write_str(&shown).map_err(minijinja::Error::from)
    });
    env.add_filter("fenced", |v: Value| Value::from_safe_string(one_line(&v.to_string())));
    env.add_filter("code", |v: Value| Value::from_safe_string(code_span(&v.to_string())));
}

/// The auto-escape mode name of policy templates.
const MARKDOWN: &str = "markdown";

#[cfg(test)]
#[path = "people_text_tests.rs"]
mod tests;
