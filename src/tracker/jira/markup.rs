//! Markdown → Jira: Atlassian Document Format (Cloud, REST v3) and wiki markup (Data Center, REST v2).
//!
//! rollgate writes every comment once, in GitHub-flavoured Markdown (the MiniJinja templates in
//! `policies/templates`), so Jira gets the same words as GitHub without a second set of templates.
//! The Markdown is parsed once with pulldown-cmark into a small tree (`Block` / `Inline`) holding only
//! what the templates produce; each renderer walks that tree and enforces its own limits (ADF's
//! schema, wiki markup's lack of nesting) in one place.
//!
//! HTML comments (`<!-- box:x -->`, rollgate's hidden markers) are dropped: Jira renders neither
//! comments nor raw HTML, so code reading a Jira comment back must match on its visible text
//! (`plain_text`), not on markers. Soft line breaks become line breaks, not spaces: GitHub renders
//! newlines in issue comments as line breaks, and the templates were written against that.

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag};
use serde_json::{json, Value};

/// Markdown to an ADF document: {"type":"doc","version":1,"content":[...]}.
pub fn to_adf(markdown: &str) -> Value {
    let content = Adf { ids: 0 }.blocks(&parse(markdown), Ctx::Top);
    json!({ "type": "doc", "version": 1, "content": content })
}

/// Markdown to Jira wiki markup (Jira Data Center / REST v2 and Cloud's v2 webhooks).
pub fn to_wiki(markdown: &str) -> String {
    wiki_blocks(&parse(markdown))
}

/// Plain text of a comment body for matching: ADF JSON (a serde_json::Value object) or a wiki/markdown string, flattened to text.
///
/// Quotes and code keep their meaning in Markdown terms (`> ` lines, fenced blocks), so the
/// command parser, which follows Markdown, never runs a command someone only quoted or showed
/// as code: Jira's `{quote}`, `bq.`, `{code}` and `{noformat}`, and ADF's blockquote and codeBlock.
pub fn plain_text(body: &Value) -> String {
    match body {
        Value::String(s) => wiki_blocks_as_markdown(s),
        Value::Object(_) => {
            let mut out = String::new();
            flatten(body, &mut out);
            out.trim().to_string()
        }
        _ => String::new(),
    }
}

// ---------------------------------------------------------------- tree

#[derive(Debug, Clone, Copy, PartialEq)]
enum Style { Strong, Em, Strike }

#[derive(Debug, Clone)]
enum Inline { Text(String), Code(String), Styled(Style, Vec<Inline>), Link(String, Vec<Inline>), Break }

#[derive(Debug, Clone)]
enum Block {
    Heading(u8, Vec<Inline>),
    Para(Vec<Inline>),
    /// `Some(start)` for an ordered list.
    List(Option<u64>, Vec<Item>),
    Quote(Vec<Block>),
    /// Language (maybe empty), text.
    Code(String, String),
    /// Header cells, body rows.
    Table(Vec<Vec<Inline>>, Vec<Vec<Vec<Inline>>>),
    /// `<details><summary>title</summary> ... </details>`.
    Expand(String, Vec<Block>),
    Rule,
}

/// `task`: `Some(done)` for a task-list item.
#[derive(Debug, Clone)]
struct Item { task: Option<bool>, blocks: Vec<Block> }

fn text(s: impl Into<String>) -> Inline { Inline::Text(s.into()) }

// ---------------------------------------------------------------- parsing

fn parse(md: &str) -> Vec<Block> {
    let opts = Options::ENABLE_TABLES | Options::ENABLE_TASKLISTS | Options::ENABLE_STRIKETHROUGH;
    Reader { events: Parser::new_ext(md, opts), pending_task: None, in_comment: false }.blocks().0
}

struct Reader<'a> {
    events: Parser<'a>,
    /// A task marker met inside a paragraph (loose list items), claimed by the enclosing item.
    pending_task: Option<bool>,
    /// Inside an inline `<!--` whose `-->` has not come yet.
    in_comment: bool,
}

/// Open `<details>` sections as (summary, blocks); index 0 is the enclosing container itself.
/// `<details>` and `</details>` arrive as separate HTML blocks with Markdown between them, so the
/// expand node is assembled here rather than by the parser.
type Frames = Vec<(String, Vec<Block>)>;

impl<'a> Reader<'a> {
    /// Blocks up to the end of the enclosing container, and a task marker seen directly in it.
    fn blocks(&mut self) -> (Vec<Block>, Option<bool>) {
        let mut frames: Frames = vec![(String::new(), Vec::new())];
        let mut loose = Vec::new(); // inline content of a tight list item
        let mut task = None;
        while let Some(ev) = self.events.next() {
            let block = match ev {
                Event::End(_) => break,
                Event::Start(Tag::Paragraph) => Block::Para(trim(self.inlines())),
                Event::Start(Tag::Heading { level, .. }) => Block::Heading(level as u8, trim(self.inlines())),
                Event::Start(Tag::BlockQuote(_)) => Block::Quote(self.blocks().0),
                Event::Start(Tag::CodeBlock(kind)) => {
                    let lang = match kind {
                        CodeBlockKind::Fenced(info) => info.split_whitespace().next().unwrap_or("").to_string(),
                        CodeBlockKind::Indented => String::new(),
                    };
                    Block::Code(lang, self.raw().trim_end_matches('\n').to_string())
                }
                Event::Start(Tag::HtmlBlock) => {
                    let raw = self.raw();
                    flush(&mut loose, &mut frames);
                    html_block(&raw, &mut frames);
                    continue;
                }
                Event::Start(Tag::List(start)) => {
                    let mut items = Vec::new();
                    while let Some(Event::Start(Tag::Item)) = self.events.next() {
                        let (blocks, task) = self.blocks();
                        items.push(Item { task, blocks });
                    }
                    Block::List(start, items)
                }
                Event::Start(Tag::Table(_)) => {
                    let mut rows = Vec::new(); // TableHead, then TableRows, each a list of cells
                    while let Some(Event::Start(_)) = self.events.next() {
                        let mut cells = Vec::new();
                        while let Some(Event::Start(_)) = self.events.next() { cells.push(trim(self.inlines())); }
                        rows.push(cells);
                    }
                    let head = if rows.is_empty() { Vec::new() } else { rows.remove(0) };
                    Block::Table(head, rows)
                }
                Event::Rule => Block::Rule,
                Event::TaskListMarker(done) => { task = Some(done); continue; }
                ev => { self.inline(ev, &mut loose); continue; }
            };
            task = self.pending_task.take().or(task);
            flush(&mut loose, &mut frames);
            push(&mut frames, block);
        }
        flush(&mut loose, &mut frames);
        while frames.len() > 1 {
            close_details(&mut frames); // an unclosed <details> ends with its container
        }
        (frames.pop().map(|f| f.1).unwrap_or_default(), task)
    }

