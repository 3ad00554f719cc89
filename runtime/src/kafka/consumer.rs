//! The event consumer. It stores each batch in one PostgreSQL transaction and only then
//! commits the batch's offsets, in the order the batches were taken off Kafka; two batches at
//! most are in flight (one storing while the next is gathered and stored beside it), so a
//! crash replays at most those two, which the store's unique event id turns into no-ops:
//! effectively once.
//!
//! Cutover contract (see docs/runtime.md): the consumer is `active` (member of the production
//! group, storing) or `standby` (connected, consuming nothing). A switch to standby is answered
//! only after the batches in flight are stored, their offsets committed synchronously and the group
//! left; so when the operator activates the other release, nothing is in flight here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use auren_contract::ConsumerRole;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use super::commit_order::{CommitOrder, Offsets, Ticket, merge};
use crate::ingest::StoredEvent;
use crate::metrics::{Metrics, PartitionLabels};
use crate::resilience::Backoff;
use crate::store::{Columns, EventStore, StoredRecord};

/// Exports librdkafka's per-partition lag as gauges and tracks the group assignment.
pub struct LagContext {
    metrics: Arc<Metrics>,
    assigned: AtomicUsize,
    /// The last rebalance event was an assignment (possibly empty): no join is in flight.
    /// Cleared by a revocation (a rebalance has begun) and by subscribing.
    joined: AtomicBool,
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        for topic in statistics.topics.values() {
            for (partition, p) in &topic.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .get_or_create(&PartitionLabels {
                            partition: *partition,
                        })
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for LagContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = match rebalance {
            Rebalance::Assign(tpl) => tpl.count(),
            Rebalance::Revoke(_) => 0,
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "rebalance error");
                return;
            }
        };
        self.assigned.store(partitions, Ordering::SeqCst);
        self.joined
            .store(matches!(rebalance, Rebalance::Assign(_)), Ordering::SeqCst);
        tracing::info!(partitions, "group assignment changed");
    }
}

/// How long a switch to standby lets a group join in flight finish first. A join round after
/// a broker pause took tansu 0.6 (the test broker until 2026-12-07) about 18 s here (members' sessions expire, then rejoin).
const JOIN_WAIT: Duration = Duration::from_secs(20);
/// How long a member that left waits before it answers, so its LeaveGroup reaches the group
/// coordinator before the next release's JoinGroup does.
const LEAVE_TRAVEL: Duration = Duration::from_secs(1);
/// How long an active consumer waits for its group join to complete (an assignment, empty or
/// not) before it leaves and joins again. A healthy round takes seconds (up to about 18 on
/// tansu 0.6, the test broker until 2026-12-07, right after a broker pause); this is for one
/// that never ends.
const JOIN_PATIENCE: Duration = Duration::from_secs(30);
/// How often the run loop looks at the join.
const JOIN_WATCH: Duration = Duration::from_secs(5);
/// How long a member that is about to leave listens for a rebalance begun without it: it hears
/// of one at its next heartbeat (`heartbeat.interval.ms`, 1 s), plus a margin.
const REBALANCE_NEWS: Duration = Duration::from_millis(1500);
/// The same at shutdown, kept short so the stop stays well inside its deadline.
const JOIN_WAIT_AT_SHUTDOWN: Duration = Duration::from_secs(3);

/// A record read from Kafka, owned so no borrow of the consumer crosses an await.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub payload: Vec<u8>,
}

/// A gathered batch ready to store: its events as store columns, and what to commit after.
struct ReadyBatch {
    columns: Columns,
    offsets: Offsets,
    records: usize,
}

/// A store task's answer: the batch's ticket, and whether it was stored (false: shutdown).
type StoreOutcome = (Ticket, bool);

/// What the pipeline met next.
enum Step {
    /// A batch gathered, parsed and ready to store.
    Taken(Box<ReadyBatch>),
    /// A store task finished.
    Finished(Result<StoreOutcome, JoinError>),
    /// Nothing at hand (or shutdown while dead-lettering): stop gathering, finish the stores.
    Idle,
}

/// A request to switch role, answered once the switch is complete.
pub struct RoleRequest {
    pub role: ConsumerRole,
    pub reply: oneshot::Sender<Result<ConsumerRole, String>>,
}

