//! A bot comment longer than its tracker takes is clipped, not refused: a reply to a comment
//! full of bad command lines, or a checklist with long pasted answers, must still be posted
//! (a refused comment fails the event, and the issue's queue waits behind its retries).
//!
//! The planner clips, once, before the comment is hashed and stored: the store then holds
//! exactly what the tracker holds, so the next event plans no edit, and an edit someone makes
//! is still told apart from the bot's own text. Clipping in the tracker adapter instead would
//! store one text and post another.
//!
//! Where it cuts: at a line break when the kept part has one (else inside the line), never
//! inside the hidden marker on the first line; it closes what the kept part left open (a code
//! fence, `<details>` blocks) and drops an unfinished `<!--`, so the note it adds is seen and
//! the rest of the tracker's page is not swallowed.

use crate::tracker::CommentLimit;

/// `text` (marker line, then body) as it fits `limit`: unchanged when it fits, else the longest
/// head of the body that fits with its closers and a visible note saying how much was left out.
pub fn fit(text: String, limit: CommentLimit) -> String {
    if limit.size(&text) <= limit.max() {
        return text;
    }
    let (marker, body) = match text.split_once('\n') {
        Some((m, b)) => (m, b),
        None => ("", text.as_str()),
    };
    let chars: Vec<(usize, char)> = body.char_indices().collect();
    let total = chars.len();
    let byte_at = |n: usize| chars.get(n).map_or(body.len(), |&(at, _)| at);
    let attempt = |n: usize| assemble(marker, &body[..byte_at(n)], total);
    let fits = |n: usize| limit.size(&attempt(n)) <= limit.max();

    // The longest head that fits. Closers make the size not quite monotone in `n`, so the
    // search keeps `fits(lo)` true rather than trusting monotony.
    let (mut lo, mut hi) = (0, total);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    // Back to the last line break of the kept head, when it has one and that still fits (it
    // may not: cutting before a `</details>` line adds a closer).
    let at_break = body[..byte_at(lo)].rfind('\n').map(|nl| chars.partition_point(|&(at, _)| at <= nl));
    let n = at_break.filter(|&n| fits(n)).unwrap_or(lo);
    let clipped = attempt(n);
    if limit.size(&clipped) <= limit.max() {
        clipped
    } else {
        // Only a tracker limit shorter than the note itself gets here: keep the marker.
        marker.to_string()
    }
}

/// The marker, the kept head, what closes the structure it left open, and the note (which
/// counts what is not shown of the body's `total` characters).
fn assemble(marker: &str, head: &str, total: usize) -> String {
    let (kept, closing) = closers(head);
    let shown = head[..kept].trim_end();
    let left_out = total - shown.chars().count();
    let mut out = String::with_capacity(marker.len() + head.len() + 256);
    out.push_str(marker);
    out.push('\n');
    out.push_str(shown);
    out.push_str(&closing);
    out.push_str(&format!(
        "\n\n_… clipped: {} more characters did not fit the tracker's comment limit; the full text is in rollgate's audit trail for this issue._",
        thousands(left_out)
    ));
    out
}

/// How much of `head` to keep, and what closes the structure it leaves open: a code fence,
/// then `<details>` blocks. An HTML comment cut open is dropped from its `<!--` on rather than
/// closed, so a cut `<!-- box:release-note -->` cannot become a box with another id. Read line
/// by line as Markdown does for these: a fence opens with three or more backticks or tildes
/// (indented at most three spaces) and closes with at least as many of the same; comment and
/// `<details>` markers inside a fence are code, not structure.
fn closers(head: &str) -> (usize, String) {
    let mut fence: Option<(char, usize)> = None;
    let mut comment_at: Option<usize> = None;
    let mut details = 0usize;
    let mut start = 0;
    for line in head.split_inclusive('\n') {
        let line_at = start;
        start += line.len();
        if let Some((ch, len)) = fence {
            let t = line.trim();
            if t.chars().count() >= len && t.chars().all(|c| c == ch) {
                fence = None;
            }
            continue;
        }
        if comment_at.is_none() {
            if let Some(open) = opens_fence(line) {
                fence = Some(open);
                continue;
            }
        }
        let mut at = 0;
        while at < line.len() {
            let rest = &line[at..];
            if comment_at.is_some() {
                let Some(end) = rest.find("-->") else { break };
                comment_at = None;
                at += end + 3;
                continue;
            }
            let open = rest.find("<!--");
            let lower = rest[..open.unwrap_or(rest.len())].to_ascii_lowercase();
            details += lower.matches("<details").count();
            details = details.saturating_sub(lower.matches("</details").count());
            let Some(open) = open else { break };
            comment_at = Some(line_at + at + open);
            at += open + 4;
        }
    }
    // Nothing is counted after an open `<!--`, so `details` holds what precedes it.
    let kept = comment_at.unwrap_or(head.len());
    let mut out = String::new();
    if let Some((ch, len)) = fence {
        out.push('\n');
        out.extend(std::iter::repeat_n(ch, len));
    }
    for _ in 0..details {
        out.push_str("\n\n</details>");
    }
    (kept, out)
}

/// A line opening a ``` or ~~~ fence: (fence char, run length). A backtick fence's info string
/// holds no backtick (CommonMark), so "```x```" is inline code.
fn opens_fence(line: &str) -> Option<(char, usize)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    let t = &line[indent..];
    let ch = t.chars().next().filter(|&c| c == '`' || c == '~')?;
    let len = t.chars().take_while(|&c| c == ch).count();
    let backtick_in_info = ch == '`' && t[len..].contains('`');
    (indent <= 3 && len >= 3 && !backtick_in_info).then_some((ch, len))
}

/// 12345 -> "12,345".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
#[path = "clip_tests.rs"]
mod tests;