    /// Literal text of a code or HTML block.
    fn raw(&mut self) -> String {
        let mut s = String::new();
        for ev in self.events.by_ref() {
            match ev {
                Event::Text(t) | Event::Html(t) => s.push_str(&t),
                Event::End(_) => break,
                _ => {}
            }
        }
        s
    }

    /// Inline content up to the end of the enclosing tag.
    fn inlines(&mut self) -> Vec<Inline> {
        let mut out = Vec::new();
        while let Some(ev) = self.events.next() {
            if let Event::End(_) = ev { break; }
            self.inline(ev, &mut out);
        }
        out
    }

    fn inline(&mut self, ev: Event<'a>, out: &mut Vec<Inline>) {
        if self.in_comment {
            if let Event::Text(t) | Event::InlineHtml(t) | Event::Html(t) = &ev {
                self.in_comment = !t.contains("-->");
            }
            return;
        }
        match ev {
            Event::Text(t) | Event::InlineMath(t) | Event::DisplayMath(t) | Event::FootnoteReference(t) => {
                out.push(text(t.into_string()))
            }
            Event::Code(t) => out.push(Inline::Code(t.into_string())),
            Event::SoftBreak | Event::HardBreak => out.push(Inline::Break),
            Event::TaskListMarker(done) => self.pending_task = Some(done),
            // <sub>, <b>, ...: keep the text, drop the tags; <br> is a line break.
            Event::InlineHtml(h) | Event::Html(h) => {
                for part in html_parts(&h) {
                    match part {
                        Part::Text(t) => out.push(text(t)),
                        Part::Tag(name, _) if name == "br" => out.push(Inline::Break),
                        Part::Comment(closed) => self.in_comment = !closed,
                        Part::Tag(..) => {}
                    }
                }
            }
            Event::Start(tag) => {
                let inner = self.inlines();
                match tag {
                    Tag::Strong => out.push(Inline::Styled(Style::Strong, inner)),
                    Tag::Emphasis => out.push(Inline::Styled(Style::Em, inner)),
                    Tag::Strikethrough => out.push(Inline::Styled(Style::Strike, inner)),
                    // Images become links: a comment cannot embed remote media in either format.
                    Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. } => {
                        out.push(Inline::Link(dest_url.into_string(), inner))
                    }
                    _ => out.extend(inner),
                }
            }
            _ => {}
        }
    }
}

/// Drops edge breaks and whitespace, so a marker at a line end leaves nothing behind.
fn trim(mut xs: Vec<Inline>) -> Vec<Inline> {
    while matches!(xs.last(), Some(Inline::Break)) { xs.pop(); }
    while matches!(xs.first(), Some(Inline::Break)) { xs.remove(0); }
    if let Some(Inline::Text(t)) = xs.first_mut() { *t = t.trim_start().to_string(); }
    if let Some(Inline::Text(t)) = xs.last_mut() { *t = t.trim_end().to_string(); }
    xs.retain(|x| !matches!(x, Inline::Text(t) if t.is_empty()));
    xs
}

fn push(frames: &mut Frames, block: Block) {
    if !matches!(&block, Block::Para(i) | Block::Heading(_, i) if i.is_empty()) {
        frames.last_mut().expect("root frame").1.push(block);
    }
}

fn flush(loose: &mut Vec<Inline>, frames: &mut Frames) {
    push(frames, Block::Para(trim(std::mem::take(loose))));
}

fn close_details(frames: &mut Frames) {
    let (title, blocks) = frames.pop().expect("details frame");
    let title = collapse(&title);
    push(frames, Block::Expand(if title.is_empty() { "Details".into() } else { title }, blocks));
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Raw HTML, split: text, a tag (lower-case name, closing?), a comment (closed in this chunk?).
enum Part { Text(String), Tag(String, bool), Comment(bool) }

/// Good enough for the tags templates use; not a general HTML parser.
fn html_parts(s: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(body) = rest.strip_prefix("<!--") {
            let Some(i) = body.find("-->") else {
                parts.push(Part::Comment(false));
                break;
            };
            parts.push(Part::Comment(true));
            rest = &body[i + 3..];
        } else if rest.starts_with('<') && rest[1..].starts_with(|c: char| c.is_ascii_alphabetic() || "/!?".contains(c))
        {
            let end = rest.find('>').map_or(rest.len(), |i| i + 1);
            let tag = rest[1..end].trim_start_matches('/');
            let name: String = tag.chars().take_while(char::is_ascii_alphanumeric).collect();
            parts.push(Part::Tag(name.to_ascii_lowercase(), rest[1..].starts_with('/')));
            rest = &rest[end..];
        } else {
            let first = rest.chars().next().map_or(1, char::len_utf8);
            let end = rest[first..].find('<').map_or(rest.len(), |i| i + first);
            let t = rest[..end].replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"");
            parts.push(Part::Text(t.replace("&nbsp;", " ").replace("&amp;", "&")));
            rest = &rest[end..];
        }
    }
    parts
}

