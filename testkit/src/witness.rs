//! When an accepted event is not stored, where it is: the broker's log, read from the start,
//! against the consumer group's committed offsets. Three answers tell three bugs apart:
//! - not in the topic: the broker lost a record it acknowledged (or the API answered 202
//!   without it);
//! - in the topic, the group's commit past it: the consumer skipped it (data loss in AUREN);
//! - in the topic, the commit not past it: the consumer is behind or stuck (nothing lost).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// The topic and group a test's runtime uses, on a broker the test can reach.
#[derive(Debug, Clone)]
pub struct Witness {
    pub broker: String,
    pub topic: String,
    pub group: String,
}

/// Where one missing marker was found in the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub marker: String,
    pub partition: i32,
    pub offset: i64,
    /// The group's committed offset of that partition (the next record it will read).
    pub committed: Option<i64>,
}

impl Found {
    /// The group committed past this record without storing it.
    pub fn skipped(&self) -> bool {
        self.committed.is_some_and(|c| c > self.offset)
    }
}

/// The places of missing markers, and those the topic does not hold.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Whereabouts {
    pub found: Vec<Found>,
    pub absent: Vec<String>,
}

impl std::fmt::Display for Whereabouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 5;
        let skipped: Vec<&Found> = self.found.iter().filter(|x| x.skipped()).collect();
        write!(
            f,
            "in the topic: {} (the group committed past {} of them: {:?}; first found: {:?}); not in the topic: {} {:?}",
            self.found.len(),
            skipped.len(),
            &skipped[..skipped.len().min(SHOWN)],
            &self.found[..self.found.len().min(SHOWN)],
            self.absent.len(),
            &self.absent[..self.absent.len().min(SHOWN)],
        )
    }
}

/// Every marker (as written by [`crate::stored::marker`]) in a record's payload.
fn markers_in(payload: &str) -> impl Iterator<Item = &str> {
    const PREFIX: &str = "2025-01-01T";
    const LEN: usize = "2025-01-01T00:00:00.000Z".len();
    payload
        .match_indices(PREFIX)
        .filter_map(|(at, _)| payload.get(at..at + LEN))
}

impl Witness {
    /// Reads the whole topic and the group's commits, and places each of `missing`.
    pub fn locate(&self, missing: &[String]) -> Result<Whereabouts, String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.broker)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(|e| e.to_string())?;
        let timeout = Duration::from_secs(10);
        let metadata = consumer
            .fetch_metadata(Some(&self.topic), timeout)
            .map_err(|e| e.to_string())?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut list = TopicPartitionList::new();
        for p in &partitions {
            list.add_partition(&self.topic, *p);
        }
        let committed: BTreeMap<i32, i64> = consumer
            .committed_offsets(list.clone(), timeout)
            .map_err(|e| e.to_string())?
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect();
        let mut ends = BTreeMap::new();
        for p in &partitions {
            let (_, high) = consumer
                .fetch_watermarks(&self.topic, *p, timeout)
                .map_err(|e| e.to_string())?;
            ends.insert(*p, high);
            list.set_partition_offset(&self.topic, *p, Offset::Beginning)
                .map_err(|e| e.to_string())?;
        }
        consumer.assign(&list).map_err(|e| e.to_string())?;
        let wanted: HashSet<&str> = missing.iter().map(String::as_str).collect();
        let mut places = Whereabouts::default();
        let mut seen = HashSet::new();
        let mut read: BTreeMap<i32, i64> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while ends
            .iter()
            .any(|(p, end)| read.get(p).copied().unwrap_or(0) < *end)
        {
            if Instant::now() > deadline {
                return Err(format!("read {read:?} of {ends:?} in 60 s"));
            }
            let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let message = message.map_err(|e| e.to_string())?;
            read.insert(message.partition(), message.offset() + 1);
            let payload = String::from_utf8_lossy(message.payload().unwrap_or_default());
            for marker in markers_in(&payload) {
                if wanted.contains(marker) && seen.insert(marker.to_owned()) {
                    places.found.push(Found {
                        marker: marker.to_owned(),
                        partition: message.partition(),
                        offset: message.offset(),
                        committed: committed.get(&message.partition()).copied(),
                    });
                }
            }
        }
        places.absent = missing
            .iter()
            .filter(|m| !seen.contains(m.as_str()))
            .cloned()
            .collect();
        Ok(places)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_marker_in_a_payload() {
        let payload = r#"{"a":"2025-01-01T00:00:06.253Z","b":[{"timestamp":"2025-01-01T01:02:03.004Z"}],"c":"2025-01-01T"}"#;
        let found: Vec<&str> = markers_in(payload).collect();
        assert_eq!(
            found,
            ["2025-01-01T00:00:06.253Z", "2025-01-01T01:02:03.004Z"]
        );
    }

    #[test]
    fn a_commit_past_a_record_is_a_skip_and_one_at_it_is_not() {
        let at = |committed| Found {
            marker: "m".into(),
            partition: 0,
            offset: 7,
            committed,
        };
        assert!(at(Some(8)).skipped());
        assert!(!at(Some(7)).skipped());
        assert!(!at(None).skipped());
    }
}
