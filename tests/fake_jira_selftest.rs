//! Checks the fake Jira itself: every route, on both API versions, over real HTTP. When a Jira
//! test fails, this says whether the fake or rollgate is wrong.

mod support;

use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use support::fake_jira::{FakeJira, Fault, BASIC, TOKEN};

/// A client that signs in the way each deployment expects: Bearer on Data Center (v2), Basic
/// on Cloud (v3).
struct Api {
    http: Client,
    base: String,
    v: &'static str,
}

impl Api {
    fn new(jira: &FakeJira, v: &'static str) -> Api {
        Api { http: Client::new(), base: format!("{}/rest/api/{v}", jira.url), v }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let auth = if self.v == "2" { format!("Bearer {TOKEN}") } else { format!("Basic {BASIC}") };
        self.http.request(method, format!("{}{path}", self.base)).header("authorization", auth)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

fn adf(text: &str) -> Value {
    json!({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}]})
}

#[tokio::test]
async fn auth_accepts_bearer_and_basic_and_refuses_the_rest() {
    let jira = FakeJira::start().await;
    let http = Client::new();
    let url = format!("{}/rest/api/2/myself", jira.url);
    for (auth, want) in [
        (format!("Bearer {TOKEN}"), 200),
        (format!("Basic {BASIC}"), 200),
        // base64("someone@else.org:jira-token"): any email, as long as the token is right.
        ("Basic c29tZW9uZUBlbHNlLm9yZzpqaXJhLXRva2Vu".to_string(), 200),
        ("Bearer wrong".to_string(), 401),
        // base64("bot@example.com:wrong")
        ("Basic Ym90QGV4YW1wbGUuY29tOndyb25n".to_string(), 401),
        ("token jira-token".to_string(), 401),
    ] {
        let resp = http.get(&url).header("authorization", &auth).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{auth}");
        if want == 401 {
            assert_eq!(resp.json::<Value>().await.unwrap()["errorMessages"], json!(["Unauthorized"]));
        }
    }
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(jira.requests(), 3, "refused requests are not counted");
}

