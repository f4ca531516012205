//! ADF → wiki markup, as Jira Cloud renders a v3 (ADF) body for its v2 webhooks and REST.
//!
//! Written from the rules of Atlassian's own converter, `@atlaskit/editor-wikimarkup-transformer`
//! (its `encoder/`, read in the atlassian-frontend mirror; nothing copied). What matters for
//! rollgate's comments, quirks included:
//! - blocks are separated by a blank line; a hard break is a newline;
//! - `h3. Title`, `*strong*`, `_em_`, `-strike-`, `{{code}}`, `[text|href]`, marks wrapped in
//!   that order (em, strike, strong, link, code), outside any leading/trailing spaces;
//! - bullet / ordered items are `* ` / `# ` lines, nested lists extend the prefix (`**`, `*#`);
//! - a task list has no wiki form: each task item becomes `* text`, a DONE one `* -text-`
//!   (struck through), repeated for every inline node of the item; nested lists add a `*`;
//! - an expand becomes its title in bold, an empty line, then its content; a nested expand
//!   (and any node without a wiki form) is kept as `{adf:display=block}<json>{adf}`;
//! - tables are `||head||` / `|cell|` rows, an empty cell a single space;
//! - code blocks are `{code:lang}…{code}` for languages the wiki knows, else `{noformat}`;
//! - in text, `[~`, macro openers (`{code`, `{quote`, …) and `!file!` / `[^file]` are escaped.

use serde_json::Value;

const CODE_LANGUAGES: &[&str] = &[
    "actionscript", "ada", "applescript", "bash", "c", "c#", "c++", "cpp", "css", "erlang", "go", "groovy", "haskell", "html",
    "java", "javascript", "js", "json", "lua", "none", "nyan", "objc", "perl", "php", "python", "r", "rainbow", "ruby", "scala",
    "sh", "sql", "swift", "visualbasic", "xml", "yaml",
];

const MACROS: &[&str] = &["{adf", "{anchor", "{code", "{quote", "{noformat", "{panel", "{color", "{loremipsum"];

/// The wiki text of an ADF document (or of any ADF block node).
pub fn render(node: &Value) -> String {
    block(node)
}

fn children(node: &Value) -> impl Iterator<Item = &Value> {
    node["content"].as_array().into_iter().flatten()
}

fn block(node: &Value) -> String {
    let each = |sep: &str| children(node).map(block).collect::<Vec<_>>().join(sep);
    match node["type"].as_str().unwrap_or("") {
        "doc" => each("\n\n"),
        "paragraph" => inlines(node),
        "heading" => format!("h{}. {}", node["attrs"]["level"].as_u64().unwrap_or(1), inlines(node)),
        "bulletList" => children(node).map(|i| list_item(i, "*")).collect::<Vec<_>>().join("\n"),
        "orderedList" => children(node).map(|i| list_item(i, "#")).collect::<Vec<_>>().join("\n"),
        "taskList" => task_list(node, 1),
        "blockquote" => format!("{{quote}}{}{{quote}}", each("\n\n")),
        "rule" => "----".into(),
        "codeBlock" => code_block(node),
        "table" => table(node).unwrap_or_else(|| unknown(node)),
        "expand" => {
            let mut parts = vec![format!("*{}*", node["attrs"]["title"].as_str().unwrap_or("")), String::new()];
            parts.extend(children(node).map(block));
            parts.join("\n")
        }
        _ => unknown(node),
    }
}

fn unknown(node: &Value) -> String {
    format!("{{adf:display=block}}\n{node}\n{{adf}}")
}

fn code_block(node: &Value) -> String {
    let text: String = children(node).filter_map(|t| t["text"].as_str()).collect();
    match node["attrs"]["language"].as_str().filter(|l| CODE_LANGUAGES.contains(l)) {
        Some(lang) => format!("{{code:{lang}}}{text}{{code}}"),
        None => format!("{{noformat}}{text}{{noformat}}"),
    }
}

fn list_item(item: &Value, prefix: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut buffer: Vec<String> = Vec::new();
    for n in children(item) {
        match n["type"].as_str().unwrap_or("") {
            "paragraph" => buffer.push(inlines(n)),
            "codeBlock" => buffer.push(code_block(n)),
            "bulletList" | "orderedList" => {
                if !buffer.is_empty() {
                    out.push(format!("{prefix} {}", buffer.join("\n")));
                    buffer.clear();
                }
                let nested = block(n);
                let lines = nested.lines().map(|l| if l.starts_with(['*', '#']) { format!("{prefix}{l}") } else { l.to_string() });
                out.push(lines.collect::<Vec<_>>().join("\n"));
            }
            _ => buffer.push(unknown(n)),
        }
    }
    if !buffer.is_empty() {
        out.push(format!("{prefix} {}", buffer.join("\n")));
    }
    out.join("\n")
}