pub struct ConsumerSettings {
    pub brokers: String,
    pub topic: String,
    pub dlq_topic: String,
    pub group: String,
    pub batch: BatchLimits,
    /// Most batches taken off Kafka and not yet committed at once (`CONSUMER_BATCHES_IN_FLIGHT`,
    /// 1 or 2): with 2, one is stored (executing and committing in PostgreSQL) while the next is
    /// gathered and stored beside it on a second connection. Bounds memory (this many batches
    /// of at most [`BatchLimits`] each, their columns and sqlx's encoded copies) and what a
    /// crash replays (as many batches, no-ops by the unique id).
    pub in_flight: usize,
}

/// How much one transaction stores at most: a backlog is stored in batches this large, so
/// it waits for one commit per batch, and memory stays flat whatever the backlog.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub events: usize,
    /// Kafka payload bytes. A batch always takes its first record, however large.
    pub bytes: usize,
}

impl BatchLimits {
    fn full(&self, events: usize, bytes: usize) -> bool {
        events >= self.events || bytes >= self.bytes
    }
}

pub struct EventConsumer {
    consumer: Arc<StreamConsumer<LagContext>>,
    dlq: FutureProducer,
    store: EventStore,
    metrics: Arc<Metrics>,
    settings: ConsumerSettings,
    role: ConsumerRole,
    /// Next offset per partition of everything stored, and released in order, since this
    /// consumer joined the group.
    stored_offsets: Offsets,
    /// Since when this active consumer has been seen waiting for its group join.
    join_waiting_since: Option<tokio::time::Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

impl EventConsumer {
    pub fn new(
        settings: ConsumerSettings,
        store: EventStore,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ConsumerError> {
        let consumer: StreamConsumer<LagContext> = super::base_config(&settings.brokers)
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "5000")
            .set("queued.max.messages.kbytes", "2048")
            // librdkafka pauses a partition's fetching for this long once its prefetch queue
            // is full (default 1 s): the consumer then drained the queue and waited on the
            // broker, capped near 59,000 events/s (docs/benchmarks.md, issue 15).
            .set("fetch.queue.backoff.ms", "10")
            .set("fetch.max.bytes", "4194304")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .create_with_context(LagContext {
                metrics: metrics.clone(),
                assigned: AtomicUsize::new(0),
                joined: AtomicBool::new(false),
            })?;
        let dlq: FutureProducer = super::base_config(&settings.brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .create()?;
        Ok(EventConsumer {
            consumer: Arc::new(consumer),
            dlq,
            store,
            metrics,
            settings,
            role: ConsumerRole::Standby,
            stored_offsets: Offsets::new(),
            join_waiting_since: None,
        })
    }

    /// Runs until `shutdown`: stores batches while active, obeys role requests in between.
    pub async fn run(
        mut self,
        initial: ConsumerRole,
        mut requests: mpsc::Receiver<RoleRequest>,
        shutdown: CancellationToken,
    ) {
        if let Err(e) = self.switch(initial, JOIN_WAIT).await {
            tracing::error!(error = %e, "could not take the initial consumer role");
        }
        let mut join_watch = tokio::time::interval(JOIN_WATCH);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(req) = requests.recv() => {
                    let result = self.switch(req.role, JOIN_WAIT).await.map_err(|e| e.to_string());
                    let _ = req.reply.send(result);
                }
                _ = join_watch.tick() => self.watch_join(),
                // Polled in both roles: librdkafka serves rebalance events only while polled,
                // and a standby that stopped polling mid-join would hold partitions hostage.
                first = recv_one(&self.consumer) => {
                    match first {
                        Ok(record) if self.role == ConsumerRole::Active => self.handle_batches(record, &requests, &shutdown).await,
                        Ok(record) => tracing::debug!(partition = record.partition, offset = record.offset, "standby: record dropped, not stored or committed"),
                        Err(e) => {
                            tracing::warn!(error = %e, "kafka receive error");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
        }
        self.stop().await;
    }

    /// Subscribes: a group join begins, and no assignment has come from it yet.
    fn join_group(&self) -> Result<(), KafkaError> {
        self.consumer
            .context()
            .joined
            .store(false, Ordering::SeqCst);
        self.consumer.subscribe(&[&self.settings.topic])
    }

    /// The last rebalance event was an assignment: no group join is in flight.
    fn joined(&self) -> bool {
        self.consumer.context().joined.load(Ordering::SeqCst)
    }

    /// Starts the group join again when this active consumer has waited for it longer than
    /// [`JOIN_PATIENCE`]: a join round that never ends (a coordinator that lost track of the
    /// round) would otherwise leave every partition unconsumed, silently, for good. Nothing is
    /// in flight while no partition is assigned, so leaving and joining again loses nothing.
    fn watch_join(&mut self) {
        if self.role != ConsumerRole::Active || self.joined() {
            self.join_waiting_since = None;
            return;
        }
        let now = tokio::time::Instant::now();
        let since = *self.join_waiting_since.get_or_insert(now);
        if now.duration_since(since) < JOIN_PATIENCE {
            return;
        }
        tracing::warn!(waited = ?now.duration_since(since), "the group join has not completed; leaving the group and joining again");
        self.metrics.consumer_rejoins.inc();
        self.consumer.unsubscribe();
        if let Err(e) = self.join_group() {
            tracing::warn!(error = %e, "subscribing again failed; retried at the next look");
        }
        self.join_waiting_since = Some(now);
    }

    /// `join_wait` bounds how long a switch to standby first lets a group join in flight
    /// finish (see [`Self::finish_join`]).
    async fn switch(
        &mut self,
        role: ConsumerRole,
        join_wait: Duration,
    ) -> Result<ConsumerRole, ConsumerError> {
        if role == self.role {
            return Ok(role);
        }
        match role {
            ConsumerRole::Active => {
                self.join_group()?;
            }
            ConsumerRole::Standby => {
                self.finish_join(join_wait).await;
                let offsets = std::mem::take(&mut self.stored_offsets);
                tokio::task::block_in_place(|| self.commit(&offsets, CommitMode::Sync));
                self.hear_of_rebalance(join_wait).await;
                self.consumer.unsubscribe();
                self.wait_until_unassigned(Duration::from_secs(10)).await;
                // The partitions are given back locally at once, but the LeaveGroup request
                // travels on: the operator activates the next release the moment this answer
                // arrives, and that release's JoinGroup must not reach the coordinator first
                // (a join round that still counts this member, which then leaves mid-round).
                self.poll_until(LEAVE_TRAVEL, || false).await;
            }
        }
        self.role = role;
        self.metrics
            .consumer_active
            .set(i64::from(role == ConsumerRole::Active));
        tracing::info!(role = role.as_str(), "consumer role switched");
        Ok(role)
    }

    /// Lets a group join in flight (subscribed or revoked, no assignment since) complete
    /// before leaving.
    /// Leaving mid-join costs the group another rebalance round, and tansu 0.6 (the test
    /// broker until 2026-12-07) then kept the departed member as the group's leader so that
    /// nobody was ever assigned a partition again: a rollback right after an activation met
    /// exactly that.
    async fn finish_join(&self, limit: Duration) {
        if self.role != ConsumerRole::Active || self.joined() {
            return;
        }
        if !self.poll_until(limit, || self.joined()).await {
            tracing::warn!(?limit, "group join still in flight; leaving anyway");
        }
    }

    /// Leaves only between join rounds. A round may have begun since [`Self::finish_join`]
    /// looked: another member left (the operator switches a release's consumer pods one after
    /// the other), or a broker pause expired this member's session while it committed. The
    /// member hears of it at its next heartbeat, so it listens that long, and lets a round it
    /// heard of finish before it goes.
    async fn hear_of_rebalance(&self, join_wait: Duration) {
        if self.role != ConsumerRole::Active {
            return;
        }
        if self.poll_until(REBALANCE_NEWS, || !self.joined()).await {
            tracing::info!("a group rebalance began before leaving; letting it finish first");
            self.finish_join(join_wait).await;
        }
    }

    /// Polls (dropping anything fetched) until the group has taken our partitions back, so
    /// the caller may activate another member right after.
    async fn wait_until_unassigned(&self, limit: Duration) {
        let unassigned = || self.consumer.context().assigned.load(Ordering::SeqCst) == 0;
        if !self.poll_until(limit, unassigned).await {
            tracing::warn!("partitions still assigned after leaving the group");
        }
    }

    /// Serves the consumer's rebalance events (dropping, never storing or committing, any
    /// record fetched) until `done` holds or `limit` passes; answers whether `done` held.
    async fn poll_until(&self, limit: Duration, done: impl Fn() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !done() && tokio::time::Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(50), recv_one(&self.consumer)).await;
        }
        done()
    }

    /// Stores batches as a pipeline of at most [`ConsumerSettings::in_flight`] batches taken off Kafka and
    /// not yet committed: while one is stored, the next is gathered, parsed and stored beside
    /// it on a second connection, so the first one's execution and commit in PostgreSQL
    /// overlap the second one's encoding, sending and binding. Offsets are committed only
    /// after their batch is stored and strictly in the order the batches were taken
    /// ([`CommitOrder`]). Returns once the consumer has nothing more at hand, or a role request
    /// or shutdown is waiting, and every batch taken is stored (or, on shutdown, given up
    /// uncommitted). Never cancelled half way: records taken from the consumer are stored or
    /// the process stops uncommitted.
    async fn handle_batches(
        &mut self,
        first: Record,
        requests: &mpsc::Receiver<RoleRequest>,
        shutdown: &CancellationToken,
    ) {
        let mut order = CommitOrder::default();
        let mut storing = JoinSet::new();
        let mut ready = self.ready(vec![first], shutdown).await;
        let mut gathering = ready.is_some();
        loop {
            if let Some(batch) = ready.take() {
                self.start_storing(batch, &mut order, &mut storing, shutdown);
            }
            gathering &= !shutdown.is_cancelled() && requests.is_empty();
            let step = if gathering && order.in_flight() < self.settings.in_flight {
                self.take_or_finish(&mut storing, shutdown).await
            } else {
                match storing.join_next().await {
                    Some(done) => Step::Finished(done),
                    None => return,
                }
            };
            match step {
                Step::Taken(batch) => ready = Some(*batch),
                Step::Finished(done) => {
                    if !self.settle(done, &mut order) {
                        return;
                    }
                }
                Step::Idle => gathering = false,
            }
        }
    }

    /// With room for another batch: gathers it at once when nothing is being stored, else
    /// whichever comes first, a record (then the batch it starts) or a store finishing.
    /// Cancel-safe waits only: no record taken is ever dropped.
    async fn take_or_finish(
        &self,
        storing: &mut JoinSet<StoreOutcome>,
        shutdown: &CancellationToken,
    ) -> Step {
        if storing.is_empty() {
            return self
                .ready(Vec::new(), shutdown)
                .await
                .map_or(Step::Idle, |b| Step::Taken(Box::new(b)));
        }
        tokio::select! {
            biased;
            Some(done) = storing.join_next() => Step::Finished(done),
            first = recv_one(&self.consumer) => match first {
                Ok(record) => self.ready(vec![record], shutdown).await.map_or(Step::Idle, |b| Step::Taken(Box::new(b))),
                Err(e) => {
                    tracing::warn!(error = %e, "kafka receive error");
                    Step::Idle
                }
            },
        }
    }

    /// Takes a batch's place in the commit order and stores it on a task of its own (its own
    /// pool connection), retrying until it is stored or shutdown.
    fn start_storing(
        &self,
        batch: ReadyBatch,
        order: &mut CommitOrder,
        storing: &mut JoinSet<StoreOutcome>,
        shutdown: &CancellationToken,
    ) {
        let ReadyBatch {
            columns,
            offsets,
            records,
        } = batch;
        let ticket = order.taken(offsets);
        let (store, metrics) = (self.store.clone(), self.metrics.clone());
        let shutdown = shutdown.clone();
        storing.spawn(async move {
            let stored = store_with_retry(&store, &metrics, &columns, &shutdown).await;
            if stored {
                metrics.consumer_batch_size.observe(records as f64);
            }
            (ticket, stored)
        });
    }

    /// A finished store: commits the offsets it released (its own and those of later batches
    /// stored before it). False when the store gave up (shutdown): nothing from that batch on
    /// may be committed. A panic in the store is passed on, as it was before the pipeline.
    fn settle(&mut self, done: Result<StoreOutcome, JoinError>, order: &mut CommitOrder) -> bool {
        let (ticket, stored) = match done {
            Ok(done) => done,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => return false,
            },
        };
        if stored {
            self.commit_released(order.stored(ticket));
        }
        stored
    }

