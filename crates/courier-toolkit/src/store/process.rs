//! Processing messages exactly once: one message ([`ProcessedStore::process`]) or a batch
//! ([`ProcessedStore::process_batch`]) per database transaction, by the same steps
//! ([`apply`]), in the transaction:
//!
//! 1. **Claim** each key (its first appearance in the batch; a repeat is a duplicate of it):
//!    insert its record in progress. A key that has a record already is read, locked: if
//!    completed, the message is a duplicate (the effect is skipped, the stored result
//!    returned); if in progress (left by someone else), it is taken over.
//! 2. **Apply** the effects of the claimed messages, in batch order.
//! 3. **Complete** each applied key with its result, and move each partition's next offset
//!    forward past the batch's highest offset (never back).
//!
//! Steps 1 and 3 run their statements in one go (on SQLite, one blocking call each rather
//! than one per statement; see [`Tx::execute_all`]). The claims are made in key
//! order, so that two batches on PostgreSQL sharing keys lock them in the same order and
//! cannot deadlock.
//!
//! A batch costs one `COMMIT`, so one fsync on SQLite (`synchronous=FULL`) and one WAL flush
//! on PostgreSQL, for all its messages: that, not the statements, is what bounds a
//! one-message-per-transaction consumer to a few hundred messages a second.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::SystemTime;

use tracing::Instrument;

use super::tx::{StatementFailed, Statements};
use super::value::SqlValue;
use super::{now_ms, parse_state, schema, Backend, KeyState, ProcessedStore, Tx};
use crate::ToolkitError;

/// The message being processed: who consumes it, where it is, and its idempotency key.
#[derive(Debug, Clone, Copy)]
pub struct ProcessRequest<'a> {
    /// The consumer group.
    pub group: &'a str,
    /// The message's topic.
    pub topic: &'a str,
    /// The message's partition.
    pub partition: i32,
    /// The message's offset; the group's next offset becomes `offset + 1`.
    pub offset: i64,
    /// The message's idempotency key (from a header or a function of the message); any
    /// bytes.
    pub idempotency_key: &'a [u8],
}

/// What [`ProcessedStore::process`] did with a message (and
/// [`ProcessedStore::process_batch`] with each message of a batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The effect ran and committed, with the key and the offset.
    Applied {
        /// What the effect returned; stored with the key.
        result: Vec<u8>,
    },
    /// The key was completed before: the effect was skipped (the offset still moved past
    /// the message).
    Duplicate {
        /// What the effect returned the first time.
        stored_result: Vec<u8>,
    },
}

impl ProcessedStore {
    /// Processes one message exactly once, in one database transaction:
    ///
    /// - if the key's record is completed, the effect is skipped and
    ///   [`Outcome::Duplicate`] carries the stored result;
    /// - otherwise the key is claimed (in progress), `effect` runs on the transaction and
    ///   returns the result to store, and the key is stored completed with it;
    /// - either way the group's next offset for the partition moves forward to `offset + 1`
    ///   (never back), and the transaction commits.
    ///
    /// If `effect` fails (or any statement does), the transaction rolls back: no effect, no
    /// key, no offset; the error is returned and the message can be processed again.
    /// Concurrent calls for the same key, from any number of handles or machines, apply the
    /// effect once: the second waits for the first's transaction to end.
    pub async fn process<F, Fut>(
        &self,
        req: &ProcessRequest<'_>,
        effect: F,
    ) -> Result<Outcome, ToolkitError>
    where
        F: FnOnce(Tx) -> Fut + Send,
        Fut: Future<Output = Result<Vec<u8>, ToolkitError>> + Send,
    {
        let mut effect = Some(effect);
        let once = move |_: usize, tx: Tx| {
            let effect = effect.take();
            async move {
                match effect {
                    Some(effect) => effect(tx).await,
                    None => Err(ToolkitError::Database("an effect was run twice".into())),
                }
            }
        };
        match self.process_batch(std::slice::from_ref(req), once).await {
            Ok(mut outcomes) => outcomes
                .pop()
                .ok_or_else(|| ToolkitError::Database("a message without an outcome".into())),
            Err(ToolkitError::BatchRolledBack { source, .. }) => Err(*source),
            Err(e) => Err(e),
        }
    }