/// An HTML block: opens/closes `<details>` frames, takes `<summary>` as the title, keeps other text.
fn html_block(raw: &str, frames: &mut Frames) {
    let mut buf = String::new();
    let mut in_summary = false;
    let para = |buf: &mut String, frames: &mut Frames| push(frames, Block::Para(trim(vec![text(collapse(buf))])));
    for part in html_parts(raw) {
        match part {
            Part::Text(t) if in_summary => frames.last_mut().expect("frame").0.push_str(&t),
            Part::Text(t) => buf.push_str(&t),
            Part::Tag(name, closing) if name == "details" => {
                para(&mut std::mem::take(&mut buf), frames);
                if !closing {
                    frames.push((String::new(), Vec::new()));
                } else if frames.len() > 1 {
                    close_details(frames);
                }
            }
            Part::Tag(name, closing) if name == "summary" => in_summary = !closing && frames.len() > 1,
            Part::Tag(..) | Part::Comment(_) => {}
        }
    }
    para(&mut buf, frames);
}

/// Rewrites blocks that a restricted ADF parent (listItem, blockquote, nestedExpand) or a wiki list
/// item cannot hold into paragraphs and lists, keeping their words.
fn simplify(bs: &[Block]) -> Vec<Block> {
    let strong = |i: Vec<Inline>| Block::Para(vec![Inline::Styled(Style::Strong, i)]);
    let mut out = Vec::new();
    for b in bs {
        match b {
            Block::Heading(_, i) => out.push(strong(i.clone())),
            Block::Quote(inner) => out.extend(simplify(inner)),
            Block::Expand(t, inner) => {
                out.push(strong(vec![text(t.as_str())]));
                out.extend(simplify(inner));
            }
            Block::Table(head, rows) => {
                for row in std::iter::once(head).chain(rows) {
                    let cells: Vec<Vec<Inline>> = row.iter().filter(|c| !c.is_empty()).cloned().collect();
                    out.push(Block::Para(cells.join(&text(" | "))));
                }
            }
            Block::Rule => {}
            b => out.push(b.clone()),
        }
    }
    out
}

/// Paragraphs as lines, sub-list items as "• " lines: for a taskItem, which holds inline nodes only.
fn flat_inlines(bs: &[Block]) -> Vec<Inline> {
    let mut out = Vec::new();
    for b in simplify(bs) {
        let line = match b {
            Block::Para(i) => i,
            Block::Code(_, t) => vec![Inline::Code(t)],
            Block::List(_, items) => {
                for it in items {
                    out.extend([Inline::Break, text("• ")]);
                    out.extend(flat_inlines(&it.blocks));
                }
                continue;
            }
            _ => continue,
        };
        if !out.is_empty() { out.push(Inline::Break); }
        out.extend(line);
    }
    out
}

// ---------------------------------------------------------------- ADF

/// Where blocks are rendered; the ADF schema allows different children in each. `Simple` is
/// listItem, blockquote and nestedExpand: paragraphs, lists and code only.
#[derive(Clone, Copy, PartialEq)]
enum Ctx { Top, Expand, Simple }

/// `ids` numbers taskList/taskItem `localId`s, which must be unique within the document.
struct Adf { ids: usize }

impl Adf {
    fn blocks(&mut self, bs: &[Block], ctx: Ctx) -> Vec<Value> {
        let bs = if ctx == Ctx::Simple { simplify(bs) } else { bs.to_vec() };
        bs.iter().map(|b| self.block(b, ctx)).collect()
    }

    fn block(&mut self, b: &Block, ctx: Ctx) -> Value {
        match b {
            Block::Heading(level, i) => {
                json!({ "type": "heading", "attrs": { "level": level }, "content": adf_inline(i) })
            }
            Block::Para(i) => paragraph(i),
            Block::List(start, items) => self.list(*start, items, ctx != Ctx::Simple),
            Block::Quote(bs) => json!({ "type": "blockquote", "content": nonempty(self.blocks(bs, Ctx::Simple)) }),
            Block::Code(lang, t) => {
                let mut v = json!({ "type": "codeBlock", "content": adf_inline(&[text(t.as_str())]) });
                if !lang.is_empty() {
                    v["attrs"] = json!({ "language": lang });
                }
                v
            }
            Block::Table(head, rows) => {
                let row = |cells: &[Vec<Inline>], kind: &str| {
                    let cells: Vec<Value> =
                        cells.iter().map(|c| json!({ "type": kind, "attrs": {}, "content": [paragraph(c)] })).collect();
                    json!({ "type": "tableRow", "content": cells })
                };
                let content: Vec<Value> =
                    std::iter::once(row(head, "tableHeader")).chain(rows.iter().map(|r| row(r, "tableCell"))).collect();
                let attrs = json!({ "isNumberColumnEnabled": false, "layout": "default" });
                json!({ "type": "table", "attrs": attrs, "content": content })
            }
            // ADF forbids expand inside expand; the nested form is `nestedExpand`.
            Block::Expand(title, bs) => {
                let (kind, inner) = if ctx == Ctx::Top { ("expand", Ctx::Expand) } else { ("nestedExpand", Ctx::Simple) };
                json!({ "type": kind, "attrs": { "title": title }, "content": nonempty(self.blocks(bs, inner)) })
            }
            Block::Rule => json!({ "type": "rule" }),
        }
    }

    /// All-task lists become a taskList where ADF allows one; elsewhere (or mixed with plain items)
    /// task items stay bullets with a "[x] " / "[ ] " prefix.
    fn list(&mut self, start: Option<u64>, items: &[Item], tasks_ok: bool) -> Value {
        if tasks_ok && !items.is_empty() && items.iter().all(|i| i.task.is_some()) {
            return self.task_list(items);
        }
        let mut content = Vec::new();
        for it in items {
            let mut blocks = simplify(&it.blocks);
            if !matches!(blocks.first(), Some(Block::Para(_))) {
                blocks.insert(0, Block::Para(Vec::new())); // a listItem starts with a paragraph
            }
            if let (Some(done), Some(Block::Para(i))) = (it.task, blocks.first_mut()) {
                i.insert(0, text(if done { "[x] " } else { "[ ] " }));
            }
            content.push(json!({ "type": "listItem", "content": self.blocks(&blocks, Ctx::Simple) }));
        }
        match start {
            Some(n) => json!({ "type": "orderedList", "attrs": { "order": n }, "content": content }),
            None => json!({ "type": "bulletList", "content": content }),
        }
    }

