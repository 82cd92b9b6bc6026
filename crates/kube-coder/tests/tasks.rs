//! The task API against the real binary, real tmux and a real SQLite file.
//! Starts: `kube-coder serve` on 127.0.0.1 with its own tmux socket.

mod common;

use std::time::Duration;

use common::{read_sse, Workspace};
use serde_json::json;

#[tokio::test]
async fn a_task_runs_takes_messages_and_reports_its_exit_code() {
    let ws = Workspace::start(&[]).await;
    let t = ws
        .create(json!({"assistant": "fake", "prompt": "fix the $(bug) 'now'", "name": "first"}))
        .await;
    let id = t["id"].as_str().unwrap();
    assert_eq!(t["state"], "running");
    assert_eq!(t["name"], "first");
    // The prompt arrives as one argument, untouched by the shell.
    ws.wait_output(id, "prompt: fix the $(bug) 'now'").await;
    // Assistant env from the config file reaches the process.
    ws.wait_output(id, "greeting: hello from config").await;
    ws.say(id, "hello there").await;
    ws.wait_output(id, "you said: hello there").await;
    ws.say(id, "exit 7").await;
    let done = ws.wait_state(id, "failed").await;
    assert_eq!(done["exit_code"], 7);
    assert!(done["finished_at"].is_string());
    let states: Vec<_> = done["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states.first().unwrap(), "starting");
    assert_eq!(states.last().unwrap(), "failed");
    // Finished tasks take no more input.
    let (s, v) = ws
        .api_post(&format!("/api/tasks/{id}/message"), json!({"text": "hi"}))
        .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("task_finished")));
}

/// `--data-dir data`, as someone types it: tasks run in their workdir, so
/// the paths they are handed must not be relative to the server's.
#[tokio::test]
async fn a_relative_data_dir_runs_tasks() {
    let ws = Workspace::start_relative().await;
    let t = ws
        .create(json!({"assistant": "fake", "prompt": "relative"}))
        .await;
    let id = t["id"].as_str().unwrap();
    ws.wait_output(id, "prompt: relative").await;
    ws.say(id, "exit 3").await;
    assert_eq!(ws.wait_state(id, "failed").await["exit_code"], 3);
}

#[tokio::test]
async fn exit_zero_succeeds_and_output_is_served_as_text_or_json() {
    let ws = Workspace::start(&[]).await;
    let t = ws
        .create(json!({"assistant": "shell", "prompt": "printf 'a\\nb\\nc\\n'; printf '\\033[31mred\\033[0m\\n'"}))
        .await;
    let id = t["id"].as_str().unwrap();
    let done = ws.wait_state(id, "succeeded").await;
    assert_eq!(done["exit_code"], 0);
    let r = ws
        .client
        .get(format!("{}/api/tasks/{id}/output?tail=2", ws.api))
        .header("authorization", ws.bearer())
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(r.text().await.unwrap().trim_end(), "c\nred");
    let r = ws
        .client
        .get(format!("{}/api/tasks/{id}/output?tail=1&raw=true", ws.api))
        .header("authorization", ws.bearer())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["state"], "succeeded");
    assert!(v["output"].as_str().unwrap().contains("\u{1b}[31mred"));
}

