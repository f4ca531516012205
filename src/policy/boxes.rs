//! Reading what people do to the bot's comments: which comment it is (its marker) and which
//! task boxes are ticked. Generic: a box is any `- [ ]` line carrying `<!-- box:ID -->`.

use std::collections::BTreeMap;

/// The purpose tag of a bot comment: `<!-- rollgate:checklist -->` at its start gives `checklist`.
pub fn marker_tag(body: &str) -> Option<&str> {
    let rest = body.trim_start().strip_prefix("<!-- rollgate:")?;
    let (tag, _) = rest.split_once(" -->")?;
    (!tag.is_empty() && tag.len() <= 64).then_some(tag)
}

/// Box id -> ticked, for every task-list line with a box id.
pub fn boxes(body: &str) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    for line in body.lines() {
        let l = line.trim_start();
        let rest = l.strip_prefix("- ").or_else(|| l.strip_prefix("* "));
        let Some(rest) = rest else { continue };
        let ticked = if rest.starts_with("[ ]") {
            false
        } else if rest.starts_with("[x]") || rest.starts_with("[X]") {
            true
        } else {
            continue;
        };
        if let Some(id) = rest.split("<!-- box:").nth(1).and_then(|r| r.split_once(" -->")).map(|(id, _)| id.trim()) {
            if !id.is_empty() {
                out.insert(id.to_string(), ticked);
            }
        }
    }
    out
}

