//! The conformance suite: every case runs against SQLite and against PostgreSQL, and both must
//! answer alike. A new backend passes these before it is used.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test cases: failing loudly is their job.

use std::collections::BTreeSet;

use serde_json::json;

use crate::*;

fn version<'a>(agent: &'a str, digest: &'a str, manifest: &'a serde_json::Value) -> NewVersion<'a> {
    NewVersion {
        agent,
        digest,
        size: 3,
        manifest,
        origin: Origin::Push,
        edit: None,
        parent: None,
        checks: &[],
        rejected: None,
        source: None,
    }
}

fn push() -> Activation {
    Activation {
        cause: ActivationCause::Push,
        watch: true,
        judged: None,
        edit: None,
    }
}

/// Versions are numbered per agent from 1, and read back as written.
pub async fn versions_are_numbered_per_agent_and_read_back(store: &Store) {
    let manifest = json!({ "limits": { "fuel": 1000 }, "config": { "k": "v" } });
    let checks = [Check {
        step: "validate".to_string(),
        ok: true,
        detail: "fine".to_string(),
        ms: 1.5,
    }];
    let mut first = version("alpha", "d1", &manifest);
    first.checks = &checks;
    first.source = Some(("s1", b"gz"));
    assert_eq!(
        store
            .insert_version(&first, Some(b"one"), Some(&push()))
            .await
            .unwrap(),
        1
    );
    let mut second = version("alpha", "d2", &manifest);
    second.parent = Some(1);
    second.origin = Origin::Edit;
    second.rejected = Some(RejectedAt {
        stage: "health",
        code: "unhealthy",
        reason: "sick",
    });
    assert_eq!(
        store
            .insert_version(&second, Some(b"two"), None)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .insert_version(&version("beta", "d1", &manifest), None, None)
            .await
            .unwrap(),
        1
    );

    let agents = store.agents().await.unwrap();
    assert_eq!(
        agents.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["alpha", "beta"]
    );
    let alpha = store.agent("alpha").await.unwrap().unwrap();
    assert_eq!(alpha.active_version, Some(1));
    assert_eq!(
        store.agent("beta").await.unwrap().unwrap().active_version,
        None
    );
    assert!(store.agent("gamma").await.unwrap().is_none());

    let versions = store.versions("alpha").await.unwrap();
    assert_eq!(versions.len(), 2);
    let v1 = &versions[0];
    assert_eq!((v1.number, v1.digest.as_str(), v1.size), (1, "d1", 3));
    assert_eq!(v1.manifest, manifest);
    assert_eq!(v1.checks, checks);
    assert_eq!(v1.state, VersionState::Ready);
    assert_eq!(v1.source_digest.as_deref(), Some("s1"));
    assert!(v1.servable() && !v1.condemned());
    let v2 = store.version("alpha", 2).await.unwrap().unwrap();
    assert_eq!(v2.state, VersionState::Rejected);
    assert_eq!(v2.origin, Origin::Edit);
    assert_eq!(v2.parent, Some(1));
    assert_eq!(
        (
            v2.stage.as_deref(),
            v2.code.as_deref(),
            v2.reason.as_deref()
        ),
        (Some("health"), Some("unhealthy"), Some("sick"))
    );
    assert!(store.version("alpha", 3).await.unwrap().is_none());
    assert_eq!(
        store.component("d1").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(
        store.source("s1").await.unwrap().as_deref(),
        Some(&b"gz"[..])
    );
    assert!(store.component("nope").await.unwrap().is_none());
    assert!(store.dangling_versions().await.unwrap().is_empty());

    // What deploys choose from leaves rejected versions out; a digest finds every state.
    let numbers =
        |versions: Vec<VersionRecord>| versions.iter().map(|v| v.number).collect::<Vec<_>>();
    assert_eq!(
        numbers(store.servable_versions("alpha").await.unwrap()),
        [1]
    );
    assert_eq!(
        numbers(store.versions_by_digest("alpha", "d2").await.unwrap()),
        [2]
    );
    assert_eq!(
        numbers(store.versions_by_digest("alpha", "d1").await.unwrap()),
        [1]
    );
    assert!(
        store
            .versions_by_digest("beta", "d2")
            .await
            .unwrap()
            .is_empty()
    );
}

/// Concurrent pushes of one agent get distinct numbers without gaps.
pub async fn concurrent_inserts_number_versions_without_gaps(store: &Store) {
    let manifest = json!({});
    let inserts = (0..16).map(|n| {
        let store = store.clone();
        let manifest = manifest.clone();
        tokio::spawn(async move {
            let digest = format!("d{n}");
            store
                .insert_version(
                    &version("busy", &digest, &manifest),
                    Some(digest.as_bytes()),
                    Some(&push()),
                )
                .await
                .unwrap()
        })
    });
    let mut numbers = BTreeSet::new();
    for insert in inserts {
        assert!(numbers.insert(insert.await.unwrap()), "a number twice");
    }
    assert_eq!(numbers, (1..=16).collect());
    let active = store.agent("busy").await.unwrap().unwrap().active_version;
    assert!(active.is_some_and(|n| numbers.contains(&n)));
    assert_eq!(store.activations("busy", 100).await.unwrap().len(), 16);
}

/// An activation writes the pointer, the verdict it carries, lifts quarantine, undoes
/// retirement and records itself, together; a rollback marks the edit of the version left.
pub async fn activation_carries_its_verdict_and_edit_marks(store: &Store) {
    let manifest = json!({});
    let edit = store
        .insert_edit(&NewEdit {
            agent: "svc",
            base_version: Some(1),
            proposer: "api",
            by_agent: false,
            reason: "fix",
            diff: "--- a\n+++ b\n",
            rebased_onto: None,
        })
        .await
        .unwrap();
    store
        .insert_version(&version("svc", "a", &manifest), Some(b"a"), Some(&push()))
        .await
        .unwrap();
    let mut built = version("svc", "b", &manifest);
    built.origin = Origin::Edit;
    built.edit = Some(edit);
    store
        .insert_version(&built, Some(b"b"), Some(&push()))
        .await
        .unwrap();
    let live = store.edit("svc", edit).await.unwrap().unwrap();
    assert_eq!(live.state, EditState::Live, "written with the activation");
    assert_eq!(live.version, Some(2));
    assert_eq!(
        store.version("svc", 2).await.unwrap().unwrap().edit,
        Some(edit)
    );

    store.quarantine("svc", None).await.unwrap();
    assert!(
        store
            .agent("svc")
            .await
            .unwrap()
            .unwrap()
            .quarantined_ms
            .is_some()
    );
    let judged = Judgement {
        version: 2,
        verdict: Verdict::RolledBack,
        detail: "5 of 5 failed".to_string(),
        calls: 5,
        failures: 5,
    };
    store
        .activate(
            "svc",
            1,
            &Activation {
                cause: ActivationCause::Remediation,
                watch: false,
                judged: Some(judged),
                edit: None,
            },
        )
        .await
        .unwrap();
    let agent = store.agent("svc").await.unwrap().unwrap();
    assert_eq!(agent.active_version, Some(1));
    assert!(
        agent.quarantined_ms.is_none(),
        "an activation lifts quarantine"
    );
    let v2 = store.version("svc", 2).await.unwrap().unwrap();
    assert_eq!(v2.verdict, Some(Verdict::RolledBack));
    assert_eq!(v2.verdict_detail.as_deref(), Some("5 of 5 failed"));
    assert_eq!((v2.calls, v2.failures), (5, 5));
    assert!(v2.condemned());
    assert_eq!(
        store.edit("svc", edit).await.unwrap().unwrap().state,
        EditState::RolledBack
    );

    let history = store.activations("svc", 10).await.unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].version, Some(1));
    assert_eq!(history[0].previous, Some(2));
    assert_eq!(history[0].cause, ActivationCause::Remediation);
    assert_eq!(history[2].previous, None);

    // A watched re-activation clears the verdict until its window closes; an edit whose build
    // matched v2 goes live with it, and leaves with it on a rollback.
    let rebuilt = store
        .insert_edit(&NewEdit {
            agent: "svc",
            base_version: Some(1),
            proposer: "api",
            by_agent: false,
            reason: "again",
            diff: "--- a\n+++ b\n",
            rebased_onto: None,
        })
        .await
        .unwrap();
    store
        .activate(
            "svc",
            2,
            &Activation {
                edit: Some(rebuilt),
                ..push()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.version("svc", 2).await.unwrap().unwrap().verdict,
        None
    );
    let rebuilt_edit = store.edit("svc", rebuilt).await.unwrap().unwrap();
    assert_eq!(
        (rebuilt_edit.state, rebuilt_edit.version),
        (EditState::Live, Some(2))
    );
    store
        .activate(
            "svc",
            1,
            &Activation {
                cause: ActivationCause::Rollback,
                watch: false,
                judged: None,
                edit: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.edit("svc", rebuilt).await.unwrap().unwrap().state,
        EditState::RolledBack
    );
    store.activate("svc", 2, &push()).await.unwrap();
    assert!(
        store.activate("ghost", 1, &push()).await.is_err(),
        "no agent, no activation"
    );

    store.retire("svc").await.unwrap();
    let retired = store.agent("svc").await.unwrap().unwrap();
    assert_eq!(retired.active_version, None);
    assert!(retired.retired_ms.is_some());
    store.activate("svc", 1, &push()).await.unwrap();
    assert!(
        store
            .agent("svc")
            .await
            .unwrap()
            .unwrap()
            .retired_ms
            .is_none()
    );
}

/// Verdicts, quarantine with its verdict, release, faults and repaired components.
pub async fn verdicts_quarantine_faults_and_repairs(store: &Store) {
    let manifest = json!({});
    store
        .insert_version(&version("q", "qa", &manifest), Some(b"bad"), Some(&push()))
        .await
        .unwrap();
    store
        .judge(
            "q",
            &Judgement {
                version: 1,
                verdict: Verdict::Stable,
                detail: "0 of 9".to_string(),
                calls: 9,
                failures: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.version("q", 1).await.unwrap().unwrap().verdict,
        Some(Verdict::Stable)
    );
    assert!(!store.release("q").await.unwrap(), "not quarantined");
    let judged = Judgement {
        version: 1,
        verdict: Verdict::RolledBack,
        detail: "no target".to_string(),
        calls: 5,
        failures: 5,
    };
    store.quarantine("q", Some(&judged)).await.unwrap();
    assert_eq!(
        store.version("q", 1).await.unwrap().unwrap().verdict,
        Some(Verdict::RolledBack)
    );
    assert!(store.release("q").await.unwrap());
    assert!(
        store
            .agent("q")
            .await
            .unwrap()
            .unwrap()
            .quarantined_ms
            .is_none()
    );

    store
        .set_fault("q", 1, Some("does not compile"))
        .await
        .unwrap();
    let v1 = store.version("q", 1).await.unwrap().unwrap();
    assert_eq!(v1.fault.as_deref(), Some("does not compile"));
    assert!(!v1.servable());
    store.replace_component("qa", b"good").await.unwrap();
    store.set_fault("q", 1, None).await.unwrap();
    assert!(store.version("q", 1).await.unwrap().unwrap().servable());
    assert_eq!(
        store.component("qa").await.unwrap().as_deref(),
        Some(&b"good"[..])
    );
}

/// A call's kv writes and events land together; keys sort by byte and match prefixes
/// literally; any text reads back.
pub async fn kv_commits_writes_and_events_together(store: &Store) {
    let writes = [
        KvWrite {
            key: "a%".to_string(),
            value: Some("1".to_string()),
        },
        KvWrite {
            key: "ab".to_string(),
            value: Some("nul\0 and ünïcode".to_string()),
        },
        KvWrite {
            key: "a_".to_string(),
            value: Some("3".to_string()),
        },
        KvWrite {
            key: "B".to_string(),
            value: Some("4".to_string()),
        },
        KvWrite {
            key: "gone".to_string(),
            value: Some("5".to_string()),
        },
        KvWrite {
            key: "gone".to_string(),
            value: None,
        },
    ];
    let event = NewEvent {
        id: "e1".to_string(),
        topic: "t.one".to_string(),
        payload: "{}".to_string(),
        source: "k".to_string(),
        at_ms: 10,
        as_of_ms: Some(7),
    };
    store
        .kv_commit("k", &writes, std::slice::from_ref(&event))
        .await
        .unwrap();
    assert_eq!(
        store.kv_get("k", "ab").await.unwrap().as_deref(),
        Some("nul\0 and ünïcode")
    );
    assert!(store.kv_get("k", "gone").await.unwrap().is_none());
    assert!(store.kv_get("other", "ab").await.unwrap().is_none());
    assert_eq!(
        store.kv_keys("k", "").await.unwrap(),
        ["B", "a%", "a_", "ab"]
    );
    assert_eq!(store.kv_keys("k", "a%").await.unwrap(), ["a%"]);
    assert_eq!(store.kv_keys("k", "a_").await.unwrap(), ["a_"]);
    let bytes = ["a%1", "abnul\0 and ünïcode", "a_3", "B4"]
        .iter()
        .map(|s| s.len() as u64)
        .sum();
    assert_eq!(
        store.kv_usage("k").await.unwrap(),
        KvUsage { keys: 4, bytes }
    );
    assert_eq!(store.kv_usage("nobody").await.unwrap(), KvUsage::default());

    // The second event reuses an id: the whole commit fails, its kv write with it.
    let again = [KvWrite {
        key: "after".to_string(),
        value: Some("x".to_string()),
    }];
    assert!(store.kv_commit("k", &again, &[event]).await.is_err());
    assert!(store.kv_get("k", "after").await.unwrap().is_none());
    let events = store
        .events(&EventFilter {
            limit: 100,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].as_of_ms, Some(7));
}

/// The event log reads in order, by exact topic or prefix, after a sequence number, since a
/// time, up to a limit.
pub async fn events_filter_by_topic_sequence_and_time(store: &Store) {
    for (n, topic) in ["a.x", "a.y", "b.x", "a.x"].iter().enumerate() {
        store
            .insert_event(&NewEvent {
                id: format!("id-{n}"),
                topic: topic.to_string(),
                payload: format!("{{\"n\":{n}}}"),
                source: "test".to_string(),
                at_ms: 100 + n as u64,
                as_of_ms: None,
            })
            .await
            .unwrap();
    }
    let read = |topic: Option<&'static str>, after: i64, since_ms: u64, limit: u32| {
        let store = store.clone();
        async move {
            store
                .events(&EventFilter {
                    topic,
                    after,
                    since_ms,
                    limit,
                    newest_first: false,
                })
                .await
                .unwrap()
        }
    };
    let everything = read(None, 0, 0, 100).await;
    assert_eq!(everything.len(), 4);
    assert!(everything.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(read(Some("a.x"), 0, 0, 100).await.len(), 2);
    assert_eq!(read(Some("a.*"), 0, 0, 100).await.len(), 3);
    assert_eq!(read(None, everything[1].seq, 0, 100).await.len(), 2);
    assert_eq!(read(None, 0, 102, 100).await.len(), 2);
    let limited = read(None, 0, 0, 1).await;
    assert_eq!(limited[0].id, "id-0");
    assert_eq!(limited[0].payload, "{\"n\":0}");
    // The newest first: the last two of topic a.x and a.y, newest first.
    let newest = store
        .events(&EventFilter {
            topic: Some("a.*"),
            limit: 2,
            newest_first: true,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = newest.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["id-3", "id-1"]);
}

/// Logs keep the newest lines of an agent, oldest first.
pub async fn logs_read_the_newest_lines_oldest_first(store: &Store) {
    let lines: Vec<LogLine> = (0..5)
        .map(|n| LogLine {
            agent: if n == 2 { "other" } else { "me" }.to_string(),
            version: Some(1),
            level: "info",
            message: format!("line {n}"),
            at_ms: n,
        })
        .collect();
    store.insert_logs(&lines).await.unwrap();
    let read = store.logs("me", Page::latest(2)).await.unwrap();
    assert_eq!(
        read.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
        ["line 3", "line 4"]
    );
    assert_eq!(read[0].version, Some(1));
    assert_eq!(store.logs("me", Page::latest(100)).await.unwrap().len(), 4);
}

/// However many open an alert of one agent and kind at once, one is open; resolving opens
/// the way for the next.
pub async fn one_open_alert_per_agent_and_kind(store: &Store) {
    let evidence = json!({ "failures": 11 });
    let opens = (0..12).map(|_| {
        let store = store.clone();
        let evidence = evidence.clone();
        tokio::spawn(async move {
            store
                .open_alert(&NewAlert {
                    agent: "svc",
                    kind: "quarantine",
                    priority: "critical",
                    message: "out",
                    evidence: &evidence,
                })
                .await
                .unwrap()
        })
    });
    let mut new = 0;
    let mut ids = BTreeSet::new();
    for open in opens {
        let (alert, opened) = open.await.unwrap();
        new += usize::from(opened);
        ids.insert(alert.id);
        assert_eq!(alert.evidence, evidence);
        assert_eq!(alert.kind, "quarantine");
    }
    assert_eq!((new, ids.len()), (1, 1));
    let id = *ids.first().unwrap();
    let other = NewAlert {
        agent: "svc",
        kind: "rollback",
        priority: "high",
        message: "back",
        evidence: &evidence,
    };
    let (rollback, opened) = store.open_alert(&other).await.unwrap();
    assert!(opened);

    let open = AlertFilter {
        open: Some(true),
        agent: Some("svc"),
        before: None,
        limit: 10,
    };
    let listed = store.alerts(&open).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, rollback.id, "newest first");
    assert_eq!(
        store
            .resolve_alerts_of("svc", &["quarantine", "nothing"], "released")
            .await
            .unwrap(),
        [id]
    );
    assert!(!store.resolve_alert(id, "twice").await.unwrap());
    assert!(store.resolve_alert(rollback.id, "by hand").await.unwrap());
    let resolved = store.alert(id).await.unwrap().unwrap();
    assert_eq!(resolved.resolution.as_deref(), Some("released"));
    assert!(resolved.resolved_ms.is_some());
    assert!(store.alerts(&open).await.unwrap().is_empty());
    let (again, opened) = store
        .open_alert(&NewAlert {
            agent: "svc",
            kind: "quarantine",
            priority: "critical",
            message: "out again",
            evidence: &evidence,
        })
        .await
        .unwrap();
    assert!(opened && again.id != id);
    let everything = AlertFilter {
        open: None,
        agent: None,
        before: None,
        limit: 10,
    };
    assert_eq!(store.alerts(&everything).await.unwrap().len(), 3);
    assert!(store.alert(9_999_999).await.unwrap().is_none());
}

/// Edits move through their states; what a stopped daemon left under way is interrupted.
pub async fn edits_move_through_their_states(store: &Store) {
    let new = |reason: &'static str| NewEdit {
        agent: "e",
        base_version: Some(1),
        proposer: "code-editor",
        by_agent: true,
        reason,
        diff: "diff",
        rebased_onto: Some(2),
    };
    let first = store.insert_edit(&new("one")).await.unwrap();
    let second = store.insert_edit(&new("two")).await.unwrap();
    let record = store.edit("e", first).await.unwrap().unwrap();
    assert_eq!(record.state, EditState::Applying);
    assert!(record.by_agent);
    assert_eq!(record.rebased_onto, Some(2));
    assert!(store.edit("other", first).await.unwrap().is_none());

    store
        .update_edit(
            first,
            &EditUpdate {
                build_log: Some("compiling"),
                ..EditUpdate::state(EditState::Building)
            },
        )
        .await
        .unwrap();
    store
        .update_edit(
            first,
            &EditUpdate {
                stage: Some("build"),
                code: Some("build_failed"),
                message: Some("error[E0599]".to_string()),
                version: Some(3),
                ..EditUpdate::state(EditState::Rejected)
            },
        )
        .await
        .unwrap();
    let rejected = store.edit("e", first).await.unwrap().unwrap();
    assert_eq!(rejected.state, EditState::Rejected);
    assert_eq!(
        rejected.build_log.as_deref(),
        Some("compiling"),
        "kept from the step before"
    );
    assert_eq!(rejected.message.as_deref(), Some("error[E0599]"));
    assert_eq!(rejected.version, Some(3));

    assert_eq!(store.interrupt_edits().await.unwrap(), 1);
    let interrupted = store.edit("e", second).await.unwrap().unwrap();
    assert_eq!(interrupted.state, EditState::Rejected);
    assert_eq!(interrupted.code.as_deref(), Some("interrupted"));
    assert_eq!(interrupted.stage.as_deref(), Some("applying"));
    let listed = store.edits("e", Page::latest(10)).await.unwrap();
    assert_eq!(
        listed.iter().map(|e| e.id).collect::<Vec<_>>(),
        [second, first]
    );
}

/// LLM usage adds up per agent, most tokens first.
pub async fn llm_usage_adds_up_per_agent(store: &Store) {
    for (agent, outcome, prompt) in [("a", "ok", 10), ("a", "failed", 0), ("b", "ok", 100)] {
        store
            .insert_llm_call(&LlmCall {
                agent,
                model: "m",
                prompt_tokens: prompt,
                completion_tokens: 1,
                outcome,
                ms: 5,
            })
            .await
            .unwrap();
    }
    let usage = store.llm_usage().await.unwrap();
    assert_eq!(usage.len(), 2);
    assert_eq!(usage[0].agent, "b");
    let a = &usage[1];
    assert_eq!(
        (a.calls, a.failed, a.prompt_tokens, a.completion_tokens),
        (2, 1, 10, 2)
    );
    let spend = store.llm_spend_since(0).await.unwrap();
    assert_eq!(
        spend,
        [
            LlmSpend {
                agent: "a".to_string(),
                model: "m".to_string(),
                prompt_tokens: 10,
                completion_tokens: 2
            },
            LlmSpend {
                agent: "b".to_string(),
                model: "m".to_string(),
                prompt_tokens: 100,
                completion_tokens: 1
            }
        ]
    );
    assert!(
        store
            .llm_spend_since(u64::MAX >> 2)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(store.llm_budgets().await.unwrap().is_empty());
    for usd in [1.5, 2.5] {
        store
            .set_llm_budget(&BudgetRecord {
                agent: "a".to_string(),
                tokens_per_day: 1000,
                usd_per_day: usd,
            })
            .await
            .unwrap();
    }
    let budgets = store.llm_budgets().await.unwrap();
    assert_eq!(budgets.len(), 1);
    assert_eq!(
        (budgets[0].tokens_per_day, budgets[0].usd_per_day),
        (1000, 2.5)
    );
}

/// A policy that keeps everything.
fn keep_all() -> PrunePolicy {
    PrunePolicy {
        events_before_ms: 0,
        events_bytes: u64::MAX >> 2,
        logs_before_ms: 0,
        logs_bytes_per_agent: u64::MAX >> 2,
        llm_calls_before_ms: 0,
        llm_calls: u64::MAX >> 2,
        alerts_before_ms: 0,
        alerts: u64::MAX >> 2,
        build_logs_before_ms: 0,
        build_logs: u64::MAX >> 2,
        rejected_before_ms: 0,
        rejected_per_agent: u64::MAX >> 2,
        refusals_before_ms: 0,
        refusals: u64::MAX >> 2,
        memories_per_collection: u64::MAX >> 2,
    }
}

/// A prune removes by age and past a size or a count, oldest first, and nothing else: open
/// alerts, unfinished edits' logs, servable versions and an agent's newest version stay.
pub async fn prune_keeps_what_the_policy_keeps(store: &Store) {
    let keep_all = keep_all();
    // Events: 10 of 100 bytes at times 0..10.
    for n in 0..10u64 {
        store
            .insert_event(&NewEvent {
                id: format!("e{n}"),
                topic: "t".to_string(),
                payload: format!("\"{}\"", "x".repeat(98)),
                source: "s".to_string(),
                at_ms: n,
                as_of_ms: None,
            })
            .await
            .unwrap();
    }
    // Logs: 10 lines of 10 bytes for each of two agents.
    let lines: Vec<LogLine> = (0..20u64)
        .map(|n| LogLine {
            agent: if n % 2 == 0 { "a" } else { "b" }.to_string(),
            version: None,
            level: "info",
            message: format!("line {n:>5}"),
            at_ms: n,
        })
        .collect();
    store.insert_logs(&lines).await.unwrap();
    assert_eq!(store.prune(&keep_all).await.unwrap(), Pruned::default());

    let pruned = store
        .prune(&PrunePolicy {
            events_before_ms: 2,
            events_bytes: 500,
            logs_before_ms: 4,
            logs_bytes_per_agent: 30,
            ..keep_all.clone()
        })
        .await
        .unwrap();
    // Events 0 and 1 by age; of the other 8 (800 bytes) the newest 5 fit in 500.
    assert_eq!(pruned.events, 5);
    let events = store
        .events(&EventFilter {
            limit: 100,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e5", "e6", "e7", "e8", "e9"]
    );
    // Logs: 4 lines by age, then each agent keeps its newest 3 lines (30 bytes).
    assert_eq!(pruned.logs, 4 + 5 + 5);
    let a = store.logs("a", Page::latest(100)).await.unwrap();
    assert_eq!(
        a.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
        ["line    14", "line    16", "line    18"]
    );
    assert_eq!(store.logs("b", Page::latest(100)).await.unwrap().len(), 3);

    // LLM calls and resolved alerts by count; open alerts stay.
    for _ in 0..4 {
        store
            .insert_llm_call(&LlmCall {
                agent: "a",
                model: "m",
                prompt_tokens: 1,
                completion_tokens: 1,
                outcome: "ok",
                ms: 1,
            })
            .await
            .unwrap();
    }
    let evidence = json!({});
    for kind in ["k1", "k2", "k3"] {
        let (alert, _) = store
            .open_alert(&NewAlert {
                agent: "a",
                kind,
                priority: "low",
                message: "m",
                evidence: &evidence,
            })
            .await
            .unwrap();
        if kind != "k3" {
            store.resolve_alert(alert.id, "done").await.unwrap();
        }
    }
    // Edits: two finished with build logs, one still building.
    let mut edits = Vec::new();
    for state in [EditState::Live, EditState::Rejected, EditState::Building] {
        let id = store
            .insert_edit(&NewEdit {
                agent: "a",
                base_version: None,
                proposer: "api",
                by_agent: false,
                reason: "r",
                diff: "d",
                rebased_onto: None,
            })
            .await
            .unwrap();
        store
            .update_edit(
                id,
                &EditUpdate {
                    build_log: Some("log"),
                    ..EditUpdate::state(state)
                },
            )
            .await
            .unwrap();
        edits.push(id);
    }
    // Versions: ready, rejected ×3 (one sharing the ready version's digest), then rejected
    // newest.
    let manifest = json!({});
    let rejected = RejectedAt {
        stage: "health",
        code: "unhealthy",
        reason: "sick",
    };
    let mut number = 0;
    for (digest, reject) in [
        ("r1", false),
        ("x1", true),
        ("r1", true),
        ("x2", true),
        ("x3", true),
    ] {
        let mut new = version("v", digest, &manifest);
        if reject {
            new.rejected = Some(rejected);
        }
        number = store
            .insert_version(&new, Some(digest.as_bytes()), (!reject).then(push).as_ref())
            .await
            .unwrap();
    }
    assert_eq!(number, 5);
    let pruned = store
        .prune(&PrunePolicy {
            llm_calls: 1,
            alerts: 1,
            build_logs: 0,
            rejected_per_agent: 1,
            ..keep_all.clone()
        })
        .await
        .unwrap();
    assert_eq!(pruned.llm_calls, 3);
    assert_eq!(store.llm_usage().await.unwrap()[0].calls, 1);
    assert_eq!(pruned.alerts, 1);
    let alerts = store
        .alerts(&AlertFilter {
            agent: None,
            open: None,
            before: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts.iter().filter(|a| a.resolved_ms.is_none()).count(), 1);
    assert_eq!(pruned.build_logs, 2);
    assert!(
        store
            .edit("a", edits[0])
            .await
            .unwrap()
            .unwrap()
            .build_log
            .is_none()
    );
    assert_eq!(
        store
            .edit("a", edits[2])
            .await
            .unwrap()
            .unwrap()
            .build_log
            .as_deref(),
        Some("log"),
        "an edit under way keeps its log"
    );
    // Rejected 2, 3 and 4 go past the newest one kept (5, also the agent's newest); x1's
    // and x2's bytes go, r1's stay with version 1.
    assert_eq!(pruned.rejected, 3);
    let numbers: Vec<u32> = store
        .versions("v")
        .await
        .unwrap()
        .iter()
        .map(|v| v.number)
        .collect();
    assert_eq!(numbers, [1, 5]);
    assert_eq!(pruned.components, 2);
    assert!(store.component("r1").await.unwrap().is_some());
    assert!(store.component("x1").await.unwrap().is_none());
    assert!(store.component("x3").await.unwrap().is_some());
    // Numbers go on from the newest.
    let next = store
        .insert_version(&version("v", "x4", &manifest), None, None)
        .await
        .unwrap();
    assert_eq!(next, 6);
    assert!(store.size_on_disk().await.unwrap() > 0);
}

fn order(client_order_id: &str, at_ms: u64) -> OrderRecord {
    OrderRecord {
        id: format!("o-{client_order_id}"),
        client_order_id: client_order_id.to_string(),
        agent: "trade-executor".to_string(),
        symbol: "AAPL".to_string(),
        side: "buy".to_string(),
        order_type: "market".to_string(),
        time_in_force: "day".to_string(),
        quantity: 10.0,
        notional: None,
        limit_price: None,
        status: "new".to_string(),
        filled_quantity: 0.0,
        fill_price: None,
        commission: 0.0,
        submitted: "2012-01-03".to_string(),
        filled: None,
        reason: None,
        at_ms,
        agent_version: Some(3),
        trigger: Some(
            r#"{"event":"e-1","topic":"trade.signal","source":"strategy","source_version":2}"#
                .to_string(),
        ),
    }
}

/// An order is one per client order id; it fills with its fill in one write; open orders,
/// refusals and the trading state read back.
pub async fn orders_are_one_per_client_id_and_fill_with_their_fills(store: &Store) {
    let (first, new) = store.insert_order(&order("c1", 1)).await.unwrap();
    assert!(new);
    let mut retried = order("c1", 2);
    retried.id = "o-other".to_string();
    let (again, new) = store.insert_order(&retried).await.unwrap();
    assert!(!new);
    assert_eq!(again, first);
    store.insert_order(&order("c2", 3)).await.unwrap();

    let mut filled = first.clone();
    filled.status = "filled".to_string();
    filled.filled_quantity = 10.0;
    filled.fill_price = Some(101.5);
    filled.commission = 0.5;
    filled.filled = Some("2012-01-04".to_string());
    let fill = FillRecord {
        seq: 0,
        order_id: filled.id.clone(),
        symbol: "AAPL".to_string(),
        side: "buy".to_string(),
        quantity: 10.0,
        price: 101.5,
        commission: 0.5,
        slippage: 0.5,
        date: "2012-01-04".to_string(),
        at_ms: 4,
    };
    store.update_order(&filled, Some(&fill)).await.unwrap();
    assert_eq!(store.order(&filled.id).await.unwrap(), Some(filled.clone()));
    let fills = store.fills().await.unwrap();
    assert_eq!(fills.len(), 1);
    assert_eq!((fills[0].price, fills[0].quantity), (101.5, 10.0));

    let all = store
        .orders(&OrderFilter {
            limit: 10,
            ..OrderFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter()
            .map(|o| o.client_order_id.as_str())
            .collect::<Vec<_>>(),
        ["c2", "c1"]
    );
    let open = store
        .orders(&OrderFilter {
            open_only: true,
            limit: 10,
            ..OrderFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].client_order_id, "c2");
    let msft = store
        .orders(&OrderFilter {
            symbol: Some("MSFT"),
            limit: 10,
            ..OrderFilter::default()
        })
        .await
        .unwrap();
    assert!(msft.is_empty());

    let refusal = RefusalRecord {
        seq: 0,
        agent: "trade-executor".to_string(),
        client_order_id: "c3".to_string(),
        symbol: "AAPL".to_string(),
        side: "buy".to_string(),
        code: "max_position".to_string(),
        message: "too big".to_string(),
        detail: "{\"limit\":0.2}".to_string(),
        as_of: "2012-01-04".to_string(),
        at_ms: 5,
    };
    let seq = store.insert_refusal(&refusal).await.unwrap();
    let refusals = store.refusals(10).await.unwrap();
    assert_eq!(refusals, [RefusalRecord { seq, ..refusal }]);

    for (day, equity) in [
        ("2012-01-04", 100.0),
        ("2012-01-03", 99.0),
        ("2012-01-04", 101.0),
    ] {
        store
            .record_equity(&EquityPoint {
                day: day.to_string(),
                equity,
                cash: 50.0,
                gross_exposure: 51.0,
                realized_pnl: 1.0,
                at_ms: 7,
            })
            .await
            .unwrap();
    }
    let curve = store.equity_curve().await.unwrap();
    assert_eq!(
        curve
            .iter()
            .map(|p| (p.day.as_str(), p.equity))
            .collect::<Vec<_>>(),
        [("2012-01-03", 99.0), ("2012-01-04", 101.0)]
    );
    assert_eq!(store.trading_state("kill").await.unwrap(), None);
    store.set_trading_state("kill", "on").await.unwrap();
    store.set_trading_state("kill", "off").await.unwrap();
    assert_eq!(
        store.trading_state("kill").await.unwrap().as_deref(),
        Some("off")
    );
}

/// Memories are recalled by the words they share with the query, best first, only from their
/// collection; no query syntax reaches the index; forgetting removes one.
pub async fn memories_are_recalled_by_relevance_within_their_collection(store: &Store) {
    let texts = [
        ("trades", "bought AAPL on a strong uptrend, RSI 55"),
        ("trades", "sold MSFT after earnings missed; downtrend"),
        ("trades", "AAPL uptrend uptrend continued, held AAPL"),
        ("notes", "AAPL uptrend in the notes collection"),
    ];
    let mut ids = Vec::new();
    for (collection, text) in texts {
        ids.push(
            store
                .remember(&NewMemory {
                    collection,
                    text,
                    metadata: "{\"symbol\":\"AAPL\"}",
                    embedding: Some(&[0, 0, 128, 63]),
                    at_ms: 1,
                    as_of_ms: None,
                })
                .await
                .unwrap(),
        );
    }
    let found = store
        .recall("trades", "AAPL uptrend", 10, None)
        .await
        .unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        found[0].id, ids[2],
        "the text with more of the words ranks first"
    );
    assert!(found[0].rank > found[1].rank);
    assert!(found.iter().all(|m| m.collection == "trades"));
    assert_eq!(found[0].embedding.as_deref(), Some(&[0u8, 0, 128, 63][..]));

    // Query syntax is words like any other.
    for hostile in [
        "\"AAPL",
        "AAPL OR",
        "NEAR(a b)",
        "a:b*",
        "'; DROP TABLE memories; --",
        "",
    ] {
        store.recall("trades", hostile, 10, None).await.unwrap();
    }
    let newest = store.recall("trades", "", 2, None).await.unwrap();
    assert_eq!(
        newest.iter().map(|m| m.id).collect::<Vec<_>>(),
        [ids[2], ids[1]]
    );
    assert_eq!(store.embedded("notes", 10, None).await.unwrap().len(), 1);

    // A text written as of a later market time is not recalled as of an earlier one.
    store
        .remember(&NewMemory {
            collection: "notes",
            text: "AAPL uptrend seen later",
            metadata: "{}",
            embedding: Some(&[0, 0, 128, 63]),
            at_ms: 2,
            as_of_ms: Some(2_000),
        })
        .await
        .unwrap();
    for as_of in [Some(1_000), None] {
        let early = store.recall("notes", "later", 10, as_of).await.unwrap();
        assert_eq!(early.len(), usize::from(as_of.is_none()), "{as_of:?}");
        let embedded = store.embedded("notes", 10, as_of).await.unwrap();
        assert_eq!(
            embedded.len(),
            1 + usize::from(as_of.is_none()),
            "{as_of:?}"
        );
    }
    assert_eq!(
        store
            .recall("notes", "", 10, Some(3_000))
            .await
            .unwrap()
            .len(),
        2
    );

    assert!(store.forget("trades", ids[2]).await.unwrap());
    assert!(!store.forget("trades", ids[2]).await.unwrap());
    assert!(
        !store.forget("trades", ids[3]).await.unwrap(),
        "another collection's id"
    );
    let found = store.recall("trades", "uptrend", 10, None).await.unwrap();
    assert_eq!(found.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[0]]);
}

/// Refusals go by age and past a count, memory texts past a count per collection, oldest
/// first; orders and fills are never pruned.
pub async fn refusals_and_memories_are_pruned_oldest_first(store: &Store) {
    for n in 0..5u64 {
        store
            .insert_refusal(&RefusalRecord {
                seq: 0,
                agent: "trade-executor".to_string(),
                client_order_id: format!("c{n}"),
                symbol: "AAPL".to_string(),
                side: "buy".to_string(),
                code: "throttled".to_string(),
                message: "m".to_string(),
                detail: "{}".to_string(),
                as_of: "2012-01-03".to_string(),
                at_ms: 10 + n,
            })
            .await
            .unwrap();
    }
    for (collection, n) in [("a/x", 4), ("b/y", 2)] {
        for i in 0..n {
            store
                .remember(&NewMemory {
                    collection,
                    text: &format!("text number {i}"),
                    metadata: "{}",
                    embedding: None,
                    at_ms: 1,
                    as_of_ms: None,
                })
                .await
                .unwrap();
        }
    }
    store.insert_order(&order("kept", 1)).await.unwrap();
    let policy = PrunePolicy {
        refusals_before_ms: 11,
        refusals: 3,
        memories_per_collection: 2,
        ..keep_all()
    };
    let pruned = store.prune(&policy).await.unwrap();
    // Refusal c0 by age; of the other four the newest three stay.
    assert_eq!(pruned.refusals, 2);
    let kept: Vec<String> = store
        .refusals(10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.client_order_id)
        .collect();
    assert_eq!(kept, ["c4", "c3", "c2"]);
    assert_eq!(pruned.memories, 2);
    let texts: Vec<String> = store
        .recall("a/x", "", 10, None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["text number 3", "text number 2"]);
    // The index forgets the pruned texts too.
    assert_eq!(
        store.recall("a/x", "number", 10, None).await.unwrap().len(),
        2
    );
    assert_eq!(store.recall("b/y", "", 10, None).await.unwrap().len(), 2);
    let orders = store
        .orders(&OrderFilter {
            limit: 10,
            ..OrderFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(orders.len(), 1);
}

/// The audit trail: concurrent appends chain without gaps, and an intruder's change — a
/// modified entry (with or without its hash made again), a removed one, a swapped pair — is
/// found where it was made.
pub async fn the_audit_trail_finds_what_was_changed_behind_its_back(store: &Store) {
    use crate::audit::{NewAudit, hash, verify};
    let mut appends = tokio::task::JoinSet::new();
    for n in 0..12 {
        let store = store.clone();
        appends.spawn(async move {
            let detail = format!("{{\"n\":{n}}}");
            store
                .append_audit(&NewAudit {
                    actor: "person",
                    action: "activate",
                    subject: &format!("agent-{n}"),
                    detail: &detail,
                })
                .await
                .unwrap()
        });
    }
    while let Some(done) = appends.join_next().await {
        done.unwrap();
    }
    let trail = |store: Store| async move { verify(&store.audit(0, 1000).await.unwrap()) };
    let clean = trail(store.clone()).await;
    assert!(clean.ok, "{clean:?}");
    assert_eq!(clean.entries, 12);
    let entries = store.audit(0, 1000).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=12).collect::<Vec<_>>()
    );
    assert_eq!(clean.head, entries[11].hash);
    assert_eq!(store.audit(10, 5).await.unwrap().len(), 2);
    let found = |v: &crate::audit::Verification| {
        v.problems
            .iter()
            .map(|p| (p.seq, p.problem))
            .collect::<Vec<_>>()
    };

    // Modified: the detail rewritten.
    store
        .execute_raw("UPDATE audit SET detail = '{\"n\":99}' WHERE seq = 4")
        .await
        .unwrap();
    assert_eq!(found(&trail(store.clone()).await), [(4, "modified")]);
    // …and its hash made again to match: the next entry no longer follows it.
    let four = &store.audit(3, 1).await.unwrap()[0];
    let forged = hash(
        4,
        four.at_ms,
        &NewAudit {
            actor: &four.actor,
            action: &four.action,
            subject: &four.subject,
            detail: &four.detail,
        },
        &four.prev_hash,
    );
    store
        .execute_raw(&format!("UPDATE audit SET hash = '{forged}' WHERE seq = 4"))
        .await
        .unwrap();
    assert_eq!(found(&trail(store.clone()).await), [(5, "broken_chain")]);
    // Put back as it was.
    let original = &entries[3];
    store
        .execute_raw(&format!(
            "UPDATE audit SET detail = '{}', hash = '{}' WHERE seq = 4",
            original.detail, original.hash
        ))
        .await
        .unwrap();
    assert!(trail(store.clone()).await.ok);

    // Removed.
    store
        .execute_raw("DELETE FROM audit WHERE seq = 7")
        .await
        .unwrap();
    assert_eq!(
        found(&trail(store.clone()).await),
        [(8, "missing"), (8, "broken_chain")]
    );
    let seven = &entries[6];
    store
        .execute_raw(&format!(
            "INSERT INTO audit (seq, at_ms, actor, action, subject, detail, prev_hash, hash) \
             VALUES (7, {}, '{}', '{}', '{}', '{}', '{}', '{}')",
            seven.at_ms,
            seven.actor,
            seven.action,
            seven.subject,
            seven.detail,
            seven.prev_hash,
            seven.hash
        ))
        .await
        .unwrap();
    assert!(trail(store.clone()).await.ok);

    // Swapped: entries 2 and 3 trade places.
    for sql in [
        "UPDATE audit SET seq = 1000 WHERE seq = 2",
        "UPDATE audit SET seq = 2 WHERE seq = 3",
        "UPDATE audit SET seq = 3 WHERE seq = 1000",
    ] {
        store.execute_raw(sql).await.unwrap();
    }
    let swapped = trail(store.clone()).await;
    assert!(!swapped.ok);
    assert_eq!(
        found(&swapped),
        [
            (2, "modified"),
            (2, "broken_chain"),
            (3, "modified"),
            (3, "broken_chain"),
            (4, "broken_chain")
        ]
    );
}

/// The Overseer's loop runs read back newest first, by loop; a day's report is replaced by
/// a later one of the same day; audit entries are read by time.
pub async fn loop_runs_and_reports_are_kept(store: &Store) {
    for (name, n) in [("health", 1), ("healing", 2), ("health", 3)] {
        let looked = serde_json::json!({ "agents": n });
        let did = serde_json::json!({ "alerts": [] });
        store
            .insert_loop_run(&NewLoopRun {
                name,
                started_ms: n,
                ended_ms: n + 1,
                looked_at: &looked,
                did: &did,
                error: (n == 2).then_some("store unavailable"),
            })
            .await
            .unwrap();
    }
    let all = store.loop_runs(None, Page::latest(10)).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].looked_at["agents"], 3, "newest first");
    let health = store
        .loop_runs(Some("health"), Page::latest(10))
        .await
        .unwrap();
    assert_eq!(health.len(), 2);
    assert!(
        health
            .iter()
            .all(|r| r.name == "health" && r.error.is_none())
    );
    let healing = store
        .loop_runs(Some("healing"), Page::latest(10))
        .await
        .unwrap();
    assert_eq!(healing[0].error.as_deref(), Some("store unavailable"));
    assert_eq!(
        store
            .loop_runs(Some("health"), Page::latest(1))
            .await
            .unwrap()
            .len(),
        1
    );

    for (date, at, body) in [
        ("2026-11-30", 10, serde_json::json!({ "n": 1 })),
        ("2026-12-01", 20, serde_json::json!({ "n": 2 })),
        ("2026-12-01", 30, serde_json::json!({ "n": 3 })),
    ] {
        store.put_report(date, at, &body).await.unwrap();
    }
    let reports = store.reports(10).await.unwrap();
    assert_eq!(
        reports,
        [
            ReportSummary {
                date: "2026-12-01".to_string(),
                generated_ms: 30
            },
            ReportSummary {
                date: "2026-11-30".to_string(),
                generated_ms: 10
            },
        ]
    );
    assert_eq!(store.report("2026-12-01").await.unwrap().unwrap()["n"], 3);
    assert!(store.report("2026-01-01").await.unwrap().is_none());

    let before = now_ms();
    for action in ["activate", "rollback"] {
        store
            .append_audit(&crate::audit::NewAudit {
                actor: "host",
                action,
                subject: "echo",
                detail: "{}",
            })
            .await
            .unwrap();
    }
    let after = now_ms() + 1;
    let between = store.audit_between(before, after).await.unwrap();
    assert_eq!(between.len(), 2);
    assert!(store.audit_between(0, before).await.unwrap().is_empty());
}

/// A decision waits in one state until one decider moves it: an approval and a timeout
/// cannot both win; what applying it did and its outcome are kept.
pub async fn decisions_move_once_and_keep_their_outcome(store: &Store) {
    let body = json!({ "kind": "risk_management", "title": "halt" });
    let waiting = store
        .insert_decision(&NewDecision {
            meeting: "2026-12-01",
            proposer: "governance",
            body: &body,
            policy: "person",
            state: "awaiting_approval",
            due_ms: 5,
        })
        .await
        .unwrap();
    assert_eq!(waiting.state, "awaiting_approval");
    assert_eq!(waiting.body, body);
    let approved = store
        .transition_decision(waiting.id, "awaiting_approval", "approved", "person", "ok")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(approved.decided_by.as_deref(), Some("person"));
    // The timeout comes too late: the decision is no longer waiting.
    assert!(
        store
            .transition_decision(
                waiting.id,
                "awaiting_approval",
                "expired",
                "host",
                "timeout"
            )
            .await
            .unwrap()
            .is_none()
    );
    store
        .record_applied(waiting.id, "applied", &json!({ "risk": "halted" }), 77)
        .await
        .unwrap();
    store
        .record_outcome(waiting.id, "met", &json!({ "value": 0.0 }))
        .await
        .unwrap();
    let done = store.decision(waiting.id).await.unwrap().unwrap();
    assert_eq!(
        (done.state.as_str(), done.outcome.as_deref()),
        ("applied", Some("met"))
    );
    assert_eq!(done.applied, Some(json!({ "risk": "halted" })));
    assert_eq!(done.due_ms, 77, "due from its application");
    assert!(done.evaluated_ms.is_some());
    let other = store
        .insert_decision(&NewDecision {
            meeting: "2026-12-01",
            proposer: "person",
            body: &json!({}),
            policy: "auto",
            state: "approved",
            due_ms: 9,
        })
        .await
        .unwrap();
    assert_eq!(
        store.decisions(None, Page::latest(10)).await.unwrap()[0].id,
        other.id
    );
    assert_eq!(
        store
            .decisions(Some("applied"), Page::latest(10))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .decisions(Some("expired"), Page::latest(10))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Prompt versions number per prompt, labels keep their history, a use is scored once and
/// only by its agent, experiments move once, and specs likewise.
pub async fn prompts_version_label_score_and_experiment(store: &Store) {
    let body = json!({ "template": "Rate {{symbol}}", "variables": { "symbol": "string" } });
    let v1 = store
        .insert_prompt_version(&NewPromptVersion {
            name: "monitor.sentiment",
            owner: "monitor",
            author: "manifest",
            body: &body,
        })
        .await
        .unwrap();
    assert_eq!((v1.version, v1.body.clone()), (1, body));
    let v2 = store
        .insert_prompt_version(&NewPromptVersion {
            name: "monitor.sentiment",
            owner: "monitor",
            author: "prompt-engineer",
            body: &json!({ "template": "Score {{symbol}}" }),
        })
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    store
        .insert_prompt_version(&NewPromptVersion {
            name: "another",
            owner: "x",
            author: "person",
            body: &json!({}),
        })
        .await
        .unwrap();
    let names: Vec<String> = store
        .prompts()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["another", "monitor.sentiment"]);
    assert_eq!(
        store
            .prompt_versions("monitor.sentiment")
            .await
            .unwrap()
            .len(),
        2
    );

    store
        .set_prompt_label("monitor.sentiment", "production", 1, "manifest", "seeded")
        .await
        .unwrap();
    store
        .set_prompt_label("monitor.sentiment", "production", 2, "person", "better")
        .await
        .unwrap();
    let labels = store.prompt_labels("monitor.sentiment").await.unwrap();
    assert_eq!(
        labels.iter().map(|l| l.version).collect::<Vec<_>>(),
        [1, 2],
        "oldest first"
    );

    let experiment = store
        .insert_experiment("monitor.sentiment", &json!({ "variants": [1, 2] }))
        .await
        .unwrap();
    assert_eq!(experiment.state, "running");
    let used = store
        .insert_prompt_use(&NewPromptUse {
            name: "monitor.sentiment",
            version: 2,
            agent: "monitor",
            unit: "AAPL",
            experiment: Some(experiment.id),
            variant: Some(1),
        })
        .await
        .unwrap();
    assert!(
        store
            .score_prompt_use(used, "intruder", Some(1.0), None)
            .await
            .unwrap()
            .is_none(),
        "only the agent that used it scores it"
    );
    assert!(
        store
            .experiment_outcomes(experiment.id)
            .await
            .unwrap()
            .is_empty()
    );
    let scored = store
        .score_prompt_use(used, "monitor", Some(0.5), Some(true))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (scored.score, scored.success, scored.variant),
        (Some(0.5), Some(true), Some(1))
    );
    assert!(
        store
            .score_prompt_use(used, "monitor", Some(0.0), Some(false))
            .await
            .unwrap()
            .is_none(),
        "scored once"
    );
    assert_eq!(
        store
            .experiment_outcomes(experiment.id)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .prompt_uses("monitor.sentiment", 10)
            .await
            .unwrap()
            .len(),
        1
    );

    let looked = store
        .transition_experiment(experiment.id, "running", "running", &json!({ "looks": 1 }))
        .await
        .unwrap()
        .unwrap();
    assert!(looked.ended_ms.is_none());
    let ended = store
        .transition_experiment(
            experiment.id,
            "running",
            "promoted",
            &json!({ "winner": 1 }),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(ended.ended_ms.is_some());
    assert!(
        store
            .transition_experiment(experiment.id, "running", "stopped", &json!({}))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .experiments(Some("monitor.sentiment"), Some("promoted"), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .experiments(None, Some("running"), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let spec = store
        .insert_spec("pricer", &json!({ "purpose": "prices" }), "designing")
        .await
        .unwrap();
    assert_eq!(spec.detail, json!({}));
    let building = store
        .transition_spec(spec.id, "designing", "building", &json!({ "attempts": 1 }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(building.detail, json!({ "attempts": 1 }));
    assert!(
        store
            .transition_spec(spec.id, "designing", "failed", &json!({}))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.specs(Page::latest(10)).await.unwrap()[0].state,
        "building"
    );
    assert_eq!(store.spec(spec.id).await.unwrap().unwrap().name, "pricer");
}

#[cfg(test)]
mod tests {
    //! Each case, once per backend.

    use super::*;

    async fn sqlite() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overseer.db");
        let store = Store::sqlite(&path).await.unwrap();
        // Opening again runs no migration twice.
        drop(store);
        (Store::sqlite(&path).await.unwrap(), dir)
    }

    async fn postgres() -> Store {
        let url = crate::testing::database().await;
        Store::open(&url).await.unwrap();
        Store::open(&url).await.unwrap()
    }

    macro_rules! cases {
        ($($case:ident),* $(,)?) => {
            mod on_sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let (store, _dir) = super::sqlite().await;
                        assert_eq!(store.kind(), "sqlite");
                        super::super::$case(&store).await;
                    }
                )*
            }
            mod on_postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let store = super::postgres().await;
                        assert_eq!(store.kind(), "postgres");
                        super::super::$case(&store).await;
                    }
                )*
            }
        };
    }

    cases!(
        versions_are_numbered_per_agent_and_read_back,
        concurrent_inserts_number_versions_without_gaps,
        activation_carries_its_verdict_and_edit_marks,
        verdicts_quarantine_faults_and_repairs,
        kv_commits_writes_and_events_together,
        events_filter_by_topic_sequence_and_time,
        logs_read_the_newest_lines_oldest_first,
        one_open_alert_per_agent_and_kind,
        edits_move_through_their_states,
        llm_usage_adds_up_per_agent,
        prune_keeps_what_the_policy_keeps,
        orders_are_one_per_client_id_and_fill_with_their_fills,
        memories_are_recalled_by_relevance_within_their_collection,
        refusals_and_memories_are_pruned_oldest_first,
        the_audit_trail_finds_what_was_changed_behind_its_back,
        loop_runs_and_reports_are_kept,
        decisions_move_once_and_keep_their_outcome,
        prompts_version_label_score_and_experiment,
    );
}