#[tokio::test]
async fn stream_pushes_output_live_and_resumes_from_last_event_id() {
    let ws = Workspace::start(&[]).await;
    let id = ws.create_fake().await;
    let resp = ws
        .client
        .get(format!("{}/api/tasks/{id}/stream", ws.api))
        .header("authorization", ws.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let ws2 = &ws;
    let idc = id.clone();
    let sender = async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ws2.say(&idc, "streamed words").await;
    };
    let reader = read_sse(resp, Duration::from_secs(15), |e| {
        e.event == "output"
            && e.json()["data"]
                .as_str()
                .unwrap_or("")
                .contains("you said: streamed words")
    });
    let (events, ()) = tokio::join!(reader, sender);
    let outputs: Vec<_> = events.iter().filter(|e| e.event == "output").collect();
    assert!(!outputs.is_empty());
    assert!(events
        .iter()
        .any(|e| e.event == "state" && e.json()["state"] == "running"));
    // Offsets are contiguous: each chunk starts where the previous ended.
    let mut expect = 0u64;
    let mut all = String::new();
    for e in &outputs {
        let v = e.json();
        assert_eq!(v["offset"].as_u64().unwrap(), expect);
        let data = v["data"].as_str().unwrap();
        all.push_str(data);
        expect += data.len() as u64;
        assert_eq!(e.id.as_deref().unwrap().parse::<u64>().unwrap(), expect);
    }
    assert!(all.contains("fake-agent ready"));

    // Resume after the first chunk: the rest arrives, the first does not.
    let first_end = outputs[0].id.clone().unwrap();
    ws.say(&id, "exit 0").await;
    let resp = ws
        .client
        .get(format!("{}/api/tasks/{id}/stream", ws.api))
        .header("authorization", ws.bearer())
        .header("last-event-id", &first_end)
        .send()
        .await
        .unwrap();
    let events = read_sse(resp, Duration::from_secs(15), |e| e.event == "end").await;
    let resumed: String = events
        .iter()
        .filter(|e| e.event == "output")
        .map(|e| e.json()["data"].as_str().unwrap().to_string())
        .collect();
    let first_data = outputs[0].json()["data"].as_str().unwrap().to_string();
    assert_eq!(
        events.iter().find(|e| e.event == "output").unwrap().json()["offset"],
        json!(first_end.parse::<u64>().unwrap())
    );
    assert!(resumed.contains("bye"), "{resumed}");
    assert!(!resumed.starts_with(&first_data));
    let end = events.last().unwrap();
    assert_eq!(end.event, "end");
    assert_eq!(end.json()["state"], "succeeded");
}

#[tokio::test]
async fn events_announce_creation_and_state_changes() {
    let ws = Workspace::start(&[]).await;
    let resp = ws
        .client
        .get(format!("{}/api/events", ws.api))
        .header("authorization", ws.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ws2 = &ws;
    let driver = async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let id = ws2.create_fake().await;
        ws2.say(&id, "exit 3").await;
        id
    };
    let reader = read_sse(resp, Duration::from_secs(15), |e| {
        e.event == "task_state" && e.json()["task"]["state"] == "failed"
    });
    let (events, id) = tokio::join!(reader, driver);
    let created = events.iter().find(|e| e.event == "task_created").unwrap();
    assert_eq!(created.json()["task"]["id"], id.as_str());
    let last = events.last().unwrap().json();
    assert_eq!(last["task"]["exit_code"], 3);
    assert_eq!(last["from"], "running");
}

#[tokio::test]
async fn keys_are_allowlisted_and_ctrl_c_interrupts() {
    let ws = Workspace::start(&[]).await;
    let id = ws.create_fake().await;
    ws.wait_output(&id, "fake-agent ready").await;
    let (s, v) = ws
        .api_post(&format!("/api/tasks/{id}/keys"), json!({"keys": ["C-b"]}))
        .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("key_not_allowed")));
    let (s, _) = ws
        .api_post(
            &format!("/api/tasks/{id}/keys"),
            json!({"keys": ["y", "Enter"]}),
        )
        .await;
    assert_eq!(s, 202);
    ws.wait_output(&id, "you said: y").await;
    let (s, _) = ws
        .api_post(&format!("/api/tasks/{id}/keys"), json!({"keys": ["C-c"]}))
        .await;
    assert_eq!(s, 202);
    let done = ws.wait_state(&id, "failed").await;
    assert_eq!(done["exit_code"], 130);
}

#[tokio::test]
async fn kill_ends_a_task_as_killed_and_its_session_is_gone() {
    let ws = Workspace::start(&[]).await;
    let t = ws.create(json!({"assistant": "fake"})).await;
    let id = t["id"].as_str().unwrap();
    let session = t["tmux_session"].as_str().unwrap();
    assert!(ws
        .tmux(&["has-session", "-t", &format!("={session}")])
        .status
        .success());
    let (s, v) = ws.api_delete(&format!("/api/tasks/{id}")).await;
    assert_eq!((s, v["state"].as_str()), (200, Some("killed")));
    assert!(!ws
        .tmux(&["has-session", "-t", &format!("={session}")])
        .status
        .success());
    // The kill's own exit does not overwrite the state.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, t) = ws.api_get(&format!("/api/tasks/{id}")).await;
    assert_eq!(t["state"], "killed");
    assert_eq!(t["exit_code"], serde_json::Value::Null);
    let (s, v) = ws.api_delete(&format!("/api/tasks/{id}")).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("task_finished")));
}

