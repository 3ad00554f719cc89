//! The witness of a missing event against a real broker: a record the group committed past is
//! reported as skipped, one at the commit as still to be read, and a marker the topic never
//! held as absent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use auren_testkit::stored::marker;
use auren_testkit::witness::Witness;
use auren_testkit::{Broker, unique};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

#[test]
fn a_record_committed_past_is_skipped_one_at_the_commit_is_not_and_an_unsent_one_is_absent() {
    let broker = Broker::shared();
    let topic = unique("witness");
    let group = unique("witness_group");
    broker.create_topic(&topic);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .unwrap();
    let sent: Vec<String> = (0..3).map(|_| marker()).collect();
    for m in &sent {
        let payload = format!(r#"{{"payload":{{"timestamp":"{m}"}}}}"#);
        producer
            .send(
                BaseRecord::<(), _>::to(&topic)
                    .partition(0)
                    .payload(&payload),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    // The group has read and committed the first two records of partition 0.
    let committer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset(&topic, 0, Offset::Offset(2))
        .unwrap();
    committer.commit(&commit, CommitMode::Sync).unwrap();

    let never_sent = marker();
    let missing = vec![sent[0].clone(), sent[2].clone(), never_sent.clone()];
    let witness = Witness {
        broker: broker.addr.clone(),
        topic,
        group,
    };
    let places = witness.locate(&missing).unwrap();
    let skipped: Vec<&str> = places
        .found
        .iter()
        .filter(|f| f.skipped())
        .map(|f| f.marker.as_str())
        .collect();
    let behind: Vec<&str> = places
        .found
        .iter()
        .filter(|f| !f.skipped())
        .map(|f| f.marker.as_str())
        .collect();
    assert_eq!(skipped, [sent[0].as_str()], "{places}");
    assert_eq!(behind, [sent[2].as_str()], "{places}");
    assert_eq!(places.absent, [never_sent], "{places}");
}
