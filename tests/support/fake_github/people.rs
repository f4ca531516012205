//! Test people acting through the fake, as in GitHub's web UI: each method changes the world
//! exactly as the REST path does and sends the same deliveries, with the person as `sender`
//! (`"type": "User"`). A refused change (no such issue, comment or label) panics: it is a
//! mistake in the test, not something GitHub would deliver.

use super::world::{Actor, Key, Missing, Stated, World};
use super::FakeGithub;

/// The order GitHub's label picker states a swap in (it sends two deliveries, either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapOrder {
    /// `unlabeled` old first: its snapshot has neither label.
    RemoveFirst,
    /// `labeled` new first: its snapshot has both.
    AddFirst,
}

#[derive(Clone)]
pub struct Person {
    pub(super) fake: FakeGithub,
    pub(super) actor: Actor,
}

impl FakeGithub {
    pub fn person(&self, login: &str) -> Person {
        Person { fake: self.clone(), actor: Actor::person(login) }
    }
}

fn key(repo: &str, n: u64) -> Key {
    (repo.to_string(), n)
}

fn strings(l: &[&str]) -> Vec<String> {
    l.iter().map(|s| s.to_string()).collect()
}

impl Person {
    pub fn login(&self) -> &str {
        &self.actor.login
    }

    /// One change: applied, then its deliveries built (the snapshot of this moment) and queued.
    fn act<T>(&self, what: &str, f: impl FnOnce(&mut World) -> Result<(Key, Vec<Stated>, T), Missing>) -> T {
        let mut w = self.fake.world.lock().unwrap();
        match f(&mut w) {
            Ok((key, stated, out)) => {
                self.fake.emit(&mut w, &key, &self.actor, &stated);
                out
            }
            Err(e) => panic!("{} cannot {what}: {e:?}", self.actor.login),
        }
    }

    /// Opens an issue with labels (`opened`, then a `labeled` per label); its number.
    pub fn open_issue(&self, repo: &str, title: &str, body: &str, labels: &[&str]) -> u64 {
        self.act("open an issue", |w| {
            let (n, stated) = w.create_issue(repo, title, body, &strings(labels), &self.actor.login);
            Ok((key(repo, n), stated, n))
        })
    }

    pub fn add_labels(&self, repo: &str, n: u64, labels: &[&str]) {
        self.act("add labels", |w| Ok((key(repo, n), w.add_labels(&key(repo, n), &strings(labels))?, ())))
    }

    pub fn remove_label(&self, repo: &str, n: u64, label: &str) {
        self.act("remove a label", |w| Ok((key(repo, n), w.remove_label(&key(repo, n), label)?, ())))
    }

    /// Replaces `old` by `new` as the label picker does: two deliveries, each with the issue
    /// as it was right after its own half (so `RemoveFirst` shows the issue with neither).
    pub fn swap_label(&self, repo: &str, n: u64, old: &str, new: &str, order: SwapOrder) {
        let k = key(repo, n);
        let remove = |w: &mut World| Ok((k.clone(), w.remove_label(&k, old)?, ()));
        let add = |w: &mut World| Ok((k.clone(), w.add_labels(&k, &[new.to_string()])?, ()));
        match order {
            SwapOrder::RemoveFirst => {
                self.act("swap a label", remove);
                self.act("swap a label", add);
            }
            SwapOrder::AddFirst => {
                self.act("swap a label", add);
                self.act("swap a label", remove);
            }
        }
    }

    /// Sets the labels to exactly these in one change (`unlabeled` each removed, then
    /// `labeled` each added, all with the result).
    pub fn set_labels(&self, repo: &str, n: u64, labels: &[&str]) {
        self.act("set labels", |w| Ok((key(repo, n), w.set_labels(&key(repo, n), &strings(labels))?, ())))
    }

    /// Closes with a reason (`completed`, `not_planned`).
    pub fn close(&self, repo: &str, n: u64, reason: &str) {
        self.act("close", |w| Ok((key(repo, n), w.set_state(&key(repo, n), false, Some(reason))?, ())))
    }

    pub fn reopen(&self, repo: &str, n: u64) {
        self.act("reopen", |w| Ok((key(repo, n), w.set_state(&key(repo, n), true, None)?, ())))
    }

    pub fn edit_title(&self, repo: &str, n: u64, title: &str) {
        self.act("edit the title", |w| Ok((key(repo, n), w.edit(&key(repo, n), Some(title), None)?, ())))
    }

    pub fn edit_body(&self, repo: &str, n: u64, body: &str) {
        self.act("edit the body", |w| Ok((key(repo, n), w.edit(&key(repo, n), None, Some(body))?, ())))
    }

    /// Comments; the comment's id.
    pub fn comment(&self, repo: &str, n: u64, body: &str) -> u64 {
        self.act("comment", |w| {
            let (c, stated) = w.create_comment(&key(repo, n), body, &self.actor.login)?;
            Ok((key(repo, n), stated, c.id))
        })
    }

    /// Edits any comment (GitHub lets people with write access edit the bot's).
    pub fn edit_comment(&self, id: u64, body: &str) {
        self.act("edit a comment", |w| {
            let (k, _, stated) = w.edit_comment(id, body, &self.actor.login)?;
            Ok((k, stated, ()))
        })
    }

    /// Ticks box `box_id` (`- [ ]` to `- [x]` on the line with `<!-- box:<id> -->`) in
    /// comment `comment_id`, as clicking the checkbox does.
    pub fn tick(&self, comment_id: u64, box_id: &str) {
        self.flip(comment_id, box_id, "- [ ]", "- [x]")
    }

    pub fn untick(&self, comment_id: u64, box_id: &str) {
        self.flip(comment_id, box_id, "- [x]", "- [ ]")
    }

    fn flip(&self, comment_id: u64, box_id: &str, from: &str, to: &str) {
        self.act("tick a box", |w| {
            let k = w.comment_home(comment_id).ok_or(Missing::Comment)?;
            let body = w.issues[&k].comments.iter().find(|c| c.id == comment_id).unwrap().body.clone();
            let marker = format!("<!-- box:{box_id} -->");
            let flipped: Vec<String> = body
                .split('\n')
                .map(|l| if l.contains(&marker) { l.replacen(from, to, 1) } else { l.to_string() })
                .collect();
            assert!(body.contains(&marker), "no box {box_id} in comment {comment_id}:\n{body}");
            let (k, _, stated) = w.edit_comment(comment_id, &flipped.join("\n"), &self.actor.login)?;
            Ok((k, stated, ()))
        })
    }

    pub fn delete_comment(&self, id: u64) {
        self.act("delete a comment", |w| {
            let (k, stated) = w.delete_comment(id)?;
            Ok((k, stated, ()))
        })
    }
}
