//! The policy set: every `policies/rules/*.rhai` compiled once, with the playbook's tables and
//! vocabulary, evaluated in a sandbox. Rust knows no playbook rule; the files do.

pub mod boxes;
pub mod commands;
pub mod decision;
pub mod fixtures;
pub mod people_text;
pub mod reload;
mod host;
mod views;
pub mod vocabulary;

use crate::clock::Calendar;
use crate::model::{Event, IssueSnapshot, PolicyVersion};
use crate::model::HistoryEntry;
use chrono::{DateTime, Utc};
use decision::{read_output, Decision};
use rhai::{CallFnOptions, Dynamic, Engine, Map, Module, Scope, AST};
use views::{apply_to_view, issue_map, latest_state, record_into_state, to_dynamic, BeforeView, Ctx, EventView};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vocabulary::{Normalized, Vocabulary};

/// Sandbox limits for every rule call. A rule that loops, recurses or allocates past these is
/// stopped and the event fails with the rule's name, instead of taking the worker down.
pub mod limits {
    pub const MAX_OPERATIONS: u64 = 200_000;
    pub const MAX_CALL_LEVELS: usize = 32;
    pub const MAX_EXPR_DEPTH: usize = 64;
    pub const MAX_FN_EXPR_DEPTH: usize = 32;
    pub const MAX_STRING_SIZE: usize = 256 * 1024;
    pub const MAX_ARRAY_SIZE: usize = 10_000;
    pub const MAX_MAP_SIZE: usize = 10_000;
}

const HOOK: &str = "decide";

/// A policy folder that cannot become the running set. Shown to operators as
/// `file:line:column: message` with the offending source line.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}:{line}:{column}: {message}\n    {source_line}")]
    Compile { file: String, line: usize, column: usize, message: String, source_line: String },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("{0}")]
    Io(String),
}

/// A rule failed while deciding on an event.
#[derive(Debug, thiserror::Error)]
#[error("policy rule {rule}: {message}")]
pub struct EvalError {
    pub rule: String,
    pub message: String,
}

/// The configuration an evaluation runs with: what a policy may read (`ctx.config`) and the
/// business-day calendar its date functions use. The worker passes the deployment's; a
/// fixture passes its own, so `ROLLGATE_TIMEZONE` never changes a fixture's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyConfig {
    pub roles: PolicyRoles,
    /// Shown to policies as `ctx.config.timezone`, the zone's IANA name.
    #[serde(rename = "timezone", serialize_with = "zone_name")]
    pub calendar: Arc<Calendar>,
}

fn zone_name<S: serde::Serializer>(calendar: &Arc<Calendar>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(calendar.tz.name())
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyRoles {
    pub pm: Vec<String>,
    pub qa_lead: Vec<String>,
}

impl PolicyRoles {
    /// The roles a login holds by name (teams are resolved by `roles::RoleResolver`, which
    /// asks the tracker; the dry tools and fixtures go by login only).
    pub fn of_login(&self, login: &str) -> Vec<String> {
        [("pm", &self.pm), ("qa_lead", &self.qa_lead)]
            .into_iter()
            .filter(|(_, members)| members.iter().any(|m| m.eq_ignore_ascii_case(login)))
            .map(|(role, _)| role.to_string())
            .collect()
    }
}

/// A change of one field made by this event (what the tracker reported, before any rule).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// What rollgate read from an event beyond the payload: computed in Rust, generically, so
/// rules get facts instead of parsing text.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EventFacts {
    /// Field, flag (`flags.<name>`) and `state` changes this event made.
    pub changes: Vec<FieldChange>,
    /// Commands written in this comment (for an edit: only the ones the edit added).
    pub commands: Vec<commands::Command>,
    pub unknown_commands: Vec<commands::Unknown>,
    pub command_errors: Vec<commands::LineError>,
    /// The bot comment this event edited, by purpose tag.
    pub comment_tag: Option<String>,
    /// Task boxes (by id) ticked and unticked in that edit.
    pub ticked: Vec<String>,
    pub unticked: Vec<String>,
    /// The actor's roles from the configuration (`pm`, `qa_lead`).
    pub roles: Vec<String>,
}

