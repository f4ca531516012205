use super::*;
use crate::model::TrackerKind;
use crate::plan::comment_text;
use crate::policy::boxes;
use crate::tracker::{GITHUB_COMMENT_CHARS, JIRA_COMMENT_CHARS};
use pulldown_cmark::{Event, Parser, Tag, TagEnd};

const GITHUB: CommentLimit = CommentLimit::of(TrackerKind::Github);
const JIRA: CommentLimit = CommentLimit::of(TrackerKind::Jira);

/// A reply listing `n` bad command lines of about a thousand characters each.
fn long_reply(n: usize) -> String {
    let mut body = String::from("@dev\n");
    for i in 0..n {
        body.push_str(&format!("\n❓ `/x{i} {}`: unknown command.", "y".repeat(1000)));
    }
    body
}

/// The text of the paragraphs outside any code block, and whether an HTML block is open at
/// the end (more `<details>` than `</details>`).
fn paragraphs(md: &str) -> (Vec<String>, i32) {
    let (mut out, mut open, mut in_code, mut in_para) = (Vec::new(), 0, false, false);
    for ev in Parser::new(md) {
        match ev {
            Event::Start(Tag::CodeBlock(_)) => in_code = true,
            Event::End(TagEnd::CodeBlock) => in_code = false,
            Event::Start(Tag::Paragraph) if !in_code => {
                in_para = true;
                out.push(String::new());
            }
            Event::End(TagEnd::Paragraph) => in_para = false,
            Event::Text(t) if in_para => out.last_mut().unwrap().push_str(&t),
            Event::Html(h) | Event::InlineHtml(h) => {
                open += h.matches("<details").count() as i32 - h.matches("</details").count() as i32;
            }
            _ => {}
        }
    }
    (out, open)
}

#[test]
fn a_comment_that_fits_is_unchanged() {
    let text = comment_text("reply-7", &long_reply(10));
    assert_eq!(fit(text.clone(), GITHUB), text);
    let exactly = format!("<!-- rollgate:x -->\n{}", "a".repeat(GITHUB_COMMENT_CHARS - 20));
    assert_eq!(exactly.chars().count(), GITHUB_COMMENT_CHARS);
    assert_eq!(fit(exactly.clone(), GITHUB), exactly);
}

#[test]
fn a_long_reply_is_cut_at_a_line_break_with_the_marker_and_a_note() {
    let body = long_reply(150);
    let text = comment_text("reply-7", &body);
    let clipped = fit(text.clone(), GITHUB);
    assert!(clipped.chars().count() <= GITHUB_COMMENT_CHARS);
    assert!(clipped.chars().count() > GITHUB_COMMENT_CHARS - 1200, "it keeps as much as fits");
    assert!(clipped.starts_with("<!-- rollgate:reply-7 -->\n@dev\n"));
    assert_eq!(boxes::marker_tag(&clipped), Some("reply-7"));
    let (kept, note) = clipped.rsplit_once("\n\n").unwrap();
    assert!(text.starts_with(kept) && kept.ends_with("unknown command."), "cut at a line break");
    let left_out = body.chars().count() - kept.chars().count() + "<!-- rollgate:reply-7 -->\n".len();
    assert!(note.contains(&format!("clipped: {} more characters", thousands(left_out))), "{note}");
    // The same text clips the same way: the planner does not edit the comment again.
    assert_eq!(fit(text, GITHUB), clipped);
}

#[test]
fn an_open_code_fence_and_details_are_closed_before_the_note() {
    let body = format!(
        "### Checklist\n\n- [ ] x <!-- box:x -->\n\n<details><summary>Template</summary>\n\n```text\n{}",
        "a line of the template\n".repeat(4000)
    );
    let clipped = fit(comment_text("checklist", &body), GITHUB);
    assert!(clipped.chars().count() <= GITHUB_COMMENT_CHARS);
    let (paras, open) = paragraphs(&clipped);
    assert_eq!(open, 0, "every <details> is closed:\n{}", &clipped[clipped.len() - 300..]);
    assert!(paras.last().unwrap().starts_with("… clipped: "), "the note is prose, not code: {paras:?}");
    assert_eq!(boxes::boxes(&clipped).len(), 1);
}

#[test]
fn a_cut_inside_a_hidden_comment_drops_it_instead_of_making_a_new_box() {
    // One huge line: nowhere to cut but inside it, and the cut falls in the box marker.
    let line = format!("- [ ] **Release note** {} <!-- box:release-note{} -->", "n".repeat(60_000), "-".repeat(10_000));
    let clipped = fit(comment_text("checklist", &line), GITHUB);
    assert!(clipped.chars().count() <= GITHUB_COMMENT_CHARS);
    assert!(!clipped.contains("<!-- box:"), "the open marker is dropped");
    assert!(boxes::boxes(&clipped).is_empty());
    assert!(clipped.contains("- [ ] **Release note** nnn"));
}

#[test]
fn jira_is_measured_in_the_wiki_markup_it_is_sent_as() {
    // Every `[` and `|` gains a backslash in wiki markup: 20,000 Markdown characters would fit
    // a count of the Markdown, but not of the wiki text.
    let body = "[x] | ".repeat(4_000);
    let text = comment_text("reply-7", &body);
    assert!(text.chars().count() < JIRA_COMMENT_CHARS && JIRA.size(&text) > JIRA.max());
    let clipped = fit(text, JIRA);
    assert!(JIRA.size(&clipped) <= JIRA.max() && JIRA.max() < JIRA_COMMENT_CHARS);
    assert!(clipped.contains("clipped: "));
    // GitHub takes the same text whole.
    let text = comment_text("reply-7", &body);
    assert_eq!(fit(text.clone(), GITHUB), text);
}

#[test]
fn thousands_are_grouped() {
    assert_eq!((thousands(7), thousands(1_234), thousands(65_536), thousands(1_000_000)), ("7".into(), "1,234".into(), "65,536".into(), "1,000,000".into()));
}
