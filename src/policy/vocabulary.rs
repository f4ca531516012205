//! Labels <-> normalized fields. The mapping is data from `policies/vocabulary.toml`; the code
//! only knows that a field holds one value and a flag is on or off.

use anyhow::{bail, Context};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    colors: BTreeMap<String, String>,
    /// field -> value -> label, in file order of values.
    fields: BTreeMap<String, Vec<(String, String)>>,
    /// flag -> label.
    flags: BTreeMap<String, String>,
    by_label: HashMap<String, Meaning>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Meaning {
    Field { field: String, value: String },
    Flag(String),
}

/// An issue's labels read through the vocabulary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Normalized {
    pub fields: BTreeMap<String, String>,
    pub flags: BTreeSet<String>,
    /// Fields carrying more than one label: the planner keeps only the chosen value.
    pub conflicting: BTreeSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    github: TrackerVocabulary,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackerVocabulary {
    #[serde(default)]
    fields: toml::Table,
    #[serde(default)]
    flags: BTreeMap<String, String>,
    /// Label colours for `rollgate setup github`: by field, and `flags`.
    #[serde(default)]
    colors: BTreeMap<String, String>,
}

impl Vocabulary {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: File = toml::from_str(text)?;
        let mut v = Vocabulary { colors: file.github.colors.clone(), ..Default::default() };
        for (field, values) in file.github.fields {
            let toml::Value::Table(values) = values else {
                bail!("fields.{field} must be a table of value = \"label\"");
            };
            let mut list = Vec::new();
            for (value, label) in values {
                let label = label
                    .as_str()
                    .with_context(|| format!("fields.{field}.{value} must be a label name"))?;
                v.claim(label, Meaning::Field { field: field.clone(), value: value.clone() })?;
                list.push((value, label.to_string()));
            }
            v.fields.insert(field, list);
        }
        for (flag, label) in file.github.flags {
            v.claim(&label, Meaning::Flag(flag.clone()))?;
            v.flags.insert(flag, label);
        }
        Ok(v)
    }

    fn claim(&mut self, label: &str, meaning: Meaning) -> anyhow::Result<()> {
        if let Some(previous) = self.by_label.insert(label.to_string(), meaning) {
            bail!("label {label:?} is mapped twice (also {previous:?})");
        }
        Ok(())
    }

    pub fn is_field(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    pub fn is_flag(&self, flag: &str) -> bool {
        self.flags.contains_key(flag)
    }

    pub fn field_values(&self, field: &str) -> impl Iterator<Item = &str> {
        self.fields.get(field).into_iter().flatten().map(|(v, _)| v.as_str())
    }

    pub fn field_label(&self, field: &str, value: &str) -> Option<&str> {
        self.fields.get(field)?.iter().find(|(v, _)| v == value).map(|(_, l)| l.as_str())
    }

    pub fn field_labels(&self, field: &str) -> impl Iterator<Item = &str> {
        self.fields.get(field).into_iter().flatten().map(|(_, l)| l.as_str())
    }

    pub fn flag_label(&self, flag: &str) -> Option<&str> {
        self.flags.get(flag).map(String::as_str)
    }

    /// Every label of the vocabulary with a colour and a description, for `rollgate setup`.
    pub fn label_specs(&self) -> Vec<(String, String, String)> {
        let color = |k: &str| self.colors.get(k).cloned().unwrap_or_else(|| "ededed".into()).trim_start_matches('#').to_string();
        let mut out = Vec::new();
        for (field, values) in &self.fields {
            for (value, label) in values {
                out.push((label.clone(), color(field), format!("Playbook {field}: {value}")));
            }
        }
        for (flag, label) in &self.flags {
            out.push((label.clone(), color("flags"), format!("Playbook flag: {flag}")));
        }
        out
    }

    /// The (field, value) a label stands for.
    pub fn field_of(&self, label: &str) -> Option<(&str, &str)> {
        match self.by_label.get(label)? {
            Meaning::Field { field, value } => Some((field, value)),
            Meaning::Flag(_) => None,
        }
    }

    /// The flag a label stands for.
    pub fn flag_of(&self, label: &str) -> Option<&str> {
        match self.by_label.get(label)? {
            Meaning::Flag(flag) => Some(flag),
            Meaning::Field { .. } => None,
        }
    }

    /// A tracker that holds fields natively (Jira) seen as labels, so rules and planner work
    /// the same: the vocabulary labels of its fields and flags, plus its own other labels.
    pub fn express(&self, native: &crate::model::NativeFields, labels: &[String]) -> Vec<String> {
        let mut out: Vec<String> = labels.iter().filter(|l| !self.by_label.contains_key(*l)).cloned().collect();
        for (field, value) in &native.fields {
            if let Some(l) = self.field_label(field, value) {
                out.push(l.to_string());
            }
        }
        for flag in &native.flags {
            if let Some(l) = self.flag_label(flag) {
                out.push(l.to_string());
            }
        }
        out
    }

    /// Reads labels into fields and flags. When a field carries several labels, the one the
    /// event just added wins (`fresh`), else the first in vocabulary order.
    pub fn normalize(&self, labels: &[String], fresh: Option<&str>) -> Normalized {
        let mut n = Normalized::default();
        let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for label in labels {
            match self.by_label.get(label) {
                Some(Meaning::Field { field, value }) => {
                    seen.entry(field).or_default().push(value);
                }
                Some(Meaning::Flag(flag)) => {
                    n.flags.insert(flag.clone());
                }
                None => {}
            }
        }
        for (field, values) in seen {
            let chosen = match fresh.and_then(|l| self.by_label.get(l)) {
                Some(Meaning::Field { field: f, value }) if f == field => value.as_str(),
                _ => self
                    .field_values(field)
                    .find(|v| values.contains(v))
                    .expect("a seen value is in the vocabulary"),
            };
            if values.len() > 1 {
                n.conflicting.insert(field.to_string());
            }
            n.fields.insert(field.to_string(), chosen.to_string());
        }
        n
    }
}

impl Normalized {
    /// The native fields these labels stand for (after effects on a Jira issue).
    pub fn to_native(&self) -> crate::model::NativeFields {
        crate::model::NativeFields { fields: self.fields.clone(), flags: self.flags.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = r#"
[github.fields.lane]
A = "lane/A"
B = "lane/B"
[github.fields.rollout]
"1" = "rollout/1-direct"
[github.flags]
needs-demo = "needs/demo"
"#;

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn labels_become_fields_and_flags() {
        let v = Vocabulary::parse(V).unwrap();
        let n = v.normalize(&labels(&["lane/B", "needs/demo", "bug", "rollout/1-direct"]), None);
        assert_eq!(n.fields["lane"], "B");
        assert_eq!(n.fields["rollout"], "1");
        assert!(n.flags.contains("needs-demo"));
        assert!(n.conflicting.is_empty());
        assert_eq!(v.field_label("rollout", "1"), Some("rollout/1-direct"));
    }

    #[test]
    fn a_fresh_label_wins_a_conflict() {
        let v = Vocabulary::parse(V).unwrap();
        let both = labels(&["lane/A", "lane/B"]);
        assert_eq!(v.normalize(&both, None).fields["lane"], "A");
        let n = v.normalize(&both, Some("lane/B"));
        assert_eq!(n.fields["lane"], "B");
        assert!(n.conflicting.contains("lane"));
    }

    #[test]
    fn a_label_mapped_twice_is_refused() {
        let err = Vocabulary::parse(
            "[github.fields.lane]\nA = \"x\"\n[github.flags]\nf = \"x\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("mapped twice"), "{err}");
    }
}