impl EventFacts {
    /// Drops what a comment asks for (commands, replies, ticks): that revision was acted on.
    pub fn forget_comment(&mut self) {
        self.commands.clear();
        self.unknown_commands.clear();
        self.command_errors.clear();
        self.ticked.clear();
        self.unticked.clear();
    }
}

/// One earlier decision on the issue, for `/explain`.
#[derive(Debug, Clone, Serialize)]
pub struct RecentDecision {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub why: Vec<String>,
}

/// The issue as it stood before this event.
pub struct Before<'a> {
    pub normalized: &'a Normalized,
    pub open: bool,
}

/// Everything a rule sees. Rules are pure: this and `now` are their only inputs.
pub struct Input<'a> {
    pub issue: &'a IssueSnapshot,
    pub normalized: &'a Normalized,
    pub event: &'a Event,
    pub facts: &'a EventFacts,
    /// `None` when the event is the issue's creation.
    pub before: Option<Before<'a>>,
    /// rollgate had no view of the issue before this event (`ctx.first_seen`).
    pub first_seen: bool,
    pub history: &'a [HistoryEntry],
    pub recent: &'a [RecentDecision],
    pub config: &'a PolicyConfig,
    pub now: DateTime<Utc>,
}

struct Rule {
    name: String,
    ast: AST,
}

pub struct PolicySet {
    pub version: PolicyVersion,
    pub vocabulary: Vocabulary,
    /// Command names the pack handles (`[commands]` of playbook.toml); others get a reply.
    pub commands: Vec<String>,
    engine: Engine,
    rules: Vec<Rule>,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("version", &self.version)
            .field("rules", &self.rule_names())
            .finish()
    }
}

fn read(p: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(p).map_err(|e| PolicyError::Io(format!("{}: {e}", p.display())))
}

/// Files with `ext` directly in `dir`, sorted; none when the folder does not exist.
fn files_in(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, PolicyError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PolicyError::Io(format!("{}: {e}", dir.display()))),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    Ok(files)
}

/// `templates/*.md`, compiled once; a template with a syntax error refuses the folder.
fn load_templates(dir: &Path) -> Result<minijinja::Environment<'static>, PolicyError> {
    let mut env = minijinja::Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    people_text::escape_people_text_in(&mut env);
    for path in files_in(&dir.join("templates"), "md")? {
        let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        if name == "README" {
            continue;
        }
        let source = read(&path)?;
        if let Err(e) = env.add_template_owned(name, source.clone()) {
            let line = e.line().unwrap_or(0);
            let shown = path.display().to_string();
            return Err(compile_error(&shown, &source, Some(line), None, e.detail().unwrap_or(&e.to_string()).to_string()));
        }
    }
    Ok(env)
}

