//! "Every accepted event is stored exactly once", checked per request, not per id.
//!
//! The store's primary key is the event id, so counting rows against distinct ids can never
//! see a duplicate: the same event stored twice would be stored under two ids. Instead each
//! request a test client sends carries a [`marker`] of its own in its payload (the reading's
//! `timestamp`: the runtime refuses unknown payload fields, so no extra one can carry it), and
//! the check counts stored rows per marker: every accepted marker exactly once, under the id
//! the API answered with, and no marker (accepted or not) twice.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, PgConnection};

use crate::witness::Witness;

/// The payload field that carries the marker.
pub const MARKER_FIELD: &str = "timestamp";

static NEXT_MARKER: AtomicU64 = AtomicU64::new(0);

/// A reading time no other call in this process returns: 2025-01-01 plus one millisecond per
/// call (in the past, so the runtime accepts it; wraps after a day of milliseconds, 86.4
/// million calls, far beyond any test). Each test stores into a database of its own, so
/// unique in the process is unique in the database.
pub fn marker() -> String {
    let ms = NEXT_MARKER.fetch_add(1, Ordering::Relaxed) % 86_400_000;
    format!(
        "2025-01-01T{:02}:{:02}:{:02}.{:03}Z",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// The requests the API accepted (202): each one's marker, and the event id it answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted(BTreeMap<String, String>);

impl Accepted {
    pub fn insert(&mut self, marker: String, id: String) {
        self.0.insert(marker, id);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The event ids the API answered.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.values().map(String::as_str)
    }
}

impl Extend<(String, String)> for Accepted {
    fn extend<T: IntoIterator<Item = (String, String)>>(&mut self, pairs: T) {
        self.0.extend(pairs);
    }
}

impl IntoIterator for Accepted {
    type Item = (String, String);
    type IntoIter = std::collections::btree_map::IntoIter<String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl FromIterator<(String, String)> for Accepted {
    fn from_iter<T: IntoIterator<Item = (String, String)>>(pairs: T) -> Self {
        Accepted(pairs.into_iter().collect())
    }
}

/// What the store holds against what was accepted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Accepted markers with no stored row.
    pub missing: Vec<String>,
    /// Markers stored more than once, with the ids they were stored under.
    pub duplicated: Vec<(String, Vec<String>)>,
    /// Accepted markers stored once, but under another id than the API answered: (marker,
    /// answered id, stored id).
    pub other_id: Vec<(String, String, String)>,
    /// Accepted markers later than the first missing one that are stored: 0 when what is
    /// missing is the newest events (a consumer behind or stuck), more when it is a gap.
    pub stored_after_missing: usize,
}

impl Verdict {
    /// Something was stored twice or under the wrong id: no later moment can undo it.
    pub fn broken(&self) -> bool {
        !self.duplicated.is_empty() || !self.other_id.is_empty()
    }

    /// Every accepted event stored exactly once, and nothing stored twice.
    pub fn holds(&self) -> bool {
        !self.broken() && self.missing.is_empty()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 5;
        write!(
            f,
            "{} accepted but not stored {:?} .. {:?} ({} accepted later than the first of them are stored); {} stored more than once {:?}; {} stored under another id than answered {:?}",
            self.missing.len(),
            &self.missing[..self.missing.len().min(SHOWN)],
            &self.missing[self.missing.len().saturating_sub(SHOWN)..],
            self.stored_after_missing,
            self.duplicated.len(),
            &self.duplicated[..self.duplicated.len().min(SHOWN)],
            self.other_id.len(),
            &self.other_id[..self.other_id.len().min(SHOWN)],
        )
    }
}

/// Judges `stored` rows (marker, id) against `accepted`. Rows without a marker (events the
/// test did not mark) are left out.
pub fn judge(accepted: &Accepted, stored: &[(Option<String>, String)]) -> Verdict {
    let mut by_marker: HashMap<&str, Vec<&str>> = HashMap::new();
    for (marker, id) in stored {
        if let Some(marker) = marker {
            by_marker.entry(marker).or_default().push(id);
        }
    }
    let mut verdict = Verdict::default();
    for (marker, answered) in &accepted.0 {
        match by_marker.get(marker.as_str()).map(Vec::as_slice) {
            None => verdict.missing.push(marker.clone()),
            Some([id]) if id != answered => {
                verdict
                    .other_id
                    .push((marker.clone(), answered.clone(), (*id).to_owned()))
            }
            Some(_) => {}
        }
    }
    if let Some(first) = verdict.missing.first() {
        verdict.stored_after_missing = accepted
            .0
            .range::<str, _>((
                std::ops::Bound::Excluded(first.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .filter(|(marker, _)| by_marker.contains_key(marker.as_str()))
            .count();
    }
    let mut twice: Vec<(String, Vec<String>)> = by_marker
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(marker, ids)| {
            (
                marker.to_owned(),
                ids.into_iter().map(str::to_owned).collect(),
            )
        })
        .collect();
    twice.sort();
    verdict.duplicated = twice;
    verdict
}

/// Every stored event's marker and id, from the runtime's `events` table at `url`.
pub async fn stored_markers(url: &str) -> Result<Vec<(Option<String>, String)>, sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    let query = format!("SELECT payload->>'{MARKER_FIELD}', id::text FROM events");
    sqlx::query_as(&query).fetch_all(&mut conn).await
}

/// [`judge`] on what the database at `url` holds now.
pub async fn verdict(url: &str, accepted: &Accepted) -> Result<Verdict, sqlx::Error> {
    Ok(judge(accepted, &stored_markers(url).await?))
}

/// Waits at most `timeout` until every accepted event is stored, then returns; panics at once
/// when an event is stored twice or under another id, and at the timeout with what is
/// missing. An empty `accepted` proves nothing, so it panics too.
///
/// No settling sleep after the last arrival: it is itself the later event that rules a late
/// copy out. Each partition is consumed in order and its offset committed only after the
/// store, so a record delivered again (a consumer killed before its commit, a rebalance) is
/// stored again before anything that follows it in its partition, and the test's load posts
/// each user's events (one key, one partition) in order.
pub async fn assert_stored_once(url: &str, accepted: &Accepted, timeout: std::time::Duration) {
    assert_stored_once_or_locate(url, accepted, timeout, None).await;
}

/// [`assert_stored_once`]; at the timeout the failure also says where in the topic each
/// missing event is, and whether the group committed past it ([`Witness`]).
pub async fn assert_stored_once_or_locate(
    url: &str,
    accepted: &Accepted,
    timeout: std::time::Duration,
    witness: Option<&Witness>,
) {
    assert!(
        !accepted.is_empty(),
        "no event was accepted: nothing to check"
    );
    let start = std::time::Instant::now();
    loop {
        // A database that is restarting answers nothing for a moment: ask again.
        if let Ok(v) = verdict(url, accepted).await {
            assert!(!v.broken(), "stored once, checked by marker: {v}");
            if v.holds() {
                return;
            }
            if start.elapsed() >= timeout {
                let whereabouts = match witness {
                    Some(w) => locate(w.clone(), v.missing.clone()).await,
                    None => String::new(),
                };
                panic!("after {timeout:?}, stored once, checked by marker: {v}{whereabouts}");
            }
        } else {
            assert!(
                start.elapsed() < timeout,
                "{url} unreachable for {timeout:?}"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// [`Witness::locate`] off the async runtime, as a sentence for a failure message.
async fn locate(witness: Witness, missing: Vec<String>) -> String {
    let found = tokio::task::spawn_blocking(move || witness.locate(&missing))
        .await
        .map_err(|e| e.to_string())
        .and_then(|located| located);
    match found {
        Ok(whereabouts) => format!("; the missing events {whereabouts}"),
        Err(e) => format!("; the topic could not be read: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(pairs: &[(&str, &str)]) -> Accepted {
        pairs
            .iter()
            .map(|(m, id)| ((*m).to_owned(), (*id).to_owned()))
            .collect()
    }

    fn rows(pairs: &[(&str, &str)]) -> Vec<(Option<String>, String)> {
        pairs
            .iter()
            .map(|(m, id)| (Some((*m).to_owned()), (*id).to_owned()))
            .collect()
    }

    #[test]
    fn markers_are_unique_and_valid_times() {
        let (a, b) = (marker(), marker());
        assert_ne!(a, b);
        for m in [a, b] {
            assert_eq!(m.len(), "2025-01-01T00:00:00.000Z".len(), "{m}");
            assert!(m.starts_with("2025-01-01T") && m.ends_with('Z'), "{m}");
        }
    }

    #[test]
    fn one_row_per_accepted_marker_holds() {
        let v = judge(
            &accepted(&[("m1", "a"), ("m2", "b")]),
            &rows(&[("m1", "a"), ("m2", "b"), ("m3", "c")]),
        );
        assert!(v.holds(), "{v}");
    }

    #[test]
    fn the_same_marker_under_two_ids_is_a_duplicate() {
        let v = judge(
            &accepted(&[("m1", "a")]),
            &rows(&[("m1", "a"), ("m1", "b")]),
        );
        assert!(v.broken() && !v.holds(), "{v}");
        assert_eq!(
            v.duplicated,
            vec![("m1".into(), vec!["a".into(), "b".into()])]
        );
    }

    #[test]
    fn an_unaccepted_request_stored_twice_is_a_duplicate_too() {
        let v = judge(&accepted(&[]), &rows(&[("m9", "x"), ("m9", "y")]));
        assert!(v.broken(), "{v}");
    }

    #[test]
    fn a_missing_marker_is_reported() {
        let v = judge(
            &accepted(&[("m1", "a"), ("m2", "b")]),
            &rows(&[("m1", "a")]),
        );
        assert!(!v.broken() && !v.holds(), "{v}");
        assert_eq!(v.missing, vec!["m2".to_owned()]);
        assert_eq!(v.stored_after_missing, 0, "the newest is missing: a tail");
    }

    #[test]
    fn a_gap_is_told_from_a_tail() {
        let v = judge(
            &accepted(&[("m1", "a"), ("m2", "b"), ("m3", "c"), ("m4", "d")]),
            &rows(&[("m1", "a"), ("m3", "c"), ("m4", "d")]),
        );
        assert_eq!(v.missing, vec!["m2".to_owned()]);
        assert_eq!(v.stored_after_missing, 2, "{v}");
        assert!(v.to_string().contains("(2 accepted later"), "{v}");
    }

    #[test]
    fn a_marker_stored_under_another_id_is_reported() {
        let v = judge(&accepted(&[("m1", "a")]), &rows(&[("m1", "z")]));
        assert!(v.broken(), "{v}");
        assert_eq!(v.other_id, vec![("m1".into(), "a".into(), "z".into())]);
    }

    #[test]
    fn rows_without_a_marker_are_left_out() {
        let stored = vec![(None, "a".to_owned()), (None, "b".to_owned())];
        assert!(judge(&accepted(&[]), &stored).holds());
    }
}