    /// Takes records off the consumer without waiting for more than a moment, until the batch
    /// reaches its limits: a backlog fills whole batches, a trickle is stored as it comes.
    async fn gather(&self, mut batch: Vec<Record>) -> Vec<Record> {
        let mut bytes: usize = batch.iter().map(|r| r.payload.len()).sum();
        while !self.settings.batch.full(batch.len(), bytes) {
            match tokio::time::timeout(Duration::from_millis(2), recv_one(&self.consumer)).await {
                Ok(Ok(record)) => {
                    bytes += record.payload.len();
                    batch.push(record);
                }
                _ => break,
            }
        }
        batch
    }

    /// Gathers a batch (starting from `batch`), parses it, dead-letters what is not an event
    /// and numbers the events ([`Self::numbered`]); None when nothing was at hand, or on
    /// shutdown. Called for one batch after another, in the order they are taken.
    async fn ready(&self, batch: Vec<Record>, shutdown: &CancellationToken) -> Option<ReadyBatch> {
        let batch = self.gather(batch).await;
        if batch.is_empty() {
            return None;
        }
        let (events, rejects) = parse_batch(&batch);
        if !self.dead_letter(&rejects, shutdown).await {
            return None;
        }
        Some(ReadyBatch {
            columns: self.numbered(Columns::of(events), shutdown).await?,
            offsets: next_offsets(&batch),
            records: batch.len(),
        })
    }

