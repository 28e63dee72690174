//! DAG behaviour: fan-out from a real job's output, fan-in, retries, timeouts, `if:`.

use crate::{Ran, Setup, run};
use cascade_plan::{EventKind, JobResult, RunOutcome, TaskState};
use std::time::Duration;

#[test]
fn fan_out_over_a_real_output_and_fan_in() {
    let ran = run(
        r#"
jobs:
  detect:
    run: echo '["alpha", "beta", "gamma"]'
    outputs: { packages: stdout-json }
  lint:
    needs: [detect]
    for_each: ${{ needs.detect.outputs.packages }}
    run: |
      echo "linting ${{ item }}"
      echo "size=$(printf %s ${{ item }} | wc -c | tr -d ' ')" >> "$CASCADE_OUTPUT"
    outputs: { size: file }
  report:
    needs: [lint]
    run: echo "sizes ${{ needs.lint.outputs.size }} result ${{ needs.lint.result }}"
"#,
        Setup::default(),
    );
    assert_eq!(ran.summary.outcome, RunOutcome::Succeeded);
    for (i, name) in ["alpha", "beta", "gamma"].iter().enumerate() {
        assert_eq!(ran.state(&format!("lint[{i}]")), TaskState::Succeeded);
        assert!(
            ran.logs().contains(&format!("lint[{i}]: linting {name}")),
            "{:?}",
            ran.logs()
        );
    }
    assert!(
        ran.logs()
            .contains(&"report: sizes [\"5\",\"4\",\"5\"] result success".to_owned()),
        "{:?}",
        ran.logs()
    );
}

#[test]
fn an_empty_fan_out_skips_the_job_and_its_dependents() {
    let ran = run(
        "jobs:\n  detect: { run: \"echo '[]'\", outputs: { p: stdout-json } }\n  lint: { needs: [detect], for_each: '${{ needs.detect.outputs.p }}', run: 'echo ${{ item }}' }\n  after: { needs: [lint], run: echo after }\n  always: { needs: [lint], if: always(), run: echo always }\n",
        Setup::default(),
    );
    assert_eq!(ran.state("lint"), TaskState::Skipped);
    assert_eq!(ran.state("after"), TaskState::Skipped);
    assert_eq!(ran.state("always"), TaskState::Succeeded);
    assert_eq!(ran.summary.outcome, RunOutcome::Succeeded);
}

#[test]
fn a_flaky_job_succeeds_on_its_second_retry() {
    let ran = run(
        r#"
jobs:
  flaky:
    run: |
      n=$(cat count 2>/dev/null || echo 0)
      n=$((n + 1))
      echo $n > count
      echo "attempt $n"
      [ "$n" -ge 3 ]
    retry: { limit: 2, backoff: 10ms }
"#,
        Setup::default(),
    );
    let flaky = ran.task("flaky");
    assert_eq!(flaky.state, TaskState::Succeeded);
    assert_eq!(flaky.attempts, 3);
    let retries: Vec<u32> = ran
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskRetrying {
                attempt, delay_ms, ..
            } => Some(attempt * 1000 + u32::try_from(*delay_ms).unwrap()),
            _ => None,
        })
        .collect();
    // Attempt 2 after 10 ms, attempt 3 after 20 ms (exponential backoff).
    assert_eq!(retries, [2010, 3020]);
}

#[test]
fn retries_stop_at_the_limit_and_only_on_listed_codes() {
    let ran = run(
        "jobs:\n  a: { run: exit 3, retry: { limit: 2, backoff: 1ms } }\n  b: { run: exit 4, retry: { limit: 2, backoff: 1ms, on_exit_codes: [3] } }\n",
        Setup::default(),
    );
    assert_eq!(
        (ran.task("a").attempts, ran.task("a").exit_code),
        (3, Some(3))
    );
    assert_eq!(
        (ran.task("b").attempts, ran.task("b").exit_code),
        (1, Some(4))
    );
    assert_eq!(ran.summary.outcome, RunOutcome::Failed);
}

