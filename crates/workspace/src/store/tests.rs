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
async fn a_command_that_ended_before_its_start_was_recorded_still_has_a_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite"), SecretBox::ephemeral()).unwrap();
    store.insert_task(new_task("quick")).await.unwrap();
    store.insert_task(new_task("never")).await.unwrap();
    // Its exit came before its move to running.
    let ended = store
        .transition(
            "quick",
            &TaskState::LIVE,
            TaskState::Failed,
            TransitionInfo {
                exit_code: Some(3),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(ended.task.started_at.is_some());
    assert_eq!(ended.task.started_at, ended.task.finished_at);
    // One that never ran (its session did not start) has none.
    let failed = store
        .transition(
            "never",
            &TaskState::LIVE,
            TaskState::Failed,
            TransitionInfo {
                error: Some("tmux failed".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(failed.task.started_at.is_none());
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
            paused: false,
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

fn open_temp() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite"), SecretBox::ephemeral()).unwrap();
    (dir, store)
}

fn webhook(id: &str, name: &str) -> Webhook {
    Webhook {
        id: id.into(),
        name: name.into(),
        secret: "s".into(),
        prompt_template: "p".into(),
        assistant: None,
        workdir: None,
        hook_url: None,
        hook_secret: None,
        created_at: 0,
        paused: false,
    }
}

#[tokio::test]
async fn trigger_names_are_unique_per_kind_and_edits_keep_that() {
    let (_dir, store) = open_temp();
    store.insert_webhook(webhook("w1", "ci")).await.unwrap();
    store.insert_webhook(webhook("w2", "deploy")).await.unwrap();
    let twin = store.insert_webhook(webhook("w3", "ci")).await;
    assert!(matches!(twin, Err(StoreError::NameTaken(n)) if n == "ci"));
    // Renaming onto another's name is refused; keeping one's own is not.
    let clash = store.update_webhook(webhook("w2", "ci")).await;
    assert!(matches!(clash, Err(StoreError::NameTaken(_))));
    let mut paused = webhook("w2", "deploy");
    paused.paused = true;
    assert!(store.update_webhook(paused).await.unwrap());
    assert!(store.get_webhook("w2").await.unwrap().unwrap().paused);
    assert_eq!(store.list_webhooks().await.unwrap().len(), 2);
    assert!(!store.update_webhook(webhook("nope", "x")).await.unwrap());
}

#[tokio::test]
async fn a_failed_or_paused_delivery_can_come_again_a_started_one_cannot() {
    let (_dir, store) = open_temp();
    store.insert_webhook(webhook("w1", "ci")).await.unwrap();
    assert!(store.claim_receipt("w1", "k1", "d1").await.unwrap());
    assert!(
        !store.claim_receipt("w1", "k1", "d1").await.unwrap(),
        "pending is taken"
    );
    store
        .finish_receipt(
            "w1",
            "k1",
            ReceiptOutcome::Failed,
            None,
            Some("task limit".into()),
        )
        .await
        .unwrap();
    assert!(store.claim_receipt("w1", "k1", "d1-again").await.unwrap());
    store
        .finish_receipt("w1", "k1", ReceiptOutcome::Paused, None, None)
        .await
        .unwrap();
    assert!(store.claim_receipt("w1", "k1", "d1-third").await.unwrap());
    store
        .finish_receipt("w1", "k1", ReceiptOutcome::Started, Some("t1".into()), None)
        .await
        .unwrap();
    assert!(!store.claim_receipt("w1", "k1", "d1-fourth").await.unwrap());
    assert!(store.claim_receipt("w1", "k2", "d2").await.unwrap());
    let r = store.receipts("w1", 10).await.unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0].delivery_id.as_str(), r[0].outcome),
        ("d2", ReceiptOutcome::Pending)
    );
    assert_eq!(r[1].delivery_id, "d1-third");
    assert_eq!(r[1].outcome, ReceiptOutcome::Started);
    assert_eq!(r[1].task_id.as_deref(), Some("t1"));
}

/// A database from before v5 keeps its receipts, with how they went.
#[tokio::test]
async fn receipts_of_an_older_database_keep_their_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let old = Connection::open(&path).unwrap();
    schema::migrate_to(&old, 4).unwrap();
    old.execute_batch(
        "INSERT INTO webhook_receipts (webhook_id, delivery_id, received_at, task_id)
           VALUES ('w1', 'started-one', 1, 't1'), ('w1', 'failed-one', 2, NULL);
         INSERT INTO schedules (id, name, cron, timezone, missed_policy, next_at, created_at)
           VALUES ('s1', 'nightly', '0 3 * * *', 'UTC', 'run_once', 5, 0);",
    )
    .unwrap();
    drop(old);
    let store = Store::open(&path, SecretBox::ephemeral()).unwrap();
    let r = store.receipts("w1", 10).await.unwrap();
    let outcomes: Vec<_> = r
        .iter()
        .map(|r| (r.delivery_id.as_str(), r.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("failed-one", ReceiptOutcome::Failed),
            ("started-one", ReceiptOutcome::Started)
        ]
    );
    let s = store.get_schedule("s1").await.unwrap().unwrap();
    assert!(!s.paused);
    assert_eq!(s.next_at, 5);
}

#[tokio::test]
async fn builds_are_recorded_once_ended_and_a_restart_marks_the_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let store = Store::open(&path, SecretBox::ephemeral()).unwrap();
    let images = vec![
        "r.io/team/app:1".to_string(),
        "r.io/team/app:latest".to_string(),
    ];
    store.build_started("b1", &images, 10).await.unwrap();
    store.build_started("b2", &images[..1], 20).await.unwrap();
    store
        .build_finished(
            "b1",
            BuildEnd::Pushed {
                digest: "sha256:aa".into(),
                size: Some(4096),
            },
            15,
        )
        .await
        .unwrap();
    // An ended build stays as it ended.
    store
        .build_finished("b1", BuildEnd::Failed("late".into()), 16)
        .await
        .unwrap();
    drop(store);
    // b2 was running when the server stopped.
    let store = Store::open(&path, SecretBox::ephemeral()).unwrap();
    assert_eq!(store.builds_cut_off(30).await.unwrap(), 1);
    let builds = store.builds(10).await.unwrap();
    assert_eq!(
        builds.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        ["b2", "b1"]
    );
    assert_eq!(builds[0].state, BuildState::Failed);
    assert!(builds[0]
        .error
        .as_deref()
        .unwrap()
        .contains("stopped during the build"));
    assert_eq!(builds[1].state, BuildState::Succeeded);
    assert_eq!(builds[1].digest.as_deref(), Some("sha256:aa"));
    assert_eq!(builds[1].size, Some(4096));
    assert_eq!(builds[0].size, None);
    assert_eq!(builds[1].images, images);
    assert_eq!(
        (builds[1].started_at, builds[1].finished_at),
        (10, Some(15))
    );
}