impl PolicySet {
    /// Loads and compiles a policy folder: `vocabulary.toml`, optional `playbook.toml` and
    /// `templates/*.md`, and `rules/*.rhai` in file-name order. The set holds no calendar:
    /// each evaluation brings one (`PolicyConfig`).
    pub fn load(dir: &Path) -> Result<Arc<PolicySet>, PolicyError> {
        let vocab_path = dir.join("vocabulary.toml");
        let vocabulary = Vocabulary::parse(&read(&vocab_path)?).map_err(|e| PolicyError::Invalid {
            file: vocab_path.display().to_string(),
            message: format!("{e:#}"),
        })?;

        let mut engine = sandboxed_engine();
        let templates = Arc::new(load_templates(dir)?);
        host::register(&mut engine, templates);

        let mut commands = Vec::new();
        let playbook_path = dir.join("playbook.toml");
        if playbook_path.exists() {
            let invalid = |message: String| PolicyError::Invalid { file: playbook_path.display().to_string(), message };
            let table: toml::Table = toml::from_str(&read(&playbook_path)?).map_err(|e| invalid(e.to_string()))?;
            if let Some(c) = table.get("commands") {
                let c = c.as_table().ok_or_else(|| invalid("[commands] must be a table of command names".into()))?;
                commands = c.keys().cloned().collect();
            }
            let mut module = Module::new();
            for (name, value) in table {
                let value = rhai::serde::to_dynamic(&value).map_err(|e| invalid(format!("{name}: {e}")))?;
                // Shared: reading `playbook::artifacts` hands out a pointer, not a copy of the
                // table. Module variables are constants, so no rule can change it.
                module.set_var(name, value.into_shared());
            }
            module.build_index();
            engine.register_static_module("playbook", module.into());
        }

        // Helper functions shared by every rule: policies/lib/*.rhai (functions only).
        let mut lib = AST::empty();
        for path in files_in(&dir.join("lib"), "rhai")? {
            let source = read(&path)?;
            let shown = path.display().to_string();
            let ast = engine.compile(&source).map_err(|e| {
                let pos = e.position();
                compile_error(&shown, &source, pos.line(), pos.position(), e.err_type().to_string())
            })?;
            lib = lib.merge(&ast.clone_functions_only());
        }

        let rules_dir = dir.join("rules");
        let files = files_in(&rules_dir, "rhai")?;
        if files.is_empty() {
            return Err(PolicyError::Io(format!("{}: no *.rhai rules", rules_dir.display())));
        }
        let mut rules = Vec::new();
        for path in &files {
            let source = read(path)?;
            let shown = path.display().to_string();
            let ast = engine.compile(&source).map_err(|e| {
                let pos = e.position();
                compile_error(&shown, &source, pos.line(), pos.position(), e.err_type().to_string())
            })?;
            // Top-level statements never run per event (hooks are called with eval_ast off);
            // run them once here so an `import` or a runaway statement fails the load.
            engine.run_ast(&ast).map_err(|e| PolicyError::Invalid {
                file: shown.clone(),
                message: format!("top-level statement failed: {e}"),
            })?;
            let has_hook = ast.iter_functions().any(|f| f.name == HOOK && f.params.len() == 3);
            if !has_hook {
                return Err(PolicyError::Invalid {
                    file: shown,
                    message: format!("defines no `fn {HOOK}(issue, event, ctx)`"),
                });
            }
            let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            rules.push(Rule { name, ast: lib.merge(&ast) });
        }
        Ok(Arc::new(PolicySet {
            version: version_of(dir)?,
            vocabulary,
            commands,
            engine,
            rules,
        }))
    }

    pub fn rule_names(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.name.as_str()).collect()
    }

    /// Runs every rule in order. Each rule sees the issue with the fields and flags the rules
    /// before it decided, so later rules check the state the earlier ones are producing.
    pub fn evaluate(&self, input: &Input<'_>) -> Result<Decision, EvalError> {
        let mut issue = Dynamic::from_map(issue_map(input)).into_shared();
        // Shared, so each rule call passes pointers instead of copying the history and the
        // event. Rules treat them as read-only; records reach `ctx.state` through Rust.
        let event = to_dynamic(&EventView::new(input.event, input.facts)).into_shared();
        let mut ctx = to_dynamic(&Ctx {
            history: input.history,
            state: latest_state(input.history),
            entered: views::entered(input.history),
            before: input.before.as_ref().map(|b| BeforeView {
                fields: &b.normalized.fields,
                flags: b.normalized.flags.iter().map(|f| (f.as_str(), true)).collect(),
                open: b.open,
            }),
            first_seen: input.first_seen,
            recent: input.recent,
            config: input.config,
            now: input.now,
        })
        .into_shared();
        let mut decision = Decision::default();
        for rule in &self.rules {
            let fail = |message: String| EvalError { rule: rule.name.clone(), message };
            // The date functions read the calendar from the call's tag (see `host`).
            let options = CallFnOptions::new().eval_ast(false).rewind_scope(true).with_tag(input.config.calendar.clone());
            let value: Dynamic = self
                .engine
                .call_fn_with_options(
                    options,
                    &mut Scope::new(),
                    &rule.ast,
                    HOOK,
                    (issue.clone(), event.clone(), ctx.clone()),
                )
                // Rhai's message already names the line and position.
                .map_err(|e| fail(e.to_string()))?;
            // Rhai checks sizes on most growth paths but not on map index assignment (bounded
            // there only by the operation limit): check what comes out, whatever its path.
            self.engine.ensure_data_size_within_limits(&value).map_err(|e| fail(e.to_string()))?;
            let out = read_output(value, &self.vocabulary).map_err(fail)?;
            if let Some(mut map) = issue.write_lock::<Map>() {
                apply_to_view(&mut map, &out);
            }
            record_into_state(&mut ctx, &out.records);
            if let Some(first) = out.blocks.first() {
                // A blocking rule's own field decisions are the revert of what it refused.
                let block = format!("{}: {first}", rule.name);
                for (field, _) in &out.fields {
                    decision.refusals.entry(field.clone()).or_insert_with(|| block.clone());
                }
                if out.open.is_some() {
                    decision.refusals.entry("state".into()).or_insert_with(|| block.clone());
                }
            }
            for (field, value) in out.fields {
                decision.fields.insert(field, value);
            }
            for (flag, on) in out.flags {
                decision.flags.insert(flag, on);
            }
            for (tag, body) in out.comments {
                decision.comments.insert(tag, body);
            }
            if out.open.is_some() {
                decision.open = out.open;
            }
            decision.records.extend(out.records);
            decision.timers.extend(out.timers);
            decision.blocks.extend(out.blocks.into_iter().map(|b| format!("{}: {b}", rule.name)));
            decision.why.extend(out.why.into_iter().map(|w| format!("{}: {w}", rule.name)));
        }
        Ok(decision)
    }
}

