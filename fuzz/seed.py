#!/usr/bin/env python3
"""Writes the seed corpora into fuzz/corpus/<target>/ from the real webhook fixtures in
tests/fixtures/{github,jira} and a few comment bodies with commands. Safe to re-run: it only
(re)writes files named seed-*; what libFuzzer added stays.

    python3 fuzz/seed.py
"""
import json
import pathlib

FUZZ = pathlib.Path(__file__).resolve().parent
FIXTURES = FUZZ.parent / "tests" / "fixtures"
CORPUS = FUZZ / "corpus"

# Must match EVENTS in fuzz_targets/github_payload.rs: the first byte picks the event.
GITHUB_EVENTS = ["issues", "issue_comment", "ping", "push", "pull_request", "projects_v2_item", None]
REST = GITHUB_EVENTS.index(None)

# The custom field ids fuzz_targets/jira_payload.rs resolves the default mapping to.
LANE, ROLLOUT, SCOPE, DECISION, CLIENTS = (f"customfield_1010{i}" for i in range(1, 6))

COMMENTS = [
    "/rollout 3",
    "/lane A",
    "/promote",
    "/decide accept sprint=2026-W48 dev-release=2026-11-25",
    '/decide decline reason="duplicate of #12"',
    '/decide park revisit=2026-12-15 trigger="after migration X"',
    "/artifact done release-note",
    '/pilot client "Adani Karaikal"',
    "/pilot retro go",
    '/wave start 2 | /pause trigger="error rate above 2%"',
    "/resume",
    '/rollback reason="GPS drift at Karaikal"',
    '/escalation note="client called CS"',
    "/explain",
    "Thanks, looks good.\r\n\r\n  /decide accept sprint=2026-W48  \r\nsee /docs/x\r\n/artifact done release-note\r\n",
    "Earlier:\n> /rollback reason=\"old\"\n```text\n/pause\n```\n    /explain\n<!-- /wave start 2 -->\n/lane A <!-- now -->",
    "/decied accept\n/PAUS\n/frobnicate\n/x",
    '/pause trigger="unterminated\n/resume',
    '/escalation Note="she said \\"now\\"" Note=later "a=b" ""',
    "/PILOT client \u201cAdani Karaikal\u201d",
    "<!-- rollgate:checklist -->\n- [x] release-note\n- [ ] demo",
]


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def github():
    for path in sorted((FIXTURES / "github").glob("*.json")):
        event = path.name.split(".")[0]
        raw = path.read_bytes()
        if event in GITHUB_EVENTS:
            write("github_payload", path.name, bytes([GITHUB_EVENTS.index(event)]) + raw)
        issue = json.loads(raw).get("issue")
        if issue is not None:
            write("github_payload", "rest-" + path.name, bytes([REST]) + compact(issue))
    # A pull request delivered as an issue event, and a delivery of another kind.
    opened = json.loads((FIXTURES / "github" / "issues.opened.json").read_text())
    opened["issue"]["pull_request"] = {"url": "https://api.github.com/repos/o/r/pulls/1"}
    write("github_payload", "issues.opened.pull-request.json", bytes([0]) + compact(opened))
    write("github_payload", "push.json", bytes([GITHUB_EVENTS.index("push")]) + b'{"ref":"refs/heads/main"}')


def jira():
    for path in sorted((FIXTURES / "jira").glob("*.json")):
        write("jira_payload", path.name, path.read_bytes())
        # The same delivery with the mapped custom fields filled and a changelog naming them.
        p = json.loads(path.read_text())
        f = p["issue"].setdefault("fields", {})
        f[LANE] = {"value": "B"}
        f[ROLLOUT] = {"value": "2 Notified"}
        f[SCOPE] = {"value": "Single client"}
        f[DECISION] = {"value": "Accept"}
        f[CLIENTS] = [{"value": "Adani Karaikal"}, {"value": "Tata Steel"}]
        f["labels"] = ["rollgate-needs-demo", "other"]
        f["issuetype"] = {"name": "Bug"}
        f["status"] = {"name": "In Development"}
        p["changelog"] = {"items": [
            {"field": "Lane", "fieldId": LANE, "fromString": "A", "toString": "B"},
            {"field": "status", "fromString": "Decided", "toString": "In Development"},
            {"field": "labels", "fromString": "rollgate-paused", "toString": "rollgate-needs-demo"},
        ]}
        write("jira_payload", "mapped-" + path.name, compact(p))


def commands():
    for i, body in enumerate(COMMENTS):
        write("commands", f"{i:02}.md", body.encode())


def signature():
    # Structured input (arbitrary): a few byte strings are enough to start from.
    write("signature", "empty", b"")
    write("signature", "ping", b"\x01\x06secret\x01sha256=00\x07" + (FIXTURES / "github" / "ping.json").read_bytes()[:512])


if __name__ == "__main__":
    github()
    jira()
    commands()
    signature()
    for d in sorted(CORPUS.iterdir()):
        print(f"{d.name}: {sum(1 for f in d.iterdir() if f.name.startswith('seed-'))} seed files")