#[tokio::test]
async fn issue_read_and_edit() {
    let jira = FakeJira::start().await;
    jira.seed("PROJ-1", "Story", "Planning", &["lane-b", "old"]);
    jira.add_field("customfield_10020", "Rollout plan");
    jira.set_field("PROJ-1", "customfield_10020", json!("draft"));
    for v in ["2", "3"] {
        let api = Api::new(&jira, v);
        let (s, issue) = api.get("/issue/PROJ-1?fields=*all&expand=names").await;
        assert_eq!(s, 200);
        assert_eq!(issue["key"], "PROJ-1");
        let id = issue["id"].as_str().unwrap().to_string();
        assert!(id.parse::<u64>().is_ok());
        assert_eq!(issue["self"], format!("{}/rest/api/{v}/issue/{id}", jira.url));
        let f = &issue["fields"];
        assert_eq!(f["issuetype"]["name"], "Story");
        assert_eq!(f["status"]["name"], "Planning");
        assert_eq!(f["project"]["key"], "PROJ");
        assert_eq!(f["reporter"]["accountId"], "reporter");
        // Jira's format, `2019-02-15T19:01:52.971-0800`, in the fake's zone (UTC).
        let created = f["created"].as_str().unwrap();
        assert!(created.len() == 28 && created.ends_with("+0000") && rollgate::ingest::jira::jira_time(created).is_some(), "{created}");
        // by numeric id too
        assert_eq!(api.get(&format!("/issue/{id}")).await.1["key"], "PROJ-1");
        let (s, e) = api.get("/issue/NOPE-9").await;
        assert_eq!(s, 404);
        assert_eq!(e["errorMessages"][0], "Issue does not exist or you do not have permission to see it.");
    }
    let api = Api::new(&jira, "3");
    assert_eq!(api.get("/issue/PROJ-1").await.1["fields"]["customfield_10020"], "draft");
    let before = jira.issue("PROJ-1").updated;

    let (s, _) = api
        .put(
            "/issue/PROJ-1",
            json!({"fields": {"summary": "New title", "customfield_10020": {"value": "done"}},
                   "update": {"labels": [{"add": "rollout-x"}, {"remove": "old"}, {"add": "lane-b"}]}}),
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(jira.labels("PROJ-1"), ["lane-b", "rollout-x"]);
    assert_eq!(jira.field("PROJ-1", "customfield_10020"), Some(json!({"value": "done"})));
    assert_eq!(jira.issue("PROJ-1").summary, "New title");
    assert!(jira.issue("PROJ-1").updated > before);

    assert_eq!(api.put("/issue/PROJ-1", json!({"fields": {"labels": ["b", "a"]}})).await.0, 204);
    assert_eq!(jira.labels("PROJ-1"), ["a", "b"]);
    assert_eq!(api.put("/issue/PROJ-1", json!({"update": {"labels": [{"set": ["z"]}]}})).await.0, 204);
    assert_eq!(jira.labels("PROJ-1"), ["z"]);
    assert_eq!(api.put("/issue/PROJ-1", json!({"fields": {"customfield_10020": null}})).await.0, 204);
    assert_eq!(jira.field("PROJ-1", "customfield_10020"), None);

    // One unknown field refuses the whole edit.
    let (s, e) = api.put("/issue/PROJ-1", json!({"fields": {"summary": "x", "customfield_99999": 1}})).await;
    assert_eq!(s, 400);
    assert_eq!(
        e["errors"]["customfield_99999"],
        "Field 'customfield_99999' cannot be set. It is not on the appropriate screen, or unknown."
    );
    assert_eq!(jira.issue("PROJ-1").summary, "New title");
    assert_eq!(api.put("/issue/PROJ-1", json!({"update": {"labels": [{"add": "has space"}]}})).await.0, 400);
    assert_eq!(api.put("/issue/NOPE-1", json!({"fields": {}})).await.0, 404);
    assert_eq!(jira.writes().iter().filter(|w| *w == "PUT issue PROJ-1").count(), 6);
}

#[tokio::test]
async fn transitions_follow_the_workflow() {
    let jira = FakeJira::start().await;
    jira.seed("PROJ-2", "Story", "Dev Released", &[]);
    jira.forbid_transition("Dev Released", "Planning");
    let api = Api::new(&jira, "2");
    let (s, t) = api.get("/issue/PROJ-2/transitions?expand=transitions.fields").await;
    assert_eq!(s, 200);
    assert_eq!(t["expand"], "transitions");
    let list = t["transitions"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|t| t["to"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Decided", "In Development", "Rollout Confirmed", "In Rollout", "Released"]);
    let released = list.iter().find(|t| t["to"]["name"] == "Released").unwrap();
    assert_eq!(released["id"], "7");
    assert_eq!(released["name"], "Move to Released");
    assert_eq!(released["hasScreen"], false);
    assert_ne!(released["to"]["id"], released["id"], "status ids are not transition ids");

    let (s, e) = api.post("/issue/PROJ-2/transitions", json!({"transition": {"id": "1"}})).await;
    assert_eq!(s, 400);
    assert_eq!(e["errorMessages"][0], "Transition id '1' is not valid for this issue.");
    let (s, _) = api.post("/issue/PROJ-2/transitions", json!({"transition": {"id": "7"}})).await;
    assert_eq!(s, 204);
    assert_eq!(jira.status("PROJ-2"), "Released");
    assert_eq!(api.get("/issue/PROJ-2").await.1["fields"]["status"]["name"], "Released");
    assert_eq!(api.post("/issue/PROJ-2/transitions", json!({"transition": {"id": "7"}})).await.0, 400, "no self-loop");

    jira.set_status("PROJ-2", "Planning");
    assert_eq!(jira.status("PROJ-2"), "Planning");
    assert_eq!(
        jira.writes(),
        ["POST transition PROJ-2 -> Planning", "POST transition PROJ-2 -> Released", "POST transition PROJ-2 -> Released"]
    );
}

#[tokio::test]
async fn comments_on_both_versions() {
    let jira = FakeJira::start().await;
    jira.seed("PROJ-3", "Story", "Planning", &[]);
    let v2 = Api::new(&jira, "2");
    let v3 = Api::new(&jira, "3");

    let (s, c) = v2
        .post("/issue/PROJ-3/comment", json!({"body": "h3. Plan\n* [ ] step", "properties": [{"key": "rollgate", "value": {"kind": "plan"}}]}))
        .await;
    assert_eq!(s, 201);
    assert_eq!(c["id"], "10001");
    assert_eq!(c["author"]["accountId"], "bot-account");
    assert_eq!(c["properties"], json!([{"key": "rollgate", "value": {"kind": "plan"}}]));
    let (s, c3) = v3.post("/issue/PROJ-3/comment", json!({"body": adf("hello")})).await;
    assert_eq!(s, 201);
    assert_eq!(c3["body"], adf("hello"));
    // Each version refuses the other's body format.
    assert_eq!(v3.post("/issue/PROJ-3/comment", json!({"body": "wiki"})).await.0, 400);
    assert_eq!(v2.post("/issue/PROJ-3/comment", json!({"body": adf("x")})).await.0, 400);
    assert_eq!(v2.post("/issue/NOPE-3/comment", json!({"body": "x"})).await.0, 404);

    let (s, c) = v2.put("/issue/PROJ-3/comment/10001", json!({"body": "h3. Plan\n* [x] step"})).await;
    assert_eq!(s, 200);
    assert_eq!(c["body"], "h3. Plan\n* [x] step");
    assert_eq!(c["properties"][0]["key"], "rollgate", "properties survive an edit");
    assert_eq!(v2.put("/issue/PROJ-3/comment/99", json!({"body": "x"})).await.0, 404);

    let person = jira.add_comment("PROJ-3", "alice", json!("looks good"));
    jira.edit_comment(&person, json!("looks great"));
    let stored = jira.comments("PROJ-3");
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[0].body, json!("h3. Plan\n* [x] step"));
    assert_eq!(stored[1].body, adf("hello"));
    assert_eq!(stored[2].author, "alice");

    // Paging: 3 comments, 2 per page.
    let (s, page) = v3.get("/issue/PROJ-3/comment?startAt=0&maxResults=2&expand=properties").await;
    assert_eq!(s, 200);
    assert_eq!((page["startAt"].clone(), page["maxResults"].clone(), page["total"].clone()), (json!(0), json!(2), json!(3)));
    assert_eq!(page["comments"].as_array().unwrap().len(), 2);
    let page = v3.get("/issue/PROJ-3/comment?startAt=2&maxResults=2").await.1;
    assert_eq!(page["comments"][0]["body"], "looks great");
    assert_eq!(page["comments"][0]["properties"], json!([]));
    assert_eq!(page["comments"][0]["self"], format!("{}/rest/api/3/issue/{}/comment/{person}", jira.url, jira.issue("PROJ-3").id));
    let page = v3.get("/issue/PROJ-3/comment?maxResults=500").await.1;
    assert_eq!(page["maxResults"], 100);
    assert_eq!(v3.get("/issue/PROJ-3/comment").await.1["maxResults"], 50);

    assert_eq!(
        jira.writes(),
        ["POST comment PROJ-3", "POST comment PROJ-3", "POST comment PROJ-3", "POST comment PROJ-3", "POST comment NOPE-3", "PUT comment 10001", "PUT comment 99"]
    );
}

#[tokio::test]
async fn create_issue_fields_and_myself() {
    let jira = FakeJira::start().await;
    jira.seed("OPS-4", "Task", "Released", &[]);
    jira.add_field("customfield_10020", "Rollout plan");
    let api = Api::new(&jira, "3");
    let (s, made) = api
        .post(
            "/issue",
            json!({"fields": {"project": {"key": "OPS"}, "summary": "Roll out", "issuetype": {"name": "Task"},
                              "description": adf("why"), "labels": ["rollout"], "customfield_10020": "x"}}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(made["key"], "OPS-5");
    assert_eq!(made["self"], format!("{}/rest/api/3/issue/{}", jira.url, made["id"].as_str().unwrap()));
    let i = jira.issue("OPS-5");
    assert_eq!((i.status.as_str(), i.issuetype.as_str()), ("Planning", "Task"));
    assert_eq!(i.labels, ["rollout"]);
    assert_eq!(i.description, Some(adf("why")));
    assert_eq!(jira.field("OPS-5", "customfield_10020"), Some(json!("x")));
    let (s, e) = api.post("/issue", json!({"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}}})).await;
    assert_eq!(s, 400);
    assert!(e["errors"]["summary"].is_string());
    assert_eq!(jira.writes(), ["POST issue OPS", "POST issue OPS"]);

    let (s, fields) = api.get("/field").await;
    assert_eq!(s, 200);
    let custom: Vec<&Value> = fields.as_array().unwrap().iter().filter(|f| f["custom"] == true).collect();
    assert_eq!(custom.len(), 1);
    assert_eq!((custom[0]["id"].as_str(), custom[0]["name"].as_str()), (Some("customfield_10020"), Some("Rollout plan")));
    assert!(fields.as_array().unwrap().iter().any(|f| f["id"] == "labels" && f["custom"] == false));

    let (s, me) = Api::new(&jira, "2").get("/myself").await;
    assert_eq!(s, 200);
    assert_eq!((me["accountId"].as_str(), me["displayName"].as_str(), me["name"].as_str()), (Some("bot-account"), Some("rollgate bot"), Some("rollgate")));
    assert_eq!(Client::new().get(format!("{}/rest/api/4/myself", jira.url)).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn faults_and_pause() {
    let jira = FakeJira::start().await;
    jira.seed("PROJ-5", "Story", "Planning", &[]);
    let api = Api::new(&jira, "2");
    jira.fail_next([Fault { status: 429, headers: vec![("retry-after", "2".into())], body: json!({"errorMessages": ["Rate limit exceeded."]}) }]);
    let resp = api.req(reqwest::Method::GET, "/issue/PROJ-5").send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    assert_eq!(api.get("/issue/PROJ-5").await.0, 200);
    // A faulted write leaves no trace.
    jira.fail_next([Fault { status: 503, headers: vec![], body: json!({}) }]);
    assert_eq!(api.put("/issue/PROJ-5", json!({"fields": {"summary": "x"}})).await.0, 503);
    assert!(jira.writes().is_empty());
    assert_eq!(jira.requests(), 3);

    jira.pause();
    let held = tokio::spawn(async move { api.get("/issue/PROJ-5").await.0 });
    for _ in 0..200 {
        if jira.held() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(jira.held(), 1);
    jira.resume();
    assert_eq!(held.await.unwrap(), 200);
    assert_eq!(jira.held(), 0);
}

/// Search as each Jira answers it: Cloud (v3) refuses the removed `/search` with 410 and pages
/// `/search/jql` by token, ids only unless `fields` asks; Data Center (v2) pages `/search` by
/// `startAt` and has no `/search/jql`.
#[tokio::test]
async fn search_as_cloud_and_data_center_answer_it() {
    let jira = FakeJira::start().await;
    for n in 1..=45 {
        jira.seed(&format!("OPS-{n}"), "Task", "Planning", if n % 3 == 0 { &["rollgate-report"] } else { &[] });
    }
    jira.seed("ELSE-1", "Task", "Planning", &["rollgate-report"]);
    let jql = "jql=project%20%3D%20%22OPS%22%20ORDER%20BY%20created%20ASC";

    let cloud = Api::new(&jira, "3");
    let (s, gone) = cloud.get(&format!("/search?{jql}")).await;
    assert_eq!(s, 410);
    assert!(gone["errorMessages"][0].as_str().unwrap().contains("/rest/api/3/search/jql"), "{gone}");
    let (s, ids) = cloud.get(&format!("/search/jql?{jql}&maxResults=5")).await;
    assert_eq!(s, 200);
    assert_eq!(ids["issues"][0], json!({ "id": jira.issue("OPS-1").id.to_string() }), "only ids without `fields`");
    assert_eq!(ids["isLast"], false);
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let more = token.as_ref().map(|t| format!("&nextPageToken={t}")).unwrap_or_default();
        let (s, page) = cloud.get(&format!("/search/jql?{jql}&fields=*navigable&maxResults=50{more}")).await;
        assert_eq!(s, 200, "{page}");
        let issues = page["issues"].as_array().unwrap();
        assert!(issues.len() <= 40, "fewer than asked for when every field is: {}", issues.len());
        assert!(issues.iter().all(|i| i["fields"]["status"]["name"] == "Planning"));
        keys.extend(issues.iter().map(|i| i["key"].as_str().unwrap().to_string()));
        match page["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => {
                assert_eq!(page["isLast"], true);
                break;
            }
        }
    }
    assert_eq!(keys, (1..=45).map(|n| format!("OPS-{n}")).collect::<Vec<_>>(), "oldest first, every one once");
    let labelled = "jql=project%20%3D%20%22OPS%22%20AND%20labels%20%3D%20%22rollgate-report%22%20ORDER%20BY%20created%20DESC";
    let (_, page) = cloud.get(&format!("/search/jql?{labelled}&fields=summary")).await;
    let issues = page["issues"].as_array().unwrap();
    assert_eq!(issues.len(), 15);
    assert_eq!(issues[0]["key"], "OPS-45", "newest first");
    assert_eq!(issues[0]["fields"], json!({ "summary": "issue OPS-45" }), "only the fields asked for");
    let (s, _) = cloud.get(&format!("/search/jql?{labelled}&fields=summary&nextPageToken=1.20")).await;
    assert_eq!(s, 400, "a token belongs to its query");

    let dc = Api::new(&jira, "2");
    let (s, _) = dc.get(&format!("/search/jql?{jql}")).await;
    assert_eq!(s, 404);
    let (s, page) = dc.get(&format!("/search?{jql}&startAt=40&maxResults=50")).await;
    assert_eq!(s, 200);
    assert_eq!((page["total"].as_u64(), page["issues"].as_array().unwrap().len()), (Some(45), 5));
    assert_eq!(page["issues"][0]["key"], "OPS-41");
}
