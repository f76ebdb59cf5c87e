//! Which offset of each partition may be committed: every record before it
//! has been settled (handed on and let go by every consumer), so that a
//! commit never passes a record a route still holds.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{Consumer as _, StreamConsumer};

/// One partition's records in hand and the latest record read.
#[derive(Default)]
struct Partition {
    in_hand: BTreeSet<i64>,
    latest: i64,
    stored: Option<i64>,
}

impl Partition {
    /// The last offset every record up to which is settled.
    fn settled_through(&self) -> i64 {
        match self.in_hand.first() {
            Some(&first) => first - 1,
            None => self.latest,
        }
    }
}

/// The records of one consumer that are in hand, by partition.
#[derive(Clone)]
pub(super) struct Offsets {
    consumer: Arc<StreamConsumer>,
    partitions: Arc<Mutex<HashMap<(String, i32), Partition>>>,
}

impl Offsets {
    pub(super) fn new(consumer: Arc<StreamConsumer>) -> Self {
        Self {
            consumer,
            partitions: Arc::default(),
        }
    }

    /// Records that `offset` was read and handed on; it stays in hand
    /// until [`Offsets::settled`].
    pub(super) fn taken(&self, topic: &str, partition: i32, offset: i64) {
        self.update(topic, partition, |p| {
            p.in_hand.insert(offset);
            p.latest = p.latest.max(offset);
        });
    }

    /// Records that `offset` was read and is not for this consumer.
    pub(super) fn skipped(&self, topic: &str, partition: i32, offset: i64) {
        self.update(topic, partition, |p| p.latest = p.latest.max(offset));
    }

    /// Records that every consumer is done with `offset`.
    pub(super) fn settled(&self, topic: &str, partition: i32, offset: i64) {
        self.update(topic, partition, |p| {
            p.in_hand.remove(&offset);
        });
    }

    /// Applies `change` and stores the partition's offset for the next
    /// commit when it has moved on.
    fn update(&self, topic: &str, partition: i32, change: impl FnOnce(&mut Partition)) {
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let key = (topic.to_owned(), partition);
        let entry = partitions.entry(key).or_insert_with(|| Partition {
            latest: -1,
            ..Partition::default()
        });
        change(entry);
        let through = entry.settled_through();
        if through >= 0 && entry.stored.is_none_or(|stored| through > stored) {
            // librdkafka commits the stored offset plus one: the next
            // record to read. It fails only for a partition no longer
            // assigned, whose offsets are no longer this consumer's.
            if self
                .consumer
                .store_offset(topic, partition, through)
                .is_ok()
            {
                entry.stored = Some(through);
            }
        }
    }
}