    /// Reserves the events' `stored_seq` values, retrying until reserved or shutdown (None).
    /// Reserved batch after batch in the order they were taken, before any is stored, so two
    /// batches stored at once still number each user's (each partition's) events in order.
    async fn numbered(&self, columns: Columns, shutdown: &CancellationToken) -> Option<Columns> {
        let mut attempt = 0;
        loop {
            match self.store.reserve_seqs(columns.len()).await {
                Ok(seqs) => return Some(columns.with_seqs(seqs)),
                Err(e) => {
                    self.metrics.fail("store");
                    tracing::warn!(error = %e, attempt, "numbering a batch failed; retrying, offsets kept");
                }
            }
            if !sleep_unless_cancelled(Backoff::STARTUP.delay(attempt), shutdown).await {
                return None;
            }
            attempt += 1;
        }
    }

    /// Commits offsets released in order, and remembers them for the sync commit on leaving.
    fn commit_released(&mut self, offsets: Offsets) {
        self.commit(&offsets, CommitMode::Async);
        merge(&mut self.stored_offsets, offsets);
    }

    async fn dead_letter(
        &self,
        rejects: &[(&Record, String)],
        shutdown: &CancellationToken,
    ) -> bool {
        for (record, reason) in rejects {
            let mut attempt = 0;
            while let Err(e) = self.send_to_dlq(record, reason).await {
                self.metrics.fail("dead_letter");
                tracing::warn!(error = %e, "dead-letter produce failed; retrying");
                if !sleep_unless_cancelled(Backoff::STARTUP.delay(attempt), shutdown).await {
                    return false;
                }
                attempt += 1;
            }
            self.metrics.events_dead_lettered.inc();
            tracing::warn!(partition = record.partition, offset = record.offset, reason = %reason, "record dead-lettered");
        }
        true
    }