#[tokio::test]
async fn a_session_that_vanishes_is_lost() {
    let ws = Workspace::start(&[]).await;
    let t = ws.create(json!({"assistant": "fake"})).await;
    let id = t["id"].as_str().unwrap();
    let out = ws.tmux(&[
        "kill-session",
        "-t",
        &format!("={}", t["tmux_session"].as_str().unwrap()),
    ]);
    assert!(out.status.success());
    let lost = ws.wait_state(id, "lost").await;
    assert_eq!(lost["exit_code"], serde_json::Value::Null);
}

/// A task on a tmux server `wanted` accepts. Ids are random, so tasks are
/// made (and the others killed, to stay under the live-task cap) until
/// one lands there.
async fn task_on(ws: &Workspace, wanted: impl Fn(usize) -> bool) -> String {
    use workspace::tasks::tmux::{session_name, shard_of};
    loop {
        let id = ws.create_fake().await;
        if wanted(shard_of(&session_name(&id))) {
            return id;
        }
        let (s, v) = ws.api_delete(&format!("/api/tasks/{id}")).await;
        assert_eq!(s, 200, "{v}");
    }
}

/// A tmux server going (killed, or crashed) loses the live tasks on it,
/// told by the end of its control client, and only those: tasks on the
/// workspace's other tmux servers keep running; the next task on that
/// server starts a new one.
#[tokio::test]
async fn a_tmux_server_that_dies_loses_its_tasks_and_the_next_task_runs() {
    use workspace::tasks::tmux::{session_name, shard_of};
    let ws = Workspace::start(&[]).await;
    let a = ws.create_fake().await;
    let a_shard = shard_of(&session_name(&a));
    let b = task_on(&ws, |shard| shard != a_shard).await;
    ws.wait_output(&a, "fake-agent ready").await;
    ws.wait_output(&b, "fake-agent ready").await;
    let a_session = session_name(&a);
    assert!(ws.kill_tmux_of(&a_session));
    ws.wait_state(&a, "lost").await;
    ws.say(&b, "still here").await;
    ws.wait_output(&b, "you said: still here").await;
    let (_, t) = ws.api_get(&format!("/api/tasks/{b}")).await;
    assert_ne!(t["state"], "lost", "{t}");
    // The next task on the dead server's socket starts it again.
    let c = task_on(&ws, |shard| shard == a_shard).await;
    ws.wait_output(&c, "fake-agent ready").await;
}

#[tokio::test]
async fn live_task_cap_answers_429() {
    let ws = Workspace::start(&["--max-tasks", "2"]).await;
    let a = ws.create_fake().await;
    ws.create_fake().await;
    let (s, v) = ws
        .api_post("/api/tasks", json!({"assistant": "fake"}))
        .await;
    assert_eq!(s, 429);
    assert_eq!(v["code"], "task_limit");
    assert!(v["error"].as_str().unwrap().contains("--max-tasks"));
    // A finished task frees its slot.
    ws.say(&a, "exit 0").await;
    ws.wait_state(&a, "succeeded").await;
    ws.create_fake().await;
}

#[tokio::test]
async fn workdir_is_confined_to_the_home() {
    let ws = Workspace::start(&[]).await;
    let home = ws.home();
    std::fs::create_dir_all(home.join("proj/sub")).unwrap();
    std::os::unix::fs::symlink("/etc", home.join("escape")).unwrap();
    std::fs::write(home.join("file.txt"), "x").unwrap();
    let t = ws
        .create(json!({"assistant": "shell", "prompt": "pwd", "workdir": "proj/sub"}))
        .await;
    let id = t["id"].as_str().unwrap();
    ws.wait_state(id, "succeeded").await;
    let out = ws.wait_output(id, "proj/sub").await;
    assert!(out.contains(
        home.join("proj/sub")
            .canonicalize()
            .unwrap()
            .to_str()
            .unwrap()
    ));
    for (wd, code) in [
        ("../", "workdir_outside_home"),
        ("/etc", "workdir_outside_home"),
        ("proj/../../..", "workdir_outside_home"),
        ("escape", "workdir_outside_home"),
        ("nope", "workdir_not_found"),
        ("file.txt", "workdir_not_a_directory"),
    ] {
        let (s, v) = ws
            .api_post("/api/tasks", json!({"assistant": "fake", "workdir": wd}))
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (400, Some(code)),
            "workdir {wd}: {v}"
        );
    }
}