/// The letters and digits of `text`, lowercased: what survives any tracker's re-formatting of a
/// line (Markdown `**x**`, wiki `*x*`, a struck-through `-x-`, escapes, spacing).
fn letters(text: &str) -> String {
    text.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// A Markdown box line's visible words (what Jira shows of it) with its id: `- [x] **Release
/// note** — PM <!-- box:release-note -->` gives ("releasenotepm", "release-note").
fn box_words(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in body.lines() {
        let l = line.trim_start();
        let Some(rest) = l.strip_prefix("- [").or_else(|| l.strip_prefix("* [")) else { continue };
        let Some((_, text)) = rest.split_once(']') else { continue };
        let Some((visible, tail)) = text.split_once("<!-- box:") else { continue };
        let Some((id, _)) = tail.split_once(" -->") else { continue };
        out.push((letters(visible), id.trim().to_string()));
    }
    out
}

/// Box id -> ticked, read from a comment a tracker re-formatted (Jira's webhooks send wiki text,
/// with no hidden markers): each list line is matched to a box of `ours` (rollgate's Markdown) by
/// its words. A ticked task is `\[x]` on Data Center and struck through (`-text-`) on Cloud.
fn reformatted_boxes(ours: &str, theirs: &str) -> BTreeMap<String, bool> {
    let known = box_words(ours);
    let mut out = BTreeMap::new();
    for line in theirs.lines() {
        let l = line.trim_start();
        let rest = l.trim_start_matches(['*', '-', '#']);
        if rest.len() == l.len() || !rest.starts_with(' ') {
            continue;
        }
        let rest = rest.trim();
        let (ticked, text) = if let Some(t) = rest.strip_prefix("\\[x]").or_else(|| rest.strip_prefix("\\[X]")).or_else(|| rest.strip_prefix("[x]")) {
            (true, t)
        } else if let Some(t) = rest.strip_prefix("\\[ ]").or_else(|| rest.strip_prefix("[ ]")) {
            (false, t)
        } else {
            (rest.len() > 1 && rest.starts_with('-') && rest.ends_with('-'), rest)
        };
        let words = letters(text);
        if let Some((_, id)) = known.iter().find(|(w, _)| !w.is_empty() && *w == words) {
            out.insert(id.clone(), ticked);
        }
    }
    out
}

/// Box id -> ticked in `after`, a version of rollgate's comment `before`: by hidden marker when
/// `after` keeps them (GitHub), else by the words of each box (a tracker that re-formats).
pub fn read_boxes(before: &str, after: &str) -> BTreeMap<String, bool> {
    if after.contains("<!-- box:") {
        boxes(after)
    } else {
        reformatted_boxes(before, after)
    }
}

/// `body` (rollgate's Markdown) with the given boxes set: what the comment means after a person
/// ticked boxes on a tracker that shows it re-formatted.
pub fn with_boxes(body: &str, set: &BTreeMap<String, bool>) -> String {
    let mut out: Vec<String> = Vec::new();
    for line in body.lines() {
        let id = line.split("<!-- box:").nth(1).and_then(|r| r.split_once(" -->")).map(|(id, _)| id.trim());
        match id.and_then(|id| set.get(id)) {
            Some(on) => {
                let mark = if *on { "[x]" } else { "[ ]" };
                let at = ["[ ]", "[x]", "[X]"].iter().filter_map(|m| line.find(m)).min();
                let mut l = line.to_string();
                if let Some(i) = at {
                    l.replace_range(i..i + 3, mark);
                }
                out.push(l);
            }
            None => out.push(line.to_string()),
        }
    }
    let mut text = out.join("\n");
    if body.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Boxes ticked and unticked between two versions of a comment (`after` may be re-formatted by
/// the tracker: see `read_boxes`).
pub fn box_changes(before: &str, after: &str) -> (Vec<String>, Vec<String>) {
    let (b, a) = (boxes(before), read_boxes(before, after));
    let mut ticked = Vec::new();
    let mut unticked = Vec::new();
    for (id, now) in &a {
        let was = b.get(id).copied().unwrap_or(false);
        match (was, *now) {
            (false, true) => ticked.push(id.clone()),
            (true, false) => unticked.push(id.clone()),
            _ => {}
        }
    }
    (ticked, unticked)
}

/// `### Heading` sections of an issue body (what GitHub issue forms produce): heading -> text.
pub fn sections(body: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in body.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            if let Some((k, v)) = current.take() {
                out.insert(k, v.join("\n").trim().to_string());
            }
            current = Some((h.trim().to_string(), Vec::new()));
        } else if let Some((_, v)) = current.as_mut() {
            v.push(line);
        }
    }
    if let Some((k, v)) = current {
        out.insert(k, v.join("\n").trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_unticks_are_found_by_box_id() {
        let before = "<!-- rollgate:checklist -->\n- [ ] Release note <!-- box:release-note -->\n- [x] Demo <!-- box:internal-demo -->\n- [ ] no id";
        let after = "<!-- rollgate:checklist -->\n- [x] Release note <!-- box:release-note -->\n- [ ] Demo <!-- box:internal-demo -->\n- [x] no id";
        assert_eq!(marker_tag(after), Some("checklist"));
        assert_eq!(marker_tag("hello <!-- rollgate:x -->"), None);
        assert_eq!(box_changes(before, after), (vec!["release-note".to_string()], vec!["internal-demo".to_string()]));
        assert_eq!(boxes(after).len(), 2);
    }

    #[test]
    fn ticks_are_read_from_jiras_wiki_text_by_the_words_of_each_box() {
        let ours = "<!-- rollgate:checklist -->\n### Rollout checklist\n\n- [ ] **Release note** — PM · due 2026-11-12 <!-- box:release-note -->\n- [x] **Internal demo** — QA lead · due 2026-11-13 <!-- box:internal-demo -->\n";
        // Data Center: rollgate wrote wiki; a person ticked the first and unticked the second.
        let dc = "h3. Rollout checklist\n\n* \\[x] *Release note* — PM · due 2026-11-12\n* \\[ ] *Internal demo* — QA lead · due 2026-11-13";
        assert_eq!(box_changes(ours, dc), (vec!["release-note".to_string()], vec!["internal-demo".to_string()]));
        // Cloud: an ADF task list comes back as bullets, a done one struck through (per inline node).
        let cloud = "h3. Rollout checklist\n\n* -*Release note*-* - — PM · due 2026-11-12-\n* *Internal demo* — QA lead · due 2026-11-13";
        assert_eq!(box_changes(ours, cloud), (vec!["release-note".to_string()], vec!["internal-demo".to_string()]));
        // Nothing recognisable: nothing changes (never "every box unticked").
        assert_eq!(box_changes(ours, "something else entirely"), (vec![], vec![]));
        // What the comment means afterwards, in rollgate's own Markdown.
        let meant = with_boxes(ours, &read_boxes(ours, dc));
        assert_eq!(boxes(&meant), [("internal-demo".to_string(), false), ("release-note".to_string(), true)].into());
        assert_eq!(meant.lines().count(), ours.lines().count());
    }

    #[test]
    fn issue_form_sections_are_read() {
        let body = "### Type\n\nbug\n\n### Affected clients\n\nAdani Cement, Adani Hazira\n";
        let s = sections(body);
        assert_eq!(s["Type"], "bug");
        assert_eq!(s["Affected clients"], "Adani Cement, Adani Hazira");
    }
}