#[test]
fn a_timeout_kills_the_whole_process_group_including_grandchildren() {
    let ran = run(
        r"
jobs:
  slow:
    run: |
      sh -c 'sleep 30; touch grandchild-survived' &
      echo $! > grandchild.pid
      sleep 30
    timeout: 300ms
",
        Setup::default(),
    );
    let slow = ran.task("slow");
    assert_eq!(slow.state, TaskState::Failed);
    assert_eq!(slow.error.as_deref(), Some("timed out after 300ms"));
    let pid: i32 = std::fs::read_to_string(ran.dir.path().join("grandchild.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The grandchild is gone: signal 0 finds no such process (or only a zombie being reaped).
    let alive =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
    assert!(!alive, "grandchild {pid} survived the timeout");
}

#[test]
fn always_runs_after_a_failure_and_success_is_skipped() {
    let ran = run(
        "jobs:\n  build: { run: exit 1 }\n  deploy: { needs: [build], run: echo deploy }\n  cleanup: { needs: [deploy], if: always(), run: echo cleanup }\n  on-failure: { needs: [deploy], if: failure(), run: echo failed }\n  report: { needs: [build], if: \"always() && needs.build.result == 'failure'\", run: echo report }\n  implicit: { needs: [build], if: \"needs.build.result == 'failure'\", run: echo implicit }\n",
        Setup::default(),
    );
    assert_eq!(ran.state("build"), TaskState::Failed);
    assert_eq!(ran.state("deploy"), TaskState::Skipped);
    assert_eq!(ran.state("cleanup"), TaskState::Succeeded);
    assert_eq!(
        ran.state("on-failure"),
        TaskState::Succeeded,
        "failure() sees a failed ancestor"
    );
    assert_eq!(ran.state("report"), TaskState::Succeeded);
    // Without a status function, `if:` means `success() && (...)`, as in GitHub Actions.
    assert_eq!(ran.state("implicit"), TaskState::Skipped);
    assert_eq!(ran.summary.jobs["deploy"], JobResult::Skipped);
    assert_eq!(
        (ran.summary.passed, ran.summary.failed, ran.summary.skipped),
        (3, 1, 2)
    );
}

#[test]
fn continue_on_error_keeps_the_run_green() {
    let ran = run(
        "jobs:\n  lint: { run: exit 2, continue_on_error: true }\n  next: { needs: [lint], run: echo ok }\n",
        Setup::default(),
    );
    assert_eq!(ran.state("lint"), TaskState::Failed);
    assert_eq!(ran.state("next"), TaskState::Succeeded);
    assert_eq!(ran.summary.outcome, RunOutcome::Succeeded);
}

#[test]
fn cancellation_kills_running_jobs_and_still_runs_always_jobs() {
    let ran = run(
        "jobs:\n  long: { run: sleep 30 }\n  next: { needs: [long], run: echo next }\n  cleanup: { needs: [long], if: always(), run: echo cleanup }\n  on-cancel: { needs: [long], if: cancelled(), run: echo cancelled }\n",
        Setup {
            cancel_after: Some(Duration::from_millis(300)),
            ..Setup::default()
        },
    );
    assert_eq!(ran.summary.outcome, RunOutcome::Cancelled);
    assert_eq!(ran.state("long"), TaskState::Cancelled);
    assert_eq!(ran.state("next"), TaskState::Cancelled);
    assert_eq!(ran.state("cleanup"), TaskState::Succeeded);
    assert_eq!(ran.state("on-cancel"), TaskState::Succeeded);
    assert!(ran.logs().contains(&"cleanup: cleanup".to_owned()));
}

#[test]
fn matrix_copies_see_their_values() {
    let ran = run(
        "jobs:\n  test:\n    matrix: { os: [linux, mac], py: ['3.10', '3.11'] }\n    env: { PY: '${{ matrix.py }}' }\n    run: echo \"${{ matrix.os }} $PY\"\n",
        Setup::default(),
    );
    let mut logs = ran.logs();
    logs.sort();
    assert_eq!(
        logs,
        [
            "test[0]: linux 3.10",
            "test[1]: linux 3.11",
            "test[2]: mac 3.10",
            "test[3]: mac 3.11"
        ]
    );
}

#[test]
fn the_engine_never_runs_more_than_its_slots() {
    let ran = run(
        "jobs:\n  a: { matrix: { i: [1, 2, 3, 4, 5, 6] }, run: 'sleep 0.05' }\n",
        Setup {
            slots: 2,
            ..Setup::default()
        },
    );
    let mut running = 0i32;
    let mut peak = 0;
    for e in &ran.events {
        match e.kind {
            EventKind::TaskStarted { .. } => running += 1,
            EventKind::TaskFinished { .. } => running -= 1,
            _ => {}
        }
        peak = peak.max(running);
    }
    assert_eq!(peak, 2);
    assert_eq!(ran.summary.outcome, RunOutcome::Succeeded);
}

#[test]
fn invalid_stdout_json_fails_the_task_with_a_reason() {
    let ran = run(
        "jobs:\n  a: { run: echo not-json, outputs: { x: stdout-json } }\n",
        Setup::default(),
    );
    assert_eq!(ran.state("a"), TaskState::Failed);
    assert!(
        ran.task("a")
            .error
            .as_deref()
            .unwrap()
            .starts_with("output `x`: stdout is not valid JSON")
    );
}

#[test]
fn a_process_that_leaves_the_group_cannot_hold_a_task_past_its_timeout() {
    // `setsid` escapes the process group and keeps stdout open; the task must still end.
    let ran = run(
        "jobs:\n  a: { run: 'setsid sleep 30 & sleep 100', timeout: 300ms }\n",
        Setup::default(),
    );
    assert_eq!(ran.state("a"), TaskState::Failed);
    assert!(
        ran.task("a").duration < Duration::from_secs(10),
        "{:?}",
        ran.task("a").duration
    );
}

#[test]
fn a_dynamic_fan_out_after_a_failed_need_is_skipped_not_failed() {
    let ran = run(
        "jobs:\n  a: { run: 'exit 1', outputs: { l: stdout-json } }\n  b: { needs: [a], for_each: '${{ needs.a.outputs.l }}', run: 'echo ${{ item }}' }\n",
        Setup::default(),
    );
    assert_eq!(ran.state("b"), TaskState::Skipped);
    assert_eq!(ran.summary.failed, 1);
}

#[test]
fn runner_weights_limit_what_runs_at_once() {
    // Capacity: 4 slots, 4 CPUs. `medium` takes 2 CPUs, so only two run at once even
    // though four slots are free; each start and end is a resource event.
    let ran = run(
        "jobs:\n  heavy: { runner: medium, matrix: { i: [1, 2, 3, 4] }, run: 'sleep 0.1' }\n",
        Setup {
            slots: 4,
            ..Setup::default()
        },
    );
    let mut running = 0i32;
    let mut peak = 0;
    let mut acquired = 0;
    for e in &ran.events {
        match &e.kind {
            EventKind::ResourceAcquired {
                in_use,
                capacity,
                amount,
                ..
            } => {
                acquired += 1;
                running += 1;
                assert_eq!((*amount, *capacity), (2000, 4000));
                assert!(*in_use <= *capacity);
            }
            EventKind::ResourceReleased { .. } => running -= 1,
            _ => {}
        }
        peak = peak.max(running);
    }
    assert_eq!((acquired, peak), (4, 2));
    assert_eq!(ran.summary.outcome, RunOutcome::Succeeded);
}

/// When each task started and finished, from the events' timestamps.
fn spans(ran: &Ran) -> std::collections::BTreeMap<String, (jiff::Timestamp, jiff::Timestamp)> {
    let mut started = std::collections::BTreeMap::new();
    let mut spans = std::collections::BTreeMap::new();
    for e in &ran.events {
        match &e.kind {
            EventKind::TaskStarted { task, .. } => {
                started.insert(task.to_string(), e.ts);
            }
            EventKind::TaskFinished { task, .. } => {
                spans.insert(task.to_string(), (started[&task.to_string()], e.ts));
            }
            _ => {}
        }
    }
    spans
}

#[test]
fn a_jobs_own_resources_are_its_weight() {
    // Capacity: 4 slots but 2 CPUs; each job asks for 2 CPUs, so they run one after the
    // other even though slots are free. `big` asks for more than the capacity: like an
    // oversized runner alias it is not refused but runs alone.
    let ran = run(
        "jobs:\n  a: { resources: { cpu: 2 }, run: 'sleep 0.2' }\n  b: { resources: { cpu: 2000m, memory: 1Gi }, run: 'sleep 0.2' }\n  big: { resources: { cpu: 8 }, run: 'sleep 0.2' }\n",
        Setup {
            slots: 4,
            cpu_milli: 2000,
            ..Setup::default()
        },
    );
    assert_eq!(ran.summary.outcome, RunOutcome::Succeeded);
    let spans = spans(&ran);
    assert_eq!(spans.len(), 3, "{spans:?}");
    let mut ordered: Vec<_> = spans.iter().collect();
    ordered.sort_by_key(|(_, (start, _))| *start);
    for pair in ordered.windows(2) {
        let ((first, (_, end)), (next, (start, _))) = (pair[0], pair[1]);
        assert!(
            end <= start,
            "{next} started at {start} before {first} finished at {end}"
        );
    }
    let acquired: std::collections::BTreeMap<String, (String, u32, u32)> = ran
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ResourceAcquired {
                task,
                resource,
                amount,
                capacity,
                ..
            } => Some((task.to_string(), (resource.clone(), *amount, *capacity))),
            _ => None,
        })
        .collect();
    let released = ran
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ResourceReleased { .. }))
        .count();
    assert_eq!(
        acquired,
        std::collections::BTreeMap::from([
            (
                "a".to_owned(),
                ("cpu=2000m,memory=0Mi".to_owned(), 2000, 2000)
            ),
            (
                "b".to_owned(),
                ("cpu=2000m,memory=1024Mi".to_owned(), 2000, 2000)
            ),
            (
                "big".to_owned(),
                ("cpu=8000m,memory=0Mi".to_owned(), 8000, 2000)
            ),
        ])
    );
    assert_eq!(released, 3);
}

#[test]
fn resources_override_the_runner_alias_field_by_field() {
    // `small` is 1 CPU and 1Gi: the job keeps the memory and asks for half a CPU, so four
    // copies fit in 2 CPUs at once (with the alias alone only two would).
    let ran = run(
        "jobs:\n  light: { runner: small, resources: { cpu: 500m }, matrix: { i: [1, 2, 3, 4] }, run: 'sleep 0.3' }\n",
        Setup {
            slots: 4,
            cpu_milli: 2000,
            ..Setup::default()
        },
    );
    assert_eq!(ran.summary.outcome, RunOutcome::Succeeded);
    let mut in_use_peak = 0;
    for e in &ran.events {
        if let EventKind::ResourceAcquired {
            resource,
            amount,
            in_use,
            ..
        } = &e.kind
        {
            assert_eq!(
                (resource.as_str(), *amount),
                ("cpu=500m,memory=1024Mi", 500)
            );
            in_use_peak = in_use_peak.max(*in_use);
        }
    }
    assert_eq!(in_use_peak, 2000, "all four ran at once");
}