#[tokio::test]
async fn env_typed_and_stdin_prompts_reach_the_program() {
    let ws = Workspace::start(&[]).await;
    let t = ws
        .create(json!({"assistant": "shell", "prompt": "echo value=$MY_VAR", "env": {"MY_VAR": "it works"}}))
        .await;
    let id = t["id"].as_str().unwrap();
    assert_eq!(t["env_keys"], json!(["MY_VAR"]));
    ws.wait_output(id, "value=it works").await;
    let (s, v) = ws
        .api_post(
            "/api/tasks",
            json!({"assistant": "shell", "env": {"TMUX": "x"}}),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_env")));

    let t = ws
        .create(json!({"assistant": "fake-typed", "prompt": "typed prompt"}))
        .await;
    ws.wait_output(t["id"].as_str().unwrap(), "you said: typed prompt")
        .await;

    let t = ws
        .create(json!({"assistant": "fake-stdin", "prompt": "from stdin"}))
        .await;
    let id = t["id"].as_str().unwrap();
    ws.wait_output(id, "from stdin").await;
    ws.wait_state(id, "succeeded").await;
}

/// tmux reads a final `;` in an argument as the end of a command: text and
/// env values that end in one (or are one) arrive exactly as sent, and a
/// failure never shows the server's paths.
#[tokio::test]
async fn semicolons_and_backslashes_arrive_exactly_as_sent() {
    let ws = Workspace::start(&[]).await;
    let t = ws
        .create(json!({
            "assistant": "shell",
            "prompt": "printf '<%s|%s|%s>\\n' \"$A\" \"$B\" \"$C\"",
            "env": {"A": "x;", "B": ";", "C": "y\\;"}
        }))
        .await;
    ws.wait_output(t["id"].as_str().unwrap(), "<x;|;|y\\;>")
        .await;
    let id = ws.create_fake().await;
    ws.wait_output(&id, "fake-agent ready").await;
    for text in ["rm -rf build;", ";", "a\\;", "two;;", "end \\"] {
        ws.say(&id, text).await;
        ws.wait_output(&id, &format!("you said: {text}\n")).await;
    }
    let (s, v) = ws
        .api_post(
            &format!("/api/tasks/{id}/message"),
            json!({"text": "x;", "enter": false}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    // A tmux failure names no server path: the socket's directory is gone.
    ws.kill_tmux();
    let (s, v) = ws
        .api_post(&format!("/api/tasks/{id}/message"), json!({"text": "hi"}))
        .await;
    assert!(s >= 400, "{s} {v}");
    let data = ws.data_dir().display().to_string();
    assert!(!v.to_string().contains(&data), "a server path in {v}");
}

/// A prompt that looks like an option reaches the program as its prompt.
#[tokio::test]
async fn a_prompt_that_looks_like_an_option_is_not_taken_as_one() {
    let ws = Workspace::start(&[]).await;
    let t = ws
        .create(json!({"assistant": "shell", "prompt": "--version"}))
        .await;
    let id = t["id"].as_str().unwrap();
    let out = ws.wait_output(id, "command not found").await;
    assert!(out.contains("--version: command not found"), "{out}");
    assert!(
        !out.contains("GNU bash"),
        "bash took the prompt as its option: {out}"
    );
}

/// An assistant whose program is not installed is refused before anything
/// starts, naming the program and how to install it; the list says which
/// can run; without a configured default, the first installed assistant
/// is the default (the shell last); schedules are checked the same way.
#[tokio::test]
async fn assistants_that_are_not_installed_say_so_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("assistants.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[assistant]]
name = "missing"
command = "kc-no-such-program-xyz {{prompt}}"
install = "apt-get install kc-no-such"

[[assistant]]
name = "fake"
command = "sh {} {{prompt}}"
"#,
            common::FAKE_AGENT
        ),
    )
    .unwrap();
    let arg = config.display().to_string();
    let ws = Workspace::start(&["--assistants-config", &arg]).await;
    let (s, v) = ws.api_get("/api/assistants").await;
    assert_eq!(s, 200);
    let list = v["assistants"].as_array().unwrap();
    let find = |n: &str| list.iter().find(|a| a["name"] == n).unwrap().clone();
    assert_eq!(find("missing")["available"], false);
    assert_eq!(find("missing")["program"], "kc-no-such-program-xyz");
    assert_eq!(find("missing")["install"], "apt-get install kc-no-such");
    assert_eq!(find("fake")["available"], true);
    assert_eq!(find("shell")["available"], true);
    let first_installed = list
        .iter()
        .find(|a| a["available"] == true && a["name"] != "shell")
        .map(|a| a["name"].clone())
        .unwrap();
    assert_eq!(v["default"], first_installed, "{v}");

    let (s, e) = ws
        .api_post(
            "/api/tasks",
            json!({"assistant": "missing", "prompt": "hi"}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("assistant_unavailable")),
        "{e}"
    );
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.contains("kc-no-such-program-xyz") && msg.contains("apt-get install kc-no-such"),
        "{msg}"
    );
    let (_, tasks) = ws.api_get("/api/tasks").await;
    assert_eq!(
        tasks["tasks"].as_array().unwrap().len(),
        0,
        "a task was started"
    );
    let (s, e) = ws
        .api_post(
            "/api/schedules",
            json!({"name": "n", "cron": "0 3 * * *", "prompt": "p", "assistant": "missing"}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("assistant_unavailable")),
        "{e}"
    );
    // A task with no assistant named gets the default, which runs.
    let t = ws.create(json!({"prompt": "echo default-ran"})).await;
    assert_eq!(t["assistant"], first_installed);
    // The start banner says the same.
    let banner = ws.stdout_lines.join("\n");
    assert!(
        banner.contains("assistants:") && banner.contains("missing is not installed"),
        "{banner}"
    );
}