fn sandboxed_engine() -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(limits::MAX_OPERATIONS)
        .set_max_call_levels(limits::MAX_CALL_LEVELS)
        .set_max_expr_depths(limits::MAX_EXPR_DEPTH, limits::MAX_FN_EXPR_DEPTH)
        .set_max_string_size(limits::MAX_STRING_SIZE)
        .set_max_array_size(limits::MAX_ARRAY_SIZE)
        .set_max_map_size(limits::MAX_MAP_SIZE)
        // Policies are pure: no `import` (which would read files), no `eval`.
        .set_max_modules(0)
        .set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new())
        .set_strict_variables(true);
    engine.disable_symbol("eval");
    engine.on_print(|text| tracing::info!(target: "rollgate::policy", "{text}"));
    engine.on_debug(|text, source, pos| {
        tracing::debug!(target: "rollgate::policy", source = source.unwrap_or(""), line = pos.line().unwrap_or(0), "{text}")
    });
    engine
}

fn compile_error(file: &str, source: &str, line: Option<usize>, col: Option<usize>, message: String) -> PolicyError {
    let line = line.unwrap_or(0);
    let source_line = source.lines().nth(line.saturating_sub(1)).unwrap_or("").trim_end().to_string();
    PolicyError::Compile { file: file.into(), line, column: col.unwrap_or(0), message, source_line }
}

/// A short hash of every file under the policy folder (path and content), so each decision
/// names the exact rules and tables that made it.
fn version_of(dir: &Path) -> Result<PolicyVersion, PolicyError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            if path.is_dir() {
                walk(&path, out)?;
            } else {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, &mut files).map_err(|e| PolicyError::Io(format!("{}: {e}", dir.display())))?;
    files.sort();
    let mut hash = Sha256::new();
    for f in files {
        let rel = f.strip_prefix(dir).unwrap_or(&f);
        hash.update(rel.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(std::fs::read(&f).map_err(|e| PolicyError::Io(format!("{}: {e}", f.display())))?);
        hash.update([0]);
    }
    Ok(PolicyVersion(hex::encode(&hash.finalize()[..6])))
}

/// The running policy set, shared by workers and swapped whole on reload: an event in flight
/// keeps the set it started with.
#[derive(Clone)]
pub struct PolicyHandle(Arc<std::sync::RwLock<Arc<PolicySet>>>);

impl PolicyHandle {
    pub fn new(set: Arc<PolicySet>) -> Self {
        PolicyHandle(Arc::new(std::sync::RwLock::new(set)))
    }

    pub fn current(&self) -> Arc<PolicySet> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, set: Arc<PolicySet>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = set;
    }
}

#[cfg(test)]
mod tests;
