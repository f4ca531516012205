//! Settings: file, environment, refusals.

use super::*;
use std::time::Duration;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn env_wins_over_file_and_secrets_never_print() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rollgate.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9000\"\ntimezone = \"Asia/Kolkata\"\n[github]\nwebhook_secret = [\"a\", \"b\"]\ntoken = \"tok-file\"\n[roles]\npm = [\"alice\", \"@acme/pms\"]\n",
    )
    .unwrap();
    let s = Settings::load_from(
        Some(&file),
        &env(&[("ROLLGATE_LISTEN", "127.0.0.1:9001"), ("ROLLGATE_GITHUB_TOKEN", "tok-env")]),
    )
    .unwrap();
    assert_eq!(s.listen.port(), 9001);
    assert_eq!(s.timezone, chrono_tz::Asia::Kolkata);
    assert_eq!(s.github.webhook_secrets.len(), 2);
    assert_eq!(s.github.token.as_ref().unwrap().expose(), "tok-env");
    assert_eq!(s.roles.pm, vec!["alice", "@acme/pms"]);
    let shown = format!("{s:?} {}", s.describe());
    assert!(!shown.contains("tok-env") && !shown.contains("tok-file"), "{shown}");
    assert!(!s.effective_dry_run());
}

#[test]
fn no_token_means_dry_run_and_bad_values_are_named() {
    let s = Settings::load_from(None, &env(&[])).unwrap();
    assert!(s.effective_dry_run());
    let err = Settings::load_from(None, &env(&[("ROLLGATE_TIMEZONE", "Mars/Base")])).unwrap_err();
    assert!(err.to_string().contains("Mars/Base"), "{err}");
    let err = Settings::load_from(None, &env(&[("ROLLGATE_DRY_RUN", "maybe")])).unwrap_err();
    assert!(err.to_string().contains("ROLLGATE_DRY_RUN"), "{err}");
}

#[test]
fn a_github_app_is_read_from_file_and_env_and_never_printed_or_mixed_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("app.pem");
    std::fs::write(&key, "-----BEGIN RSA PRIVATE KEY-----\nsecret-key-text\n-----END RSA PRIVATE KEY-----\n").unwrap();
    let file = dir.path().join("rollgate.toml");
    std::fs::write(&file, format!("[github]\napp_id = 12345\nprivate_key_file = {:?}\n", key.display().to_string())).unwrap();
    let s = Settings::load_from(Some(&file), &env(&[])).unwrap();
    match s.github.auth() {
        Some(GithubAuth::App { id, key }) => {
            assert_eq!(id, 12345);
            assert!(key.pem.expose().contains("secret-key-text"));
            assert!(key.from.starts_with("[github] private_key_file"), "{}", key.from);
        }
        other => panic!("expected the App, got {other:?}"),
    }
    assert!(!s.effective_dry_run(), "an App is a GitHub credential");
    let shown = format!("{s:?} {}", s.describe());
    assert!(!shown.contains("secret-key-text"), "{shown}");
    assert!(shown.contains("github_app_id=12345 github_app_key=set"), "{shown}");

    // The variable wins over the file, and one line with `\n` escapes is a PEM.
    let s = Settings::load_from(
        Some(&file),
        &env(&[("ROLLGATE_GITHUB_APP_PRIVATE_KEY", "-----BEGIN RSA PRIVATE KEY-----\\nfrom-env\\n-----END RSA PRIVATE KEY-----")]),
    )
    .unwrap();
    let key = s.github.app_key.unwrap();
    assert_eq!(key.from, "ROLLGATE_GITHUB_APP_PRIVATE_KEY");
    assert!(key.pem.expose().contains("\nfrom-env\n"), "{:?}", key.pem.expose().len());

    let err = Settings::load_from(Some(&file), &env(&[("ROLLGATE_GITHUB_TOKEN", "t")])).unwrap_err();
    assert!(err.to_string().contains("both ROLLGATE_GITHUB_TOKEN and a GitHub App"), "{err}");
    let err = Settings::load_from(None, &env(&[("ROLLGATE_GITHUB_APP_ID", "7")])).unwrap_err();
    assert!(err.to_string().contains("without the App's private key"), "{err}");
    let err = Settings::load_from(None, &env(&[("ROLLGATE_GITHUB_APP_ID", "my-app")])).unwrap_err();
    assert!(err.to_string().contains("ROLLGATE_GITHUB_APP_ID=\"my-app\" is not a number"), "{err}");
    let missing = dir.path().join("nope.pem");
    let err = Settings::load_from(None, &env(&[("ROLLGATE_GITHUB_APP_ID", "7"), ("ROLLGATE_GITHUB_APP_PRIVATE_KEY_FILE", missing.to_str().unwrap())]))
        .unwrap_err();
    assert!(format!("{err:#}").contains("ROLLGATE_GITHUB_APP_PRIVATE_KEY_FILE: reading"), "{err:#}");
}