    /// taskItem holds inline nodes only; a nested task list follows its item as a sibling taskList.
    fn task_list(&mut self, items: &[Item]) -> Value {
        self.ids += 1;
        let list_id = format!("tasklist-{}", self.ids);
        let mut content = Vec::new();
        for it in items {
            let (nested, rest): (Vec<&Block>, Vec<&Block>) = it.blocks.iter().partition(|b| {
                matches!(b, Block::List(_, s) if !s.is_empty() && s.iter().all(|i| i.task.is_some()))
            });
            let rest: Vec<Block> = rest.into_iter().cloned().collect();
            self.ids += 1;
            let (id, state) = (format!("task-{}", self.ids), if it.task == Some(true) { "DONE" } else { "TODO" });
            let inline = adf_inline(&trim(flat_inlines(&rest)));
            let attrs = json!({ "localId": id, "state": state });
            content.push(json!({ "type": "taskItem", "attrs": attrs, "content": inline }));
            for b in nested {
                if let Block::List(_, sub) = b { content.push(self.task_list(sub)); }
            }
        }
        json!({ "type": "taskList", "attrs": { "localId": list_id }, "content": content })
    }
}

fn paragraph(i: &[Inline]) -> Value {
    json!({ "type": "paragraph", "content": adf_inline(i) })
}

fn nonempty(v: Vec<Value>) -> Vec<Value> {
    if v.is_empty() { vec![paragraph(&[])] } else { v }
}

fn adf_inline(xs: &[Inline]) -> Vec<Value> {
    let mut out = Vec::new();
    adf_walk(xs, &[], &mut out);
    out
}

fn adf_walk(xs: &[Inline], marks: &[Value], out: &mut Vec<Value>) {
    let without = |t: &str| marks.iter().filter(|m| m["type"] != t).cloned().collect::<Vec<Value>>();
    for x in xs {
        match x {
            Inline::Text(t) => text_node(t, marks.to_vec(), out),
            Inline::Code(t) => {
                // The code mark combines with link only.
                let mut m: Vec<Value> = marks.iter().filter(|m| m["type"] == "link").cloned().collect();
                m.push(json!({ "type": "code" }));
                text_node(t, m, out);
            }
            Inline::Styled(style, inner) => {
                let name = match style { Style::Strong => "strong", Style::Em => "em", Style::Strike => "strike" };
                let mut m = without(name);
                m.push(json!({ "type": name }));
                adf_walk(inner, &m, out);
            }
            Inline::Link(url, inner) => {
                let mut m = without("link");
                m.push(json!({ "type": "link", "attrs": { "href": url } }));
                let before = out.len();
                adf_walk(inner, &m, out);
                if out.len() == before {
                    text_node(url, m, out); // a link needs visible text
                }
            }
            Inline::Break => out.push(json!({ "type": "hardBreak" })),
        }
    }
}

/// Appends a text node, merged into the previous one when the marks match; never an empty one.
fn text_node(t: &str, marks: Vec<Value>, out: &mut Vec<Value>) {
    if t.is_empty() { return; }
    let marks = Value::Array(marks);
    let mergeable = |l: &&mut Value| l["type"] == "text" && l.get("marks").unwrap_or(&json!([])) == &marks;
    if let Some(last) = out.last_mut().filter(mergeable) {
        last["text"] = Value::String(format!("{}{t}", last["text"].as_str().unwrap_or("")));
        return;
    }
    let mut node = json!({ "type": "text", "text": t });
    if marks != json!([]) { node["marks"] = marks; }
    out.push(node);
}

// ---------------------------------------------------------------- wiki markup

/// Languages Jira DC's {code} macro knows; any other makes it print "Unable to find source-code
/// formatter", so those blocks (```text included) become {noformat}.
const CODE_LANGS: &[&str] = &[
    "actionscript", "ada", "applescript", "bash", "c", "c#", "c++", "cpp", "css", "erlang", "go", "groovy", "haskell",
    "html", "java", "javascript", "js", "json", "lua", "nyan", "objc", "perl", "php", "python", "r", "ruby", "scala",
    "sh", "sql", "swift", "visualbasic", "xml", "yaml",
];

fn wiki_blocks(bs: &[Block]) -> String {
    bs.iter().map(wiki_block).filter(|s| !s.is_empty()).collect::<Vec<_>>().join("\n\n")
}

fn wiki_block(b: &Block) -> String {
    let join = |parts: Vec<String>, sep: &str| parts.join(sep);
    match b {
        Block::Heading(level, i) => format!("h{level}. {}", wiki_inline(i, true)),
        Block::Para(i) => join(wiki_inline(i, false).lines().map(guard_line).collect(), "\n"),
        Block::List(start, items) => {
            let mut out = String::new();
            wiki_list(items, start.is_some(), "", &mut out);
            out.trim_end().to_string()
        }
        Block::Quote(bs) => format!("{{quote}}\n{}\n{{quote}}", wiki_blocks(bs)),
        Block::Code(lang, t) if CODE_LANGS.contains(&lang.to_ascii_lowercase().as_str()) => {
            format!("{{code:{}}}\n{t}\n{{code}}", lang.to_ascii_lowercase())
        }
        Block::Code(_, t) => format!("{{noformat}}\n{t}\n{{noformat}}"),
        Block::Table(head, rows) => {
            // An empty body cell is " ": `||` in a body row would start a header cell.
            let cells = |r: &[Vec<Inline>], sep: &str| {
                let cell = |c| match wiki_inline(c, true) {
                    s if s.trim().is_empty() => " ".to_string(),
                    s => s,
                };
                let cs: Vec<String> = r.iter().map(|c| cell(c)).collect();
                format!("{sep}{}{sep}", cs.join(sep))
            };
            join(std::iter::once(cells(head, "||")).chain(rows.iter().map(|r| cells(r, "|"))).collect(), "\n")
        }
        // Jira DC has no {expand} macro (it is Confluence's; Jira shows "Unknown macro"), so the section
        // is shown open under a bold title line.
        Block::Expand(title, bs) => {
            let title = wiki_inline(&[Inline::Styled(Style::Strong, vec![text(title.as_str())])], true);
            format!("{title}\n{}", wiki_blocks(bs))
        }
        Block::Rule => "----".to_string(),
    }
}