#[tokio::test]
async fn quiet_tasks_wait_for_input_and_wake_on_output() {
    let ws = Workspace::start(&["--input-idle-secs", "1"]).await;
    let id = ws.create_fake().await;
    ws.wait_state(&id, "waiting_for_input").await;
    ws.say(&id, "wake up").await;
    ws.wait_output(&id, "you said: wake up").await;
    // waiting → running follows the output (recorded asynchronously).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, t) = ws.api_get(&format!("/api/tasks/{id}")).await;
        let tos: Vec<_> = t["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["to"].as_str().unwrap().to_string())
            .collect();
        let w = tos.iter().position(|s| s == "waiting_for_input").unwrap();
        if tos[w..].iter().any(|s| s == "running") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{tos:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn list_filters_paginates_and_the_claude_alias_answers() {
    let ws = Workspace::start(&[]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let t = ws
            .create(json!({"assistant": "shell", "prompt": "true", "name": format!("job-{i}")}))
            .await;
        ids.push(t["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        ws.wait_state(id, "succeeded").await;
    }
    let (_, p1) = ws.api_get("/api/tasks?limit=2").await;
    let got: Vec<_> = p1["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    assert_eq!(got, vec![json!(ids[4]), json!(ids[3])]);
    let cursor = p1["next_cursor"].as_i64().unwrap();
    let (_, p2) = ws
        .api_get(&format!("/api/tasks?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(p2["tasks"][0]["id"], json!(ids[2]));
    let (_, f) = ws
        .api_get("/api/tasks?state=succeeded,failed&name=job-1")
        .await;
    assert_eq!(f["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(f["next_cursor"], serde_json::Value::Null);
    let (s, alias) = ws.api_get(&format!("/api/claude/tasks/{}", ids[0])).await;
    assert_eq!((s, alias["id"].clone()), (200, json!(ids[0])));
    let (s, _) = ws.api_get("/api/claude/tasks").await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn output_log_is_capped_and_rotated() {
    let ws = Workspace::start(&["--output-log-bytes", "65536"]).await;
    let id = ws.create_fake().await;
    ws.say(&id, "spam 3000").await;
    ws.wait_output(&id, "spam line 2999").await;
    let dir = ws.data_dir().join("tasks").join(&id);
    let kept = || -> u64 {
        ["output.log", "output.log.1"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
            .map(|m| m.len())
            .sum()
    };
    // The agent's prompt may still be on its way after the last line: read
    // once the sizes hold still (a rotation between the two reads of one
    // sum would count the rotated file twice).
    let mut last = kept();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = kept();
        if now == last {
            break;
        }
        last = now;
    }
    let kept = kept();
    // ~260 KB were written; at most the cap plus one pipe read is kept.
    assert!(kept <= 65536 + 65536, "kept {kept}");
    let offset: u64 = std::fs::read_to_string(dir.join("output.offset"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(offset > 0);
    // A stream from 0 starts at the oldest kept byte, not at 0.
    let resp = ws
        .client
        .get(format!("{}/api/tasks/{id}/stream", ws.api))
        .header("authorization", ws.bearer())
        .send()
        .await
        .unwrap();
    let ev = read_sse(resp, Duration::from_secs(10), |e| e.event == "output").await;
    assert!(ev.last().unwrap().json()["offset"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn event_stream_cap_answers_429_and_frees_slots_on_disconnect() {
    let ws = Workspace::start(&["--max-sse", "2"]).await;
    let open = || {
        ws.client
            .get(format!("{}/api/events", ws.api))
            .header("authorization", ws.bearer())
            .send()
    };
    let a = open().await.unwrap();
    let b = open().await.unwrap();
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let c = open().await.unwrap();
    assert_eq!(c.status(), 429);
    let v: serde_json::Value = c.json().await.unwrap();
    assert_eq!(v["code"], "sse_limit");
    // Task streams count against the same cap.
    let id = ws.create_fake().await;
    let (s, _) = ws.api_get(&format!("/api/tasks/{id}/stream")).await;
    assert_eq!(s, 429);
    drop(a);
    // The slot comes back once the server notices the disconnect.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = open().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(b);
}

/// Commands that finish at once: each still starts, and what it printed
/// before the output pipe could have been attached is in its log (the
/// command waits for the pipe; the tmux server outlives its last session).
#[tokio::test]
async fn instant_commands_start_and_keep_their_output() {
    let ws = Workspace::start(&[]).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let t = ws
            .create(json!({"assistant": "shell", "prompt": format!("echo instant-{i}")}))
            .await;
        ids.push(t["id"].as_str().unwrap().to_string());
    }
    for (i, id) in ids.iter().enumerate() {
        ws.wait_state(id, "succeeded").await;
        ws.wait_output(id, &format!("instant-{i}")).await;
    }
}

/// A finished task can be removed with its files; a live one cannot.
#[tokio::test]
async fn a_finished_task_is_removed_with_its_logs_a_live_one_is_not() {
    let ws = Workspace::start(&[]).await;
    let id = ws.create_fake().await;
    ws.wait_output(&id, "fake-agent ready").await;
    let (s, v) = ws.api_delete(&format!("/api/tasks/{id}?remove=true")).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("task_live")), "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("kill it first"),
        "{v}"
    );
    let (s, _) = ws.api_delete(&format!("/api/tasks/{id}")).await;
    assert_eq!(s, 200);
    ws.wait_state(&id, "killed").await;
    let dir = ws.data_dir().join("tasks").join(&id);
    assert!(
        dir.join("output.log").exists(),
        "the log is where the test looks"
    );
    let (s, _) = ws.api_delete(&format!("/api/tasks/{id}?remove=true")).await;
    assert_eq!(s, 204);
    assert!(!dir.exists(), "the task's files are gone");
    let (s, _) = ws.api_get(&format!("/api/tasks/{id}")).await;
    assert_eq!(s, 404);
    let (_, list) = ws.api_get("/api/tasks").await;
    assert_eq!(list["tasks"], json!([]), "{list}");
    let (s, _) = ws.api_delete(&format!("/api/tasks/{id}?remove=true")).await;
    assert_eq!(s, 404);
}

/// The tmux status bar (what the terminal shows under the task) is in the
/// dashboard's colours and names the task: its name, else its prompt on
/// one line.
#[tokio::test]
async fn the_status_bar_names_the_task_in_the_dashboards_colours() {
    let ws = Workspace::start(&[]).await;
    // What the session's status bar is drawn with: its own options or the
    // server's defaults, as tmux resolves them.
    let show = |session: &str, option: &str| {
        let format = format!("#{{{option}}}");
        let out = ws.tmux(&[
            "display-message",
            "-p",
            "-t",
            &format!("{session}:"),
            &format,
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let named = ws
        .create(json!({"assistant": "fake", "name": "Fix the build"}))
        .await;
    let session = named["tmux_session"].as_str().unwrap();
    assert_eq!(show(session, "@kc_title"), "Fix the build");
    assert!(
        show(session, "status-style").contains("#181c25"),
        "{}",
        show(session, "status-style")
    );
    assert!(show(session, "T:status-left").contains(" Fix the build "));
    let prompted = ws
        .create(json!({"assistant": "fake", "prompt": "refactor\n  the parser\tnow"}))
        .await;
    let session = prompted["tmux_session"].as_str().unwrap();
    assert_eq!(show(session, "@kc_title"), "refactor the parser now");
}