fn task_list(node: &Value, depth: usize) -> String {
    let prefix = "*".repeat(depth);
    let mut lines = Vec::new();
    for n in children(node) {
        if n["type"] == "taskList" {
            lines.push(task_list(n, depth + 1));
            continue;
        }
        let done = n["attrs"]["state"] == "DONE";
        let mut line = String::new();
        for inline in children(n) {
            let text = inline_node(inline);
            line.push_str(&if done { format!("{prefix} -{text}-") } else { format!("{prefix} {text}") });
        }
        lines.push(line);
    }
    lines.join("\n")
}

fn table(node: &Value) -> Option<String> {
    let mut rows = Vec::new();
    for row in children(node) {
        let mut line = String::new();
        let mut sep = "|";
        for cell in children(row) {
            let attrs = &cell["attrs"];
            if attrs["colspan"].as_u64().is_some_and(|n| n != 1) || attrs["rowspan"].as_u64().is_some_and(|n| n != 1) {
                return None; // merged cells have no wiki form
            }
            sep = if cell["type"] == "tableHeader" { "||" } else { "|" };
            let text = children(cell).map(block).collect::<Vec<_>>().join("\n");
            let text = text.trim();
            line.push_str(sep);
            line.push_str(if text.is_empty() { " " } else { text });
        }
        line.push_str(sep);
        rows.push(line);
    }
    Some(rows.join("\n"))
}

fn inlines(node: &Value) -> String {
    children(node).map(inline_node).collect()
}

fn inline_node(n: &Value) -> String {
    match n["type"].as_str().unwrap_or("") {
        "text" => text(n),
        "hardBreak" => "\n".into(),
        "mention" => format!("[~accountid:{}]", n["attrs"]["id"].as_str().unwrap_or("")),
        "emoji" => n["attrs"]["shortName"].as_str().unwrap_or("").to_string(),
        _ => format!("{{adf:display=inline}}{n}{{adf}}"),
    }
}

fn text(n: &Value) -> String {
    let marks: Vec<&Value> = n["marks"].as_array().into_iter().flatten().collect();
    let has = |t: &str| marks.iter().find(|m| m["type"] == t).copied();
    let raw = n["text"].as_str().unwrap_or("");
    let mut s = if has("code").is_some() { raw.to_string() } else { escape(raw) };
    if has("em").is_some() {
        s = match s.strip_prefix("— ") {
            Some(cited) => wrap(cited, "??"),
            None => wrap(&s, "_"),
        };
    }
    if has("strike").is_some() {
        s = wrap(&s, "-");
    }
    if has("strong").is_some() {
        s = wrap(&s, "*");
    }
    if let Some(link) = has("link") {
        s = format!("[{s}|{}]", link["attrs"]["href"].as_str().unwrap_or(""));
    }
    if has("code").is_some() {
        s = format!("{{{{{s}}}}}");
    }
    s
}

/// Puts the mark inside any leading and trailing whitespace; whitespace alone stays bare.
fn wrap(s: &str, token: &str) -> String {
    if s.trim().is_empty() {
        return s.to_string();
    }
    let start = s.len() - s.trim_start().len();
    let end = s.trim_end().len();
    format!("{}{token}{}{token}{}", &s[..start], &s[start..end], &s[end..])
}

/// Escapes what the wiki parser would read as a mention, a macro, an image or an attachment.
fn escape(raw: &str) -> String {
    let mut s = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("[~") || MACROS.iter().any(|m| rest.starts_with(m)) {
            s.push('\\');
        }
        s.push(c);
        rest = &rest[c.len_utf8()..];
    }
    escape_media_group(&escape_media(&s))
}

/// `!name!` (no spaces inside) → `\!name\!`.
fn escape_media(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('!') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let run = after.find([' ', '!']).unwrap_or(after.len());
        if run > 0 && after[run..].starts_with('!') {
            out.push_str(&format!("\\!{}\\!", &after[..run]));
            rest = &after[run + 1..];
        } else {
            out.push('!');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `[^name]` (no spaces inside) → `\[^name\]`.
fn escape_media_group(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("[^") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let run = &after[..after.find(' ').unwrap_or(after.len())];
        match run.rfind(']').filter(|&j| j > 0) {
            Some(j) => {
                out.push_str(&format!("\\[^{}\\]", &run[..j]));
                rest = &after[j + 1..];
            }
            None => {
                out.push_str("[^");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}
