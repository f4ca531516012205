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

/// Boxes ticked and unticked between two versions of a comment.
pub fn box_changes(before: &str, after: &str) -> (Vec<String>, Vec<String>) {
    let (b, a) = (boxes(before), boxes(after));
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
    fn issue_form_sections_are_read() {
        let body = "### Type\n\nbug\n\n### Affected clients\n\nAdani Cement, Adani Hazira\n";
        let s = sections(body);
        assert_eq!(s["Type"], "bug");
        assert_eq!(s["Affected clients"], "Adani Cement, Adani Hazira");
    }
}
