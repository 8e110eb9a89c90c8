//! What webhooks.tracked says of the table a statement wrote, kept by each backend.
//!
//! Why kept: reading it on every statement (the table and its index opened and locked, a fresh
//! snapshot, an index scan) cost a single-row write as much as making its row image
//! (BENCHMARKS.md, "The tracking kept per backend"). A kept entry is forgotten when PostgreSQL
//! invalidates the relcache entry of the relation written (DDL on it, a partition attached or
//! detached), of its tracked root, or of webhooks.tracked itself, which its triggers do for
//! every change of its rows (capture/kept.rs).

use super::kept::{changes_are_announced, Read};
use super::outbox::{first_row, partition_root, relation_oid, SCHEMA};
use super::CaptureError;
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;

/// What webhooks.tracked says of the table a statement wrote: the event name's entity and the
/// event's source (the table itself, or the root of its partition tree).
#[derive(Clone)]
pub(super) struct Tracking {
    pub(super) entity: Vec<u8>,
    pub(super) source: pg_sys::Oid,
    /// The extension's schema: an entry kept under another schema (the extension made anew)
    /// is not used.
    pub(super) namespace: pg_sys::Oid,
}

#[derive(Default)]
struct Kept {
    /// webhooks.tracked: an invalidation of it forgets everything.
    tracked_table: pg_sys::Oid,
    /// By the relation a statement wrote (a partition, or the tracked table itself).
    by_relation: HashMap<pg_sys::Oid, Tracking>,
}

thread_local! {
    static KEPT: RefCell<Kept> = RefCell::new(Kept::default());
}

/// The triggers that invalidate webhooks.tracked for every change of its rows.
const ANNOUNCED_BY: [&CStr; 2] = [
    c"tracking_reaches_writers",
    c"tracking_reaches_writers_on_truncate",
];

/// The tracking of the table written (the root of its partition tree, as pg_partition_root()
/// names it); None when it is not tracked.
pub(super) unsafe fn tracking_of(
    relation: pg_sys::Relation,
) -> Result<Option<Tracking>, CaptureError> {
    let relid = (*relation).rd_id;
    let namespace = pg_sys::get_namespace_oid(SCHEMA.as_ptr(), false);
    let kept = KEPT.with_borrow(|kept| {
        kept.by_relation
            .get(&relid)
            .filter(|tracking| tracking.namespace == namespace)
            .cloned()
    });
    if kept.is_some() {
        return Ok(kept);
    }
    let read_begun = Read::begin();
    let tracked_table = relation_oid(namespace, c"tracked")?;
    let announced = changes_are_announced(namespace, c"tracked", ANNOUNCED_BY)?;
    let read = read_tracking(relation, namespace)?;
    if let Some(tracking) = read
        .as_ref()
        .filter(|_| announced && read_begun.may_be_kept())
    {
        KEPT.with_borrow_mut(|kept| {
            kept.tracked_table = tracked_table;
            kept.by_relation.insert(relid, tracking.clone());
        });
    }
    Ok(read)
}

/// The tracking row, read with the latest snapshot: what is kept must be what is committed now
/// (and this transaction's own changes), not what a repeatable-read snapshot saw, or a change
/// whose invalidation was already processed would never be read.
unsafe fn read_tracking(
    relation: pg_sys::Relation,
    namespace: pg_sys::Oid,
) -> Result<Option<Tracking>, CaptureError> {
    let source = partition_root(relation);
    let key = Some((c"source", source));
    first_row(namespace, c"tracked", c"tracked_pkey", key, |row| {
        // NOT NULL in webhooks.tracked
        let Some(entity) = row.value(c"entity")? else {
            return Ok(None);
        };
        let entity = pg_sys::text_to_cstring(entity.cast_mut_ptr());
        Ok(Some(Tracking {
            entity: CStr::from_ptr(entity).to_bytes().to_vec(),
            source,
            namespace,
        }))
    })
}

/// Forgets what an invalidation of `relid` may have changed (InvalidOid: everything).
pub(super) fn forget(relid: pg_sys::Oid) {
    KEPT.with_borrow_mut(|kept| {
        if relid == pg_sys::InvalidOid || relid == kept.tracked_table {
            kept.by_relation.clear();
        } else {
            kept.by_relation
                .retain(|&written, tracking| written != relid && tracking.source != relid);
        }
    });
}
