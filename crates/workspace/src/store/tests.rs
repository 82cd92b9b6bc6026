//! The store against real SQLite files.

use super::*;
use crate::task_state::TaskState;
use rusqlite::Connection;

fn new_task(id: &str) -> NewTask {
    NewTask {
        id: id.into(),
        name: Some(format!("name-{id}")),
        assistant: "shell".into(),
        prompt: None,
        workdir: "/tmp".into(),
        env_keys: vec!["A".into()],
        tmux_session: format!("kc-{id}"),
        hook_url: None,
        hook_secret: None,
    }
}

#[tokio::test]
async fn final_states_are_terminal_and_transitions_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite"), SecretBox::ephemeral()).unwrap();
    store.insert_task(new_task("a")).await.unwrap();
    let moved = store
        .transition(
            "a",
            &TaskState::LIVE,
            TaskState::Running,
            Default::default(),
        )
        .await
        .unwrap();
    assert!(moved.unwrap().task.started_at.is_some());
    let killed = store
        .transition("a", &TaskState::LIVE, TaskState::Killed, Default::default())
        .await
        .unwrap()
        .unwrap();
    assert!(killed.task.finished_at.is_some());
    // An exit arriving after the kill changes nothing.
    let late = store
        .transition(
            "a",
            &TaskState::LIVE,
            TaskState::Failed,
            TransitionInfo {
                exit_code: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(late.is_none());
    let t = store.get_task("a").await.unwrap().unwrap();
    assert_eq!(t.state, TaskState::Killed);
    assert_eq!(t.exit_code, None);
    let tr: Vec<_> = store
        .transitions("a")
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.to)
        .collect();
    assert_eq!(
        tr,
        [TaskState::Starting, TaskState::Running, TaskState::Killed]
    );
}

#[tokio::test]
async fn list_is_newest_first_filtered_and_paginated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let store = Store::open(
        &path,
        SecretBox::load_or_create(&dir.path().join("k")).unwrap(),
    )
    .unwrap();
    for i in 0..5 {
        store.insert_task(new_task(&format!("t{i}"))).await.unwrap();
    }
    store
        .transition(
            "t1",
            &TaskState::LIVE,
            TaskState::Running,
            Default::default(),
        )
        .await
        .unwrap();
    let page = store
        .list_tasks(TaskFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["t4", "t3"]
    );
    let next = store
        .list_tasks(TaskFilter {
            limit: 2,
            before: Some(page[1].seq),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["t2", "t1"]
    );
    let running = store
        .list_tasks(TaskFilter {
            states: vec![TaskState::Running],
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    // Reopening the file keeps everything (a real file, not memory).
    drop(store);
    let again = Store::open(
        &path,
        SecretBox::load_or_create(&dir.path().join("k")).unwrap(),
    )
    .unwrap();
    assert_eq!(again.live_tasks().await.unwrap().len(), 5);
}

/// Secrets are sealed in the file (a copy of the database gives none
/// away), plain ones from before are sealed at the next start, and the
/// database is readable by its owner only.
#[tokio::test]
async fn secrets_are_sealed_at_rest_and_the_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let key = || SecretBox::load_or_create(&dir.path().join("k")).unwrap();
    let store = Store::open(&path, key()).unwrap();
    store
        .insert_webhook(Webhook {
            id: "w1".into(),
            name: "ci".into(),
            secret: "whsec-plain-1".into(),
            prompt_template: "p".into(),
            assistant: None,
            workdir: None,
            hook_url: Some("http://h.test/".into()),
            hook_secret: Some("hooksec-plain-2".into()),
            created_at: 0,
        })
        .await
        .unwrap();
    let w = store.get_webhook("w1").await.unwrap().unwrap();
    assert_eq!(w.secret, "whsec-plain-1");
    assert_eq!(w.hook_secret.as_deref(), Some("hooksec-plain-2"));
    // As a database written before sealing would hold it.
    let raw = Connection::open(&path).unwrap();
    raw.execute(
        "UPDATE webhooks SET hook_secret = 'legacy-plain-3' WHERE id = 'w1'",
        [],
    )
    .unwrap();
    drop(raw);
    drop(store);
    let store = Store::open(&path, key()).unwrap();
    let w = store.get_webhook("w1").await.unwrap().unwrap();
    assert_eq!(w.hook_secret.as_deref(), Some("legacy-plain-3"));
    drop(store);
    let raw = Connection::open(&path).unwrap();
    let (a, b): (String, String) = raw
        .query_row("SELECT secret, hook_secret FROM webhooks", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    for v in [&a, &b] {
        assert!(v.starts_with("kcs1:") && !v.contains("plain"), "{v}");
    }
    drop(raw);
    for f in ["db.sqlite", "db.sqlite-wal", "db.sqlite-shm"] {
        if let Ok(m) = std::fs::metadata(dir.path().join(f)) {
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
        }
    }
    // Another key cannot open them: the answer says so, nothing panics.
    let other = Store::open(&path, SecretBox::ephemeral()).unwrap();
    assert!(matches!(
        other.get_webhook("w1").await,
        Err(StoreError::Sealed(_))
    ));
}

/// The TEXT enums read back what they write, and a word the code does not
/// know is an error from the row, never a panic.
#[test]
fn stored_words_round_trip_and_unknown_ones_are_errors() {
    for s in DeliveryState::ALL {
        assert_eq!(DeliveryState::parse(s.as_str()), Some(*s));
    }
    for s in FiringOutcome::ALL {
        assert_eq!(FiringOutcome::parse(s.as_str()), Some(*s));
    }
    assert_eq!(MissedPolicy::words(), "`run_once` or `skip`");
    assert_eq!(
        serde_json::to_value(MissedPolicy::RunOnce).unwrap(),
        serde_json::json!("run_once")
    );
    let c = Connection::open_in_memory().unwrap();
    let read = |word: &str| c.query_row("SELECT ?1", [word], |r| r.get::<_, DeliveryState>(0));
    assert_eq!(read("dead").unwrap(), DeliveryState::Dead);
    assert!(read("bogus").is_err());
}
