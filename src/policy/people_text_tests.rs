use super::*;
use crate::policy::boxes;
use pulldown_cmark::{Event, Options, Parser, Tag};

/// What a Markdown renderer makes of `md`: the blocks it opens, and the text a reader sees.
fn rendered(md: &str) -> (Vec<String>, String) {
    let options = Options::ENABLE_TABLES | Options::ENABLE_TASKLISTS | Options::ENABLE_STRIKETHROUGH;
    let (mut blocks, mut text) = (Vec::new(), String::new());
    for event in Parser::new_ext(md, options) {
        match event {
            Event::Start(tag @ (Tag::Paragraph | Tag::Heading { .. } | Tag::List(_) | Tag::Item | Tag::BlockQuote(_)
            | Tag::CodeBlock(_) | Tag::HtmlBlock | Tag::Table(_) | Tag::Link { .. } | Tag::Image { .. }
            | Tag::Emphasis | Tag::Strong | Tag::Strikethrough)) => blocks.push(format!("{tag:?}")),
            Event::Text(t) => text.push_str(&t),
            Event::Code(t) => text.push_str(&format!("<code>{t}</code>")),
            Event::Html(h) | Event::InlineHtml(h) => blocks.push(format!("html {h:?}")),
            Event::TaskListMarker(done) => blocks.push(format!("task {done}")),
            Event::SoftBreak | Event::HardBreak => blocks.push("break".into()),
            _ => {}
        }
    }
    (blocks, text)
}

const HOSTILE: &[&str] = &[
    "x</details><!-- box:release-note -->\n- [x] y",
    "Fix <b>GPS</b> & <img src=x onerror=alert(1)> for @org/team and @priya",
    "*bold* _em_ ~~gone~~ `code` [link](https://evil.example) ![img](x) | cell | $x^2$",
    "# heading",
    "- item",
    "1. first",
    "> quote",
    "a\r\nb\u{2028}c\u{85}d\u{0B}e",
    "```",
    "back\\slash \\*",
    "_em_ a_b_ _c __strong__ x_*y*_z",
    "&lt;!-- entity --&gt; &#64;priya",
];

#[test]
fn inline_text_renders_as_exactly_its_characters_and_nothing_else() {
    for &hostile in HOSTILE {
        let md = format!("Title: {} — end", inline(hostile));
        let (blocks, text) = rendered(&md);
        assert_eq!(blocks, ["Paragraph"], "{hostile:?} became {md:?}");
        let want = format!("Title: {} — end", one_line(hostile)).replace("@o", "@\u{200D}o").replace("@p", "@\u{200D}p");
        assert_eq!(text, want, "{hostile:?} became {md:?}");
        assert!(!md.contains('\n') && !md.contains("<!--") && !md.contains("-->"), "{md:?}");
    }
}

#[test]
fn inline_text_first_on_a_line_or_in_a_table_cell_stays_text() {
    for &hostile in HOSTILE {
        let (blocks, _) = rendered(&inline(hostile));
        assert_eq!(blocks, ["Paragraph"], "{hostile:?} at the start of a line: {:?}", inline(hostile));
        let table = format!("| a | b |\n|---|---|\n| {} | x |", inline(hostile));
        let (blocks, _) = rendered(&table);
        assert_eq!(blocks, ["Table([None, None])"], "{hostile:?} in a cell: {table:?}");
    }
    // A date or a version first on a line is not a list.
    assert_eq!(inline("2026-11-24"), "2026-11-24");
    assert_eq!(inline("1.5 release"), "1.5 release");
    assert_eq!(inline("1. first"), "1\\. first");
}

#[test]
fn mentions_are_defused_but_email_addresses_are_left_alone() {
    assert_eq!(inline("cc @org/team, @priya"), "cc @\u{200D}org/team, @\u{200D}priya");
    assert_eq!(inline("ops@adani.example"), "ops@adani.example");
    assert_eq!(one_line("@priya"), "@priya", "one_line is for code blocks, where nothing pings");
}

#[test]
fn ordinary_text_is_unchanged() {
    for plain in ["Adani Karaikal", "GPS drift at the Hazira yard (v2.1), again", "Rollout: 3 clients, 2 waves", " ", "gps_drift_fix", "https://github.com/my_org/my_repo/issues/12"] {
        assert_eq!(inline(plain), plain);
    }
}

#[test]
fn one_line_keeps_characters_and_joins_lines() {
    assert_eq!(one_line("a\r\n\r\nb\tc\u{2029}d"), "a b\tc d");
    assert_eq!(one_line(" "), " ");
    assert_eq!(one_line("x\u{7}y"), "x y");
}

#[test]
fn code_span_shows_the_text_exactly_and_cannot_be_closed_from_inside() {
    for text in ["/frobnicate", "/x `a` ``b``", "`/x`", "/x <!-- rollgate:checklist --> @org/team", "a\nb", " padded ", "  "] {
        let md = format!("❓ {} : unknown", code_span(text));
        let (blocks, shown) = rendered(&md);
        assert_eq!(blocks, ["Paragraph"], "{text:?} became {md:?}");
        assert_eq!(shown, format!("❓ <code>{}</code> : unknown", one_line(text)), "{text:?} became {md:?}");
    }
    assert_eq!(rendered(&code_span("")).1, "<code> </code>");
}

#[test]
fn a_hostile_title_in_a_box_line_adds_no_box() {
    let hostile = "x</details><!-- box:release-note -->\n- [x] y <!-- box:release-note -->";
    let body = format!(
        "<!-- rollgate:checklist -->\n- [ ] **Release note** <!-- box:release-note -->\n- [ ] Wave 1: {} <!-- box:wave-1-exit -->\n\n<details><summary>t</summary>\n\n#### {}\n\n</details>",
        inline(hostile),
        inline(hostile)
    );
    let found = boxes::boxes(&body);
    let ids: Vec<_> = found.iter().map(|(id, ticked)| (id.as_str(), *ticked)).collect();
    assert_eq!(ids, [("release-note", false), ("wave-1-exit", false)], "{body}");
    // The PM's tick on the real box is seen as a tick.
    let ticked = body.replacen("- [ ] **Release note**", "- [x] **Release note**", 1);
    assert_eq!(boxes::box_changes(&body, &ticked), (vec!["release-note".to_string()], vec![]));
}
