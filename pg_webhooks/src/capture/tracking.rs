//! What webhooks.tracked says of the table a statement wrote, kept by each backend.
//!
//! Why kept: reading it on every statement (the table and its index opened and locked, a fresh
//! snapshot, an index scan) cost a single-row write as much as making its row image
//! (BENCHMARKS.md, "The tracking kept per backend"). A kept entry is forgotten when PostgreSQL
//! invalidates the relcache entry of the relation written (DDL on it, a partition attached or
//! detached), of its tracked root, or of webhooks.tracked itself: the triggers
//! `tracking_reaches_writers` (sql/30_capture.sql) send that for every change of its rows, so
//! even an UPDATE by hand reaches every backend. Invalidations are read before each statement's
//! capture: a change another session committed applies from the writer's next statement after
//! its invalidation arrives, right after its commit (the writer's own change at once). While
//! those triggers are not all enabled ALWAYS, nothing is kept and every statement reads the
//! tracking again.
//!
//! Each backend that writes a tracked table takes one of PostgreSQL's relcache callback slots
//! (ten per backend in all, shared with other extensions; none left is a FATAL error).

use super::outbox::{first_row, open, partition_root, relation_oid, SCHEMA};
use super::CaptureError;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
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
    /// Counts relcache invalidations, so that a read that one overtook is not kept.
    static INVALIDATIONS: Cell<u64> = const { Cell::new(0) };
    static LISTENING: Cell<bool> = const { Cell::new(false) };
}

/// The tracking of the table written (the root of its partition tree, as pg_partition_root()
/// names it); None when it is not tracked.
pub(super) unsafe fn tracking_of(
    relation: pg_sys::Relation,
) -> Result<Option<Tracking>, CaptureError> {
    let relid = (*relation).rd_id;
    // a kept entry takes no lock on webhooks.tracked, which would read them otherwise
    pg_sys::AcceptInvalidationMessages();
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
    listen_for_invalidations();
    let before = INVALIDATIONS.get();
    let tracked_table = relation_oid(namespace, c"tracked")?;
    let announced = changes_are_announced(namespace)?;
    let read = read_tracking(relation, namespace)?;
    // an invalidation processed during the read may be for a change the read did not see
    let current = INVALIDATIONS.get() == before;
    if let Some(tracking) = read.as_ref().filter(|_| announced && current) {
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

/// Whether every change of webhooks.tracked invalidates it: both triggers that do so are there
/// and fire ALWAYS. Disabled, turned to ORIGIN by a restore's ENABLE TRIGGER (then changes a
/// replica applies pass unseen), or missing (the 0.1.0 schema under this library, before ALTER
/// EXTENSION UPDATE), nothing is kept. Changing them invalidates the table, which forgets all.
unsafe fn changes_are_announced(namespace: pg_sys::Oid) -> Result<bool, CaptureError> {
    let tracked = open(namespace, c"tracked", pg_sys::AccessShareLock)?;
    let triggers = (*tracked).trigdesc;
    let firing_always = |name: &CStr| {
        !triggers.is_null()
            && (0..usize::try_from((*triggers).numtriggers).unwrap_or_default()).any(|i| {
                let trigger = &*(*triggers).triggers.add(i);
                CStr::from_ptr(trigger.tgname) == name
                    && trigger.tgenabled as u8 == pg_sys::TRIGGER_FIRES_ALWAYS
            })
    };
    let announced = firing_always(c"tracking_reaches_writers")
        && firing_always(c"tracking_reaches_writers_on_truncate");
    pg_sys::table_close(tracked, pg_sys::AccessShareLock as i32);
    Ok(announced)
}

/// Registers `forget` once per backend, when it first keeps something: a backend that never
/// writes a tracked table takes none of PostgreSQL's ten relcache callback slots.
unsafe fn listen_for_invalidations() {
    if !LISTENING.replace(true) {
        pg_sys::CacheRegisterRelcacheCallback(Some(forget), pg_sys::Datum::from(0));
    }
}

/// The relcache callback: InvalidOid is a reset of every entry (the backend fell behind on
/// invalidations). Runs inside PostgreSQL's invalidation processing, which never happens while
/// KEPT is borrowed (no borrow spans a call into PostgreSQL).
#[pg_guard]
unsafe extern "C-unwind" fn forget(_argument: pg_sys::Datum, relid: pg_sys::Oid) {
    INVALIDATIONS.set(INVALIDATIONS.get().wrapping_add(1));
    KEPT.with_borrow_mut(|kept| {
        if relid == pg_sys::InvalidOid || relid == kept.tracked_table {
            kept.by_relation.clear();
        } else {
            kept.by_relation
                .retain(|&written, tracking| written != relid && tracking.source != relid);
        }
    });
}

/// The trigger `tracking_reaches_writers` on webhooks.tracked: after any change of its rows
/// (TRUNCATE included), an invalidation of the table, which every backend's `forget` reads.
#[pg_trigger(sql = false)]
fn tracking_changed<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, std::convert::Infallible> {
    // SAFETY: called as a trigger, so its relation is open for the whole call
    unsafe { pg_sys::CacheInvalidateRelcache(trigger.trigger_data().tg_relation) };
    Ok(None)
}