#[test]
fn database_passwords_are_redacted() {
    assert_eq!(redact_url("postgres://bob:pw@db/x"), "postgres://bob:***@db/x");
    assert_eq!(redact_url("sqlite://rollgate.db"), "sqlite://rollgate.db");
}

/// `rollgate.toml` with `text`, loaded with `env`.
fn load_file(text: &str, env_pairs: &[(&str, &str)]) -> anyhow::Result<Settings> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rollgate.toml");
    std::fs::write(&file, text).unwrap();
    Settings::load_from(Some(&file), &env(env_pairs))
}

#[test]
fn empty_secrets_and_tokens_in_the_file_are_refused_naming_the_setting() {
    for (text, setting) in [
        ("admin_token = \"\"\n", "admin_token"),
        ("admin_token = \"  \"\n", "admin_token"),
        ("evaluate_token = \"\"\n", "evaluate_token"),
        ("metrics_token = \"\"\n", "metrics_token"),
        ("[github]\ntoken = \"\"\n", "[github] token"),
        ("[jira]\napi_token = \"\"\n", "[jira] api_token"),
        ("[github]\nwebhook_secret = \"\"\n", "[github] webhook_secret"),
        ("[github]\nwebhook_secret = [\"a\", \"\"]\n", "[github] webhook_secret"),
        ("[github]\nwebhook_secret = \"a,,b\"\n", "[github] webhook_secret"),
        ("[jira]\nwebhook_secret = [\"\"]\n", "[jira] webhook_secret"),
        ("[jira]\nwebhook_secret = \"a,\"\n", "[jira] webhook_secret"),
    ] {
        let err = load_file(text, &[]).expect_err(text);
        let msg = format!("{err:#}");
        assert!(msg.contains(setting) && msg.contains("empty"), "{text:?}: {msg}");
    }
    // A secret is never quoted in the refusal.
    let msg = format!("{:#}", load_file("[github]\nwebhook_secret = \"hunter2,,b\"\n", &[]).unwrap_err());
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[test]
fn empty_entries_in_environment_secret_lists_are_refused_and_an_empty_variable_is_unset() {
    for (name, value) in [
        ("ROLLGATE_GITHUB_WEBHOOK_SECRET", "a,,b"),
        ("ROLLGATE_GITHUB_WEBHOOK_SECRET", ",a"),
        ("ROLLGATE_JIRA_WEBHOOK_SECRET", "a, ,b"),
        ("ROLLGATE_JIRA_WEBHOOK_SECRET", "a,"),
    ] {
        let err = Settings::load_from(None, &env(&[(name, value)])).expect_err(value);
        assert!(err.to_string().contains(name) && err.to_string().contains("empty entry"), "{name}={value:?}: {err}");
    }
    // The environment file template leaves unused keys empty: they mean "not set", which for
    // every secret is the safe side (admin routes off, deliveries refused, dry run).
    let s = Settings::load_from(
        None,
        &env(&[("ROLLGATE_ADMIN_TOKEN", ""), ("ROLLGATE_GITHUB_WEBHOOK_SECRET", " "), ("ROLLGATE_GITHUB_TOKEN", ""), ("ROLLGATE_JIRA_API_TOKEN", "")]),
    )
    .unwrap();
    assert!(s.admin_token.is_none() && s.github.webhook_secrets.is_empty() && s.github.token.is_none() && s.jira.api_token.is_none());
    assert!(s.effective_dry_run());
}

#[test]
fn jira_secrets_are_a_list_and_unsigned_deliveries_need_an_explicit_opt_in() {
    let s = Settings::load_from(None, &env(&[("ROLLGATE_JIRA_WEBHOOK_SECRET", "old, new")])).unwrap();
    assert_eq!(s.jira.webhook_secrets, vec![Secret::new("old"), Secret::new("new")]);
    assert!(!s.jira.allow_unsigned_webhooks, "refused unless asked for");
    let s = load_file("[jira]\nwebhook_secret = [\"one\", \"two\"]\n", &[]).unwrap();
    assert_eq!(s.jira.webhook_secrets.len(), 2);

    let s = load_file("[jira]\nallow_unsigned_webhooks = true\n", &[]).unwrap();
    assert!(s.jira.allow_unsigned_webhooks);
    assert!(s.describe().contains("jira_unsigned_webhooks=ACCEPTED"), "{}", s.describe());
    let s = Settings::load_from(None, &env(&[("ROLLGATE_JIRA_ALLOW_UNSIGNED_WEBHOOKS", "true")])).unwrap();
    assert!(s.jira.allow_unsigned_webhooks);
    let err = Settings::load_from(None, &env(&[("ROLLGATE_JIRA_ALLOW_UNSIGNED_WEBHOOKS", "perhaps")])).unwrap_err();
    assert!(err.to_string().contains("ROLLGATE_JIRA_ALLOW_UNSIGNED_WEBHOOKS"), "{err}");
    // Both at once is a contradiction: refused rather than guessed.
    let err = Settings::load_from(None, &env(&[("ROLLGATE_JIRA_ALLOW_UNSIGNED_WEBHOOKS", "true"), ("ROLLGATE_JIRA_WEBHOOK_SECRET", "s")]))
        .unwrap_err();
    assert!(err.to_string().contains("both set"), "{err}");
    let shown = format!("{s:?} {}", Settings::load_from(None, &env(&[("ROLLGATE_JIRA_WEBHOOK_SECRET", "jira-hunter2")])).unwrap().describe());
    assert!(!shown.contains("jira-hunter2"), "{shown}");
}

#[test]
fn endpoint_tokens_and_http_limits_are_read_from_file_and_env() {
    let s = load_file(
        "evaluate_token = \"ev\"\nmetrics_token = \"me\"\n[http]\nheader_timeout_secs = 3\nbody_timeout_secs = 4\nidle_timeout_secs = 5\nmax_connections = 6\nmax_unsigned_bytes = 7000\nstore_timeout_ms = 250\n",
        &[("ROLLGATE_METRICS_TOKEN", "me-env"), ("ROLLGATE_HTTP_IDLE_TIMEOUT_SECS", "9")],
    )
    .unwrap();
    assert_eq!(s.evaluate_token.as_ref().unwrap().expose(), "ev");
    assert_eq!(s.metrics_token.as_ref().unwrap().expose(), "me-env");
    assert_eq!(s.http.header_timeout, Duration::from_secs(3));
    assert_eq!(s.http.body_timeout, Duration::from_secs(4));
    assert_eq!(s.http.idle_timeout, Duration::from_secs(9));
    assert_eq!(s.http.max_connections, 6);
    assert_eq!(s.http.max_unsigned_bytes, 7000);
    assert_eq!(s.http.store_timeout, Duration::from_millis(250));
    let shown = format!("{s:?} {}", s.describe());
    assert!(!shown.contains("me-env") && !shown.contains("\"ev\""), "{shown}");
    assert!(shown.contains("evaluate_token=set metrics_token=set"), "{shown}");

    let d = Settings::default().http;
    assert_eq!((d.header_timeout.as_secs(), d.body_timeout.as_secs(), d.idle_timeout.as_secs()), (10, 30, 60));
    assert_eq!((d.max_connections, d.max_unsigned_bytes, d.store_timeout.as_millis()), (1024, 64 << 20, 1000));
    for (name, value) in [
        ("ROLLGATE_HTTP_HEADER_TIMEOUT_SECS", "0"),
        ("ROLLGATE_HTTP_BODY_TIMEOUT_SECS", "0"),
        ("ROLLGATE_HTTP_MAX_CONNECTIONS", "0"),
        ("ROLLGATE_HTTP_MAX_UNSIGNED_BYTES", "0"),
        ("ROLLGATE_HTTP_STORE_TIMEOUT_MS", "0"),
        ("ROLLGATE_HTTP_IDLE_TIMEOUT_SECS", "soon"),
    ] {
        let err = Settings::load_from(None, &env(&[(name, value)])).expect_err(name);
        assert!(err.to_string().contains(name), "{name}={value}: {err}");
    }
}

#[test]
fn the_example_file_reads_and_states_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rollgate.example.toml");
    let s = Settings::load_from(Some(&path), &env(&[])).unwrap();
    let d = Settings::default();
    assert_eq!(format!("{:?}", s.http), format!("{:?}", d.http));
    assert_eq!((s.queue.workers, s.queue.max_attempts), (d.queue.workers, d.queue.max_attempts));
}