    async fn send_to_dlq(&self, record: &Record, reason: &str) -> Result<(), KafkaError> {
        let source = format!(
            "{}/{}/{}",
            self.settings.topic, record.partition, record.offset
        );
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "auren-dlq-reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "auren-dlq-source",
                value: Some(&source),
            });
        let msg = FutureRecord::<(), _>::to(&self.settings.dlq_topic)
            .payload(&record.payload)
            .headers(headers);
        self.dlq
            .send(msg, Duration::from_secs(1))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }

    fn commit(&self, offsets: &Offsets, mode: CommitMode) {
        if offsets.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (&partition, &offset) in offsets {
            if let Err(e) =
                tpl.add_partition_offset(&self.settings.topic, partition, Offset::Offset(offset))
            {
                tracing::warn!(error = %e, "building commit list failed");
            }
        }
        if let Err(e) = self.consumer.commit(&tpl, mode) {
            tracing::warn!(error = %e, "offset commit failed; the batch may be redelivered (a no-op)");
        }
    }

    /// Commits synchronously and leaves the group; the consumer itself is dropped off the async
    /// threads with a deadline, because dropping a consumer with buffered records can hang.
    async fn stop(mut self) {
        if let Err(e) = self
            .switch(ConsumerRole::Standby, JOIN_WAIT_AT_SHUTDOWN)
            .await
        {
            tracing::warn!(error = %e, "leaving the group failed");
        }
        let consumer = self.consumer.clone();
        drop(self);
        let closing = tokio::task::spawn_blocking(move || drop(consumer));
        if tokio::time::timeout(Duration::from_secs(5), closing)
            .await
            .is_err()
        {
            tracing::warn!("kafka consumer close timed out; leaving it to process exit");
        }
    }
}