    /// Processes a batch of messages exactly once, in **one** database transaction: each
    /// request as [`process`](Self::process) would (`effect(i, tx)` is the effect of
    /// `reqs[i]`; the effects run in the order of `reqs`), and each (group, topic, partition)
    /// of the batch moves its next offset forward to the batch's highest offset + 1 (never
    /// back). The outcomes are in the order of `reqs`. A key that appears twice in the batch
    /// is applied at its first appearance and a [`Duplicate`](Outcome::Duplicate) at the
    /// next, with the first's result.
    ///
    /// All or nothing: if an effect or a statement fails, the whole transaction rolls back
    /// (no effect, key or offset of any message of the batch is kept) and the error is
    /// [`ToolkitError::BatchRolledBack`], whose `index` is the failing message's position
    /// in `reqs` (`None` when the failure belongs to no message: `BEGIN`, the offsets,
    /// `COMMIT`). The batch's messages can then be processed again, in a batch or one by one.
    ///
    /// The transaction holds the keys it claimed (PostgreSQL row locks) or the whole database
    /// (SQLite's write lock) until it ends: the larger the batch, the longer a concurrent
    /// processor of the same keys, or any SQLite writer, waits.
    pub async fn process_batch<F, Fut>(
        &self,
        reqs: &[ProcessRequest<'_>],
        mut effect: F,
    ) -> Result<Vec<Outcome>, ToolkitError>
    where
        F: FnMut(usize, Tx) -> Fut + Send,
        Fut: Future<Output = Result<Vec<u8>, ToolkitError>> + Send,
    {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let backend = self.backend();
        let span = tracing::debug_span!("process_batch", messages = reqs.len());
        let effect = &mut effect;
        let work = self.transaction(|tx| async move {
            let now = now_ms(SystemTime::now());
            apply(&tx, backend, reqs, now, effect).await
        });
        work.instrument(span).await.map_err(|e| match e {
            ToolkitError::BatchRolledBack { .. } => e,
            other => rolled_back(None, other),
        })
    }
}

/// What a message of a batch turned out to be when its key was claimed.
enum Claim {
    /// Claimed (or taken over): its effect runs.
    Apply,
    /// Completed before: a duplicate with this stored result.
    Completed(Vec<u8>),
    /// The same key as the earlier message at this position: a duplicate of it.
    Repeat(usize),
}

/// The steps of the [module docs](self), in the open transaction `tx`. Errors are
/// [`ToolkitError::BatchRolledBack`], with the failing message's position where there is
/// one.
async fn apply<F, Fut>(
    tx: &Tx,
    backend: Backend,
    reqs: &[ProcessRequest<'_>],
    now: i64,
    effect: &mut F,
) -> Result<Vec<Outcome>, ToolkitError>
where
    F: FnMut(usize, Tx) -> Fut,
    Fut: Future<Output = Result<Vec<u8>, ToolkitError>>,
{
    let claims = claim(tx, backend, reqs, now).await?;
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(reqs.len());
    for (i, (req, claim)) in reqs.iter().zip(&claims).enumerate() {
        let outcome = match claim {
            Claim::Apply => {
                let result = effect(i, tx.clone())
                    .instrument(message_span(req))
                    .await
                    .map_err(|e| rolled_back(Some(i), e))?;
                // An effect that went on after one of its statements failed.
                if let Some(e) = tx.failure().await {
                    let e = format!("a statement of the effect failed: {e}");
                    return Err(rolled_back(Some(i), ToolkitError::Database(e)));
                }
                Outcome::Applied { result }
            }
            Claim::Completed(stored) => Outcome::Duplicate {
                stored_result: stored.clone(),
            },
            Claim::Repeat(first) => Outcome::Duplicate {
                stored_result: match &outcomes[*first] {
                    Outcome::Applied { result } => result.clone(),
                    Outcome::Duplicate { stored_result } => stored_result.clone(),
                },
            },
        };
        outcomes.push(outcome);
    }
    complete(tx, backend, reqs, &outcomes, &claims, now).await?;
    Ok(outcomes)
}

/// Step 1: claims the key of each first appearance, in key order; reads (and locks) the
/// records that exist already, and takes over those in progress.
async fn claim(
    tx: &Tx,
    backend: Backend,
    reqs: &[ProcessRequest<'_>],
    now: i64,
) -> Result<Vec<Claim>, ToolkitError> {
    let mut first: HashMap<(&str, &[u8]), usize> = HashMap::new();
    let mut claims: Vec<Claim> = Vec::with_capacity(reqs.len());
    for (i, r) in reqs.iter().enumerate() {
        let earlier = *first.entry((r.group, r.idempotency_key)).or_insert(i);
        claims.push(if earlier == i {
            Claim::Apply
        } else {
            Claim::Repeat(earlier)
        });
    }
    let mut order: Vec<usize> = first.into_values().collect();
    order.sort_by_key(|&i| (reqs[i].group, reqs[i].idempotency_key));

    let inserts = statements(&order, |i| (schema::CLAIM_KEY, key_params(&reqs[i], now)));
    let inserted = tx.execute_all(inserts).await.map_err(at(&order))?;
    let existing: Vec<usize> = order
        .iter()
        .zip(inserted)
        .filter(|(_, n)| *n == 0)
        .map(|(i, _)| *i)
        .collect();
    let lock = |i: usize| {
        let mut params = key_params(&reqs[i], now);
        params.truncate(2);
        (schema::lock_key(backend), params)
    };
    let records = tx
        .query_all(statements(&existing, lock))
        .await
        .map_err(at(&existing))?;
    let mut in_progress = Vec::new();
    for (&i, rows) in existing.iter().zip(records) {
        let row = rows.first().ok_or_else(|| {
            let e = ToolkitError::Database("a key's record vanished while claiming it".into());
            rolled_back(Some(i), e)
        })?;
        match parse_state(&row[0]).map_err(|e| rolled_back(Some(i), e))? {
            KeyState::Completed => {
                let stored = row[1].as_bytes().map(<[u8]>::to_vec);
                claims[i] = Claim::Completed(stored.unwrap_or_default());
            }
            KeyState::InProgress => in_progress.push(i),
        }
    }
    let takeovers = statements(&in_progress, |i| {
        (schema::RECLAIM_KEY, key_params(&reqs[i], now))
    });
    tx.execute_all(takeovers).await.map_err(at(&in_progress))?;
    Ok(claims)
}

/// Step 3: completes the applied keys with their results and moves each partition's next
/// offset past the batch, in one go.
async fn complete(
    tx: &Tx,
    backend: Backend,
    reqs: &[ProcessRequest<'_>],
    outcomes: &[Outcome],
    claims: &[Claim],
    now: i64,
) -> Result<(), ToolkitError> {
    let mut statements: Statements = Vec::new();
    let mut owners: Vec<Option<usize>> = Vec::new();
    for (i, (req, outcome)) in reqs.iter().zip(outcomes).enumerate() {
        if let (Claim::Apply, Outcome::Applied { result }) = (&claims[i], outcome) {
            let params = vec![
                req.group.into(),
                req.idempotency_key.into(),
                result.clone().into(),
                now.into(),
            ];
            statements.push((schema::COMPLETE_KEY.to_owned(), params));
            owners.push(Some(i));
        }
    }
    let mut next: BTreeMap<(&str, &str, i32), i64> = BTreeMap::new();
    for req in reqs {
        let end = next
            .entry((req.group, req.topic, req.partition))
            .or_default();
        *end = (*end).max(req.offset + 1);
    }
    for ((group, topic, partition), end) in next {
        let params = vec![
            group.into(),
            topic.into(),
            partition.into(),
            end.into(),
            now.into(),
        ];
        statements.push((schema::advance_offset(backend).to_owned(), params));
        owners.push(None);
    }
    tx.execute_all(statements)
        .await
        .map_err(|(j, e)| rolled_back(owners.get(j).copied().flatten(), e))?;
    Ok(())
}

/// A failure of the `j`th statement made for the positions `at`: one of message `at[j]`.
fn at(at: &[usize]) -> impl Fn(StatementFailed) -> ToolkitError + '_ {
    move |(j, e)| rolled_back(at.get(j).copied(), e)
}

/// The statements `statement(i)` of each position `i` of `at`.
fn statements(
    at: &[usize],
    statement: impl Fn(usize) -> (&'static str, Vec<SqlValue>),
) -> Statements {
    at.iter()
        .map(|&i| {
            let (sql, params) = statement(i);
            (sql.to_owned(), params)
        })
        .collect()
}

/// `$1` group, `$2` key, `$3` topic, `$4` partition, `$5` offset, `$6` now: the parameters
/// of claiming (and taking over) a key; the first two, of reading its record.
fn key_params(req: &ProcessRequest<'_>, now: i64) -> Vec<SqlValue> {
    vec![
        req.group.into(),
        req.idempotency_key.into(),
        req.topic.into(),
        req.partition.into(),
        req.offset.into(),
        now.into(),
    ]
}

/// The span of one message's effect.
fn message_span(req: &ProcessRequest<'_>) -> tracing::Span {
    tracing::debug_span!(
        "process",
        group = req.group,
        topic = req.topic,
        partition = req.partition,
        offset = req.offset,
        key = %String::from_utf8_lossy(req.idempotency_key)
    )
}

/// A batch's failure: at message `index`, or in no message's part.
fn rolled_back(index: Option<usize>, error: ToolkitError) -> ToolkitError {
    ToolkitError::BatchRolledBack {
        index,
        source: Box::new(error),
    }
}
