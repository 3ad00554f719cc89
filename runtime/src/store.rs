//! The PostgreSQL event store: embedded migrations and one transaction per batch.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::ingest::StoredEvent;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// An event with where it came from in Kafka.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub event: StoredEvent,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone)]
pub struct EventStore {
    pool: PgPool,
    /// The batch statement, built once: sqlx prepares it once per connection (cached by text).
    insert: Arc<str>,
}

/// A batch as the columns `UNNEST` takes, built once (moving, not copying, each event's
/// fields) and kept for the retries of its transaction.
#[derive(Default)]
pub struct Columns {
    ids: Vec<uuid::Uuid>,
    users: Vec<String>,
    devices: Vec<String>,
    metrics: Vec<String>,
    values: Vec<f64>,
    units: Vec<String>,
    recorded: Vec<chrono::DateTime<chrono::Utc>>,
    received: Vec<chrono::DateTime<chrono::Utc>>,
    /// JSON text: PostgreSQL parses it into `jsonb`.
    payloads: Vec<String>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    /// Each event's `stored_seq`, reserved in the order the batches were taken off Kafka
    /// ([`EventStore::reserve_seqs`]): two batches stored at once still number a user's events
    /// in their order. Empty: the column's own default (`nextval`) numbers them.
    seqs: Vec<i64>,
}

impl Columns {
    pub fn of(batch: Vec<StoredRecord>) -> Self {
        let mut c = Columns::default();
        for r in batch {
            let e = r.event;
            c.ids.push(e.id);
            c.users.push(e.user_id);
            c.devices.push(e.device.as_str().to_string());
            c.metrics.push(e.metric);
            c.values.push(e.value);
            c.units.push(e.unit);
            c.recorded.push(e.recorded_at);
            c.received.push(e.received_at);
            c.payloads.push(Box::<str>::from(e.raw).into());
            c.partitions.push(r.partition);
            c.offsets.push(r.offset);
        }
        c
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Numbers the events with `seqs` (ascending, one per event) in place of `nextval`.
    pub fn with_seqs(mut self, seqs: Vec<i64>) -> Self {
        self.seqs = seqs;
        self
    }
}

const INSERT_EVENTS: &str = "
    INSERT INTO events (id, user_id, device, metric, value, unit, recorded_at, received_at,
                        payload, kafka_partition, kafka_offset, stored_seq)
    SELECT id, user_id, device, metric, value, unit, recorded_at, received_at, payload,
           kafka_partition, kafka_offset,
           COALESCE(seq, nextval(pg_get_serial_sequence('events', 'stored_seq')))
    FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::float8[],
                $6::text[], $7::timestamptz[], $8::timestamptz[], $9::text[]::jsonb[],
                $10::int[], $11::bigint[], $12::bigint[])
         AS b(id, user_id, device, metric, value, unit, recorded_at, received_at, payload,
              kafka_partition, kafka_offset, seq)
    ON CONFLICT (id) DO NOTHING
    RETURNING user_id, metric, value, unit, recorded_at, kafka_offset";

/// `n` values of the events' `stored_seq` sequence, ascending.
const RESERVE_SEQS: &str = "
    SELECT array_agg(s ORDER BY s) FROM (
        SELECT nextval(pg_get_serial_sequence('events', 'stored_seq')) AS s
        FROM generate_series(1, $1::bigint)
    ) q";

/// Only rows this batch really inserted move the projection, so a redelivery changes nothing.
/// Vendor notifications (unit `notification`) carry no value: they stay out of it.
const PROJECT: &str = "
    , latest AS (
        SELECT DISTINCT ON (user_id, metric) user_id, metric, value, unit, recorded_at,
               count(*) OVER (PARTITION BY user_id, metric) AS n
        FROM inserted WHERE unit <> 'notification' ORDER BY user_id, metric, recorded_at DESC, kafka_offset DESC
    ), projected AS (
        INSERT INTO user_metrics AS m (user_id, metric, latest_value, unit, latest_recorded_at, event_count)
        SELECT user_id, metric, value, unit, recorded_at, n FROM latest
        ON CONFLICT (user_id, metric) DO UPDATE SET
            event_count = m.event_count + EXCLUDED.event_count,
            latest_value = CASE WHEN EXCLUDED.latest_recorded_at >= m.latest_recorded_at
                                THEN EXCLUDED.latest_value ELSE m.latest_value END,
            latest_recorded_at = GREATEST(m.latest_recorded_at, EXCLUDED.latest_recorded_at)
        RETURNING 1
    )";

impl EventStore {
    pub async fn connect(
        url: &str,
        max_connections: u32,
        event_sourcing: bool,
    ) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(3))
            .connect(url)
            .await?;
        Ok(EventStore {
            pool,
            insert: if event_sourcing {
                format!(
                    "WITH inserted AS ({INSERT_EVENTS}) {PROJECT} SELECT count(*) FROM inserted"
                )
            } else {
                format!("WITH inserted AS ({INSERT_EVENTS}) SELECT count(*) FROM inserted")
            }
            .into(),
        })
    }

    /// Runs the embedded migrations. sqlx holds a PostgreSQL advisory lock while it migrates,
    /// so several pods starting at once apply each migration exactly once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations").run(&self.pool).await?;
        Ok(())
    }

    /// Stores a batch; returns how many events were new. The batch is one statement, so
    /// PostgreSQL runs it as one transaction of its own: all of it is stored or none, with no
    /// `BEGIN`/`COMMIT` round trips (two of the three a batch cost) on the consumer's serial path.
    pub async fn store_batch(&self, c: &Columns) -> Result<u64, StoreError> {
        if c.is_empty() {
            return Ok(0);
        }
        let inserted: i64 = sqlx::query_scalar(&self.insert)
            .bind(&c.ids)
            .bind(&c.users)
            .bind(&c.devices)
            .bind(&c.metrics)
            .bind(&c.values)
            .bind(&c.units)
            .bind(&c.recorded)
            .bind(&c.received)
            .bind(&c.payloads)
            .bind(&c.partitions)
            .bind(&c.offsets)
            .bind(&c.seqs)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(inserted).unwrap_or(0))
    }

    /// Reserves `n` ascending `stored_seq` values from the column's sequence (one round trip),
    /// for a batch to be stored with [`Columns::with_seqs`].
    pub async fn reserve_seqs(&self, n: usize) -> Result<Vec<i64>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let seqs: Vec<i64> = sqlx::query_scalar(RESERVE_SEQS)
            .bind(n)
            .fetch_one(&self.pool)
            .await?;
        Ok(seqs)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// (idle, in use) connections of the pool.
    pub fn pool_usage(&self) -> (u32, u32) {
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(size);
        (idle, size.saturating_sub(idle))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