/// Stores a batch, retrying with backoff until it is stored (true) or shutdown (false).
async fn store_with_retry(
    store: &EventStore,
    metrics: &Metrics,
    columns: &Columns,
    shutdown: &CancellationToken,
) -> bool {
    let mut attempt = 0;
    loop {
        match store.store_batch(columns).await {
            Ok(new) => {
                metrics.events_stored.inc_by(new);
                return true;
            }
            Err(e) => {
                metrics.fail("store");
                tracing::warn!(error = %e, attempt, "storing batch failed; retrying, offsets kept");
            }
        }
        if !sleep_unless_cancelled(Backoff::STARTUP.delay(attempt), shutdown).await {
            return false;
        }
        attempt += 1;
    }
}

/// Takes one record off the consumer and owns it. Cancel-safe: a dropped call takes nothing.
async fn recv_one(consumer: &StreamConsumer<LagContext>) -> Result<Record, KafkaError> {
    let m = consumer.recv().await?;
    Ok(Record {
        partition: m.partition(),
        offset: m.offset(),
        payload: m.payload().unwrap_or_default().to_vec(),
    })
}

/// The offset to commit per partition: one past the last record of the batch.
fn next_offsets(batch: &[Record]) -> Offsets {
    let mut next = Offsets::new();
    for r in batch {
        let e = next.entry(r.partition).or_insert(0);
        *e = (*e).max(r.offset + 1);
    }
    next
}

fn parse_batch(batch: &[Record]) -> (Vec<StoredRecord>, Vec<(&Record, String)>) {
    let mut events = Vec::with_capacity(batch.len());
    let mut rejects = Vec::new();
    for record in batch {
        match serde_json::from_slice::<StoredEvent>(&record.payload) {
            Ok(event) => events.push(StoredRecord {
                event,
                partition: record.partition,
                offset: record.offset,
            }),
            Err(e) => rejects.push((record, format!("not an AUREN event: {e}"))),
        }
    }
    (events, rejects)
}

/// Sleeps; false when shutdown came first.
async fn sleep_unless_cancelled(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unparseable_records_are_set_aside_with_a_reason() {
        let good = serde_json::json!({
            "id": "0193a1b2-0000-7000-8000-000000000001", "user_id": "u1", "device": "oura",
            "metric": "steps", "value": 3.0, "unit": "count",
            "recorded_at": "2026-11-26T11:00:00Z", "received_at": "2026-11-26T11:00:01Z", "raw": {}
        });
        let batch = vec![
            Record {
                partition: 0,
                offset: 7,
                payload: serde_json::to_vec(&good).unwrap(),
            },
            Record {
                partition: 0,
                offset: 8,
                payload: b"garbage".to_vec(),
            },
        ];
        let (events, rejects) = parse_batch(&batch);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].offset, 7);
        assert_eq!(rejects.len(), 1);
        assert_eq!(rejects[0].0.offset, 8);
        assert!(rejects[0].1.contains("not an AUREN event"));
    }

    #[test]
    fn a_batch_is_full_at_either_limit() {
        let limits = BatchLimits {
            events: 3,
            bytes: 100,
        };
        assert!(!limits.full(0, 0));
        assert!(!limits.full(2, 20));
        assert!(limits.full(3, 3));
        assert!(limits.full(1, 100));
    }
}
