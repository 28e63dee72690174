//! Control commands on a real run: pause holds new starts and lets running tasks finish,
//! resume continues, limit 1 serialises, cancel stops, a vanished controller resumes.
//! Assertions are on the order of events and commands, never on durations.

use crate::{Ran, Setup, run};
use cascade_engine::Command;
use cascade_plan::{EventKind, RunOutcome, TaskState};
use std::num::NonZeroUsize;
use std::time::Duration;

/// When each task (attempt 1) started and finished, in start order.
fn spans(ran: &Ran) -> Vec<(String, jiff::Timestamp, jiff::Timestamp)> {
    let mut spans: Vec<(String, jiff::Timestamp, Option<jiff::Timestamp>)> = Vec::new();
    for event in &ran.events {
        match &event.kind {
            EventKind::TaskStarted { task, .. } => {
                spans.push((task.to_string(), event.ts, None));
            }
            EventKind::TaskFinished { task, .. } => {
                if let Some(span) = spans.iter_mut().find(|s| s.0 == task.to_string()) {
                    span.2 = Some(event.ts);
                }
            }
            _ => {}
        }
    }
    spans
        .into_iter()
        .map(|(t, a, b)| {
            let b = b.unwrap_or_else(|| panic!("{t} never finished"));
            (t, a, b)
        })
        .collect()
}

const THREE_QUICK: &str =
    "jobs:\n  a: { run: 'true' }\n  b: { run: 'true' }\n  c: { run: 'true' }\n";

#[test]
fn pause_before_the_start_holds_every_task_until_resume() {
    let ran = run(
        THREE_QUICK,
        Setup {
            commands: vec![
                (Duration::ZERO, Command::Pause),
                (Duration::from_millis(400), Command::Resume),
            ],
            ..Setup::default()
        },
    );
    assert_eq!(ran.summary.outcome, RunOutcome::Succeeded);
    let resumed = ran.sent[1];
    let spans = spans(&ran);
    assert_eq!(spans.len(), 3);
    for (task, started, _) in spans {
        assert!(
            started >= resumed,
            "{task} started at {started}, before the resume at {resumed}"
        );
    }
}

#[test]
fn pause_lets_running_tasks_finish_and_holds_their_dependents() {
    let ran = run(
        "jobs:\n  long: { run: sleep 0.3 }\n  next: { needs: [long], run: 'true' }\n",
        Setup {
            commands: vec![
                (Duration::from_millis(100), Command::Pause),
                (Duration::from_millis(900), Command::Resume),
            ],
            ..Setup::default()
        },
    );
    assert_eq!(ran.summary.outcome, RunOutcome::Succeeded);
    let (paused, resumed) = (ran.sent[0], ran.sent[1]);
    let spans = spans(&ran);
    let long = spans.iter().find(|s| s.0 == "long").unwrap();
    let next = spans.iter().find(|s| s.0 == "next").unwrap();
    assert!(long.1 < paused, "long started before the pause");
    assert!(
        long.2 < resumed,
        "long finished while paused (at {}, resume at {resumed})",
        long.2
    );
    assert!(
        next.1 >= resumed,
        "next waited for the resume: started {}, resume {resumed}",
        next.1
    );
}

#[test]
fn limit_one_runs_tasks_one_at_a_time() {
    let ran = run(
        "jobs:\n  a: { run: sleep 0.1 }\n  b: { run: sleep 0.1 }\n  c: { run: sleep 0.1 }\n",
        Setup {
            slots: 4,
            commands: vec![(Duration::ZERO, Command::Limit(NonZeroUsize::MIN))],
            ..Setup::default()
        },
    );
    assert_eq!(ran.summary.outcome, RunOutcome::Succeeded);
    let spans = spans(&ran);
    assert_eq!(spans.len(), 3);
    for pair in spans.windows(2) {
        assert!(
            pair[1].1 >= pair[0].2,
            "{} started at {} before {} finished at {}",
            pair[1].0,
            pair[1].1,
            pair[0].0,
            pair[0].2
        );
    }
}

#[test]
fn without_a_limit_the_same_tasks_overlap() {
    // The counterpart of the test above: it shows that test can fail.
    let ran = run(
        "jobs:\n  a: { run: sleep 0.3 }\n  b: { run: sleep 0.3 }\n",
        Setup {
            slots: 4,
            ..Setup::default()
        },
    );
    let spans = spans(&ran);
    assert!(spans[1].1 < spans[0].2, "{spans:?}");
}

#[test]
fn cancel_stops_the_run_like_the_token() {
    let ran = run(
        "jobs:\n  slow: { run: sleep 30 }\n  after: { needs: [slow], run: 'true' }\n  cleanup: { needs: [slow], if: always(), run: echo cleaned }\n",
        Setup {
            commands: vec![(Duration::from_millis(200), Command::Cancel)],
            ..Setup::default()
        },
    );
    assert_eq!(ran.summary.outcome, RunOutcome::Cancelled);
    assert_eq!(ran.state("slow"), TaskState::Cancelled);
    assert_eq!(ran.state("after"), TaskState::Cancelled);
    assert_eq!(ran.state("cleanup"), TaskState::Succeeded);
}

#[test]
fn cancel_while_paused_still_ends_the_run() {
    let ran = run(
        "jobs:\n  a: { run: 'true' }\n  cleanup: { needs: [a], if: always(), run: echo cleaned }\n",
        Setup {
            commands: vec![
                (Duration::ZERO, Command::Pause),
                (Duration::from_millis(100), Command::Cancel),
                // Kept alive past the end, so that only the cancel can end the run.
                (Duration::from_mins(1), Command::Resume),
            ],
            ..Setup::default()
        },
    );
    assert_eq!(ran.summary.outcome, RunOutcome::Cancelled);
    assert_eq!(ran.state("a"), TaskState::Cancelled);
    assert_eq!(ran.state("cleanup"), TaskState::Succeeded);
}

#[test]
fn a_paused_run_resumes_when_its_controller_is_gone() {
    // The sender is dropped right after the pause: nobody could resume the run.
    let ran = run(
        THREE_QUICK,
        Setup {
            commands: vec![(Duration::ZERO, Command::Pause)],
            ..Setup::default()
        },
    );
    assert_eq!(ran.summary.outcome, RunOutcome::Succeeded);
    assert_eq!(spans(&ran).len(), 3);
}