/// Wiki list items are single lines: paragraphs join with `\\`, sub-lists extend the marker (`**`,
/// `*#`). Jira wiki has no checkbox, so task items read `* \[x] text` / `* \[ ] text`: the bracket is
/// escaped because `[x]` alone is a link in wiki markup; Jira shows "[x]" / "[ ]" as text.
fn wiki_list(items: &[Item], ordered: bool, prefix: &str, out: &mut String) {
    let marker = format!("{prefix}{}", if ordered { '#' } else { '*' });
    for it in items {
        let mut line = match it.task { Some(true) => "\\[x] ", Some(false) => "\\[ ] ", None => "" }.to_string();
        let mut rest = String::new();
        for b in simplify(&it.blocks) {
            match b {
                Block::Para(i) => {
                    if !line.is_empty() && !line.ends_with(' ') { line.push_str(" \\\\ "); }
                    line.push_str(&wiki_inline(&i, true));
                }
                Block::List(start, sub) => wiki_list(&sub, start.is_some(), &marker, &mut rest),
                other => rest.push_str(&format!("{}\n", wiki_block(&other))),
            }
        }
        out.push_str(&format!("{marker} {}\n{rest}", line.trim_end()));
    }
}

/// Text that would read as a list item or numbered item at a line start gets a backslash.
fn guard_line(line: &str) -> String {
    let risky = line.starts_with('#') || line.starts_with("* ") || line.starts_with("- ");
    if risky { format!("\\{line}") } else { line.to_string() }
}

/// `one_line`: inside a table cell, list item or heading, where a newline would end the element.
fn wiki_inline(xs: &[Inline], one_line: bool) -> String {
    let mut out = String::new();
    for x in xs {
        match x {
            Inline::Text(t) => escape_into(t, &mut out),
            Inline::Code(t) if t.is_empty() => {}
            Inline::Code(t) => {
                out.push_str("{{");
                escape_into(t, &mut out);
                out.push_str("}}");
            }
            Inline::Styled(style, inner) => {
                let m = match style { Style::Strong => '*', Style::Em => '_', Style::Strike => '-' };
                // Jira needs the markers against the words: move edge whitespace outside them.
                let body = wiki_inline(inner, one_line);
                let core = body.trim();
                if core.is_empty() {
                    out.push_str(&body);
                } else {
                    let (lead, trail) = (&body[..body.len() - body.trim_start().len()], &body[body.trim_end().len()..]);
                    out.push_str(&format!("{lead}{m}{core}{m}{trail}"));
                }
            }
            Inline::Link(url, inner) => match wiki_inline(inner, true).replace(']', "\\]") {
                t if t.is_empty() || t == *url => out.push_str(&format!("[{url}]")),
                t => out.push_str(&format!("[{t}|{url}]")),
            },
            Inline::Break => out.push_str(if one_line { " \\\\ " } else { "\n" }),
        }
    }
    out
}

/// Emoticon bodies after `(` that Jira turns into icons, e.g. `(x)` and `(/)`.
const EMOTICONS: &[&str] = &["x)", "/)", "!)", "?)", "i)", "y)", "n)", "+)", "-)", "*)", "on)", "off)"];

/// Escapes plain text for wiki markup: `{ } [ ] |` always (macros, links, table cells); the pair
/// markers `* _ - + ^ ~ !` only where they could open a span (next char not a space, and not inside
/// a word such as `snake_case` or `2026-11-24`). A span cannot form without an opener, and leaving
/// the rest bare keeps dates, names and prose readable in the stored comment.
fn escape_into(t: &str, out: &mut String) {
    let cs: Vec<char> = t.chars().collect();
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    for (i, &c) in cs.iter().enumerate() {
        let prev = if i == 0 { out.chars().last() } else { Some(cs[i - 1]) };
        let next = cs.get(i + 1).copied();
        let opens = match next {
            None => !word(prev),
            Some(n) => !(n.is_whitespace() || (word(prev) && n.is_alphanumeric())),
        };
        let escape = match c {
            '{' | '}' | '[' | ']' | '|' => true,
            '*' | '_' | '-' | '+' | '^' | '~' | '!' => opens,
            '?' => next == Some('?'),
            '(' => EMOTICONS.iter().any(|e| cs[i + 1..].iter().take(4).collect::<String>().starts_with(e)),
            _ => false,
        };
        if escape { out.push('\\'); }
        out.push(c);
    }
}

// ---------------------------------------------------------------- plain text

