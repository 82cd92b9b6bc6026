//! Cron schedules fired by the server: firings recorded with their tasks,
//! and firings missed while the server was down recorded as missed, with
//! the run-once/skip policy applied; pause, resume, edit and run now.
//! Starts: `kube-coder serve`, tmux.

mod common;

use std::time::{Duration, Instant};

use common::Workspace;
use serde_json::{json, Value};

async fn firings(ws: &Workspace, id: &str) -> Vec<Value> {
    let (s, v) = ws.api_get(&format!("/api/schedules/{id}/firings")).await;
    assert_eq!(s, 200, "{v}");
    v["firings"].as_array().cloned().unwrap_or_default()
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn every_second(ws: &Workspace, name: &str, missed: &str) -> String {
    let (s, v) = ws
        .api_post(
            "/api/schedules",
            json!({"name": name, "cron": "* * * * * *", "assistant": "shell",
                   "prompt": "echo tick", "missed": missed, "timezone": "Europe/Berlin"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert!(v["next_run"].is_string());
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_schedule_fires_tasks_and_records_each_firing() {
    let ws = Workspace::start(&["--max-tasks", "100"]).await;
    let id = every_second(&ws, "ticker", "run_once").await;
    until("two firings", || async {
        firings(&ws, &id)
            .await
            .iter()
            .filter(|f| f["outcome"] == "fired")
            .count()
            >= 2
    })
    .await;
    let f = firings(&ws, &id).await;
    let task = f.iter().find(|f| f["outcome"] == "fired").unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let t = ws.wait_state(&task, "succeeded").await;
    assert_eq!(t["name"], "schedule: ticker");
    let (_, list) = ws.api_get("/api/schedules").await;
    assert_eq!(list["schedules"][0]["timezone"], "Europe/Berlin");
    // Deleted: no more firings.
    let s = ws
        .client
        .delete(format!("{}/api/schedules/{id}", ws.api))
        .header("authorization", ws.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(s.status(), 204);
    let (_, before) = ws.api_get("/api/tasks?limit=500").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, after) = ws.api_get("/api/tasks?limit=500").await;
    assert_eq!(
        before["tasks"].as_array().unwrap().len(),
        after["tasks"].as_array().unwrap().len()
    );
    let metrics = ws.metrics_text().await;
    assert!(
        metrics.contains("kube_coder_schedule_firings_total{outcome=\"fired\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn firings_missed_while_down_are_recorded_and_the_policy_applies() {
    let mut ws = Workspace::start(&["--max-tasks", "100"]).await;
    let once = every_second(&ws, "once", "run_once").await;
    let skip = every_second(&ws, "skip", "skip").await;
    until("a first firing of each", || async {
        !firings(&ws, &once).await.is_empty() && !firings(&ws, &skip).await.is_empty()
    })
    .await;
    ws.crash();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    ws.spawn().await;
    until("missed firings to be recorded", || async {
        firings(&ws, &once)
            .await
            .iter()
            .any(|f| f["outcome"] == "missed")
            && firings(&ws, &skip)
                .await
                .iter()
                .any(|f| f["outcome"] == "missed")
    })
    .await;
    for (id, policy) in [(&once, "run_once"), (&skip, "skip")] {
        let f = firings(&ws, id).await;
        let missed: Vec<_> = f.iter().filter(|f| f["outcome"] == "missed").collect();
        assert!(missed.len() >= 2, "{policy}: {f:?}");
        let last_missed = missed
            .iter()
            .map(|m| m["due_at"].as_str().unwrap())
            .max()
            .unwrap();
        // The catch-up firing carries the last missed due time.
        let caught_up = f
            .iter()
            .any(|x| x["outcome"] == "fired" && x["due_at"].as_str().unwrap() == last_missed);
        assert_eq!(caught_up, policy == "run_once", "{policy}: {f:?}");
    }
}

#[tokio::test]
async fn bad_schedules_are_refused_with_the_reason() {
    let ws = Workspace::start(&[]).await;
    for (body, code, mentions) in [
        (
            json!({"name": "x", "cron": "every day"}),
            "invalid_cron",
            "`every day` has 2 fields; a cron expression has 5 fields",
        ),
        (
            json!({"name": "x", "cron": "61 * * * *"}),
            "invalid_cron",
            "61",
        ),
        (
            json!({"name": "x", "cron": "0 9 * * *", "timezone": "Mars/Olympus"}),
            "invalid_timezone",
            "Mars/Olympus",
        ),
        (
            json!({"name": "x", "cron": "0 9 * * *", "missed": "sometimes"}),
            "invalid_missed",
            "run_once",
        ),
        (
            json!({"name": "", "cron": "0 9 * * *"}),
            "invalid_name",
            "name",
        ),
        (
            json!({"name": "x", "cron": "0 9 * * *", "assistant": "nope"}),
            "unknown_assistant",
            "nope",
        ),
        (
            json!({"name": "x", "cron": "0 9 * * *", "hook": {"url": "http://10.0.0.1/"}}),
            "hook_refused",
            "private",
        ),
    ] {
        let (s, v) = ws.api_post("/api/schedules", body.clone()).await;
        assert_eq!((s, v["code"].as_str()), (400, Some(code)), "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains(mentions),
            "{body}: {v}"
        );
    }
    let (s, _) = ws.api_get("/api/schedules/nope/firings").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn a_schedule_is_paused_resumed_edited_and_run_on_demand() {
    let ws = Workspace::start(&["--max-tasks", "100"]).await;
    let (s, v) = ws
        .api_post(
            "/api/schedules",
            json!({"name": "nightly", "cron": "0 3 * * *", "assistant": "shell",
                   "prompt": "echo nightly run"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let next = v["next_run"].clone();
    assert_eq!(v["paused"], false);

    // Names are unique among schedules.
    let (s, v) = ws
        .api_post(
            "/api/schedules",
            json!({"name": "nightly", "cron": "0 4 * * *"}),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("name_taken")), "{v}");

    // Run now: a task at once, recorded, the next run unmoved.
    let (s, v) = ws
        .api_post(&format!("/api/schedules/{id}/run"), json!({}))
        .await;
    assert_eq!(s, 201, "{v}");
    let task = v["task_id"].as_str().unwrap().to_string();
    ws.wait_output(&task, "nightly run").await;
    let f = firings(&ws, &id).await;
    assert_eq!((f.len(), f[0]["outcome"].as_str()), (1, Some("fired")));
    assert_eq!(f[0]["task_id"], task.as_str());
    let (_, list) = ws.api_get("/api/schedules").await;
    assert_eq!(list["schedules"][0]["next_run"], next);

    // Paused, it has no next run and fires nothing, even every second.
    let (s, v) = ws
        .api_patch(
            &format!("/api/schedules/{id}"),
            json!({"paused": true, "cron": "* * * * * *"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["paused"].as_bool(), v["next_run"].is_null()),
        (Some(true), true)
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(firings(&ws, &id).await.len(), 1, "a paused schedule fired");

    // A bad edit is refused whole: the schedule stays as it was.
    let (s, v) = ws
        .api_patch(
            &format!("/api/schedules/{id}"),
            json!({"cron": "every day", "prompt": "echo changed"}),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_cron")), "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("or 6 with seconds first"),
        "{v}"
    );
    let (_, list) = ws.api_get("/api/schedules").await;
    assert_eq!(list["schedules"][0]["prompt"], "echo nightly run");
    for (body, status, code) in [
        (
            json!({"hook": {"url": "http://10.0.0.1/"}}),
            400,
            "hook_refused",
        ),
        (json!({"colour": "blue"}), 400, "invalid_body"),
        (json!({"assistant": "nope"}), 400, "unknown_assistant"),
    ] {
        let (s, v) = ws
            .api_patch(&format!("/api/schedules/{id}"), body.clone())
            .await;
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{body}: {v}");
    }
    let (s, _) = ws
        .api_patch("/api/schedules/nope", json!({"paused": false}))
        .await;
    assert_eq!(s, 404);

    // Resumed with a new prompt: it fires again, with the new prompt.
    let (s, v) = ws
        .api_patch(
            &format!("/api/schedules/{id}"),
            json!({"paused": false, "prompt": "echo edited run"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["next_run"].is_string(), "{v}");
    until("a firing after resume", || async {
        firings(&ws, &id).await.len() >= 2
    })
    .await;
    let f = firings(&ws, &id).await;
    let task = f[0]["task_id"].as_str().unwrap().to_string();
    ws.wait_output(&task, "edited run").await;
}
