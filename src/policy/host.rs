//! Host functions policies may call. They are pure (no I/O at call time): the templates were
//! loaded with the policy set, and the calendar comes with each evaluation (`PolicyConfig`),
//! so one compiled set serves the deployment's zone and every fixture's own.

use super::people_text;
use crate::clock::calendar::{parse_date, Calendar};
use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Map, NativeCallContext};
use std::sync::Arc;

type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

fn date(s: &str) -> Result<chrono::NaiveDate> {
    parse_date(s).ok_or_else(|| format!("{s:?} is not a YYYY-MM-DD date").into())
}

fn instant(s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| format!("{s:?} is not an RFC 3339 time").into())
}

/// The calendar of the evaluation this call is part of (the tag `PolicySet::evaluate` sets).
/// Top-level statements run once at load, outside any evaluation, and have none.
fn calendar(ctx: &NativeCallContext) -> Result<Arc<Calendar>> {
    ctx.tag()
        .and_then(|tag| tag.read_lock::<Arc<Calendar>>().map(|c| c.clone()))
        .ok_or_else(|| format!("{}: dates are known inside `decide` only (the calendar comes with each event)", ctx.fn_name()).into())
}

/// A value as the text a comment shows: nothing for `()` (a missing answer or option).
fn as_text(value: &Dynamic) -> String {
    if value.is_unit() { String::new() } else { value.to_string() }
}

pub fn register(engine: &mut Engine, templates: Arc<minijinja::Environment<'static>>) {
    engine.register_fn("local_date", |ctx: NativeCallContext, t: ImmutableString| -> Result<String> {
        Ok(calendar(&ctx)?.local_date(instant(&t)?).to_string())
    });
    engine.register_fn("add_business_days", |ctx: NativeCallContext, d: ImmutableString, n: i64| -> Result<String> {
        Ok(calendar(&ctx)?.add_business_days(date(&d)?, n).to_string())
    });
    engine.register_fn("business_days_between", |ctx: NativeCallContext, a: ImmutableString, b: ImmutableString| -> Result<i64> {
        Ok(calendar(&ctx)?.business_days_between(date(&a)?, date(&b)?))
    });
    engine.register_fn("is_business_day", |ctx: NativeCallContext, d: ImmutableString| -> Result<bool> {
        Ok(calendar(&ctx)?.is_business_day(date(&d)?))
    });
    // A local wall-clock time on a date, as an instant: timers are set with this.
    engine.register_fn("at_time", |ctx: NativeCallContext, d: ImmutableString, hhmm: ImmutableString| -> Result<String> {
        let time = chrono::NaiveTime::parse_from_str(&hhmm, "%H:%M").map_err(|_| format!("{hhmm:?} is not HH:MM"))?;
        Ok(calendar(&ctx)?.at_local(date(&d)?, time).to_rfc3339())
    });
    engine.register_fn("add_days", |d: ImmutableString, n: i64| -> Result<String> {
        Ok((date(&d)? + chrono::Duration::days(n)).to_string())
    });
    engine.register_fn("iso_week", |d: ImmutableString| -> Result<String> {
        use chrono::Datelike;
        let w = date(&d)?.iso_week();
        Ok(format!("{}-W{:02}", w.year(), w.week()))
    });
    engine.register_fn("weekday", |d: ImmutableString| -> Result<String> {
        use chrono::Datelike;
        Ok(date(&d)?.weekday().to_string())
    });
    // Joining strings is common in messages; a native join is much cheaper than `reduce`.
    engine.register_fn("join", |list: rhai::Array, sep: ImmutableString| -> String {
        list.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(&sep)
    });
    // People's text (titles, client names, command arguments) entering a comment the rule
    // builds itself; templates escape their values on their own (see `people_text`).
    engine.register_fn("inline", |text: Dynamic| people_text::inline(&as_text(&text)));
    engine.register_fn("code_span", |text: Dynamic| people_text::code_span(&as_text(&text)));
    engine.register_fn("one_line", |text: Dynamic| people_text::one_line(&as_text(&text)));
    engine.register_fn("render", move |name: ImmutableString, vars: Map| -> Result<String> {
        let template = templates.get_template(&name).map_err(|_| format!("no template {name:?} in templates/"))?;
        let vars: serde_json::Value = rhai::serde::from_dynamic(&Dynamic::from_map(vars))?;
        template.render(vars).map_err(|e| format!("template {name}: {e}").into())
    });
}