/// Text nodes in order; every node that is not inline starts and ends its own line.
/// Jira wiki markup's block quotes and code, rewritten as their Markdown equivalents; every
/// other character is kept. `{quote}…{quote}` and `{code[:…]}…{code}` / `{noformat[:…]}…{noformat}`
/// may open and close anywhere on a line, as Jira reads them; `bq. ` quotes its one line.
fn wiki_blocks_as_markdown(wiki: &str) -> String {
    #[derive(PartialEq)]
    enum In { Text, Quote, Code(&'static str) }
    let mut out = String::with_capacity(wiki.len());
    let (mut state, mut rest, mut held) = (In::Text, wiki, String::new());
    loop {
        // The next tag that changes the state, or the end.
        let next = match state {
            In::Text => ["{quote}", "{code", "{noformat"].iter().filter_map(|t| rest.find(t).map(|at| (at, *t))).min(),
            In::Quote => rest.find("{quote}").map(|at| (at, "{quote}")),
            In::Code(tag) => rest.find(tag).map(|at| (at, tag)),
        };
        let Some((at, tag)) = next else {
            held.push_str(rest);
            break;
        };
        // `{code:java}` and `{noformat:nopanel=true}` take parameters up to the closing brace;
        // `{codec}` is not a tag.
        let len = if state != In::Text || tag == "{quote}" {
            tag.len()
        } else {
            match rest[at + tag.len()..].chars().next() {
                Some('}') => tag.len() + 1,
                Some(':') if !rest[at..].split('}').next().unwrap_or("").contains('\n') && rest[at..].contains('}') => rest[at..].find('}').unwrap_or(0) + 1,
                _ => {
                    held.push_str(&rest[..at + tag.len()]);
                    rest = &rest[at + tag.len()..];
                    continue;
                }
            }
        };
        held.push_str(&rest[..at]);
        match state {
            In::Text => {
                push_text(&mut out, &held);
                state = match tag { "{quote}" => In::Quote, "{code" => In::Code("{code}"), _ => In::Code("{noformat}") };
            }
            In::Quote => { push_quoted(&mut out, &held); state = In::Text }
            In::Code(_) => { push_fenced(&mut out, &held); state = In::Text }
        }
        held.clear();
        rest = &rest[at + len..];
    }
    // An unclosed quote or code runs to the end, as Jira renders it.
    match state {
        In::Text => push_text(&mut out, &held),
        In::Quote => push_quoted(&mut out, &held),
        In::Code(_) => push_fenced(&mut out, &held),
    }
    out
}

/// Text outside quotes and code, with `bq. ` lines made Markdown quotes.
fn push_text(out: &mut String, text: &str) {
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match line.trim_start().strip_prefix("bq. ") {
            // A blank line after it, so the next line is not read as the quote's lazy continuation.
            Some(quoted) => { out.push_str("> "); out.push_str(quoted); out.push('\n'); }
            None => out.push_str(line),
        }
    }
}

/// A quote on lines of its own, ended by a blank line so nothing after it continues it.
fn push_quoted(out: &mut String, text: &str) {
    if !out.is_empty() && !out.ends_with('\n') { out.push('\n'); }
    for line in text.trim_matches('\n').split('\n') {
        out.push_str("> ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
}

/// Code as a fenced block, the fence longer than any backtick run inside it.
fn push_fenced(out: &mut String, text: &str) {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    if !out.is_empty() && !out.ends_with('\n') { out.push('\n'); }
    out.push_str(&fence);
    out.push('\n');
    out.push_str(text.trim_matches('\n'));
    out.push('\n');
    out.push_str(&fence);
    out.push('\n');
}

fn flatten(v: &Value, out: &mut String) {
    let attr = |k: &str| v["attrs"][k].as_str().unwrap_or("").to_string();
    let newline = |out: &mut String| {
        if !out.is_empty() && !out.ends_with('\n') { out.push('\n'); }
    };
    match v["type"].as_str().unwrap_or("") {
        "text" => out.push_str(v["text"].as_str().unwrap_or("")),
        "hardBreak" => out.push('\n'),
        "mention" | "emoji" | "placeholder" => out.push_str(&attr("text")),
        "inlineCard" => out.push_str(&attr("url")),
        kind @ ("blockquote" | "codeBlock") => {
            let mut inner = String::new();
            for child in v["content"].as_array().into_iter().flatten() {
                flatten(child, &mut inner);
            }
            newline(out);
            if kind == "blockquote" { push_quoted(out, &inner) } else { push_fenced(out, &inner) }
        }
        kind => {
            newline(out);
            if kind == "expand" || kind == "nestedExpand" {
                out.push_str(&attr("title"));
                newline(out);
            }
            for child in v["content"].as_array().into_iter().flatten() {
                flatten(child, out);
            }
            newline(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands_in(body: &Value) -> Vec<String> {
        let known = ["decide", "rollout", "promote"];
        crate::policy::commands::parse(&plain_text(body), &known).commands.into_iter().map(|c| c.name).collect()
    }

    #[test]
    fn a_command_jira_shows_as_quote_or_code_does_not_run() {
        for quoted in [
            "{quote}/decide accept lane=A{quote}",
            "As she said:\n{quote}\n/decide accept lane=A\n{quote}",
            "bq. /decide accept lane=A",
            "{code}\n/decide accept lane=A\n{code}",
            "{code:bash}/decide accept lane=A{code}",
            "{noformat}\n/decide accept lane=A\n{noformat}",
            "{noformat:nopanel=true}\n/decide accept lane=A\n{noformat}",
            // Unclosed: Jira renders to the end.
            "{quote}\n/decide accept lane=A",
        ] {
            assert_eq!(commands_in(&Value::String(quoted.into())), Vec::<String>::new(), "{quoted}");
        }
        // After the quote or code closes, the author's own lines run.
        let after = "{quote}/rollout 4{quote}\n/decide accept lane=A\nbq. /rollout 2\n/promote\n{code}/rollout 1{code}";
        assert_eq!(commands_in(&Value::String(after.into())), ["decide", "promote"]);
        // `{codec}` is no tag; a line of prose that names one is prose.
        assert_eq!(commands_in(&Value::String("{codec}\n/promote".into())), ["promote"]);

        let adf = serde_json::json!({"type": "doc", "version": 1, "content": [
            {"type": "blockquote", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "/decide accept lane=A"}]}]},
            {"type": "codeBlock", "content": [{"type": "text", "text": "/rollout 4"}]},
            {"type": "paragraph", "content": [{"type": "text", "text": "/promote"}]},
        ]});
        assert_eq!(commands_in(&adf), ["promote"]);
    }

    /// What checklist.md renders to for a type-3 item with one template.
    const CHECKLIST: &str = "### Rollout checklist — type 3 (Demoed)

Dev released **2026-11-24** · client release due **2026-12-01** · status `dev-released`

- [ ] **Release note** — PM · 1 page · due 2026-11-25 <!-- box:release-note -->
- [x] **Training material** _(optional)_ — PM + CS · due 2026-11-25 <!-- box:training-material -->

**Next:** Release note — PM, due 2026-11-25: tick its box or write `/artifact done release-note`.

<details><summary>Template: Sales kit</summary>

#### Feature – Sales Brief

1. point one
2. point two

</details>

<sub>Tick a box when the artifact is done.</sub>
";

    /// What waves.md renders to while paused.
    const WAVES: &str = "### Phased rollout — pilot client Acme

> **Paused** — latency spike. No wave starts until `/resume`.

| Wave | Users / clients | Scope | Entry criteria | Exit criteria | Date |
|---|---|---|---|---|---|
| 1 ▶ | pilot client | production | rollback plan done | pilot retro records GO |  |
| 2 | tier-1 a\\|b | phased | wave 1 exit met | health check clean | 2026-12-08 |

Exit criteria met:
- [x] Wave 1: pilot retro records GO <!-- box:wave-1-exit -->
- [ ] Wave 2: health check clean <!-- box:wave-2-exit -->
";

    const EMAIL: &str = "### Template – Client Comms Email

```text
Subject: <Module> update – <one-line summary>

What's new for you:
- <bullet 1>
* [not a link]
```
";

    fn kids(v: &Value) -> &Vec<Value> {
        v["content"].as_array().expect("content array")
    }

    fn of_type<'v>(v: &'v Value, t: &str) -> Vec<&'v Value> {
        let mut out: Vec<&Value> = if v["type"] == t { vec![v] } else { Vec::new() };
        out.extend(v["content"].as_array().into_iter().flatten().flat_map(|c| of_type(c, t)));
        out
    }

    fn mark(node: &Value) -> &Value {
        &node["marks"][0]["type"]
    }

    /// ADF rules Jira rejects documents for, checked over a whole tree.
    fn assert_valid(v: &Value) {
        match v["type"].as_str().expect("type") {
            "text" => assert!(!v["text"].as_str().unwrap().is_empty(), "empty text node"),
            t => assert!(v.get("marks").is_none(), "marks on {t}"),
        }
        if v["type"] == "listItem" {
            assert_eq!(kids(v)[0]["type"], "paragraph", "listItem starts with a paragraph");
        }
        if v["type"] == "taskItem" {
            assert!(kids(v).iter().all(|c| c["type"] == "text" || c["type"] == "hardBreak"), "taskItem is inline");
        }
        v["content"].as_array().into_iter().flatten().for_each(assert_valid);
    }

    #[test]
    fn checklist_to_adf() {
        let doc = to_adf(CHECKLIST);
        assert_eq!((doc["type"].as_str(), doc["version"].as_u64()), (Some("doc"), Some(1)));
        assert_valid(&doc);
        let top = kids(&doc);
        assert_eq!((&top[0]["type"], &top[0]["attrs"]["level"]), (&json!("heading"), &json!(3)));
        let texts = of_type(&top[1], "text");
        assert!(texts.iter().any(|t| t["text"] == "2026-11-24" && mark(t) == "strong"));
        assert!(texts.iter().any(|t| t["text"] == "dev-released" && mark(t) == "code"));

        assert_eq!(top[2]["type"], "taskList");
        let items = kids(&top[2]);
        let states: Vec<&Value> = items.iter().map(|i| &i["attrs"]["state"]).collect();
        assert_eq!(states, [&json!("TODO"), &json!("DONE")]);
        let ids: std::collections::HashSet<&Value> =
            of_type(&doc, "taskItem").iter().chain(&of_type(&doc, "taskList")).map(|i| &i["attrs"]["localId"]).collect();
        assert!(ids.len() == 3 && ids.iter().all(|id| id.as_str().is_some_and(|s| !s.is_empty())), "unique localIds");
        assert_eq!((&kids(&items[0])[0]["text"], mark(&kids(&items[0])[0])), (&json!("Release note"), &json!("strong")));
        assert!(kids(&items[1]).iter().any(|t| t["text"] == "(optional)" && mark(t) == "em"));

        let expand = top.iter().find(|b| b["type"] == "expand").expect("expand node");
        assert_eq!(expand["attrs"]["title"], "Template: Sales kit");
        assert_eq!((&kids(expand)[0]["type"], &kids(expand)[0]["attrs"]["level"]), (&json!("heading"), &json!(4)));
        assert_eq!((&kids(expand)[1]["type"], kids(&kids(expand)[1]).len()), (&json!("orderedList"), 2));
        assert_eq!(kids(top.last().unwrap())[0]["text"], "Tick a box when the artifact is done.");
        let json = doc.to_string();
        for hidden in ["<!--", "box:", "<sub>", "details>", "summary"] {
            assert!(!json.contains(hidden), "{hidden} leaked: {json}");
        }
    }

    #[test]
    fn checklist_to_wiki() {
        let wiki = to_wiki(CHECKLIST);
        for want in [
            "h3. Rollout checklist — type 3 (Demoed)\n\n",
            "Dev released *2026-11-24* · client release due *2026-12-01* · status {{dev-released}}",
            "* \\[ ] *Release note* — PM · 1 page · due 2026-11-25\n",
            "* \\[x] *Training material* _(optional)_ — PM + CS · due 2026-11-25\n",
            "*Next:* Release note — PM, due 2026-11-25: tick its box or write {{/artifact done release-note}}.",
            "*Template: Sales kit*\nh4. Feature – Sales Brief\n\n# point one\n# point two",
            "\n\nTick a box when the artifact is done.",
        ] {
            assert!(wiki.contains(want), "missing {want:?} in:\n{wiki}");
        }
        for hidden in ["<!--", "box:", "<sub>", "<details", "{expand"] {
            assert!(!wiki.contains(hidden), "{hidden} leaked:\n{wiki}");
        }
    }

    #[test]
    fn waves_table_quote_and_boxes() {
        let doc = to_adf(WAVES);
        assert_valid(&doc);
        let rows = kids(of_type(&doc, "table")[0]);
        assert_eq!(rows.len(), 3);
        assert_eq!(kids(&rows[0]).iter().filter(|c| c["type"] == "tableHeader").count(), 6);
        assert_eq!(kids(&rows[1]).iter().filter(|c| c["type"] == "tableCell").count(), 6);
        assert!(kids(&rows[1]).iter().all(|c| kids(c)[0]["type"] == "paragraph"));
        assert_eq!(kids(&kids(&rows[1])[5])[0]["content"], json!([]), "empty cell has no empty text node");
        assert_eq!(kids(&kids(&rows[2])[1])[0]["content"][0]["text"], "tier-1 a|b");
        assert_eq!(mark(&kids(&kids(of_type(&doc, "blockquote")[0])[0])[0]), "strong");
        let states: Vec<&Value> = of_type(&doc, "taskItem").iter().map(|i| &i["attrs"]["state"]).collect();
        assert_eq!(states, [&json!("DONE"), &json!("TODO")]);

        let wiki = to_wiki(WAVES);
        for want in [
            "\n||Wave||Users / clients||Scope||Entry criteria||Exit criteria||Date||\n",
            "\n|1 ▶|pilot client|production|rollback plan done|pilot retro records GO| |\n",
            "\n|2|tier-1 a\\|b|phased|wave 1 exit met|health check clean|2026-12-08|\n",
            "{quote}\n*Paused* — latency spike. No wave starts until {{/resume}}.\n{quote}",
            "Exit criteria met:\n\n* \\[x] Wave 1: pilot retro records GO\n* \\[ ] Wave 2: health check clean",
        ] {
            assert!(wiki.contains(want), "missing {want:?} in:\n{wiki}");
        }
        assert!(!wiki.contains("box:") && !doc.to_string().contains("box:"));
    }

    #[test]
    fn fenced_text_block_stays_literal() {
        let doc = to_adf(EMAIL);
        let code = of_type(&doc, "codeBlock")[0];
        assert_eq!(code["attrs"]["language"], "text");
        let body = &kids(code)[0];
        assert!(body.get("marks").is_none());
        assert_eq!(body["text"], "Subject: <Module> update – <one-line summary>\n\nWhat's new for you:\n- <bullet 1>\n* [not a link]");

        let wiki = to_wiki(EMAIL);
        assert!(wiki.ends_with("{noformat}\nSubject: <Module> update – <one-line summary>\n\nWhat's new for you:\n- <bullet 1>\n* [not a link]\n{noformat}"), "{wiki}");
        assert_eq!(to_wiki("```bash\nls -l\n```"), "{code:bash}\nls -l\n{code}");
        assert_eq!(to_wiki("```\nx\n```"), "{noformat}\nx\n{noformat}");
    }

    #[test]
    fn inline_marks_links_and_breaks() {
        let md = "**b** _i_ ~~s~~ [site](https://e.com) `c` **`x`**  \nnext\nsoft";
        let doc = to_adf(md);
        assert_valid(&doc);
        let inl = kids(&kids(&doc)[0]);
        let marks = |text: &str| inl.iter().find(|n| n["text"] == text).map(|n| n["marks"].clone()).unwrap();
        assert_eq!(marks("b"), json!([{ "type": "strong" }]));
        assert_eq!(marks("i"), json!([{ "type": "em" }]));
        assert_eq!(marks("s"), json!([{ "type": "strike" }]));
        assert_eq!(marks("site"), json!([{ "type": "link", "attrs": { "href": "https://e.com" } }]));
        assert_eq!(marks("x"), json!([{ "type": "code" }]), "code combines only with link");
        assert_eq!(inl.iter().filter(|n| n["type"] == "hardBreak").count(), 2);
        assert_eq!(to_wiki(md), "*b* _i_ -s- [site|https://e.com] {{c}} *{{x}}*\nnext\nsoft");
        assert_eq!(to_wiki("<https://e.com>"), "[https://e.com]");
    }

    #[test]
    fn nested_lists() {
        let md = "- a\n  - b\n    1. c\n- d\n\n3. three\n4. four\n\n- [ ] t\n  - [x] u\n  - [ ] v";
        let doc = to_adf(md);
        assert_valid(&doc);
        let first = &kids(&kids(&doc)[0])[0];
        assert_eq!(kids(first)[1]["type"], "bulletList");
        assert_eq!(kids(&kids(&kids(first)[1])[0])[1]["type"], "orderedList");
        assert_eq!(kids(&doc)[1]["attrs"]["order"], 3);
        let tasks: Vec<&Value> = kids(&kids(&doc)[2]).iter().map(|n| &n["type"]).collect();
        assert_eq!(tasks, [&json!("taskItem"), &json!("taskList")], "a nested taskList follows its taskItem");
        assert_eq!(to_wiki(md), "* a\n** b\n**# c\n* d\n\n# three\n# four\n\n* \\[ ] t\n** \\[x] u\n** \\[ ] v");
    }

    #[test]
    fn wiki_escapes_only_what_would_format() {
        let md = "a|b {x} [y] \\*stars\\* \\_u\\_ -d- +p+ ^s^ \\~t\\~ ??c?? !img! (x) (/) \\*\n\\- dash\n\\# hash";
        let want = "a\\|b \\{x\\} \\[y\\] \\*stars* \\_u_ \\-d- \\+p+ \\^s^ \\~t~ \\??c\\?? \\!img! \\(x) \\(/) \\*\n\\- dash\n\\# hash";
        assert_eq!(to_wiki(md), want);
        let plain = "snake_case 2026-11-24 a - b PM + CS done! 3*4 wave-1-exit (optional)";
        assert_eq!(to_wiki(plain), plain, "mid-word and spaced markers stay bare");
    }

    #[test]
    fn html_is_reduced_to_text() {
        let md = "<!--\nhidden marker\n-->\n\nkeep <b>bold</b> text<br>after <!-- x -->\n\n<div>\nblock &amp; text\n</div>";
        let doc = to_adf(md);
        assert_valid(&doc);
        assert_eq!(plain_text(&doc), "keep bold text\nafter\nblock & text");
        assert_eq!(to_wiki(md), "keep bold text\nafter\n\nblock & text");
        let empty = json!({ "type": "doc", "version": 1, "content": [] });
        assert_eq!((to_adf(""), to_adf("<!-- box:x -->"), to_wiki("<!-- box:x -->")), (empty.clone(), empty, String::new()));
    }

    #[test]
    fn plain_text_keeps_visible_words() {
        let text = plain_text(&to_adf(CHECKLIST));
        for words in ["Rollout checklist", "2026-11-24", "Template: Sales kit", "point two", "/artifact done release-note",
            "Release note — PM · 1 page · due 2026-11-25\nTraining material", "Tick a box"] {
            assert!(text.contains(words), "{words:?} missing from {text}");
        }
        let waves = plain_text(&to_adf(WAVES));
        assert!(waves.contains("pilot retro records GO") && waves.contains("Wave 2: health check clean"), "{waves}");
        assert_eq!(plain_text(&json!("*wiki* body")), "*wiki* body");
        assert_eq!((plain_text(&json!(42)), plain_text(&json!(null))), (String::new(), String::new()));
    }
}
