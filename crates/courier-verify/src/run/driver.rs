//! One whole run: environment up, topic created, workers started, the schedule played, the
//! final phase (heal, stop the workload, read everything), then the check and its reports.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use super::faults::{self, Environment};
use super::progress::Progress;
use super::recorder::Recorder;
use super::{consumer, header, producer, rpw, Mode, RunOptions, Shared};
use crate::{check, history, html, report, CheckOptions, CheckResult, VerifyError};

/// How long the final read may take.
const FINAL_READ: Duration = Duration::from_secs(60);

/// What a run produced.
pub struct RunOutcome {
    /// The history file.
    pub history: PathBuf,
    /// The check of it.
    pub result: CheckResult,
    /// The text report (also in `report.txt`).
    pub report: String,
    /// Partitions the final read could not read to their end.
    pub unfinished_partitions: usize,
}

/// Creates `topic` with `partitions` (replication factor 1) unless it exists, retrying for up
/// to 30 s while the broker is unreachable or not ready (it may have just been restarted).
pub async fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: usize,
) -> Result<(), VerifyError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| VerifyError::Run(format!("admin client: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(1));
        let outcome = admin
            .create_topics(
                &[new],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await;
        match outcome {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(_)) | None => return Ok(()),
                Some(Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))) => {
                    return Ok(())
                }
                Some(Err((_, code))) if Instant::now() > deadline => {
                    return Err(VerifyError::Run(format!("creating {topic}: {code}")))
                }
                Some(Err(_)) => {}
            },
            Err(e) if Instant::now() > deadline => {
                return Err(VerifyError::Run(format!("creating {topic}: {e}")))
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn write(path: PathBuf, text: &str) -> Result<(), VerifyError> {
    std::fs::write(&path, text).map_err(|e| VerifyError::Io { path, source: e })
}

/// Runs the workload, checks its history and writes `history.jsonl`, `report.txt`,
/// `report.json` and `report.html` into the output directory.
pub fn execute(options: RunOptions) -> Result<RunOutcome, VerifyError> {
    std::fs::create_dir_all(&options.out_dir).map_err(|e| VerifyError::Io {
        path: options.out_dir.clone(),
        source: e,
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("verify")
        .build()
        .map_err(|e| VerifyError::Run(format!("starting the runtime: {e}")))?;
    let history_path = options.out_dir.join("history.jsonl");
    let guarantee = options.guarantee.unwrap_or(options.mode.guarantee());
    let unfinished = runtime.block_on(workload(&options, &history_path, guarantee))?;
    runtime.shutdown_timeout(Duration::from_secs(5));

    let history = history::parse_file(&history_path)?;
    let result = check(
        &history,
        CheckOptions {
            guarantee: Some(guarantee),
            isolation: Some(options.isolation),
        },
    );
    let mut text = report::text(&result, &history_path.display().to_string(), 5);
    if unfinished > 0 {
        text.push_str(&format!(
            "\nWARNING: the final read did not reach the end of {unfinished} partition(s) \
             within {} s; their unread values count as unseen.\n",
            FINAL_READ.as_secs()
        ));
    }
    write(options.out_dir.join("report.txt"), &text)?;
    write(
        options.out_dir.join("report.json"),
        &report::json(&result, 20)?,
    )?;
    write(
        options.out_dir.join("report.html"),
        &html::page(&history, &result, &text),
    )?;
    Ok(RunOutcome {
        history: history_path,
        result,
        report: text,
        unfinished_partitions: unfinished,
    })
}

async fn workload(
    options: &RunOptions,
    history_path: &std::path::Path,
    guarantee: crate::Guarantee,
) -> Result<usize, VerifyError> {
    let schedule = faults::schedule(options)?;
    let mut env = Environment::start(options, &schedule).await?;
    let outcome = workload_in(options, history_path, guarantee, &schedule, &mut env).await;
    env.shutdown();
    outcome
}

async fn workload_in(
    options: &RunOptions,
    history_path: &std::path::Path,
    guarantee: crate::Guarantee,
    schedule: &faults::Schedule,
    env: &mut Environment,
) -> Result<usize, VerifyError> {
    let topic = format!("verify-{}", options.seed);
    create_topic(&env.bootstrap, &topic, options.keys).await?;
    let recorder = Recorder::create(history_path, header(options, guarantee, &env.bootstrap))?;
    let shared = Arc::new(Shared::new(options, env.bootstrap.clone(), topic, recorder));

    let mut async_workers = Vec::new();
    let mut blocking_workers = Vec::new();
    for worker in 0..options.producers {
        let s = Arc::clone(&shared);
        if options.mode == Mode::Transactional {
            blocking_workers.push(tokio::task::spawn_blocking(move || {
                producer::run_transactional(s, worker)
            }));
        } else {
            let slots = options.slots.max(1);
            async_workers.push(tokio::spawn(producer::run_plain(s, worker, slots)));
        }
    }
    let group = format!("verify-group-{}", options.seed);
    for worker in 0..options.group_consumers {
        let s = Arc::clone(&shared);
        let g = group.clone();
        blocking_workers.push(if options.mode == Mode::Rpw {
            tokio::task::spawn_blocking(move || rpw::run(s, worker, g))
        } else {
            tokio::task::spawn_blocking(move || consumer::run(s, worker, Some(g)))
        });
    }
    for i in 0..options.assign_consumers {
        let s = Arc::clone(&shared);
        let worker = options.group_consumers + i;
        blocking_workers.push(tokio::task::spawn_blocking(move || {
            consumer::run(s, worker, None)
        }));
    }

    let started = Instant::now();
    let mut progress = Progress::start(Arc::clone(&shared), options.duration, options.progress);
    let driven = faults::drive(env, &shared, schedule, started, options.duration).await;
    progress.finish();
    shared.stop();
    for w in async_workers {
        let _ = w.await;
    }
    for w in blocking_workers {
        let _ = w.await;
    }
    driven?;
    let s = Arc::clone(&shared);
    let unfinished = tokio::task::spawn_blocking(move || consumer::final_read(&s, FINAL_READ))
        .await
        .map_err(|e| VerifyError::Run(format!("final read: {e}")))?;
    shared.recorder.finish()?;
    Ok(unfinished)
}
